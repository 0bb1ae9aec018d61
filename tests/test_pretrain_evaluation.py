"""The trainer's evaluation: it leaves training untouched, reports with and without memory to
TensorBoard and eval.json, and refuses a dataset without an eval split in one line."""

import json
import math
import os

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from dataset_fixture import write_dataset
from pretrain_harness import record_run
from xlnet import load_run_config
from xlnet.commands.main import main

STEPS = ["train.steps=6", "train.log_every=1", "train.checkpoint_every=3",
         "train.warmup_steps=2"]
EVAL = ["train.eval_every=4", "train.eval_segments=3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("data"))
    write_dataset(directory, load_run_config("tiny"), segments_per_stream=4,
                  eval_segments_per_stream=5)
    return directory


@pytest.fixture(scope="module")
def evaluated(dataset, tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("evaluated"))
    return model_dir, record_run(dataset, model_dir, STEPS + EVAL)


def _scalars(log_dir, tag):
    events = event_accumulator.EventAccumulator(
        log_dir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {e.step: float(tensor_util.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)}


def test_evaluation_does_not_change_training(dataset, evaluated, tmp_path):
    _, with_eval = evaluated
    without = record_run(dataset, str(tmp_path / "plain"), STEPS)
    assert with_eval["loss"].tolist() == without["loss"].tolist()
    assert np.array_equal(with_eval["memory"], without["memory"])


def test_eval_runs_share_the_training_charts_and_eval_json_has_the_last(evaluated):
    model_dir, _ = evaluated
    train = _scalars(os.path.join(model_dir, "train"), "lm/loss")
    with_memory = _scalars(os.path.join(model_dir, "eval"), "lm/loss")
    without_memory = _scalars(os.path.join(model_dir, "eval_no_memory"), "lm/loss")
    gain = _scalars(os.path.join(model_dir, "eval"), "eval/memory_gain")
    assert sorted(train) == list(range(1, 7))
    assert sorted(with_memory) == sorted(without_memory) == sorted(gain) == [4, 6]
    for step in (4, 6):
        assert gain[step] == pytest.approx(without_memory[step] - with_memory[step], abs=1e-5)
    with open(os.path.join(model_dir, "eval.json")) as f:
        results = json.load(f)
    assert results["step"] == 6 and results["split"] == "eval"
    assert results["segments"] == 3 * 8 and results["targets"] > 0
    assert results["loss"] == pytest.approx(with_memory[6], rel=1e-6)
    assert results["loss_no_memory"] == pytest.approx(without_memory[6], rel=1e-6)
    assert results["perplexity"] == pytest.approx(math.exp(results["loss"]))
    assert 0 <= results["accuracy"] <= 1 and 0 <= results["accuracy_no_memory"] <= 1
    shares = results["memory_attention_share"]  # per layer, mean over the eval
    assert len(shares) == 2 and all(0 < share < 1 for share in shares)
    for layer, share in enumerate(shares):
        logged = _scalars(os.path.join(model_dir, "eval"),
                          f"eval/memory_attention_share/layer_{layer}")
        assert sorted(logged) == [4, 6] and logged[6] == pytest.approx(share, rel=1e-5)


def test_without_memory_both_scores_are_the_same(dataset, tmp_path):
    overrides = ["train.steps=4", "model.mem_len=0"] + EVAL
    assert main(["pretrain", "--config", "tiny", "--data", dataset, "--model-dir",
                 str(tmp_path / "m"), *[f"--set={o}" for o in overrides]]) == 0
    with open(tmp_path / "m" / "eval.json") as f:
        results = json.load(f)
    assert results["loss"] == results["loss_no_memory"]
    assert results["accuracy"] == results["accuracy_no_memory"]
    assert "memory_attention_share" not in results


def test_eval_every_without_an_eval_split_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = str(tmp_path / "data")
    write_dataset(data, load_run_config("tiny"), segments_per_stream=4)
    model_dir = tmp_path / "model"
    status = main(["pretrain", "--config", "tiny", "--data", data, "--model-dir",
                   str(model_dir), "--set", "train.eval_every=2"])
    error = capsys.readouterr().err.strip()
    assert status == 2 and error.startswith("error: train.eval_every:") and "\n" not in error
    assert "no eval split" in error and not model_dir.exists()
