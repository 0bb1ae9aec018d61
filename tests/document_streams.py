"""Documents one at a time: what the job does a range at a time (preprocessing/stream_builder.py),
kept simple for tests that rebuild streams from the corpus."""

import dataclasses

import numpy as np

from preprocessing.stream_builder import sentence_stream, tokenize_documents


@dataclasses.dataclass
class TokenizedDocument:
    key: tuple
    ids: np.ndarray  # [n] int32
    line_lengths: np.ndarray  # [lines] int64, each > 0; the <eod> counts in the last line
    lines: int  # lines read (before dropping lines that encode to nothing)


def tokenize_document(tokenizer, document, use_eod):
    """Encodes a Document; None when no line of it encodes to any token."""
    tokenized = tokenize_documents(tokenizer, [document], use_eod)
    if not tokenized.document_tokens.size:
        return None
    return TokenizedDocument(key=document.key, ids=tokenized.ids,
                             line_lengths=tokenized.line_lengths, lines=len(document.lines))


def build_stream(documents):
    """Concatenates TokenizedDocuments (already in stream order) -> (ids [T], sent_ids [T])."""
    return sentence_stream(np.concatenate([d.ids for d in documents]),
                           np.concatenate([d.line_lengths for d in documents]))
