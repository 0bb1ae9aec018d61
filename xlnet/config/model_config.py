"""XLNetConfig: the architecture (the original `xlnet_config.json` fields) and the training-side
settings the model itself needs (memory, reuse, clamping, dropout, direction, attention type)."""

import dataclasses
import json
from typing import Literal

from xlnet.config.dataclass_io import from_mapping, option
from xlnet.errors import UserError

ORIGINAL_KEYS = ("n_layer", "d_model", "n_head", "d_head", "d_inner", "ff_activation",
                 "untie_r", "n_token")


@dataclasses.dataclass(frozen=True)
class XLNetConfig:
    n_layer: int = option(12, "number of layers")
    d_model: int = option(768, "hidden size (even)")
    n_head: int = option(12, "attention heads")
    d_head: int = option(64, "size of each head")
    d_inner: int = option(3072, "feed-forward inner size")
    ff_activation: Literal["gelu", "relu"] = option(
        "gelu", "`gelu` is the original's tanh approximation")
    untie_r: bool = option(True, "per-layer attention biases (released models: true)")
    n_token: int = option(32000, "vocabulary size; must equal the tokenizer's")
    mem_len: int = option(384, "memory positions carried from the previous segment")
    reuse_len: int = option(256, "leading positions of a segment cached as memory")
    clamp_len: int = option(-1, "clip relative distances to this; -1 = off")
    dropout: float = option(0.1, "dropout rate")
    dropatt: float = option(0.1, "dropout rate on attention probabilities")
    bi_data: bool = option(False, "second half of each batch is time-reversed text")
    attn_type: Literal["bi", "uni"] = option("bi", "`uni` adds a causal mask")

    def __post_init__(self):
        for name in ("n_layer", "d_model", "n_head", "d_head", "d_inner", "n_token"):
            if getattr(self, name) <= 0:
                raise UserError(f"model.{name}: must be positive, got {getattr(self, name)}")
        if self.d_model % 2:
            raise UserError(
                f"model.d_model: must be even (sin|cos positional halves), got {self.d_model}")
        for name in ("mem_len", "reuse_len"):
            if getattr(self, name) < 0:
                raise UserError(f"model.{name}: must be >= 0, got {getattr(self, name)}")
        if self.clamp_len < -1 or self.clamp_len == 0:
            raise UserError(
                f"model.clamp_len: must be -1 (off) or positive, got {self.clamp_len}")
        for name in ("dropout", "dropatt"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UserError(f"model.{name}: must be in [0, 1), got {getattr(self, name)}")
        if self.ff_activation not in ("gelu", "relu"):
            raise UserError(
                f"model.ff_activation: unknown activation {self.ff_activation!r} "
                "(use gelu or relu)")
        if self.attn_type not in ("bi", "uni"):
            raise UserError(f"model.attn_type: {self.attn_type!r} is not bi or uni")

    @classmethod
    def from_dict(cls, mapping, section="model", exclude=()):
        return cls(**from_mapping(cls, mapping, section, exclude))

    @classmethod
    def from_json(cls, path, **overrides):
        """Reads an original `xlnet_config.json` (through tf.io.gfile); `overrides` set the
        training-side fields."""
        import tensorflow as tf

        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                mapping = json.loads(f.read().decode("utf-8"))
        except (OSError, tf.errors.OpError) as e:
            message = getattr(e, "strerror", None) or getattr(e, "message", str(e))
            raise UserError(f"{path}: cannot read the model config ({message})") from None
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        missing = [k for k in ORIGINAL_KEYS if k not in mapping]
        if missing:
            raise UserError(f"{path}: missing key {missing[0]!r} of an xlnet_config.json")
        return cls.from_dict({**mapping, **overrides}, section=str(path))

    def to_original_json(self):
        """The original release's `xlnet_config.json` content."""
        return {k: getattr(self, k) for k in ORIGINAL_KEYS}

    def get_config(self):
        return dataclasses.asdict(self)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @property
    def num_parameters(self):
        """Trainable parameters: original-xlnet.md §6.1 formula (LM bias and mask_emb included)."""
        d, n, dh, di, layers = self.d_model, self.n_head, self.d_head, self.d_inner, self.n_layer
        per_layer = 5 * d * n * dh + 2 * d * di + di + d + 4 * d
        bias_layers = layers if self.untie_r else 1
        return (layers * per_layer + self.n_token * d + d
                + 3 * bias_layers * n * dh + 2 * layers * n * dh + self.n_token)
