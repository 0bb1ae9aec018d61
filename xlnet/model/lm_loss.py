"""The LM loss on target rows: the original's masked mean of cross-entropy (original-xlnet.md
§6.11)."""

import tensorflow as tf


def per_example_lm_loss(logits, targets, weights):
    """(sum of weighted cross-entropy [B], sum of weights [B]) in float32, for averaging across
    replicas: global loss = sum of the first / sum of the second.

    logits [B, K, V]; targets int [B, K]; weights [B, K] (0 for padding target rows)."""
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(targets, tf.int32), logits=tf.cast(logits, tf.float32))  # [B, K]
    weights = tf.cast(weights, tf.float32)
    return tf.reduce_sum(cross_entropy * weights, axis=1), tf.reduce_sum(weights, axis=1)


def masked_lm_loss(logits, targets, weights):
    """Scalar: sum(CE * weights) / sum(weights); 0 (not NaN) for a batch without targets."""
    loss_sums, weight_sums = per_example_lm_loss(logits, targets, weights)
    return tf.math.divide_no_nan(tf.reduce_sum(loss_sums), tf.reduce_sum(weight_sums))
