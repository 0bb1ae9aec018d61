"""AdamW as the original trains XLNet (original-xlnet.md §8.2): decoupled weight decay with the
original's exclusions, epsilon from the config, bias correction optional (off = AdamWeightDecay,
Q18). LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning") for very large
batches: the same Adam moments and decay, each variable's step scaled by its trust ratio."""

import re

import keras
import tensorflow as tf
from keras import ops

# Spec §8.2: a name matching DECAYED decays even though it contains "bias"; otherwise a name
# matching NOT_DECAYED is excluded (LayerNorm parameters and biases); everything else decays.
DECAYED = re.compile(r"r_s_bias|r_r_bias|r_w_bias")
NOT_DECAYED = re.compile(r"LayerNorm|layer_norm|bias")


def decays(original_name):
    """Whether the variable with this original checkpoint name gets weight decay."""
    return bool(DECAYED.search(original_name)) or not NOT_DECAYED.search(original_name)


@keras.saving.register_keras_serializable(package="xlnet")
class AdamWeightDecay(keras.optimizers.Optimizer):
    """Adam with decoupled weight decay `θ ← θ − lr·(u + wd·θ)`.

    With `bias_correction` the update `u` is Keras/TF1 Adam's (epsilon added to the
    uncorrected root, step size scaled by the corrections); without it `u = m / (√v + ε)`, the
    original's AdamWeightDecayOptimizer.
    """

    def __init__(self, learning_rate, weight_decay=0.0, epsilon=1e-6, bias_correction=True,
                 beta_1=0.9, beta_2=0.999, name="adam_weight_decay", **kwargs):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay or None,
                         name=name, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.bias_correction = bias_correction

    def exclude_by_original_names(self, original_variables):
        """Excludes from decay the variables whose original names say so (call before build)."""
        excluded = [v for name, v in original_variables.items() if not decays(name)]
        self.exclude_from_weight_decay(var_list=excluded)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums, self._velocities = self.add_optimizer_variables(
            var_list, ["momentum", "velocity"])

    def _update_moments(self, gradient, variable):
        """Moves the variable's first and second moments towards the gradient; returns them."""
        gradient = ops.cast(gradient, variable.dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        return m, v

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        m, v = self._update_moments(gradient, variable)
        if self.bias_correction:
            step = ops.cast(self.iterations + 1, variable.dtype)
            beta_1_power = ops.power(ops.cast(self.beta_1, variable.dtype), step)
            beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), step)
            lr = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr), ops.add(ops.sqrt(v),
                                                                          self.epsilon)))

    def get_config(self):
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                       "bias_correction": self.bias_correction})
        return config


@keras.saving.register_keras_serializable(package="xlnet")
class Lamb(AdamWeightDecay):
    """LAMB: `θ ← θ − lr·r·u` with `u = m̂ / (√v̂ + ε) + wd·θ` and the layer-wise trust ratio
    `r = ‖θ‖ / ‖u‖` per variable (1 when either norm is 0).

    With `bias_correction` m̂, v̂ are the bias-corrected moments (the paper's form, epsilon added
    to the corrected root); without it the raw moments. The variables excluded from weight decay
    (LayerNorm, biases; `exclude_by_original_names`) also keep `r = 1`, as in TF-Addons' and
    Model Garden's LAMB: a bias starts at zero, and a trust ratio would keep its steps
    as small as the bias is.
    """

    def __init__(self, learning_rate, weight_decay=0.0, epsilon=1e-6, bias_correction=True,
                 beta_1=0.9, beta_2=0.999, name="lamb", **kwargs):
        # The decay belongs inside the update, before the trust ratio: keep it from the base
        # class, which would apply it to the variable separately.
        super().__init__(learning_rate, weight_decay=0.0, epsilon=epsilon,
                         bias_correction=bias_correction, beta_1=beta_1, beta_2=beta_2,
                         name=name, **kwargs)
        self.lamb_weight_decay = weight_decay

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        m, v = self._update_moments(gradient, variable)
        m_hat, v_hat = m, v
        if self.bias_correction:
            step = ops.cast(self.iterations + 1, variable.dtype)
            m_hat = m / (1 - ops.power(ops.cast(self.beta_1, variable.dtype), step))
            v_hat = v / (1 - ops.power(ops.cast(self.beta_2, variable.dtype), step))
        update = m_hat / (ops.sqrt(v_hat) + self.epsilon)
        if self._use_weight_decay(variable):
            if self.lamb_weight_decay:
                update = update + ops.cast(self.lamb_weight_decay, variable.dtype) * variable
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            u_norm = ops.sqrt(ops.sum(ops.square(update)))
            both = ops.logical_and(w_norm > 0, u_norm > 0)
            update = update * ops.where(both, w_norm / ops.where(both, u_norm, 1.0), 1.0)
        self.assign_sub(variable, ops.multiply(update, lr))

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.lamb_weight_decay
        return config


OPTIMIZERS = {"adamw": AdamWeightDecay, "lamb": Lamb}


def build_optimizer(train_config, learning_rate, original_variables):
    """`train.optimizer` from the run's train section, its decay exclusions set; build it with
    the model's variables (under the strategy's scope)."""
    optimizer = OPTIMIZERS[train_config.optimizer](
        learning_rate, weight_decay=train_config.weight_decay, epsilon=train_config.adam_epsilon,
        bias_correction=train_config.bias_correction)
    optimizer.exclude_by_original_names(original_variables)
    return optimizer


class DynamicLossScale(tf.Module):
    """The loss scale of `train.precision: mixed_float16`, Keras' LossScaleOptimizer rule:
    halved (and the count of good steps reset) on a step whose gradients are not finite,
    doubled after `growth_steps` finite steps in a row.

    Its own state machine, not Keras' LossScaleOptimizer: that one unscales and checks the
    gradients inside `apply`, after the trainer's clip, while the trainer must unscale between
    the cross-replica sum and the clip. Create it under the strategy's scope (mirrored
    variables); call `update` in a cross-replica context with the one decision of all replicas.
    Both variables belong in the checkpoint, so a resume continues with the same scale.
    """

    def __init__(self, initial_scale=2.0 ** 15, growth_steps=2000, name="loss_scale"):
        super().__init__(name=name)
        self.growth_steps = growth_steps
        aggregation = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.scale = tf.Variable(float(initial_scale), dtype=tf.float32, trainable=False,
                                 name="scale", aggregation=aggregation)
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps",
                                      aggregation=aggregation)

    def update(self, finite):
        """After a step: `finite` (bool scalar) says whether its gradients were applied."""
        grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_steps)
        self.scale.assign(tf.where(grow, self.scale * 2.0,
                                   tf.where(finite, self.scale, self.scale * 0.5)))
        keep_counting = tf.logical_and(finite, tf.logical_not(grow))
        self.good_steps.assign(tf.where(keep_counting, self.good_steps + 1,
                                        tf.zeros_like(self.good_steps)))
