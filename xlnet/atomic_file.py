"""Whole-file writes through Beam's FileSystems (local, gs://, s3://) that a reader never sees
half-done; used by every stage that writes a file another stage reads."""

import uuid


def write_file(path, data):
    """Writes bytes (or text, as UTF-8) to a temporary name, then renames it to `path`."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    if isinstance(data, str):
        data = data.encode("utf-8")
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    with FileSystems.create(temporary, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    FileSystems.rename([temporary], [path])
