"""End to end: a dataset written by the real Beam job (`xlnet prepare`) trains, and its rows
walk the prepared streams in order; the run keeps the dataset's tokenizer, and its HF export
carries it."""

import os

import numpy as np
import pytest

from pretrain_harness import record_run
from xlnet.commands.main import main
from xlnet.commands.prepare import run
from tests.text_corpus import train_tiny_tokenizer, write_corpus

SETTINGS = ["model.n_token=300", "data.num_streams=4", "data.num_passes=2"]


@pytest.mark.slow
def test_trains_on_a_prepared_dataset(tmp_path):
    write_corpus(str(tmp_path / "corpus"), seed=3, files=2, documents_per_file=40)
    tokenizer = train_tiny_tokenizer(str(tmp_path / "tokenizer-text"),
                                     str(tmp_path / "tokenizer"))
    data = str(tmp_path / "data")
    argv = ["--input", str(tmp_path / "corpus" / "*.txt"), "--tokenizer", tokenizer,
            "--output", data, "--config", "tiny", "--direct_num_workers=1"]
    for setting in SETTINGS:
        argv += ["--set", setting]
    run(argv)
    model_dir = str(tmp_path / "model")
    records = record_run(data, model_dir, SETTINGS + [
        "train.steps=6", "train.log_every=3", "train.warmup_steps=1"])
    with open(tokenizer, "rb") as f:
        tokenizer_bytes = f.read()
    for directory in (model_dir, str(tmp_path / "hf")):
        if directory != model_dir:
            assert main(["export", "--model-dir", model_dir, "--format", "hf", "--output",
                         directory]) == 0
        with open(os.path.join(directory, "spiece.model"), "rb") as f:
            assert f.read() == tokenizer_bytes
    losses, streams, indices = records["loss"], records["stream"], records["index"]
    assert np.isfinite(losses).all() and 3.0 < losses[0] < 8.0  # about ln(300) = 5.7 at start
    assert losses[-1] < losses[0]
    # Forward rows first, reversed copies after; each row continues its stream or starts one.
    assert (streams[:, :4] < 4).all() and (streams[:, 4:] >= 4).all()
    for t in range(1, len(indices)):
        continues = (streams[t] == streams[t - 1]) & (indices[t] == indices[t - 1] + 1)
        assert np.all(continues | (indices[t] == 0))
