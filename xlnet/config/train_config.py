"""TrainConfig: optimizer, schedule, strategy, checkpoints and logging of `xlnet pretrain`."""

import dataclasses
import math
from typing import Literal

from xlnet.config.dataclass_io import from_mapping, option
from xlnet.errors import UserError


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    global_batch_size: int = option(
        16, "rows per step over all replicas; divides the streams (forward + reversed)")
    steps: int = option(100000, "optimizer steps")
    learning_rate: float = option(4e-4, "peak learning rate")
    warmup_steps: int = option(40000, "linear warmup steps")
    decay: Literal["linear", "cos"] = option("linear", "decay after warmup")
    min_lr_ratio: float = option(0.001, "final learning rate / peak")
    optimizer: Literal["adamw", "lamb"] = option(
        "adamw", "adamw as the original; lamb: layer-wise trust ratio, for very large batches")
    weight_decay: float = option(0.01, "decoupled weight decay (not on LayerNorm or biases)")
    adam_epsilon: float = option(1e-6, "Adam epsilon (also LAMB's)")
    bias_correction: bool = option(True, "false = the original AdamWeightDecay (Q18)")
    clip_norm: float = option(1.0, "global gradient-norm clip, after the cross-replica sum")
    grad_accum_steps: int = option(1, "micro-steps summed per optimizer step")
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16"] = option(
        "float32", "mixed_bfloat16: bf16 compute, fp32 variables; mixed_float16: fp16 compute, "
        "fp32 variables, dynamic loss scaling (overflowing steps skipped)")
    loss_scale: float = option(
        2.0 ** 15, "mixed_float16: initial loss scale (>= 1; halved on an overflow, doubled "
        "after 2000 good steps)")
    jit_compile: bool = option(False, "XLA-compile forward and backward")
    remat: Literal["none", "layer"] = option(
        "none", "layer: recompute each layer's activations in the backward pass (less memory)")
    strategy: Literal["default", "mirrored", "multi_worker", "tpu"] = option(
        "default", "tf.distribute strategy")
    cluster_timeout: float = option(
        600.0, "multi_worker: seconds to wait at start for every worker in TF_CONFIG to join "
        "(the wait logs whom it misses, then fails with exit status 2)")
    resample_perm: bool = option(
        False, "sample a new factorization order every step instead of the stored one")
    log_every: int = option(100, "steps per console/TB log")
    checkpoint_every: int = option(1000, "steps per checkpoint (also on SIGTERM and at the end)")
    keep_checkpoints: int = option(5, "checkpoints kept")
    eval_every: int = option(
        0, "steps per evaluation on the dataset's eval split (also at the end); 0 = never")
    eval_segments: int = option(
        32, "segments each eval row reads per evaluation (from fresh memory, the same ones "
        "every time)")
    peak_tflops: float = option(0.0, "device peak for MFU; 0 = detect")
    seed: int = option(0, "seed of init, dropout, orders")

    def __post_init__(self):
        for name in ("global_batch_size", "steps", "grad_accum_steps", "log_every",
                     "checkpoint_every", "keep_checkpoints", "eval_segments", "cluster_timeout"):
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name}: must be positive, got {getattr(self, name)}")
        if self.adam_epsilon <= 0:
            raise UserError(f"train.adam_epsilon: must be positive, got {self.adam_epsilon}")
        # NaN passes every comparison below, and an infinite value trains nothing.
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"train.{field.name}: must be a finite number, got {value}")
        # A seed seeds numpy (keras.utils.set_random_seed) too, which takes 32 bits.
        if self.seed >= 2 ** 32:
            raise UserError(f"train.seed: must be < 2**32, got {self.seed}")
        # learning_rate 0 is allowed: it runs the data and memory through a frozen model.
        for name in ("learning_rate", "warmup_steps", "weight_decay", "clip_norm",
                     "peak_tflops", "seed", "eval_every"):
            if getattr(self, name) < 0:
                raise UserError(f"train.{name}: must be >= 0, got {getattr(self, name)}")
        if self.loss_scale < 1:
            raise UserError(f"train.loss_scale: must be >= 1, got {self.loss_scale}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"train.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")

    @classmethod
    def from_dict(cls, mapping, section="train"):
        return cls(**from_mapping(cls, mapping, section))

    def get_config(self):
        return dataclasses.asdict(self)
