"""TrainConfig: optimizer, schedule, strategy, checkpoints and logging of `xlnet pretrain`."""

import dataclasses
from typing import Literal

from xlnet.dataclass_io import from_mapping
from xlnet.errors import UserError


def _help(text):
    return {"help": text}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    global_batch_size: int = dataclasses.field(
        default=16,
        metadata=_help("rows per step over all replicas; divides the streams (forward + reversed)"))
    steps: int = dataclasses.field(default=100000, metadata=_help("optimizer steps"))
    learning_rate: float = dataclasses.field(default=4e-4, metadata=_help("peak learning rate"))
    warmup_steps: int = dataclasses.field(default=40000, metadata=_help("linear warmup steps"))
    decay: Literal["linear", "cos"] = dataclasses.field(
        default="linear", metadata=_help("decay after warmup"))
    min_lr_ratio: float = dataclasses.field(
        default=0.001, metadata=_help("final learning rate / peak"))
    weight_decay: float = dataclasses.field(
        default=0.01, metadata=_help("decoupled weight decay (not on LayerNorm or biases)"))
    adam_epsilon: float = dataclasses.field(default=1e-6, metadata=_help("Adam epsilon"))
    bias_correction: bool = dataclasses.field(
        default=True, metadata=_help("false = the original AdamWeightDecay (Q18)"))
    clip_norm: float = dataclasses.field(
        default=1.0, metadata=_help("global gradient-norm clip, after the cross-replica sum"))
    grad_accum_steps: int = dataclasses.field(
        default=1, metadata=_help("micro-steps summed per optimizer step"))
    precision: Literal["float32", "mixed_bfloat16"] = dataclasses.field(
        default="float32", metadata=_help("mixed_bfloat16: bf16 compute, fp32 variables"))
    jit_compile: bool = dataclasses.field(
        default=False, metadata=_help("XLA-compile forward and backward"))
    strategy: Literal["default", "mirrored", "multi_worker", "tpu"] = dataclasses.field(
        default="default", metadata=_help("tf.distribute strategy"))
    resample_perm: bool = dataclasses.field(
        default=False,
        metadata=_help("sample a new factorization order every step instead of the stored one"))
    log_every: int = dataclasses.field(default=100, metadata=_help("steps per console/TB log"))
    checkpoint_every: int = dataclasses.field(
        default=1000, metadata=_help("steps per checkpoint (also on SIGTERM and at the end)"))
    keep_checkpoints: int = dataclasses.field(default=5, metadata=_help("checkpoints kept"))
    peak_tflops: float = dataclasses.field(
        default=0.0, metadata=_help("device peak for MFU; 0 = detect"))
    seed: int = dataclasses.field(default=0, metadata=_help("seed of init, dropout, orders"))

    def __post_init__(self):
        for name in ("global_batch_size", "steps", "grad_accum_steps", "log_every",
                     "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise UserError(f"train.{name}: must be positive, got {getattr(self, name)}")
        if self.adam_epsilon <= 0:
            raise UserError(f"train.adam_epsilon: must be positive, got {self.adam_epsilon}")
        # learning_rate 0 is allowed: it runs the data and memory through a frozen model.
        for name in ("learning_rate", "warmup_steps", "weight_decay", "clip_norm",
                     "peak_tflops", "seed"):
            if getattr(self, name) < 0:
                raise UserError(f"train.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"train.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")

    @classmethod
    def from_dict(cls, mapping, section="train"):
        return cls(**from_mapping(cls, mapping, section))

    def get_config(self):
        return dataclasses.asdict(self)
