"""Whole-file writes through tf.io.gfile (local, gs://) that a reader never sees
half-done: the model library's and the trainer's way to write a file another stage reads.
(The corpus job writes through Beam's FileSystems instead: preprocessing/beam_files.py.)"""

import os
import uuid


def write_file(path, data):
    """Writes bytes (or text, as UTF-8) to a temporary name, then renames it to `path`."""
    import tensorflow as tf

    if isinstance(data, str):
        data = data.encode("utf-8")
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with tf.io.gfile.GFile(temporary, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    except BaseException:  # e.g. a full disk: leave no half-written temporary behind
        try:
            tf.io.gfile.remove(temporary)
        except Exception:  # never written, or already renamed
            pass
        raise


def umask_mode(mode):
    """`mode` (0o666 for a file, 0o777 for a directory) less the process's umask: what open()
    and mkdir() would have given, for what a temporary-file API creates private (0o600/0o700)
    and is then published. os.umask can only be read by setting it, so it is set back at once."""
    umask = os.umask(0o077)
    os.umask(umask)
    return mode & ~umask
