"""Documents -> token streams with sentence ids (spec §2), and the balanced stream assignment.

The original concatenates whole files (shards) per task; here each document is assigned to one
of `num_streams` streams, and a stream is its documents concatenated in corpus order.
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
    return tokenize_documents(tokenizer, [document], use_eod)[0]


def tokenize_documents(tokenizer, documents, use_eod):
    """Encodes Documents with one tokenizer call; a None for each that encodes to nothing."""
    ids, lengths = tokenizer.encode_lines([line for d in documents for line in d.lines])
    line_ends = np.cumsum([len(d.lines) for d in documents]).tolist()
    token_ends = np.concatenate([[0], np.cumsum(lengths)])[line_ends].tolist()
    tokenized, line_start, token_start = [], 0, 0
    for document, line_end, token_end in zip(documents, line_ends, token_ends):
        if token_end > token_start:
            tokenized.append(_tokenized(document, ids[token_start:token_end],
                                        lengths[line_start:line_end], use_eod))
        else:
            tokenized.append(None)
        line_start, token_start = line_end, token_end
    return tokenized


def _tokenized(document, ids, lengths, use_eod):
    lengths = lengths[lengths > 0]  # an empty line would flip the sentence id with no token
    if use_eod:
        ids = np.append(ids, np.int32(EOD_ID))
        lengths[-1] += 1
    return TokenizedDocument(key=document.key, ids=ids, line_lengths=lengths,
                             lines=len(document.lines))


class StreamAssigner:
    """Deals documents, in corpus order, each to the stream holding the fewest tokens so far
    (lowest index on ties), so stream lengths differ by at most one document.

    Documents arrive a file range at a time and only the per-stream totals are kept, so the
    memory does not grow with the corpus. The corpus order (sorted files, byte offsets) does
    not depend on the runner or the workers, which makes the assignment deterministic.
    """

    def __init__(self, num_streams):
        self.num_streams = num_streams
        self._loads = [(0, stream) for stream in range(num_streams)]

    def assign(self, lengths):
        """Token counts [n] of the next documents -> their streams [n]."""
        streams = np.empty(len(lengths), np.int64)
        for document, length in enumerate(np.asarray(lengths).tolist()):
            load, stream = heapq.heappop(self._loads)
            streams[document] = stream
            heapq.heappush(self._loads, (load + length, stream))
        return streams

    def stream_tokens(self):
        tokens = np.zeros(self.num_streams, np.int64)  # [num_streams]
        for load, stream in self._loads:
            tokens[stream] = load
        return tokens


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
