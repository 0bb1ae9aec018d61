"""The whole training step compiles with XLA, and runs under MirroredStrategy on two logical
CPU devices with the trainer's XLA pattern (forward and backward jit-compiled inside the replica
function, gradients applied outside it).

Logical devices must be configured before TensorFlow initialises, so the checks run in a fresh
interpreter; the script asserts and the test reports its output."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r'''
import numpy as np
import tensorflow as tf

cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
from xlnet.config.model_config import XLNetConfig
from xlnet.model.lm_loss import masked_lm_loss, per_example_lm_loss
from xlnet.model.permutation import permutation_inputs
from xlnet.model.xlnet_lm import XLNetLM

BATCH, SEQ_LEN, NUM_TARGETS, REPLICAS = 4, 16, 3, 2
config = XLNetConfig(n_layer=2, d_model=32, n_head=4, d_head=8, d_inner=64, n_token=100,
                     mem_len=8, reuse_len=8, dropout=0.1, dropatt=0.1, bi_data=True)
rng = np.random.default_rng(0)


def segment():
    input_ids = rng.integers(9, config.n_token, (BATCH, SEQ_LEN)).astype(np.int32)
    is_masked = np.zeros((BATCH, SEQ_LEN), np.int32)
    for b in range(BATCH):
        is_masked[b, rng.choice(SEQ_LEN, NUM_TARGETS, replace=False)] = 1
    ranks = np.tile(np.arange(SEQ_LEN, dtype=np.int32), (BATCH, 1))
    perm = permutation_inputs(input_ids, is_masked, ranks, config.reuse_len, NUM_TARGETS)
    inputs = {"input_ids": input_ids, "segment_ids": np.zeros_like(input_ids),
              "perm_mask": perm["perm_mask"].numpy(),
              "target_mapping": perm["target_mapping"].numpy()}
    return inputs, perm["targets"].numpy(), perm["target_weights"].numpy()


def zero_mems(batch):
    return np.zeros((batch, config.n_layer, config.mem_len, config.d_model), np.float32)


def copy_weights(source, target):
    for name, variable in target.original_variables().items():
        variable.assign(source.original_variables()[name])


# 1. One device: forward, loss, backward, clipping and AdamW in one XLA computation.
model = XLNetLM(config)
optimizer = keras.optimizers.AdamW(1e-3)
optimizer.build(model.trainable_variables)


@tf.function(jit_compile=True)
def full_step(inputs, targets, weights, seed):
    with tf.GradientTape() as tape:
        outputs = model(inputs, training=True, dropout_seed=seed)
        loss = masked_lm_loss(outputs["logits"], targets, weights)
    gradients = tape.gradient(loss, model.trainable_variables)
    gradients, _ = tf.clip_by_global_norm(gradients, 1.0)
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    return loss, outputs["new_mems"]


mems = zero_mems(BATCH)
inputs, targets, weights = segment()
hlo = full_step.experimental_get_compiler_ir(
    dict(inputs, mems=mems), targets, weights, tf.constant([1, 2]))(stage="hlo")
assert "ENTRY" in hlo
losses = []
for step in range(3):
    inputs, targets, weights = segment()
    loss, mems = full_step(dict(inputs, mems=mems), targets, weights, tf.constant([step, 7]))
    losses.append(float(loss))
assert np.all(np.isfinite(losses)) and np.abs(mems).sum() > 0, losses
print("xla full step losses", losses)

# XLA and graph mode compute the same forward pass.
inputs, targets, weights = segment()
graph_forward = tf.function(lambda x: model(x)["logits"])
xla_forward = tf.function(lambda x: model(x)["logits"], jit_compile=True)
np.testing.assert_allclose(xla_forward(dict(inputs, mems=mems)),
                           graph_forward(dict(inputs, mems=mems)), atol=1e-4)

# 2. MirroredStrategy over two logical CPUs: forward+backward in XLA, the optimizer outside.
# Compared with one device after each step; plain SGD so that parameters are comparable (Adam's
# first step is lr * sign(g), which flips on rounding noise for near-zero gradients).
strategy = tf.distribute.MirroredStrategy(["/device:CPU:0", "/device:CPU:1"])
plain_config = config.replace(dropout=0.0, dropatt=0.0)
with strategy.scope():
    mirrored = XLNetLM(plain_config)
    mirrored_optimizer = keras.optimizers.SGD(0.1)
    mirrored_optimizer.build(mirrored.trainable_variables)
single = XLNetLM(plain_config)
copy_weights(mirrored, single)
single_optimizer = keras.optimizers.SGD(0.1)
single_optimizer.build(single.trainable_variables)


@tf.function(jit_compile=True)
def forward_backward(inputs, targets, weights, global_weight, seed):
    with tf.GradientTape() as tape:
        outputs = mirrored(inputs, training=True, dropout_seed=seed)
        loss_sums, _ = per_example_lm_loss(outputs["logits"], targets, weights)
        loss = tf.reduce_sum(loss_sums) / global_weight
    return loss, outputs["new_mems"], tape.gradient(loss, mirrored.trainable_variables)


def replica_step(inputs, targets, weights, global_weight, step_seed):
    context = tf.distribute.get_replica_context()
    seed = tf.random.experimental.stateless_fold_in(step_seed, context.replica_id_in_sync_group)
    loss, new_mems, gradients = forward_backward(inputs, targets, weights, global_weight, seed)
    gradients = context.all_reduce("sum", gradients)
    gradients, _ = tf.clip_by_global_norm(gradients, 1.0)
    gradients = [g / REPLICAS for g in gradients]  # the optimizer sums the replicas again
    mirrored_optimizer.apply_gradients(zip(gradients, mirrored.trainable_variables))
    return context.all_reduce("sum", loss), new_mems


@tf.function
def distributed_step(inputs, targets, weights, global_weight, step_seed):
    return strategy.run(replica_step, args=(inputs, targets, weights, global_weight, step_seed))


@tf.function
def single_step(inputs, targets, weights):
    with tf.GradientTape() as tape:
        outputs = single(inputs, training=False)
        loss = masked_lm_loss(outputs["logits"], targets, weights)
    gradients, _ = tf.clip_by_global_norm(tape.gradient(loss, single.trainable_variables), 1.0)
    single_optimizer.apply_gradients(zip(gradients, single.trainable_variables))
    return loss, outputs["new_mems"]


def per_replica(array):
    rows = BATCH // REPLICAS
    return strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(array[ctx.replica_id_in_sync_group * rows:
                                      (ctx.replica_id_in_sync_group + 1) * rows]))


replica_mems = per_replica(zero_mems(BATCH))
single_mems = zero_mems(BATCH)
for step in range(2):
    inputs, targets, weights = segment()
    distributed = {k: per_replica(v) for k, v in inputs.items()}
    distributed["mems"] = replica_mems
    loss, replica_mems = distributed_step(distributed, per_replica(targets),
                                          per_replica(weights), tf.constant(weights.sum()),
                                          tf.constant([step, 0]))
    expected_loss, single_mems = single_step(dict(inputs, mems=single_mems), targets, weights)
    loss = strategy.experimental_local_results(loss)[0]
    np.testing.assert_allclose(float(loss), float(expected_loss), rtol=1e-5)
    gathered = np.concatenate([m.numpy() for m in
                               strategy.experimental_local_results(replica_mems)])
    np.testing.assert_allclose(gathered, single_mems, atol=1e-4)
    for name, variable in single.original_variables().items():
        for value in strategy.experimental_local_results(mirrored.original_variables()[name]):
            np.testing.assert_allclose(value.numpy(), variable.numpy(), atol=1e-5,
                                       err_msg=name)
print("mirrored two replicas match one device")
'''


@pytest.mark.slow
def test_training_step_compiles_with_xla_and_runs_on_two_replicas():
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow")
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=root, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-5000:]
    assert "mirrored two replicas match one device" in result.stdout
