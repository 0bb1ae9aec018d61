"""Tokenizer: a SentencePiece model with the original XLNet text handling.

It applies the original normalisation (original-xlnet.md §1.2) and the digit-comma fix-up (§1.3),
checks the special ids (§1.1) and the vocabulary size against the model, and provides the
start-piece table the span sampler needs (§4.1).
"""

import hashlib
import itertools
import string
import unicodedata

import numpy as np
import sentencepiece as spm

from xlnet.errors import UserError
from xlnet.schema import SPECIAL_PIECES

TOKENIZER_FILE = "spiece.model"  # the released name, kept by every stage that stores one
WORD_START = "\u2581"  # SentencePiece's "▁"
# §4.1: ASCII punctuation without ' < = > ('<' is covered by the "starts with <" rule).
START_PUNCTUATION = frozenset(string.punctuation) - set("'<=>")


def normalize_text(line, uncased, keep_accents=False, remove_spaces=True):
    """§1.2: collapse whitespace, `` and '' to ", strip accents, optionally lower-case."""
    text = " ".join(line.split()) if remove_spaces else line
    text = text.replace("``", '"').replace("''", '"')
    if not keep_accents and not text.isascii():
        text = _strip_accents(text)
    if uncased:
        text = text.lower()
    return text


def _strip_accents(text):
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


# What str.split() splits on besides " " and "\n" in ASCII text (str.isspace).
_OTHER_ASCII_SPACES = "\t\x0b\x0c\r\x1c\x1d\x1e\x1f"


def normalize_lines(lines, uncased, keep_accents=False):
    """normalize_text of each line (none holding a newline). The ASCII lines, most of a
    typical corpus, are normalised joined in one text (scans of a one-byte-per-character
    string are cheap); the others one by one."""
    is_ascii = [line.isascii() for line in lines]
    if all(is_ascii):
        return _normalize_ascii_lines(lines, uncased)
    ascii_lines = iter(_normalize_ascii_lines(
        [line for line, ascii in zip(lines, is_ascii) if ascii], uncased))
    return [next(ascii_lines) if ascii else normalize_text(line, uncased, keep_accents)
            for line, ascii in zip(lines, is_ascii)]


def _normalize_ascii_lines(lines, uncased):
    """normalize_text of ASCII lines, on their joined text: quotes and case act on single
    characters, which a newline never joins; whitespace is collapsed per line, and only when
    some line needs it."""
    if not lines:
        return []
    text = "\n".join(lines)
    untidy = ("  " in text or " \n" in text or "\n " in text or text[:1] == " "
              or text[-1:] == " " or any(space in text for space in _OTHER_ASCII_SPACES))
    if untidy:
        text = "\n".join([" ".join(line.split()) for line in lines])
    text = text.replace("``", '"').replace("''", '"')
    return (text.lower() if uncased else text).split("\n")


def is_start_piece(piece):
    """§4.1: a piece a span may start on."""
    return piece.startswith(WORD_START) or piece.startswith("<") or piece in START_PUNCTUATION


class Tokenizer:
    """Encodes lines the way the original data preparation does."""

    def __init__(self, model_bytes, path="<bytes>", uncased=False):
        self.path = path
        self.uncased = uncased
        self.sha256 = hashlib.sha256(model_bytes).hexdigest()
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.LoadFromSerializedProto(model_bytes)
        except (RuntimeError, OSError) as e:
            raise UserError(f"{path}: not a SentencePiece model ({str(e).strip()[:80]}); "
                            "train one with `xlnet train-tokenizer`") from None
        self._check_special_pieces()
        self.vocab_size = self._sp.get_piece_size()
        pieces = [self._sp.id_to_piece(i) for i in range(self.vocab_size)]
        self.start_piece_table = np.array([is_start_piece(p) for p in pieces], dtype=bool)  # [V]
        self._comma_fixups = {i: self._split_digit_comma(p) for i, p in enumerate(pieces)
                              if len(p) > 1 and p[-1] == "," and p[-2].isdigit()}
        self._needs_fixup = np.zeros(self.vocab_size, dtype=bool)  # [V]
        self._needs_fixup[list(self._comma_fixups)] = True
        replacements = [self._comma_fixups.get(i, (i,)) for i in range(self.vocab_size)]
        self._fixup_widths = np.array([len(r) for r in replacements], np.int64)  # [V]
        self._fixup_starts = np.cumsum(self._fixup_widths) - self._fixup_widths  # [V]
        self._fixup_ids = np.fromiter(itertools.chain.from_iterable(replacements), np.int32,
                                      count=int(self._fixup_widths.sum()))

    @classmethod
    def load(cls, path, uncased=False, n_token=None):
        """Loads `path` through tf.io.gfile; with `n_token`, refuses a vocabulary of another
        size."""
        import tensorflow as tf

        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                model_bytes = f.read()
        except Exception as e:  # any gfile backend error
            raise cls.unreadable(path, e) from None
        return cls.from_bytes(model_bytes, path, uncased=uncased, n_token=n_token)

    @classmethod
    def from_bytes(cls, model_bytes, path, uncased=False, n_token=None):
        tokenizer = cls(model_bytes, path=path, uncased=uncased)
        if n_token is not None:
            tokenizer.check_vocab_size(n_token)
        return tokenizer

    @staticmethod
    def unreadable(path, error):
        return UserError(f"{path}: cannot read the tokenizer model ({type(error).__name__}); "
                         "give the path of a spiece.model")

    def _check_special_pieces(self):
        size = self._sp.get_piece_size()
        for expected_id, expected in enumerate(SPECIAL_PIECES):
            found = self._sp.id_to_piece(expected_id) if expected_id < size else None
            if found != expected:
                raise UserError(
                    f"{self.path}: id {expected_id} is {found!r}, the original vocabulary has "
                    f"{expected!r} there; train one with `xlnet train-tokenizer`")

    def check_vocab_size(self, n_token):
        if self.vocab_size != n_token:
            raise UserError(f"{self.path}: the tokenizer has {self.vocab_size} pieces but "
                            f"model.n_token is {n_token}; set model.n_token={self.vocab_size} "
                            "or use a matching tokenizer")

    def special_ids(self):
        return {piece: index for index, piece in enumerate(SPECIAL_PIECES)}

    def describe(self):
        """What dataset_info.json records about the tokenizer."""
        return {"path": self.path, "sha256": self.sha256, "vocab_size": self.vocab_size,
                "special_ids": self.special_ids(), "uncased": self.uncased}

    def _split_digit_comma(self, piece):
        """§1.3: `▁2000,` -> pieces of `2000` then `,`, as ids."""
        new_pieces = self._sp.encode_as_pieces(piece[:-1].replace(WORD_START, ""))
        if not piece.startswith(WORD_START) and new_pieces and new_pieces[0][0] == WORD_START:
            if len(new_pieces[0]) == 1:
                new_pieces = new_pieces[1:]
            else:
                new_pieces[0] = new_pieces[0][1:]
        new_pieces.append(piece[-1])
        return [self._sp.piece_to_id(p) for p in new_pieces]

    def encode_lines(self, lines):
        """Normalises and encodes lines in one call.

        Returns (ids, lengths): the concatenated ids [N] int32 and each line's count [lines].
        Give it many lines at once (a file range's): one batch call with one thread encodes
        ~1.5x faster than a call per line.
        """
        return self.encode_normalized(normalize_lines(lines, self.uncased))

    def encode_normalized(self, texts, sample=False):
        """encode_lines of texts normalised already: (ids [N] int32, lengths [texts]).
        `sample` draws one of the 64 best segmentations (subword regularisation)."""
        encoded = self._sp.encode(texts, num_threads=1, enable_sampling=sample, nbest_size=64,
                                  alpha=0.1)
        lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        ids = np.fromiter(itertools.chain.from_iterable(encoded), dtype=np.int32,
                          count=int(lengths.sum()))
        if self._needs_fixup[ids].any():
            ids, lengths = self._fix_digit_commas(ids, lengths)
        return ids, lengths

    def encode(self, line):
        """One line's ids [n] int32."""
        return self.encode_lines([line])[0]

    def _fix_digit_commas(self, ids, lengths):
        """Replaces each id by its fix-up pieces (itself for most): ids [N], lengths [lines]."""
        widths = self._fixup_widths[ids]  # [N]
        ends = np.cumsum(widths)  # [N]
        within = np.arange(int(ends[-1])) - np.repeat(ends - widths, widths)  # [N']
        fixed = self._fixup_ids[np.repeat(self._fixup_starts[ids], widths) + within]  # [N']
        line_ends = np.concatenate([[0], ends])[np.cumsum(lengths)]  # [lines]
        return fixed, np.diff(line_ends, prepend=0)

    def id_to_piece(self, index):
        return self._sp.id_to_piece(int(index))

    def decode(self, ids):
        """The text of ids (SentencePiece's detokenisation; normalisation is not undone)."""
        return self._sp.decode([int(i) for i in ids])
