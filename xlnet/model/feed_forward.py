"""FeedForward: the position-wise `ff` block (original-xlnet.md §6.9), before its residual and
LayerNorm."""

import keras
import tensorflow as tf

from xlnet.model.dropout import stateless_dropout


def gelu(x):
    """The original's GELU: the tanh approximation, not the exact erf form."""
    return tf.nn.gelu(x, approximate=True)


ACTIVATIONS = {"gelu": gelu, "relu": tf.nn.relu}


class FeedForward(keras.layers.Layer):
    """dense1 -> activation -> dropout -> dense2 -> dropout; `layer_1`/`layer_2` kernels and
    biases as in the original checkpoint."""

    def __init__(self, d_model, d_inner, activation, dropout, dropout_site, **kwargs):
        super().__init__(**kwargs)
        self.activation = ACTIVATIONS[activation]
        self.dropout, self.dropout_site = dropout, dropout_site
        normal = keras.initializers.RandomNormal(stddev=0.02)
        self.inner_kernel = self.add_weight(shape=(d_model, d_inner), initializer=normal,
                                            name="layer_1_kernel")
        self.inner_bias = self.add_weight(shape=(d_inner,), initializer="zeros",
                                          name="layer_1_bias")
        self.output_kernel = self.add_weight(shape=(d_inner, d_model), initializer=normal,
                                             name="layer_2_kernel")
        self.output_bias = self.add_weight(shape=(d_model,), initializer="zeros",
                                           name="layer_2_bias")
        self.built = True

    def original_variables(self, prefix):
        return {f"{prefix}/layer_1/kernel": self.inner_kernel,
                f"{prefix}/layer_1/bias": self.inner_bias,
                f"{prefix}/layer_2/kernel": self.output_kernel,
                f"{prefix}/layer_2/bias": self.output_bias}

    def call(self, inputs, training=False, seed=None, site_offset=0):
        """inputs [B, T, d] -> [B, T, d]. `site_offset` keeps the two streams' masks apart."""
        dtype = self.compute_dtype
        site = self.dropout_site + site_offset
        inner = tf.einsum("btd,di->bti", tf.cast(inputs, dtype), tf.cast(self.inner_kernel, dtype))
        inner = self.activation(inner + tf.cast(self.inner_bias, dtype))  # [B, T, di]
        inner = stateless_dropout(inner, self.dropout, seed, site, training)
        output = tf.einsum("bti,id->btd", inner, tf.cast(self.output_kernel, dtype))
        output += tf.cast(self.output_bias, dtype)  # [B, T, d]
        return stateless_dropout(output, self.dropout, seed, site + 1, training)
