"""The model directory's lock: one `xlnet pretrain` writes a model directory at a time.

The chief creates the lock file (its pid, host and start time) before it writes anything there
and removes it when the run ends: normally, after SIGTERM or on an exception. A second run is
refused in one line naming the holder. A lock that a process left behind when it died (SIGKILL,
a crash) is stale when it names this host and a pid that no longer exists; it is taken over
with a warning. A lock of another host is not judged from here: the user removes it.

Creation is exclusive on a local or network disk (a hard link, which fails when the name
exists). tf.io.gfile offers no create-if-absent for object stores (gs://, s3://): there the lock
is written only when absent and then read back, which refuses runs started seconds apart but
not two started in the same instant.
"""

import datetime
import json
import logging
import os
import socket
import uuid

import tensorflow as tf

from xlnet.atomic_file import write_file
from xlnet.errors import UserError
from xlnet.formats.model_dir import LOCK_FILE, ModelDirectory

logger = logging.getLogger(__name__)
TAKE_OVER_ATTEMPTS = 3  # a stale lock is removed and creation retried; a racer may win


class RunLock:
    """The lock of one model directory; `with RunLock(d):` holds it for the block."""

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.path = ModelDirectory(model_dir).join(LOCK_FILE)
        self._record = None
        self._created_dir = False

    def holder(self):
        """The lock file's record {pid, host, since, token}, or None when there is none."""
        try:
            with tf.io.gfile.GFile(self.path, "rb") as f:
                text = f.read()
        except tf.errors.NotFoundError:
            return None
        try:
            record = json.loads(text.decode("utf-8"))
            if not (isinstance(record["pid"], int) and record["pid"] > 0
                    and isinstance(record["host"], str)):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{self.path}: not a lock file of xlnet pretrain; delete it if no "
                            f"run is writing {self.model_dir}") from None
        return record

    def check_free(self):
        """Refuses, writing nothing, when a live run holds the lock: a cheap check before
        the expensive start-up; `acquire` takes it."""
        record = self.holder()
        if record is not None and not _is_stale(record):
            raise self._held(record)

    def acquire(self):
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "token": uuid.uuid4().hex}
        self._created_dir = not tf.io.gfile.isdir(self.model_dir)
        tf.io.gfile.makedirs(self.model_dir)
        for _ in range(TAKE_OVER_ATTEMPTS):
            if self._create(record):
                self._record = record
                return self
            held = self.holder()
            if held is None:  # released in the meantime
                continue
            if not _is_stale(held):
                raise self._held(held)
            logger.warning("%s: taking over the lock of pid %d on %s (since %s): that process "
                           "is gone", self.path, held["pid"], held["host"], held.get("since"))
            tf.io.gfile.remove(self.path)
        raise self._held(self.holder() or {"pid": "?", "host": "?"})

    def release(self):
        """Removes the lock if it is still this run's."""
        if self._record is None:
            return
        try:
            held = self.holder()
        except UserError:
            held = None
        if held is not None and held.get("token") == self._record["token"]:
            tf.io.gfile.remove(self.path)
            # A run refused before its first write (e.g. a bad --init-checkpoint) leaves no
            # directory behind when it made that directory for its lock. rmdir removes only
            # an empty one, so a run that took the lock meanwhile keeps its directory; gfile
            # has no such call, and an object store has no empty directories to remove.
            if self._created_dir and "://" not in self.model_dir:
                try:
                    os.rmdir(self.model_dir)
                except OSError:
                    pass
        else:
            logger.warning("%s: no longer this run's lock; left as it is", self.path)
        self._record = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()

    def _create(self, record):
        """Creates the lock file holding `record` unless one exists; whether it did."""
        text = json.dumps(record, sort_keys=True) + "\n"
        if "://" in self.path:
            if tf.io.gfile.exists(self.path):
                return False
            write_file(self.path, text)
            return (self.holder() or {}).get("token") == record["token"]
        # A hard link is the one exclusive create-if-absent of a whole, written file; gfile
        # has none, so local paths use the OS directly.
        temporary = f"{self.path}.tmp-{record['token']}"
        with open(temporary, "w") as f:
            f.write(text)
        try:
            os.link(temporary, self.path)
        except FileExistsError:
            return False
        finally:
            os.remove(temporary)
        return True

    def _held(self, record):
        return UserError(
            f"{self.model_dir}: in use by another xlnet pretrain (pid {record['pid']} on "
            f"{record['host']} since {record.get('since', '?')}; lock file {self.path}); wait "
            "for it to end, or delete the lock file if that run is gone")


def _is_stale(record):
    """Whether the lock's process is known to be gone: on this host, and no such pid."""
    if record["host"] != socket.gethostname():
        return False
    try:
        os.kill(record["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False
