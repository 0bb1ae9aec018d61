"""Documents -> token streams with sentence ids (spec §2), and the balanced stream assignment.

The original concatenates whole files (shards) per task; here each document is assigned to one
of `num_streams` streams, and a stream is its documents concatenated in assignment order.
Every document ends with one `<eod>` when use_eod is on (also the last one of a file, which
the original leaves without, QUIRK Q8); the `<eod>` shares the sentence id of the sentence
before it (QUIRK Q7), and every line boundary, document boundaries included, is a cut point.
"""

import dataclasses
import hashlib
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


def _shuffle_key(seed, key):
    return hashlib.blake2b(repr((seed, tuple(key))).encode(), digest_size=8).digest()


def assign_streams(document_lengths, num_streams, seed):
    """Balances documents over streams: [(key, length)] -> [(key, stream, order)].

    Documents are visited in a seeded pseudo-random order and each goes to the stream holding
    the fewest tokens so far (lowest index on ties), so stream lengths differ by at most one
    document. `order` is the document's position in its stream. Deterministic for any input
    order.
    """
    loads = [(0, stream) for stream in range(num_streams)]
    next_order = [0] * num_streams
    assignment = []
    for key, length in sorted(document_lengths, key=lambda kl: _shuffle_key(seed, kl[0])):
        load, stream = heapq.heappop(loads)
        assignment.append((tuple(key), stream, next_order[stream]))
        next_order[stream] += 1
        heapq.heappush(loads, (load + length, stream))
    return assignment, {stream: load for load, stream in loads}


def check_stream_lengths(stream_tokens, seq_len, num_streams):
    """Refuses streams too short to hold one example."""
    total = sum(stream_tokens.values())
    shortest = min(stream_tokens, key=lambda s: (stream_tokens[s], s))
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
