"""XLNetLM: the backbone plus the tied LM head (embedding transposed + `lm_loss/bias`)."""

import keras
import tensorflow as tf

from xlnet.config.model_config import XLNetConfig
from xlnet.model.xlnet_backbone import XLNetBackbone

INT32_MAX = 2**31 - 1


class XLNetLM(keras.Model):
    """`model(inputs, training=False, dropout_seed=None, memory_share=False)`, see the model
    API in the README.

    inputs: dict with input_ids int32 [B, L] and optional segment_ids [B, L], perm_mask
    [B, L, L] (1 = may not attend), target_mapping [B, K, L], mems [B, N, M, d] and
    memory_length int32 [B]. Returns {"logits": float32 [B, K, V] (with target_mapping),
    "features": [B, L, d], "new_mems": float32 [B, N, M, d] (when mem_len > 0)}, and with
    `memory_share` and mems "memory_share": float32 [N], each layer's mean attention probability
    on the memory slots (is the recurrence read?).
    Pass `dtype="mixed_bfloat16"` for bf16 compute with float32 variables, `remat="layer"` to
    recompute each layer's activations in the backward pass instead of keeping them.
    """

    def __init__(self, config, remat="none", **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.remat = remat
        self.backbone = XLNetBackbone(config, remat=remat, dtype=self.dtype_policy,
                                      name="transformer")
        self.lm_bias = self.add_weight(shape=(config.n_token,), initializer="zeros",
                                       name="lm_loss_bias")
        self.built = True

    def original_variables(self):
        """Original TF1 checkpoint name (original-xlnet.md §7.1) -> Keras variable, in the
        original's shape."""
        return {**self.backbone.original_variables(), "model/lm_loss/bias": self.lm_bias}

    def call(self, inputs, training=False, dropout_seed=None, memory_share=False):
        c = self.config
        if training and dropout_seed is None and (c.dropout > 0 or c.dropatt > 0):
            dropout_seed = tf.random.uniform([2], maxval=INT32_MAX, dtype=tf.int32)
        out = self.backbone(
            inputs["input_ids"], segment_ids=inputs.get("segment_ids"),
            perm_mask=inputs.get("perm_mask"), target_mapping=inputs.get("target_mapping"),
            mems=inputs.get("mems"), memory_length=inputs.get("memory_length"),
            training=training, seed=dropout_seed, memory_share=memory_share)
        outputs = {"features": out["features"]}
        if "memory_share" in out:
            outputs["memory_share"] = out["memory_share"]  # [N]
        if out["new_mems"] is not None:
            outputs["new_mems"] = out["new_mems"]
        if out["query_output"] is not None:
            outputs["logits"] = self._logits(out["query_output"])
        return outputs

    def _logits(self, query_output):
        """Tied softmax weights: logits = g · Eᵀ + b."""
        dtype = self.compute_dtype
        logits = tf.einsum("bkd,vd->bkv", tf.cast(query_output, dtype),
                           tf.cast(self.backbone.word_embedding, dtype))  # [B, K, V]
        return tf.cast(logits, tf.float32) + tf.cast(self.lm_bias, tf.float32)

    def get_config(self):
        return {**super().get_config(), "config": self.config.get_config(), "remat": self.remat}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(XLNetConfig(**config.pop("config")), **config)
