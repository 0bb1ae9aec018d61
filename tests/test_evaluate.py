"""`xlnet evaluate`: an original-format checkpoint scored like HuggingFace PyTorch XLNet scores
the same segments, a run's checkpoint scored like the trainer's own evaluation, and refusals
that write nothing."""

import json
import os
import shutil

import numpy as np
import pytest

from checkpoint_fixture import random_arrays
from dataset_fixture import write_dataset
from pretrain.input_pipeline import InputPipeline, StreamPlan
from pretrain_harness import record_run
from xlnet import load_run_config
from xlnet.commands.main import main
from xlnet.formats.hf_export import hf_state_dict
from xlnet.formats.original_checkpoint import write_original_checkpoint
from xlnet.schema import DatasetInfo

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

FORWARD_ONLY = ["data.bi_data=false"]  # HF's bi_data halves the batch by its own rule
MAX_SEGMENTS = 24  # three segments per row of the tiny config's 8 rows


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A dataset with an eval split and an original-format checkpoint of random weights."""
    root = tmp_path_factory.mktemp("released")
    run_config = load_run_config("tiny", FORWARD_ONLY)
    write_dataset(str(root / "data"), run_config, segments_per_stream=2,
                  eval_segments_per_stream=4)
    arrays = random_arrays(run_config.model, seed=3, scale=0.1)
    prefix = write_original_checkpoint(arrays, run_config.model, str(root / "model"))
    return {"root": root, "data": str(root / "data"), "prefix": prefix, "arrays": arrays,
            "run_config": run_config}


def _set(overrides):
    return [f"--set={o}" for o in overrides]


def hf_scores(released):
    """Summed cross-entropy on the eval split's target rows, with memory carried (zeros where a
    stream starts) and without memory, from transformers' XLNetLMHeadModel."""
    run_config, data = released["run_config"], released["data"]
    c = run_config.model
    hf = transformers.XLNetLMHeadModel(transformers.XLNetConfig(
        vocab_size=c.n_token, d_model=c.d_model, n_layer=c.n_layer, n_head=c.n_head,
        d_inner=c.d_inner, ff_activation="gelu_new", untie_r=c.untie_r, attn_type=c.attn_type,
        mem_len=c.mem_len, reuse_len=c.reuse_len, dropout=0.0, layer_norm_eps=1e-12))
    state = hf_state_dict(released["arrays"], c)
    hf.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    hf.lm_loss.weight = hf.transformer.word_embedding.weight
    hf.eval()
    info = DatasetInfo.read(data)
    train = run_config.train
    plan = StreamPlan(info, data, train.global_batch_size, 1, train.seed, split="eval")
    dataset = InputPipeline(plan, run_config.data, train.seed).worker_dataset(
        0, 1, 0, MAX_SEGMENTS // train.global_batch_size)
    mems = [torch.zeros(c.mem_len, train.global_batch_size, c.d_model)] * c.n_layer
    sums = {"loss": 0.0, "loss_no_memory": 0.0, "targets": 0.0}
    for element in dataset:
        batch = {name: value.numpy()[0] for name, value in element.items()}
        args = {"input_ids": torch.from_numpy(batch["input_ids"].astype(np.int64)),
                "token_type_ids": torch.from_numpy(batch["segment_ids"].astype(np.int64)),
                "perm_mask": torch.from_numpy(batch["perm_mask"].astype(np.float32)),
                "target_mapping": torch.from_numpy(batch["target_mapping"].astype(np.float32))}
        continuing = torch.from_numpy((batch["index"] > 0).astype(np.float32))[None, :, None]
        targets = torch.from_numpy(batch["targets"].astype(np.int64))
        weights = torch.from_numpy(batch["target_weights"].astype(np.float32))
        with torch.no_grad():
            with_memory = hf(**args, mems=[m * continuing for m in mems], use_mems=True)
            without_memory = hf(**args, use_mems=False)
        mems = with_memory.mems
        for key, out in (("loss", with_memory), ("loss_no_memory", without_memory)):
            cross_entropy = torch.nn.functional.cross_entropy(
                out.logits.transpose(1, 2), targets, reduction="none")  # [b, K]
            sums[key] += float((cross_entropy * weights).sum())
        sums["targets"] += float(weights.sum())
    return sums


@pytest.mark.slow
def test_an_original_checkpoint_scores_as_huggingface_scores_it(released, capsys):
    output = released["root"] / "eval.json"
    status = main(["evaluate", "--data", released["data"], "--init-checkpoint",
                   released["prefix"], "--config", "tiny", *_set(FORWARD_ONLY),
                   "--max-segments", str(MAX_SEGMENTS), "--output", str(output)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "with memory" in printed and "perplexity" in printed
    results = json.loads(output.read_text())
    reference = hf_scores(released)
    assert results["segments"] == MAX_SEGMENTS
    assert results["targets"] == reference["targets"]
    for key in ("loss", "loss_no_memory"):
        assert results[key] == pytest.approx(reference[key] / reference["targets"], rel=1e-4)
    assert abs(results["loss"] - results["loss_no_memory"]) > 1e-3  # the memory is read


@pytest.mark.slow
def test_a_runs_checkpoint_scores_as_the_trainer_scored_it(released, tmp_path):
    model_dir = str(tmp_path / "run")
    record_run(released["data"], model_dir, FORWARD_ONLY + [
        "train.steps=3", "train.eval_every=3", "train.eval_segments=3"])
    with open(os.path.join(model_dir, "eval.json")) as f:
        by_trainer = json.load(f)
    assert main(["evaluate", "--data", released["data"], "--model-dir", model_dir,
                 "--max-segments", str(MAX_SEGMENTS)]) == 0
    with open(os.path.join(model_dir, "eval.json")) as f:
        by_command = json.load(f)
    assert by_command["checkpoint"].endswith("ckpt-3")
    for key in ("segments", "targets", "loss", "loss_no_memory", "accuracy"):
        assert by_command[key] == pytest.approx(by_trainer[key], rel=1e-6), key


@pytest.mark.parametrize("argv,message", [
    (["--split", "eval", "--config", "tiny"], "has no eval split"),
    (["--config", "tiny", "--set", "data.bi_data=false", "--set", "data.seq_len=128"],
     "data.seq_len is 64 in the dataset but 128"),
    (["--config", "tiny", "--set", "data.bi_data=false", "--set", "model.n_token=3000"],
     "model.n_token is 3000"),
    ([], "give --config too"),
    (["--config", "tiny", "--set", "data.bi_data=false", "--verify-data"],
     "eval/pass-000/stream-00001.tfrecord: crc32c"),
])
def test_refusals_are_one_line_and_write_nothing(released, tmp_path, capsys, argv, message):
    data = released["data"]
    if "has no eval split" in message:
        data = str(tmp_path / "no-eval")
        write_dataset(data, load_run_config("tiny"), segments_per_stream=2)
    if "crc32c" in message:  # one flipped bit in an eval stream file: only its checksum tells
        data = str(tmp_path / "altered")
        shutil.copytree(released["data"], data)
        with open(os.path.join(data, "eval/pass-000/stream-00001.tfrecord"), "r+b") as f:
            f.seek(-20, os.SEEK_END)
            byte = f.read(1)
            f.seek(-20, os.SEEK_END)
            f.write(bytes([byte[0] ^ 1]))
    output = tmp_path / "eval.json"
    status = main(["evaluate", "--data", data, "--init-checkpoint", released["prefix"],
                   "--output", str(output), *argv])
    error = capsys.readouterr().err.strip()
    assert status == 2 and error.startswith("error: ") and "\n" not in error
    assert message in error and not output.exists()
