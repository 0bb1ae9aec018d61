"""Refusing, before the model is built, a run whose memory cannot fit the machine.

A size that cannot fit (a mistyped `model.d_model`, a batch meant for 8 GPUs on one) otherwise
shows only as an out-of-memory kill after the model, the dataset check and the first step's
compilation have run (87 s into the run that asked for this check). pretrain/plan.py's
estimate of the step's peak (what `xlnet plan` prints; within 7 % of the measured peak at tiny
shapes, 11 % under it at Base) is set against what the devices offer: on a CPU the host's
MemAvailable, shared by all local replicas; on a GPU each device's total memory. Only a run
over that is refused, so a run the estimate wrongly refuses is one that would need about the
whole machine; `--no-memory-check` starts it anyway.
"""

import dataclasses
import logging
import shutil
import subprocess

from pretrain.plan import device_memory
from xlnet.errors import UserError

logger = logging.getLogger(__name__)
GIB = 2**30
# What the refusal names to lower, by which part of the estimate dominates.
ACTIVATION_KEYS = ("train.global_batch_size", "data.seq_len", "model.mem_len")
WEIGHT_KEYS = ("model.d_model", "model.n_layer", "model.d_inner", "model.n_token")


def host_available_bytes(meminfo="/proc/meminfo"):
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def gpu_total_bytes():
    """Each visible GPU's total memory in bytes, from nvidia-smi (None if it is not there)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return [int(value) * 2**20 for value in out.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _gib(n):
    return f"{n / GIB:,.1f} GiB" if n >= GIB else f"{n / 2**20:,.0f} MiB"


def required_bytes(run_config, replicas):
    """(bytes per replica at the step's peak, its DeviceMemory) for the run's local batch.

    pretrain/plan.py counts float32 activations; under a 16-bit `train.precision`
    (mixed_bfloat16, mixed_float16) most are half as large, so they are counted at half here:
    the check refuses only what cannot fit.
    """
    local_batch = max(1, run_config.train.global_batch_size // max(1, replicas))
    memory = device_memory(run_config.model, run_config.data, local_batch)
    if run_config.train.precision.startswith("mixed_"):
        memory = dataclasses.replace(memory, activations=memory.activations // 2,
                                     activations_remat=memory.activations_remat // 2)
    return memory.peak(run_config.train.remat == "layer"), memory


def check_memory(run_config, device_kind, replicas, available=None, evaluation=False):
    """Raises UserError when the run's estimated peak exceeds what the devices offer.

    `device_kind` is "CPU", "GPU" or another kind (TPU: not checked); `replicas` the local
    replicas; `available` the bytes offered per check (the host's MemAvailable for CPUs, one
    GPU's memory), read from the machine when None. `evaluation`: only the weights and the
    forward pass's activations (no optimizer slots, no gradients).
    """
    if device_kind not in ("CPU", "GPU"):
        return
    peak, memory = required_bytes(run_config, replicas)
    if evaluation:
        # A forward pass without a tape keeps no layer's activations for a backward pass:
        # bounded by what a recomputing step keeps (every layer's inputs, one layer's work).
        peak = memory.weights + memory.memory_state + memory.activations_remat
    if device_kind == "CPU":
        # The replicas share the host, which also takes a copy of their rows at a save.
        host_state = memory.memory_state // 2 * replicas
        need, per = peak * replicas + host_state, f"{replicas} replica(s) on the host"
        if available is None:
            available = host_available_bytes()
        where = "MemAvailable of /proc/meminfo"
    else:
        need, per = peak, "per GPU"
        if available is None:
            totals = gpu_total_bytes()
            available = min(totals) if totals else None
        where = "the GPU's total memory (nvidia-smi)"
    if available is None:
        logger.info("memory check skipped: cannot read %s", where)
        return
    logger.info("estimated peak memory %s (%s), %s available", _gib(need), per, _gib(available))
    if need <= available:
        return
    weights = memory.weights + (0 if evaluation else memory.optimizer + memory.gradients)
    activations = need - weights * (replicas if device_kind == "CPU" else 1)
    keys = (ACTIVATION_KEYS + WEIGHT_KEYS if activations >= weights
            else WEIGHT_KEYS + ACTIVATION_KEYS)
    parts = "weights" if evaluation else "weights, optimizer, gradients"
    local_batch = max(1, run_config.train.global_batch_size // max(1, replicas))
    raise UserError(
        f"the run needs about {_gib(need)} ({per}; {parts} {_gib(weights)}, activations and "
        f"memory {_gib(activations)} at local batch {local_batch}; `xlnet plan` shows the "
        f"estimate) but {_gib(available)} is available ({where}); lower {', '.join(keys)}"
        f"{'' if evaluation or run_config.train.remat == 'layer' else ', set train.remat=layer'}"
        ", or pass --no-memory-check to start anyway")


def local_devices(strategy):
    """(kind "GPU", "CPU" or "TPU", number of local replicas) of a tf.distribute strategy."""
    import tensorflow as tf

    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: the one device TensorFlow places ops on
        devices = ["/device:GPU:0" if tf.config.list_logical_devices("GPU") else "/device:CPU:0"]
    names = " ".join(devices).upper()
    kind = next((k for k in ("TPU", "GPU") if f"{k}:" in names), "CPU")
    return kind, max(1, len(devices))
