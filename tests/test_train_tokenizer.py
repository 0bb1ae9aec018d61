import hashlib
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import sentencepiece as spm

from preprocessing.train_tokenizer import sample_sentences, train_tokenizer
from tests.text_corpus import write_corpus
from xlnet.commands import main as cli
from xlnet.errors import UserError
from xlnet.schema import SPECIAL_PIECES


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    write_corpus(str(directory), seed=5, files=2, documents_per_file=120)
    return str(directory / "*.txt")


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_same_seed_same_model_and_original_special_ids(corpus, tmp_path):
    first = train_tokenizer(corpus, 250, str(tmp_path / "a"), max_sentences=500, seed=3)
    second = train_tokenizer(corpus, 250, str(tmp_path / "b"), max_sentences=500, seed=3)
    other = train_tokenizer(corpus, 250, str(tmp_path / "c"), max_sentences=500, seed=4)
    assert _digest(first) == _digest(second)
    assert _digest(first) != _digest(other)  # another sample of the lines
    sp = spm.SentencePieceProcessor(model_file=first)
    assert [sp.id_to_piece(i) for i in range(9)] == list(SPECIAL_PIECES)
    assert sp.get_piece_size() == 250


def test_uncased_model_has_no_upper_case_pieces(corpus, tmp_path):
    path = train_tokenizer(corpus, 250, str(tmp_path / "u"), uncased=True)
    sp = spm.SentencePieceProcessor(model_file=path)
    pieces = [sp.id_to_piece(i) for i in range(9, sp.get_piece_size())]
    assert not any(p != p.lower() for p in pieces)


def test_sample_is_bounded_and_seeded(tmp_path):
    (tmp_path / "t.txt").write_text("".join(f"line {i}\n\n" for i in range(1000)))
    files = [(str(tmp_path / "t.txt"), (tmp_path / "t.txt").stat().st_size)]
    sample, seen, skipped = sample_sentences(files, 50, 0, False)
    again, _, _ = sample_sentences(files, 50, 0, False)
    assert len(sample) == 50 and seen == 1000 and skipped == 0 and sample == again
    numbers = sorted(int(s.split()[1]) for s in sample)
    assert numbers[-1] > 500  # reservoir sampling reaches the end of the corpus


def test_too_large_vocabulary_is_a_user_error(tmp_path):
    (tmp_path / "t.txt").write_text("ka lo mi\n" * 20)
    with pytest.raises(UserError, match="lower --vocab-size") as error:
        train_tokenizer(str(tmp_path / "t.txt"), 5000, str(tmp_path / "m"))
    # SentencePiece's own fix is kept whole, without its source location
    assert re.search(r"\(Vocabulary size too high \(5000\)\. Please set it to a value <= \d+\.\)",
                     str(error.value)), str(error.value)
    assert ".cc(" not in str(error.value)


def test_command_line(corpus, tmp_path, capsys):
    assert cli.main(["train-tokenizer", "--input", corpus, "--vocab-size", "250",
                     "--output", str(tmp_path / "m"), "--max-sentences", "300"]) == 0
    assert (tmp_path / "m" / "spiece.model").exists()
    assert cli.main(["train-tokenizer", "--input", str(tmp_path / "none*.txt"),
                     "--vocab-size", "250", "--output", str(tmp_path / "n")]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_sentencepiece_training_shows_as_progress_and_its_info_lines_do_not(corpus, tmp_path):
    """On a terminal: a bar over the pruning from the seed pieces down to the vocabulary (its
    INFO lines and the trainer spec dropped); its errors and our own log lines still show."""
    result = subprocess.run(
        ["script", "-qc", shlex.join([
            sys.executable, "-m", "xlnet", "train-tokenizer", "--input", corpus,
            "--vocab-size", "250", "--output", str(tmp_path / "tok")]), "/dev/null"],
        capture_output=True, timeout=120)
    screen = result.stdout.decode("utf-8", "replace").replace("\r\n", "\n")
    assert result.returncode == 0, screen[-2000:]
    bars = re.findall(r"\r\x1b\[Ktraining the tokenizer: \[[#-]+\] (\d+)% ([\d,]+) pieces, "
                      r"from ([\d,]+) seeds", screen)
    assert bars, screen[-2000:]
    percents = [int(p) for p, _, _ in bars]
    assert percents == sorted(percents) and percents[-1] == 100
    pieces = [int(n.replace(",", "")) for _, n, _ in bars]
    assert pieces[-1] == 250 < int(bars[0][2].replace(",", ""))
    lines = [line.split("\r")[-1].strip("\x1b[K") for line in screen.split("\n")]
    assert all(re.match(r"\d{4}-\d\d-\d\d |$", line) for line in lines), lines
    assert "wrote " in screen and "normalizer_spec" not in screen and "I0000" not in screen
