"""Documents -> token streams with sentence ids (original-xlnet.md §2), and the balanced stream
assignment.

The original concatenates whole files (shards) per task; here the documents of a range are
grouped in blocks of consecutive documents (seq_len tokens or more), each block is assigned to
one of `num_streams` streams, and a stream is its blocks concatenated in corpus order. A block is
read back with one read, and consecutive text stays together as in the original's shards.
Every document ends with one `<eod>` when use_eod is on (also the last one of a file, which
the original leaves without, QUIRK Q8); the `<eod>` shares the sentence id of the sentence
before it (QUIRK Q7), and every line boundary, document boundaries included, is a cut point.
"""

import dataclasses
import heapq

import numpy as np

from xlnet.errors import UserError
from xlnet.schema import EOD_ID


@dataclasses.dataclass
class TokenizedRange:
    """The non-empty documents of a file range, concatenated in corpus order."""
    ids: np.ndarray  # [N] int32, every document's <eod> included
    line_lengths: np.ndarray  # [M] int64, each > 0; the <eod> counts in its document's last line
    document_tokens: np.ndarray  # [D] int64
    document_lines: np.ndarray  # [D] int64: entries of line_lengths per document
    documents: np.ndarray  # [D] int64: each one's index among the Documents encoded


def tokenize_documents(tokenizer, documents, use_eod):
    """Encodes Documents with one tokenizer call -> TokenizedRange (empty documents dropped)."""
    ids, lengths = tokenizer.encode_lines([line for d in documents for line in d.lines])
    lines_read = np.array([len(d.lines) for d in documents], np.int64)  # [D0]
    line_document = np.repeat(np.arange(len(documents)), lines_read)  # [lines]
    token_ends = np.concatenate([[0], np.cumsum(lengths)])[np.cumsum(lines_read)]  # [D0]
    document_tokens = np.diff(token_ends, prepend=0)  # [D0]
    kept = lengths > 0  # an empty line would flip the sentence id with no token
    line_lengths = lengths[kept]  # [M]
    document_lines = np.bincount(line_document[kept], minlength=len(documents))  # [D0]
    non_empty = document_tokens > 0
    document_tokens, document_lines = document_tokens[non_empty], document_lines[non_empty]
    if use_eod:
        eod_positions = np.cumsum(document_tokens + 1) - 1  # [D]
        with_eod = np.full(ids.size + eod_positions.size, EOD_ID, np.int32)
        is_token = np.ones(with_eod.size, bool)
        is_token[eod_positions] = False
        with_eod[is_token] = ids
        ids, document_tokens = with_eod, document_tokens + 1
        line_lengths[np.cumsum(document_lines) - 1] += 1
    return TokenizedRange(ids=ids, line_lengths=line_lengths, document_tokens=document_tokens,
                          documents=np.flatnonzero(non_empty),
                          document_lines=document_lines)


BLOCKS_PER_STREAM = 256
BYTES_PER_TOKEN = 4  # about right for English text and a 32k-piece vocabulary


def block_tokens_for(corpus_bytes, num_streams, seq_len):
    """Tokens per block: `seq_len`, or more for a large corpus, so that a stream gets about
    BLOCKS_PER_STREAM blocks. A stream reads one block at a time and opens each parked range
    it touches, so its reads stay bounded (a few hundred, not one per range of the corpus,
    which matters on an object store); streams still differ by at most one block."""
    estimated_tokens = corpus_bytes // BYTES_PER_TOKEN
    return max(seq_len, estimated_tokens // (num_streams * BLOCKS_PER_STREAM))


def document_blocks(document_tokens, block_tokens):
    """Block number [D] of each document [D]: consecutive documents whose first token falls in
    the same window of `block_tokens` tokens form a block."""
    first_tokens = np.cumsum(document_tokens) - document_tokens  # [D]
    windows = first_tokens // block_tokens  # [D], non-decreasing
    return np.cumsum(np.diff(windows, prepend=-1) > 0) - 1


class StreamAssigner:
    """Deals blocks, in corpus order, each to the stream holding the fewest tokens so far
    (lowest index on ties), so stream lengths differ by at most one block.

    Blocks arrive a file range at a time and only the per-stream totals are kept, so the
    memory does not grow with the corpus. The corpus order (sorted files, byte offsets) does
    not depend on the runner or the workers, which makes the assignment deterministic.
    """

    def __init__(self, num_streams):
        self.num_streams = num_streams
        self._loads = [(0, stream) for stream in range(num_streams)]

    def assign(self, lengths):
        """Token counts [n] of the next blocks -> their streams [n]."""
        streams = np.empty(len(lengths), np.int64)
        for block, length in enumerate(np.asarray(lengths).tolist()):
            load, stream = heapq.heappop(self._loads)
            streams[block] = stream
            heapq.heappush(self._loads, (load + length, stream))
        return streams

    def stream_tokens(self):
        tokens = np.zeros(self.num_streams, np.int64)  # [num_streams]
        for load, stream in self._loads:
            tokens[stream] = load
        return tokens


def check_stream_lengths(stream_tokens, seq_len, num_streams, option="data.num_streams",
                         what="the corpus"):
    """Refuses streams too short to hold one example (stream_tokens [num_streams])."""
    total = int(np.sum(stream_tokens))
    shortest = int(np.argmin(stream_tokens))
    if stream_tokens[shortest] < seq_len:
        raise UserError(
            f"{option}: {what} has {total} tokens, too few for {num_streams} streams "
            f"of at least seq_len={seq_len} tokens (stream {shortest} gets "
            f"{stream_tokens[shortest]}); lower {option} or add text")


def held_out(keys, seed, fraction):
    """Which documents go to the eval split: [D] bool for document keys [D, 2] (file index,
    offset). A hash of the key and the seed (splitmix64), so the choice is the same whatever
    range, worker or runner reads a document, and about `fraction` of them are chosen."""
    keys = np.asarray(keys, np.uint64).reshape(-1, 2)
    with np.errstate(over="ignore"):
        x = (keys[:, 0] * np.uint64(0x9E3779B97F4A7C15) + keys[:, 1]
             + np.uint64(seed) * np.uint64(0xD1B54A32D192ED03))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def sentence_stream(ids, line_lengths):
    """A stream's ids [T] and line lengths [M] -> (ids [T] int32, sent_ids [T] int8)."""
    sent_ids = np.repeat((np.arange(line_lengths.size) % 2).astype(np.int8), line_lengths)
    return ids.astype(np.int32), sent_ids
