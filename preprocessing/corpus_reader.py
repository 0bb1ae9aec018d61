"""Reads documents from text files: one sentence per line, a blank line ends a document (§1.4).

A plain file is read in byte ranges so that one big file spreads over all workers, and small
files are packed into ranges of the same size. A document belongs to the range holding the
offset of its first line, and the reader of that range follows it past the range end, so a
document is never torn apart and never read twice. Its key (file index, offset of its first
line) does not depend on the ranges, and the ranges depend only on the files, which keeps the
output identical for any worker count or runner. A gzip file cannot be entered in the middle
and is one range.
"""

import contextlib
import dataclasses
import glob
import gzip
import io
import itertools
import logging
import os
import zlib

import numpy as np

from xlnet.errors import UserError

logger = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 20  # a longer "sentence" is not text this pipeline can use
RANGE_BYTES = 1 << 20
# A line is blank when its text is only whitespace, as str.strip() sees it (the original's
# `not line.strip()`, §1.4): besides ASCII's, \x1c-\x1f and non-ASCII spaces (\x85, \xa0,
# \u3000, ...). Only a line made of these bytes alone (ASCII whitespace, \x1c-\x1f, any byte
# of a multi-byte character) can be blank, so the rest never needs decoding.
_MAYBE_WHITESPACE = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f" + bytes(range(0x80, 0x100))
_LOOKBACK_BYTES = 4096
# Byte order marks of the encodings a text editor saves that UTF-8 decoding would turn into
# `<unk>` soup; UTF-32 LE's starts with UTF-16 LE's, so it is tried first.
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
              (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"))
_BLOCK_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class FileRange:
    file_index: int
    path: str
    start: int
    end: int  # exclusive; -1 = to the end of the file


@dataclasses.dataclass
class Document:
    key: tuple  # (file index, offset of the first line); orders documents globally
    lines: list  # decoded lines, stripped of the newline
    non_utf8_lines: int = 0
    overlong_lines: int = 0
    nul_lines: int = 0  # lines holding a NUL byte: binary data, not text (skipped)


def is_gzip(path):
    return path.endswith(".gz")


def _matching_directories(pattern):
    """The local directories a glob matches (Beam's match leaves them out of a glob's matches
    but returns a directory named exactly as if it were a file)."""
    if "://" in pattern:
        return []
    return sorted(path for path in glob.glob(pattern) if os.path.isdir(path))


def match_input_files(pattern):
    """Sorted (path, size) of the files matching a glob; a glob without files is an error."""
    from apache_beam.io.filesystems import FileSystems

    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception as e:  # BeamIOError for a bad scheme, a missing bucket, ...
        raise UserError(f"--input {pattern}: cannot list files ({e})") from None
    directories = _matching_directories(pattern)
    files = sorted((m.path, m.size_in_bytes) for m in matches if m.path not in directories)
    if directories and not files:
        raise UserError(f"--input {pattern}: matches only directories ({directories[0]}"
                        f"{f' and {len(directories) - 1} more' if len(directories) > 1 else ''})"
                        f"; give a glob of the files in them, e.g. "
                        f"'{os.path.join(directories[0], '*.txt')}'")
    if directories:
        logger.warning("--input %s: skipping %d matching directories (%s, ...): only files are "
                       "read, not what is inside a directory", pattern, len(directories),
                       directories[0])
    if not files:
        raise UserError(f"--input {pattern}: no files match; check the path or glob")
    if all(size == 0 for _, size in files):
        raise UserError(f"--input {pattern}: all {len(files)} matching files are empty")
    for path, size in files:
        if size:
            _check_start(path)
    return files


def _check_start(path):
    """Refuses, before the job starts, a file whose first bytes show it is not UTF-8 text or
    not the gzip file its name says (a worker would fail on it with a long traceback)."""
    try:
        with _open_binary(path) as f:
            head = f.read(4)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path}: cannot be read as {'gzip' if is_gzip(path) else 'a file'} "
                        f"({e}); replace or remove it") from None
    for bom, encoding in _WIDE_BOMS:
        if head.startswith(bom):
            raise UserError(f"{path}: starts with a {encoding} byte order mark, the corpus must "
                            f"be UTF-8; convert it (iconv -f {encoding} -t UTF-8)")


def plan_ranges(files, range_bytes=RANGE_BYTES):
    """Cuts (path, size) files into ranges of at most `range_bytes` (a gzip file is one range
    whatever its size): big files into pieces, small files and the pieces' tails packed
    together, so that ranges are alike in size and any equal share of them is an equal share of
    the work. A range is a tuple of FileRanges, read in order. Empty files are skipped (§1.4).
    """
    pieces = []  # (FileRange, bytes)
    for file_index, (path, size) in enumerate(files):
        if size == 0:
            continue
        if is_gzip(path):
            pieces.append((FileRange(file_index, path, 0, -1), size))
            continue
        for start in range(0, size, range_bytes):
            end = min(start + range_bytes, size)
            pieces.append((FileRange(file_index, path, start, end), end - start))
    ranges, packed, packed_bytes = [], [], 0
    for piece, size in pieces:
        if packed and packed_bytes + size > range_bytes:
            ranges.append(tuple(packed))
            packed, packed_bytes = [], 0
        packed.append(piece)
        packed_bytes += size
    if packed:
        ranges.append(tuple(packed))
    return ranges


def _open_binary(path):
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    if is_gzip(path):
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"))
    return raw


@contextlib.contextmanager
def _whole_gzip(path):
    """Turns a gzip file that breaks off or is corrupt past its first bytes (found only while
    a worker reads it: checking before the job would decompress the corpus twice) into one
    line naming the file."""
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        if not is_gzip(path):
            raise
        raise UserError(f"{path}: a truncated or corrupt gzip file ({e}); replace it with a "
                        f"whole copy (`gzip -t {path}` tests one) or remove it") from None


def is_blank_line(line):
    """Whether a line (bytes, without its newline) ends a document: its text is whitespace
    only. An undecodable line is not blank (it is skipped and counted inside its document)."""
    if line.strip(_MAYBE_WHITESPACE):
        return False
    try:
        return not line.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


def _previous_line_is_blank(f, line_start):
    """Whether the line that ends just before `line_start` is blank (file start counts so).
    Reads back only as far as that line could still be blank."""
    position = line_start - 1  # the newline ending the previous line
    tail = []  # the previous line's bytes, read backwards in chunks
    while position > 0:
        chunk_start = max(0, position - _LOOKBACK_BYTES)
        f.seek(chunk_start)
        chunk = f.read(position - chunk_start)
        newline = chunk.rfind(b"\n")
        part = chunk[newline + 1:]
        if part.lstrip(_MAYBE_WHITESPACE):
            return False
        tail.append(part)
        if newline >= 0:
            break
        position = chunk_start
    return is_blank_line(b"".join(reversed(tail)))


def _first_line_start(f, offset):
    """The first line start at or after `offset`, and whether the line before it is blank."""
    if offset == 0:
        return 0, True
    f.seek(offset - 1)
    line_start = offset - 1
    while True:  # to the end of the line holding offset - 1, in bounded reads
        part = f.readline(MAX_LINE_BYTES)
        line_start += len(part)
        if not part or part.endswith(b"\n"):
            break
    blank_before = _previous_line_is_blank(f, line_start)
    f.seek(line_start)
    return line_start, blank_before


def _line_blocks(f, offset):
    """Yields (offsets, lines) per block read: the lines without their newline (None for an
    over-long one) and where each starts.

    Reads in blocks (a readline per line costs more than the rest of the reading) and never
    holds more than MAX_LINE_BYTES of a line.
    """
    pending = b""  # the start of a line that continues in the next block
    skipped = None  # bytes so far of an over-long line being skipped
    while block := f.read(_BLOCK_BYTES):
        offsets, lines = [], []
        if skipped is not None:
            newline = block.find(b"\n")
            if newline < 0:
                skipped += len(block)
                continue
            offsets.append(offset)
            lines.append(None)
            offset += skipped + newline + 1
            skipped, block = None, block[newline + 1:]
        complete = (pending + block).split(b"\n")
        pending = complete.pop()
        lengths = np.fromiter(map(len, complete), np.int64, len(complete))  # [n]
        starts = (offset + np.cumsum(lengths + 1) - (lengths + 1)).tolist()
        offset += int(lengths.sum()) + lengths.size
        offsets += starts
        lines += complete
        if lengths.size and lengths.max() > MAX_LINE_BYTES:
            lines = [line if line is None or len(line) <= MAX_LINE_BYTES else None
                     for line in lines]
        if len(pending) > MAX_LINE_BYTES:
            skipped, pending = len(pending), b""
        if lines:
            yield offsets, lines
    if skipped is not None:
        yield [offset], [None]
    elif pending:
        yield [offset], [pending]


def _bounded_lines(f, offset):
    """Yields (offset, line without its newline, or None for an over-long line)."""
    for offsets, lines in _line_blocks(f, offset):
        yield from zip(offsets, lines)


def read_documents(file_range):
    """Yields the Documents whose first line starts inside `file_range`.

    Works a block of lines at a time: blank lines are found for the whole block at once, and
    each document's lines are decoded together.
    """
    with _whole_gzip(file_range.path), _open_binary(file_range.path) as f:
        if file_range.start:
            line_start, blank_before = _first_line_start(f, file_range.start)
        else:
            line_start, blank_before = 0, True
        document = None
        for offsets, lines in _line_blocks(f, line_start):
            runs, ends_blank = _non_blank_runs(lines)
            for first, stop in runs:
                if first > 0 or blank_before:  # a new document
                    if document is not None:
                        yield document
                    if file_range.end != -1 and offsets[first] >= file_range.end:
                        return
                    document = Document(key=(file_range.file_index, offsets[first]), lines=[])
                if document is not None:
                    _add_lines(document, lines[first:stop])
            blank_before = ends_blank
            if blank_before and document is not None:
                yield document
                document = None
            if document is None and file_range.end != -1 and offsets[-1] >= file_range.end:
                return  # whatever starts from here on belongs to the next ranges
        if document is not None:
            yield document


def _non_blank_runs(lines):
    """[(first, stop)] of the runs of non-blank lines (an over-long one counts as non-blank),
    and whether the last line is blank."""
    probe = [b"x" if line is None else line for line in lines] if None in lines else lines
    non_blank = np.fromiter(map(len, map(bytes.strip, probe, itertools.repeat(
        _MAYBE_WHITESPACE))), np.int64, len(probe)) > 0  # [n]; only these are sure
    for index in np.flatnonzero(~non_blank).tolist():
        non_blank[index] = not is_blank_line(probe[index])
    edges = np.diff(np.concatenate([[0], non_blank.view(np.int8), [0]]))  # +1 starts, -1 ends
    runs = zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist())
    return list(runs), not non_blank[-1]


def _add_lines(document, lines):
    """Decodes a document's lines together; one by one only where one is skipped."""
    joined = None if None in lines else b"\n".join(lines)
    if joined is not None and b"\x00" not in joined:  # one scan of the bytes, not one per line
        try:
            text = joined.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            decoded = text.split("\n")
            document.lines += [line.rstrip("\r") for line in decoded] if "\r" in text else decoded
            return
    for line in lines:
        if line is None:
            document.overlong_lines += 1
            continue
        if b"\x00" in line:
            document.nul_lines += 1
            continue
        try:
            document.lines.append(line.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError:
            document.non_utf8_lines += 1


def iter_text_lines(path):
    """Decoded lines of one file (blank ones included), skipping undecodable or over-long ones
    and those holding a NUL byte.

    Yields (byte offset, str), or (byte offset, None) for each skipped line so that callers can
    count them; offsets are into the uncompressed text.
    """
    with _whole_gzip(path), _open_binary(path) as f:
        for offset, line in _bounded_lines(f, 0):
            if line is None or b"\x00" in line:
                yield offset, None
                continue
            try:
                yield offset, line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                yield offset, None
