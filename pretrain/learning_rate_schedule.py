"""The original learning-rate schedule (original-xlnet.md §8.3): linear warmup, then linear or
cosine decay."""

import math

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="xlnet")
class WarmupDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """`lr_max·step/warmup` while warming up, then decay to `lr_max·min_lr_ratio` at `total`."""

    def __init__(self, peak, warmup_steps, total_steps, min_lr_ratio, decay="linear"):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr_ratio = min_lr_ratio
        self.decay = decay

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak, tf.float32)
        warmup = float(self.warmup_steps)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.minimum(tf.maximum(step - warmup, 0.0), decay_steps) / decay_steps
        end = peak * self.min_lr_ratio
        if self.decay == "cos":
            # Cosine decay with floor `alpha = min_lr_ratio`, as tf.train.cosine_decay.
            cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
            decayed = peak * ((1.0 - self.min_lr_ratio) * cosine + self.min_lr_ratio)
        else:
            decayed = (peak - end) * (1.0 - progress) + end
        if self.warmup_steps == 0:
            return decayed
        return tf.where(step < warmup, peak * step / warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "min_lr_ratio": self.min_lr_ratio,
                "decay": self.decay}

    @classmethod
    def from_train_config(cls, train):
        return cls(train.learning_rate, train.warmup_steps, train.steps, train.min_lr_ratio,
                   train.decay)
