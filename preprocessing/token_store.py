"""Tokenized documents parked in files between the two halves of the job.

The tokenize step writes each file range's documents to one store file and passes on only
their locations; the stream writer reads back the documents of its stream. The shuffle then
carries a few numbers per document instead of its tokens, so neither the runner nor any worker
holds more than one range or one stream of tokens at a time.

Store file: for each document, its ids then its line lengths, both int32 little-endian.
"""

import dataclasses

import numpy as np

from preprocessing.atomic_file import write_file
from preprocessing.stream_builder import TokenizedDocument

STORE_DIR = ".tokens"
_INT32 = np.dtype("<i4")


@dataclasses.dataclass(frozen=True)
class Location:
    key: tuple  # the document's key (file index, offset)
    path: str  # store file
    offset: int  # bytes
    tokens: int
    lines: int


def store_path(output_dir, range_index):
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.join(output_dir, STORE_DIR, f"range-{range_index:06d}.bin")


def write_store(path, documents):
    """Writes TokenizedDocuments to `path`; returns their Locations."""
    chunks, locations, offset = [], [], 0
    for document in documents:
        data = (document.ids.astype(_INT32).tobytes()
                + document.line_lengths.astype(_INT32).tobytes())
        chunks.append(data)
        locations.append(Location(document.key, path, offset, int(document.ids.size),
                                  int(document.line_lengths.size)))
        offset += len(data)
    write_file(path, b"".join(chunks))
    return locations


def read_store(locations):
    """TokenizedDocuments at `locations`, in the given order."""
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    documents = {}
    by_path = {}
    for location in locations:
        by_path.setdefault(location.path, []).append(location)
    for path, in_file in by_path.items():
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for location in sorted(in_file, key=lambda loc: loc.offset):
                f.seek(location.offset)
                values = np.frombuffer(f.read(4 * (location.tokens + location.lines)), _INT32)
                documents[location.key] = TokenizedDocument(
                    key=location.key, ids=values[:location.tokens].astype(np.int32),
                    line_lengths=values[location.tokens:].astype(np.int64), lines=location.lines)
    return [documents[location.key] for location in locations]
