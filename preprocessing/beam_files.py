"""Whole files through Beam's FileSystems (local, gs://, s3://), the corpus job's only way to
files: a write that a reader never sees half-done, and the tokenizer model read in a worker.
(The model library and the trainer use tf.io.gfile instead: xlnet/atomic_file.py.)"""

import uuid

from xlnet.tokenizer import Tokenizer


def write_file(path, data):
    """Writes bytes (or text, as UTF-8) to a temporary name, then renames it to `path`."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    if isinstance(data, str):
        data = data.encode("utf-8")
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            f.write(data)
        FileSystems.rename([temporary], [path])
    except BaseException:  # e.g. a full disk: leave no half-written temporary behind
        try:
            FileSystems.delete([temporary])
        except Exception:  # never written, or already renamed
            pass
        raise


def load_tokenizer(path, uncased=False, n_token=None):
    """Tokenizer.load, reading the model through Beam's FileSystems."""
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as f:
            model_bytes = f.read()
    except Exception as e:  # any FileSystems backend error
        raise Tokenizer.unreadable(path, e) from None
    return Tokenizer.from_bytes(model_bytes, path, uncased=uncased, n_token=n_token)
