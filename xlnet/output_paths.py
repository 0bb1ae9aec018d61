"""Checks of where a command will write, made before it does any work, and the one-line message
for a filesystem failure met while writing (a full disk, a read-only mount).

Object stores (`gs://`, `s3://`) have no directories to be files and no permissions to read
from here: their paths are left to the write itself.
"""

import errno
import os
import re

from xlnet.errors import UserError

# errno -> what the message says and the fix, for the failures a user can mend.
_FILESYSTEM_ERRNOS = {
    errno.ENOSPC: ("no space left on the device", "free space there or choose another place"),
    errno.EDQUOT: ("disk quota exceeded", "free space there or choose another place"),
    errno.EROFS: ("on a read-only filesystem", "choose a writable place"),
    errno.EACCES: ("permission denied", "check the permissions or choose another place"),
}
# The same failures as other libraries word them inside their own exceptions (TensorFlow's
# ResourceExhaustedError, a Beam worker's RuntimeError, safetensors' SafetensorError).
_STRERRORS = {os.strerror(number): number for number in _FILESYSTEM_ERRNOS}
_TEMPORARY_SUFFIX = re.compile(r"(\.(tmp|partial)-[0-9a-f]{32}|\.tempstate\d+)$")
_TF_OP_PREFIX = re.compile(r"^\{\{[^}]*\}\}\s*")  # "{{function_node ...}} PATH; ..."


def _is_remote(path):
    return "://" in str(path)


def _existing_ancestor(path):
    parent = os.path.abspath(path)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    return parent


def _check_parent(path, option, what):
    parent = _existing_ancestor(os.path.dirname(os.path.abspath(path)) or ".")
    if not os.path.isdir(parent):
        raise UserError(f"{option} {path}: {parent} is a file, so the {what} cannot be made "
                        "there; choose another path")
    if not os.access(parent, os.W_OK | os.X_OK):
        reason = "a read-only filesystem" if _read_only(parent) else "not writable"
        raise UserError(f"{option} {path}: {parent} is {reason}; choose a writable place")


def _read_only(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_output_directory(path, option):
    """Refuses, before any work, a local output directory that cannot be written: an existing
    file, a file among its parents, a read-only or unwritable place."""
    path = str(path)
    if _is_remote(path):
        return
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path}: an existing file, not a directory; give a new "
                        "directory's path (or that of an empty one)")
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            reason = "a read-only filesystem" if _read_only(path) else "not writable"
            raise UserError(f"{option} {path}: {reason}; choose a writable place")
        return
    _check_parent(path, option, "directory")


def check_output_file(path, option):
    """Refuses, before any work, a local output file that cannot be written: an existing
    directory, a file among its parents, a read-only or unwritable place."""
    path = str(path)
    if _is_remote(path):
        return
    if os.path.isdir(path):
        raise UserError(f"{option} {path}: a directory; give the path of a file to write "
                        f"(e.g. {os.path.join(path, 'eval.json')})")
    _check_parent(path, option, "file")


def check_dataset_directory(path, option="--data"):
    """Refuses a local `--data` that is a file (it would read as a dataset without COMPLETED)."""
    path = str(path)
    if not _is_remote(path) and os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path}: a file, not a dataset directory; give the directory "
                        "`xlnet prepare --output` wrote")


def _chain(error):
    seen = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _filesystem_failure(error):
    """(errno, the file named or None) of the first space or permission failure in the
    exception's chain, however a library wrapped it; None if there is none."""
    for e in _chain(error):
        number = getattr(e, "errno", None) if isinstance(e, OSError) else None
        text = str(e)
        if number not in _FILESYSTEM_ERRNOS:
            number = next((n for s, n in _STRERRORS.items() if s in text), None)
        if number is None:
            continue
        filename = getattr(e, "filename", None) if isinstance(e, OSError) else None
        if filename is None and "; " in text:  # TensorFlow: "PATH; No space left on device"
            filename = _TF_OP_PREFIX.sub("", text.split("; ", 1)[0].splitlines()[-1].strip())
        return number, filename and _TEMPORARY_SUFFIX.sub("", str(filename))
    return None


def filesystem_error(error, option=None, path=None):
    """The one-line message for a write that failed for want of space or permission, naming
    `option path` (the output being written) and the file when known; None for any other
    error."""
    failure = _filesystem_failure(error)
    if failure is None:
        return None
    number, filename = failure
    what, fix = _FILESYSTEM_ERRNOS[number]
    where = [f"{option} {path}"] if option else []
    if filename and not (path and os.path.normpath(filename) == os.path.normpath(str(path))):
        where.append(filename)
    return "".join(f"{w}: " for w in where) + (f"{what}; {fix}, then run the same command "
                                                "again (what was cut short is not used)")


class translate_filesystem_errors:
    """`with translate_filesystem_errors("--output", path):` turns a full disk or a read-only
    place met inside into a UserError naming the option and the path."""

    def __init__(self, option, path):
        self.option, self.path = option, path

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None or isinstance(error, UserError) or not isinstance(error, Exception):
            return False
        message = filesystem_error(error, self.option, self.path)
        if message is None:
            return False
        raise UserError(message) from error
