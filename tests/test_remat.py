"""train.remat: layer recomputes each layer in the backward pass; the gradients and the losses
are the plain step's (float32, memory and dropout on), in graph mode, under XLA and on two
MirroredStrategy replicas, and the step's peak memory drops."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from xlnet import load_run_config
from xlnet.model.lm_loss import per_example_lm_loss
from xlnet.model.xlnet_lm import XLNetLM

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _inputs(config, batch, seed=0):
    """Random segments with a permutation mask, targets and a memory: both streams, every
    mask and every dropout site take part."""
    rng = np.random.default_rng(seed)
    seq_len, num_predict = 2 * config.reuse_len, 10
    inputs = {
        "input_ids": tf.constant(rng.integers(0, config.n_token, (batch, seq_len)), tf.int32),
        "segment_ids": tf.constant(rng.integers(0, 2, (batch, seq_len)), tf.int32),
        "perm_mask": tf.constant(rng.integers(0, 2, (batch, seq_len, seq_len)), tf.float32),
        "target_mapping": tf.one_hot(rng.integers(0, seq_len, (batch, num_predict)), seq_len),
        "mems": tf.constant(rng.normal(size=(batch, config.n_layer, config.mem_len,
                                             config.d_model)), tf.float32)}
    targets = tf.constant(rng.integers(0, config.n_token, (batch, num_predict)), tf.int32)
    return inputs, targets


def _gradient_step(model, inputs, targets, jit_compile):
    @tf.function(jit_compile=jit_compile)
    def step(seed):
        with tf.GradientTape() as tape:
            outputs = model(inputs, training=True, dropout_seed=seed)
            losses, _ = per_example_lm_loss(outputs["logits"], targets,
                                            tf.ones(targets.shape, tf.float32))
            loss = tf.reduce_sum(losses)
        return loss, outputs["new_mems"], tape.gradient(loss, model.trainable_variables)

    return step


@pytest.mark.parametrize("jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_layer_remat_gives_the_plain_gradients(jit_compile):
    config = load_run_config("tiny").model
    assert config.dropout > 0 and config.dropatt > 0 and config.mem_len > 0
    plain = XLNetLM(config)
    remat = XLNetLM(config, remat="layer")
    remat.set_weights(plain.get_weights())
    inputs, targets = _inputs(config, batch=4)
    seed = tf.constant([3, 4], tf.int32)
    loss, mems, grads = _gradient_step(plain, inputs, targets, jit_compile)(seed)
    remat_loss, remat_mems, remat_grads = _gradient_step(remat, inputs, targets,
                                                         jit_compile)(seed)
    assert float(remat_loss) == pytest.approx(float(loss), rel=1e-6)
    np.testing.assert_allclose(remat_mems.numpy(), mems.numpy(), rtol=0, atol=1e-6)
    assert all(g is not None for g in remat_grads)
    for variable, g, remat_g in zip(plain.trainable_variables, grads, remat_grads):
        np.testing.assert_allclose(remat_g.numpy(), g.numpy(), rtol=0, atol=1e-6,
                                   err_msg=variable.path)
    # Another seed, other masks: the recomputation follows the seed it was given.
    other_loss, _, _ = _gradient_step(remat, inputs, targets, jit_compile)(
        tf.constant([5, 6], tf.int32))
    assert float(other_loss) != float(remat_loss)


def _peak_step_bytes(model, inputs, targets):
    step = _gradient_step(model, inputs, targets, jit_compile=False)
    seed = tf.constant([1, 2], tf.int32)
    step(seed)  # trace and allocate what stays (weights, constants)
    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    step(seed)
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before


def test_layer_remat_lowers_the_peak_memory_of_a_step():
    """TensorFlow's CPU allocator statistics: what the step allocated above what stays."""
    config = load_run_config("tiny", ["model.n_layer=4"]).model
    inputs, targets = _inputs(config, batch=8)
    plain = _peak_step_bytes(XLNetLM(config), inputs, targets)
    remat = _peak_step_bytes(XLNetLM(config, remat="layer"), inputs, targets)
    assert remat < 0.7 * plain, (plain, remat)  # 0.45 here


@pytest.mark.slow
def test_trainer_with_remat_on_two_replicas_gives_the_plain_losses(dataset, tmp_path):
    """The trainer's step (tf.function around strategy.run, dropout on, memory carried) on two
    logical CPU replicas, plain and with train.remat=layer, in one subprocess."""
    common = ["train.steps=4", "train.warmup_steps=1", "train.checkpoint_every=4"]
    phases = [{"model_dir": str(tmp_path / name), "overrides": common + extra}
              for name, extra in (("plain", []), ("remat", ["train.remat=layer"]))]
    spec, out = tmp_path / "spec.json", tmp_path / "records.npz"
    spec.write_text(json.dumps({"replicas": 2, "data": dataset, "phases": phases}))
    subprocess.run([sys.executable, "tests/pretrain_harness.py", str(spec), str(out)],
                   cwd=REPO, check=True, timeout=300, capture_output=True)
    arrays = np.load(out)
    np.testing.assert_allclose(arrays["1/loss"], arrays["0/loss"], rtol=1e-6)
    np.testing.assert_allclose(arrays["1/memory"], arrays["0/memory"], rtol=0, atol=1e-5)
