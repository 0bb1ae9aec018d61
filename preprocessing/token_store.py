"""Tokenized documents parked in files between the two halves of the job.

The tokenize step writes each file range's documents to one store file, in blocks of
consecutive documents, and passes on only the blocks' locations; the stream writer reads back
the blocks of its stream, one read each. The shuffle then carries a few numbers per block
instead of its tokens, so neither the runner nor any worker holds more than one range or one
stream of tokens at a time.

Store file: for each block, its documents' ids then their line lengths, int32 little-endian.
Index file: per block its byte offset, tokens, lines and documents, int64 [4, K]; it is written
last, so a range whose index exists is parked whole (the job's progress counts them).
"""

import dataclasses
import functools
import re

import numpy as np

from preprocessing.stream_builder import document_blocks
from preprocessing.beam_files import write_file

STORE_DIR = ".tokens"
_INT32 = np.dtype("<i4")


@dataclasses.dataclass
class ParkedBlocks:
    """Where blocks of documents are parked: parallel arrays [n], one entry per block."""
    range_indices: np.ndarray  # which store file
    store_offsets: np.ndarray  # byte offset in the store file
    tokens: np.ndarray
    lines: np.ndarray

    @classmethod
    def concatenate(cls, parts):
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                      for f in dataclasses.fields(cls)})

    def select(self, indices):
        return ParkedBlocks(**{f.name: getattr(self, f.name)[indices]
                               for f in dataclasses.fields(self)})


@functools.lru_cache(maxsize=16)
def _filesystem(output_dir):
    """Beam's FileSystems looks the scheme up among its plugins on every call; a stream reads
    from many ranges' files, so the lookup is done once."""
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.get_filesystem(output_dir)


def store_path(output_dir, split, range_index, suffix="bin"):
    """Where one range's documents of one split are parked."""
    return _filesystem(output_dir).join(output_dir, STORE_DIR,
                                        f"{split}-range-{range_index:06d}.{suffix}")


def _open_store(output_dir, split, range_index, suffix="bin"):
    from apache_beam.io.filesystem import CompressionTypes

    return _filesystem(output_dir).open(store_path(output_dir, split, range_index, suffix),
                                        compression_type=CompressionTypes.UNCOMPRESSED)


def write_store(output_dir, split, range_index, tokenized, block_tokens):
    """Parks one range's TokenizedRange of one split in blocks (`document_blocks`): its
    tokens, and an index of where each block is."""
    first_documents = np.flatnonzero(np.diff(
        document_blocks(tokenized.document_tokens, block_tokens), prepend=-1))  # [K]
    tokens, lines = (np.add.reduceat(counts, first_documents) if counts.size else counts
                     for counts in (tokenized.document_tokens, tokenized.document_lines))  # [K]
    ends = np.cumsum(tokens + lines)  # [K] in int32 values
    starts = ends - tokens - lines
    data = np.empty(int(ends[-1]) if ends.size else 0, _INT32)
    data[np.repeat(starts - (np.cumsum(tokens) - tokens), tokens)
         + np.arange(tokenized.ids.size)] = tokenized.ids
    data[np.repeat(starts + tokens - (np.cumsum(lines) - lines), lines)
         + np.arange(tokenized.line_lengths.size)] = tokenized.line_lengths
    write_file(store_path(output_dir, split, range_index), data.tobytes())
    documents = np.diff(first_documents, append=tokenized.document_tokens.size)  # [K]
    index = np.stack([starts * _INT32.itemsize, tokens, lines, documents]).astype("<i8")
    write_file(store_path(output_dir, split, range_index, "index"), index.tobytes())  # [4, K]


def _read_index(output_dir, split, range_index):
    with _open_store(output_dir, split, range_index, "index") as f:
        return np.frombuffer(f.read(), "<i8").reshape(4, -1).astype(np.int64)  # [4, n]


_INDEX_NAME = re.compile(r"(\w+)-range-(\d+)\.index$")


def parked_ranges(output_dir):
    """{(split, range index): the index file's modification time} of the ranges parked."""
    from apache_beam.io.filesystems import FileSystems

    pattern = FileSystems.join(output_dir, STORE_DIR, "*.index")
    found = {}
    for metadata in FileSystems.match([pattern])[0].metadata_list:
        name = _INDEX_NAME.search(metadata.path)
        if name:
            found[name[1], int(name[2])] = metadata.last_updated_in_seconds
    return found


def parked_counts(output_dir, split, range_index):
    """(documents, tokens) parked for one range of one split."""
    index = _read_index(output_dir, split, range_index)
    return int(index[3].sum()), int(index[1].sum())


def read_parked(output_dir, split, range_index):
    """The ParkedBlocks of one range of one split, in corpus order."""
    index = _read_index(output_dir, split, range_index)
    return ParkedBlocks(range_indices=np.full(index.shape[1], range_index, np.int64),
                           store_offsets=index[0], tokens=index[1], lines=index[2])


def read_store(output_dir, split, parked):
    """The blocks of `parked` (of `split`), concatenated in its order: (ids [T] int32, line lengths
    [M] int64). Each store file is read once, front to back, a block at a time."""
    data = [None] * parked.tokens.size
    sizes = (_INT32.itemsize * (parked.tokens + parked.lines)).tolist()
    for range_index in np.unique(parked.range_indices).tolist():
        chosen = np.flatnonzero(parked.range_indices == range_index)
        chosen = chosen[np.argsort(parked.store_offsets[chosen], kind="stable")].tolist()
        with _open_store(output_dir, split, range_index) as f:
            for index, offset in zip(chosen, parked.store_offsets[chosen].tolist()):
                f.seek(offset)
                data[index] = f.read(sizes[index])
    values = np.frombuffer(b"".join(data), _INT32)  # per block: its ids, its line lengths
    is_id = np.repeat(np.tile([True, False], parked.tokens.size),
                      np.column_stack([parked.tokens, parked.lines]).ravel())
    return values[is_id].astype(np.int32), values[~is_id].astype(np.int64)
