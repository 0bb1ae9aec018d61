"""train.precision: mixed_float16: float16 compute with float32 variables, softmax and loss;
dynamic loss scaling (halved on an overflow, doubled after good steps); an overflowing step is
skipped (weights, optimizer moments and step count untouched, data and memory move on),
counted and logged; the scale is checkpointed (an exact resume); two replicas skip together;
a tiny run follows the float32 run's losses."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.util import tensor_util

from pretrain.optimizer import DynamicLossScale
from pretrain.trainer import Trainer
from pretrain_harness import record_run
from xlnet import load_run_config
from xlnet.errors import UserError
from xlnet.model.permutation import permutation_inputs
from xlnet.model.xlnet_lm import XLNetLM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FP16 = ["train.precision=mixed_float16"]
# A scale this large overflows float16 at once: the gradient of the logits is about the
# scale / 64 (the tiny batch's 80 targets, see Trainer._loss_scale_divisor), over 65504 for
# every scale from 2**23 up, so steps 1-4 (2**26 .. 2**23) are skipped whatever the data.
HUGE = ["train.loss_scale=67108864"]  # 2**26
# Per-step losses of a 30-step tiny run, mixed_float16 against float32 (dropout on): the
# largest relative difference measured here was 1.6e-5 and 1.8e-5 (train.seed 0 and 1; median
# 3e-6); the bound leaves 10x.
LOSS_RTOL = 2e-4


def _inputs(config, blocked_everywhere=False):
    rng = np.random.default_rng(0)
    batch, seq_len, targets = 4, config.reuse_len * 2, 6
    input_ids = rng.integers(9, config.n_token, (batch, seq_len)).astype(np.int32)
    is_masked = np.zeros((batch, seq_len), np.int32)
    for b in range(batch):
        is_masked[b, rng.choice(seq_len, targets, replace=False)] = 1
    ranks = np.stack([rng.permutation(seq_len) for _ in range(batch)]).astype(np.int32)
    derived = permutation_inputs(input_ids, is_masked, ranks, reuse_len=0, num_predict=targets)
    perm_mask = derived["perm_mask"]
    if blocked_everywhere:  # query rows that may see nothing: the -1e30 bias on every key
        perm_mask = tf.ones_like(perm_mask)
    inputs = {"input_ids": input_ids, "segment_ids": rng.integers(0, 2, (batch, seq_len)),
              "perm_mask": perm_mask, "target_mapping": derived["target_mapping"]}
    if not blocked_everywhere:
        inputs["mems"] = rng.normal(size=(batch, config.n_layer, config.mem_len,
                                          config.d_model)).astype(np.float32)
    return inputs


@pytest.mark.parametrize("blocked_everywhere", [False, True])
def test_model_computes_in_float16_with_float32_variables_softmax_and_logits(
        blocked_everywhere):
    config = load_run_config("tiny", ["model.dropout=0", "model.dropatt=0"]).model
    reference = XLNetLM(config)
    mixed = XLNetLM(config, dtype="mixed_float16")
    for name, variable in mixed.original_variables().items():
        assert variable.dtype == "float32", name
        variable.assign(reference.original_variables()[name])
    assert mixed.backbone.attention_layers[0].compute_dtype == "float16"
    inputs = _inputs(config, blocked_everywhere)
    expected, got = reference(inputs), mixed(inputs)
    assert got["features"].dtype == tf.float16
    assert got["logits"].dtype == tf.float32 and got["new_mems"].dtype == tf.float32
    # The masks are added to float32 scores (a -1e30 bias would be -inf in float16 and a row
    # that sees nothing would be NaN, not uniform as the original's).
    assert np.isfinite(got["logits"].numpy()).all()
    np.testing.assert_allclose(got["logits"].numpy(), expected["logits"].numpy(), atol=1e-2)
    assert not np.array_equal(got["logits"].numpy(), expected["logits"].numpy())


def test_loss_scale_halves_on_an_overflow_and_doubles_after_its_growth_steps():
    scale = DynamicLossScale(initial_scale=1024.0, growth_steps=3)
    history = []
    for finite in [True, True, False, True, True, True, True, False, False]:
        scale.update(tf.constant(finite))
        history.append((float(scale.scale.numpy()), int(scale.good_steps.numpy())))
    assert history == [(1024, 1), (1024, 2), (512, 0), (512, 1), (512, 2), (1024, 0),
                       (1024, 1), (512, 0), (256, 0)]


def test_loss_scale_below_one_is_refused():
    with pytest.raises(UserError, match=r"train.loss_scale: must be >= 1"):
        load_run_config("tiny", ["train.loss_scale=0.5"])


def _trainer(dataset, model_dir, overrides):
    config = load_run_config("tiny", ["train.warmup_steps=1", "train.log_every=1"] + overrides)
    return Trainer(config, dataset, model_dir, tf.distribute.get_strategy(),
                   allow_config_change=True)


def _run(trainer):
    """Trains; returns per step (loss, loss scale used, skipped)."""
    records = []

    def on_step(trainer, step, batch, metrics, memory):
        records.append((metrics["loss"], metrics["loss_scale"], metrics["skipped"]))

    assert trainer.train(on_step=on_step) == 0
    return np.array(records)


def _scalars(model_dir, tag):
    events = event_accumulator.EventAccumulator(
        os.path.join(model_dir, "train"), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {r.step: float(tensor_util.make_ndarray(r.tensor_proto))
            for r in events.Tensors(tag)}


def test_overflowing_steps_are_skipped_counted_halved_and_resumed_exactly(dataset, tmp_path):
    model_dir = str(tmp_path / "resumed")
    trainer = _trainer(dataset, model_dir, FP16 + HUGE + ["train.steps=3"])
    initial = [v.numpy() for v in trainer.model.trainable_variables]
    first = _run(trainer)
    # Steps 1-3 overflow: skipped, and the scale halves after each.
    np.testing.assert_array_equal(first[:, 1], [2.0 ** 26, 2.0 ** 25, 2.0 ** 24])
    np.testing.assert_array_equal(first[:, 2], [1, 1, 1])
    assert np.isfinite(first[:, 0]).all()  # the unscaled loss is finite: no stop
    for before, variable in zip(initial, trainer.model.trainable_variables):
        np.testing.assert_array_equal(variable.numpy(), before, err_msg=variable.path)
    assert int(trainer.optimizer.iterations.numpy()) == 0
    slots = [v for v in trainer.optimizer.variables if "momentum" in v.path
             or "velocity" in v.path]
    assert slots and all(not np.any(v.numpy()) for v in slots)
    # The data and the memory moved on as on any step.
    assert int(trainer.data_position.numpy()) == 3
    assert np.any(trainer.memory.local_values())
    assert float(trainer.loss_scale.scale.numpy()) == 2.0 ** 23

    resumed = _trainer(dataset, model_dir, FP16 + HUGE + ["train.steps=12"])
    second = _run(resumed)
    records = np.concatenate([first, second])
    skipped = records[:, 2] > 0
    # The checkpoint kept the scale: step 4 goes on at 2**23 (a fresh scale would be 2**26).
    assert second[0, 1] == 2.0 ** 23 and second[0, 2] == 1
    first_applied = int(np.argmin(skipped))
    assert 4 <= first_applied < 10 and not skipped[first_applied:].any()
    np.testing.assert_array_equal(records[1:first_applied + 1, 1],
                                  records[:first_applied, 1] / 2)  # halved after each skip
    assert (records[first_applied:, 1] == records[first_applied, 1]).all()  # then kept
    assert int(resumed.optimizer.iterations.numpy()) == 12 - first_applied
    assert any(not np.array_equal(v.numpy(), before)
               for before, v in zip(initial, resumed.model.trainable_variables))
    # TensorBoard: the scale used at each step and the count of skipped steps so far.
    assert _scalars(model_dir, "train/loss_scale") == {
        step + 1: scale for step, scale in enumerate(records[:, 1])}
    assert _scalars(model_dir, "train/skipped_steps")[12] == first_applied

    # An uninterrupted run: the same skips and scales, the same losses (to the 1e-5 of
    # tests/test_pretrain_resume.py: oneDNN's float16 kernels round the last bit differently
    # from run to run, about 1e-6 here).
    straight = _run(_trainer(dataset, str(tmp_path / "straight"),
                             FP16 + HUGE + ["train.steps=12"]))
    np.testing.assert_array_equal(straight[:, 1:], records[:, 1:])
    np.testing.assert_allclose(straight[:, 0], records[:, 0], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_a_tiny_run_follows_the_float32_losses(dataset, tmp_path):
    steps = ["train.steps=30", "train.warmup_steps=5"]
    reference = record_run(dataset, str(tmp_path / "float32"), steps)
    mixed = record_run(dataset, str(tmp_path / "float16"), steps + FP16)
    spread = np.abs(mixed["loss"] / reference["loss"] - 1)
    assert spread.max() < LOSS_RTOL, spread
    assert spread.max() > 0  # it did compute in float16
    np.testing.assert_allclose(mixed["memory"], reference["memory"], atol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("option", ["train.jit_compile=true", "train.grad_accum_steps=2",
                                    "train.remat=layer"])
def test_each_step_option_skips_the_overflows_then_trains(dataset, tmp_path, option):
    """XLA around the forward and backward pass, gradient accumulation (the scaled micro-step
    gradients summed), layer recomputation: each skips the forced overflows, then trains, and
    (but for accumulation, which trains on other rows) follows the plain float16 step."""
    overrides = FP16 + HUGE + ["train.steps=10"]
    plain = _run(_trainer(dataset, str(tmp_path / "plain"), overrides))
    records = _run(_trainer(dataset, str(tmp_path / "option"), overrides + [option]))
    skipped = records[:, 2] > 0
    assert skipped[:4].all() and not skipped[-2:].any(), records
    assert np.isfinite(records[:, 0]).all()
    if "grad_accum" not in option:
        np.testing.assert_array_equal(records[:, 2], plain[:, 2])
        np.testing.assert_allclose(records[:, 0], plain[:, 0], rtol=1e-3)


@pytest.mark.slow
def test_two_replicas_skip_together_when_one_overflows(dataset, tmp_path):
    """Two MirroredStrategy replicas on logical CPUs, where only replica 1's gradients
    overflow while the scale is >= 2**14 (tests/fp16_replicas.py): both skip steps 1 and 2
    (2**15, 2**14), then apply, and every variable's two copies stay equal."""
    out = tmp_path / "records.json"
    subprocess.run([sys.executable, "tests/fp16_replicas.py", dataset, str(tmp_path / "m"),
                    str(out)], cwd=REPO, check=True, timeout=300, capture_output=True)
    records = json.loads(out.read_text())
    assert records["loss_scale"] == [2.0 ** 15, 2.0 ** 14, 2.0 ** 13, 2.0 ** 13,
                                     2.0 ** 13, 2.0 ** 13]
    assert records["skipped"] == [1, 1, 0, 0, 0, 0]
    assert records["iterations"] == [4, 4]  # per replica: 6 steps, 2 skipped
    assert records["scale_copies"] == [[2.0 ** 13] * 2, [4, 4]]  # scale, good steps
    assert records["copies_differ"] == [] and records["variables_changed"]
    assert all(math.isfinite(loss) for loss in records["loss"])


@pytest.mark.slow
def test_a_float32_run_resumes_under_float16_and_keeps_its_scale_from_then_on(dataset,
                                                                             tmp_path):
    """A float32 checkpoint has no loss scale: a resume with --allow-config-change onto
    mixed_float16 starts one (train.loss_scale) and saves it; the next resume restores it."""
    model_dir = str(tmp_path / "m")
    float32 = _trainer(dataset, model_dir, ["train.steps=2"])
    assert float32.train() == 0 and float32.loss_scale is None
    switched = _trainer(dataset, model_dir, FP16 + HUGE + ["train.steps=4"])
    records = _run(switched)
    np.testing.assert_array_equal(records[:, 1:], [[2.0 ** 26, 1], [2.0 ** 25, 1]])
    assert int(switched.optimizer.iterations.numpy()) == 2  # the float32 steps only
    again = _run(_trainer(dataset, model_dir, FP16 + HUGE + ["train.steps=5"]))
    np.testing.assert_array_equal(again[:, 1:], [[2.0 ** 24, 1]])  # restored, not 2**26


def test_a_loss_out_of_float16_range_stops_the_run(dataset, tmp_path):
    """Word vectors of 1e4 (float16 holds them) give attention scores and logits beyond
    65504: the loss itself is not finite, which no loss scale mends. The step is skipped (the
    weights stay finite) and the run stops, naming the checkpoint to go back to."""
    trainer = _trainer(dataset, str(tmp_path / "m"), FP16 + ["train.steps=3"])
    embedding = trainer.model.backbone.word_embedding
    embedding.assign(embedding * 0 + 1e4)
    with pytest.raises(UserError, match=r"step 1: the loss is (nan|inf).*mixed_float16.*"
                                         r"Last good checkpoint: none"):
        trainer.train()
    assert int(trainer.optimizer.iterations.numpy()) == 0
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.trainable_variables)


@pytest.mark.slow
def test_two_worker_processes_skip_and_train_as_two_mirrored_replicas(dataset, tmp_path):
    """MultiWorkerMirroredStrategy, 2 processes on loopback (one replica each), from a scale
    that overflows: the chief logs the skips, and its losses are those of 2 MirroredStrategy
    replicas in one process (the same skips, the same updates on both workers)."""
    from test_pretrain_distributed import _losses, _run_workers

    overrides = ["model.dropout=0", "model.dropatt=0", "train.warmup_steps=2",
                 "train.steps=10"] + FP16 + HUGE
    spec, out = tmp_path / "spec.json", tmp_path / "records.npz"
    spec.write_text(json.dumps({"replicas": 2, "data": dataset, "phases": [
        {"model_dir": str(tmp_path / "mirrored"), "overrides": overrides}]}))
    subprocess.run([sys.executable, "tests/pretrain_harness.py", str(spec), str(out)],
                   cwd=REPO, check=True, timeout=300, capture_output=True)
    mirrored = np.load(out)["0/loss"]
    statuses, outputs = _run_workers(dataset, str(tmp_path / "workers"), str(tmp_path),
                                     overrides)
    assert statuses == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    losses = _losses(outputs[0])
    assert "step 4: gradients not finite" in outputs[0] and "skipped 4" in outputs[0]
    np.testing.assert_allclose([losses[s] for s in sorted(losses)], mirrored, rtol=1e-5)
