import numpy as np
import sentencepiece as spm
import pytest

from tests.text_corpus import train_tiny_tokenizer
from xlnet import tokenizer as tokenizer_module
from xlnet.errors import UserError
from xlnet.schema import SPECIAL_PIECES
from xlnet.tokenizer import (START_PUNCTUATION, WORD_START, Tokenizer, is_start_piece,
                            normalize_lines, normalize_text)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokenizer")
    return train_tiny_tokenizer(str(root / "corpus"), str(root / "model"))


def test_special_ids_are_the_originals(model_path):
    tokenizer = Tokenizer.load(model_path)
    assert [tokenizer.id_to_piece(i) for i in range(9)] == list(SPECIAL_PIECES)
    assert tokenizer.special_ids() == {"<unk>": 0, "<s>": 1, "</s>": 2, "<cls>": 3, "<sep>": 4,
                                       "<pad>": 5, "<mask>": 6, "<eod>": 7, "<eop>": 8}
    described = tokenizer.describe()
    assert described["vocab_size"] == 300 and len(described["sha256"]) == 64
    assert tokenizer.encode("ka lo.<eop>")[-1] == 8


def test_normalisation_follows_the_original():
    assert normalize_text("  a \t b\u3000 c ", uncased=False) == "a b c"
    assert normalize_text("``quoted''", uncased=False) == '"quoted"'
    assert normalize_text("Café Ñu", uncased=False) == "Cafe Nu"
    assert normalize_text("Café Ñu", uncased=True) == "cafe nu"
    assert normalize_text("Café", uncased=False, keep_accents=True) == "Café"


def test_digit_comma_pieces_are_split(model_path):
    tokenizer = Tokenizer.load(model_path)
    sp = spm.SentencePieceProcessor(model_file=model_path)
    fused = [p for p in (sp.id_to_piece(i) for i in range(sp.get_piece_size()))
             if len(p) > 1 and p.endswith(",") and p[-2].isdigit()]
    assert fused, "the generated corpus should make SentencePiece learn digit-comma pieces"
    text = "ka 12,345, lo 7,120, mi"
    raw_pieces = sp.encode_as_pieces(text)
    assert any(p in fused for p in raw_pieces)
    pieces = [tokenizer.id_to_piece(i) for i in tokenizer.encode(text)]
    assert not any(p in fused for p in pieces)
    assert "".join(pieces).replace(WORD_START, " ").strip() == text
    assert pieces.count(",") >= 2


def test_vocab_size_mismatch_names_both_numbers(model_path):
    with pytest.raises(UserError, match=r"300 pieces but model.n_token is 32000"):
        Tokenizer.load(model_path, n_token=32000)
    Tokenizer.load(model_path, n_token=300)


def test_refuses_a_file_that_is_not_a_sentencepiece_model(tmp_path):
    path = tmp_path / "spiece.model"
    path.write_bytes(b"this is not a model\n" * 10)
    with pytest.raises(UserError, match="not a SentencePiece model") as error:
        Tokenizer.load(str(path))
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="cannot read the tokenizer"):
        Tokenizer.load(str(tmp_path / "missing.model"))


def test_refuses_a_model_with_other_special_ids(tmp_path, model_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("\n".join(f"ka lo mi {i} ne ru sa to" for i in range(300)))
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(tmp_path / "plain"),
                                   vocab_size=40, minloglevel=2)
    with pytest.raises(UserError, match=r"id 3 is .* '<cls>'"):
        Tokenizer.load(str(tmp_path / "plain.model"))


def test_start_piece_rule():
    assert len(START_PUNCTUATION) == 28
    for piece in ("▁the", "▁", "<sep>", "<cls>", "<eod>", "<", ",", ".", "-", "(", "\\", "~"):
        assert is_start_piece(piece), piece
    for piece in ("ing", "'", "=", ">", "s,", "2"):
        assert not is_start_piece(piece), piece


def test_start_piece_table_matches_the_vocabulary(model_path):
    tokenizer = Tokenizer.load(model_path)
    table = tokenizer.start_piece_table
    assert table.shape == (300,)
    for index in range(300):
        assert table[index] == is_start_piece(tokenizer.id_to_piece(index))
    assert table[3] and table[4] and table[7]


def test_encoding_lines_together_equals_encoding_each(model_path):
    tokenizer = Tokenizer.load(model_path)
    lines = ["ka 12,345, lo", "", "7,120, mi 3,", "\u0301", "lo ka"]
    ids, lengths = tokenizer.encode_lines(lines)
    each = [tokenizer.encode(line).tolist() for line in lines]
    assert lengths.tolist() == [len(e) for e in each] and lengths[1] == lengths[3] == 0
    assert ids.tolist() == [i for e in each for i in e]
    assert ids.dtype == np.int32 and lengths.dtype == np.int64


@pytest.mark.parametrize("uncased", [False, True])
def test_normalising_lines_together_equals_each_line(uncased):
    alphabet = list("aZ ``''\t\r\x0b\x0c\x1c\x1f\x85\xa0\u3000\u2028\u00a8Σσ,.éÑİ\u0301\u2474x")
    rng = np.random.default_rng(5)
    lines = ["".join(rng.choice(alphabet, size=int(rng.integers(0, 12)))) for _ in range(400)]
    lines += ["", "   ", "ΟΔΟΣ\u3000ΟΔΟΣ", "ab``", "``cd", "a'", "'b"]
    assert normalize_lines(lines, uncased) == [normalize_text(x, uncased) for x in lines]
    assert normalize_lines([], uncased) == []


def test_tidy_ascii_lines_are_recognised_and_every_space_is_caught():
    spaces = "".join(c for c in map(chr, range(0x80)) if c.isspace())
    assert sorted(spaces) == sorted(" \n" + tokenizer_module._OTHER_ASCII_SPACES)
    tidy = ["Tidy text.", "Une ligne accentu\u00e9e.", "", "x", "``q''"]
    assert normalize_lines(tidy, uncased=False) == [normalize_text(x, False) for x in tidy]
    for space in spaces.replace("\n", "") + "\xa0\u3000":
        for untidy in (f"a{space}b", f"{space}a", f"a{space}", space):
            lines = tidy + [untidy, "tail"]
            assert normalize_lines(lines, False) == [normalize_text(x, False) for x in lines], \
                repr(untidy)
