"""Documents -> token streams with sentence ids (spec §2), and the balanced stream assignment.

The original concatenates whole files (shards) per task; here each document is assigned to one
of `num_streams` streams, and a stream is its documents concatenated in assignment order.
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
class TokenizedDocument:
    key: tuple
    ids: np.ndarray  # [n] int32
    line_lengths: np.ndarray  # [lines] int64, each > 0; the <eod> counts in the last line
    lines: int  # lines read (before dropping lines that encode to nothing)


def tokenize_document(tokenizer, document, use_eod):
    """Encodes a Document; None when no line of it encodes to any token."""
    ids, lengths = tokenizer.encode_lines(document.lines)
    if ids.size == 0:
        return None
    lengths = lengths[lengths > 0]  # an empty line would flip the sentence id with no token
    if use_eod:
        ids = np.append(ids, np.int32(EOD_ID))
        lengths[-1] += 1
    return TokenizedDocument(key=document.key, ids=ids, line_lengths=lengths,
                             lines=len(document.lines))


def _mix64(values):
    """splitmix64's finaliser: a well-spread uint64 hash of each value (wrapping arithmetic)."""
    z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def assign_streams(file_indices, offsets, lengths, num_streams, seed):
    """Balances documents over streams.

    Documents are given by their keys (file index, offset) and token counts, as arrays [n].
    They are visited in a seeded pseudo-random order and each goes to the stream holding the
    fewest tokens so far (lowest index on ties), so stream lengths differ by at most one
    document. Returns (stream [n], order [n]: position in its stream, tokens per stream
    [num_streams]); deterministic for any input order. Arrays keep memory at a few bytes per
    document: this is the one step that sees every document.
    """
    file_indices = np.asarray(file_indices, np.uint64)
    offsets = np.asarray(offsets, np.uint64)
    lengths = np.asarray(lengths, np.int64)
    shuffle = _mix64(_mix64(np.full(offsets.shape, seed, np.uint64) ^ file_indices) ^ offsets)
    visit = np.lexsort((offsets, file_indices, shuffle))
    streams = np.empty(lengths.size, np.int64)
    orders = np.empty(lengths.size, np.int64)
    loads = [(0, stream) for stream in range(num_streams)]
    next_order = [0] * num_streams
    for document, length in zip(visit.tolist(), lengths[visit].tolist()):
        load, stream = heapq.heappop(loads)
        streams[document] = stream
        orders[document] = next_order[stream]
        next_order[stream] += 1
        heapq.heappush(loads, (load + length, stream))
    stream_tokens = np.zeros(num_streams, np.int64)
    for load, stream in loads:
        stream_tokens[stream] = load
    return streams, orders, stream_tokens


def check_stream_lengths(stream_tokens, seq_len, num_streams):
    """Refuses streams too short to hold one example (stream_tokens [num_streams])."""
    total = int(np.sum(stream_tokens))
    shortest = int(np.argmin(stream_tokens))
    if stream_tokens[shortest] < seq_len:
        raise UserError(
            f"data.num_streams: the corpus has {total} tokens, too few for {num_streams} streams "
            f"of at least seq_len={seq_len} tokens (stream {shortest} gets "
            f"{stream_tokens[shortest]}); lower data.num_streams or add text")


def build_stream(documents):
    """Concatenates TokenizedDocuments (already in stream order) -> (ids [T], sent_ids [T])."""
    ids = np.concatenate([d.ids for d in documents]).astype(np.int32)
    lengths = np.concatenate([d.line_lengths for d in documents])
    sent_ids = np.repeat((np.arange(lengths.size) % 2).astype(np.int8), lengths)
    return ids, sent_ids
