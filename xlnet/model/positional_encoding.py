"""Relative encodings shared by all layers: the sinusoidal position encoding (original-xlnet.md
§6.4) and the relative segment matrix (original-xlnet.md §6.6)."""

import tensorflow as tf


def relative_distances(q_len, k_len):
    """Forward distances `[k_len, k_len-1, ..., -q_len+1]` (length k_len + q_len)."""
    return tf.range(k_len, -q_len, -1, dtype=tf.float32)


def sinusoid_encoding(distances, d_model):
    """`[sin(δ·inv_freq) | cos(δ·inv_freq)]`: two halves concatenated, not interleaved."""
    inv_freq = 1.0 / tf.pow(10000.0, tf.range(0, d_model, 2.0) / d_model)  # [d/2]
    angles = distances[:, None] * inv_freq[None, :]  # [R, d/2]
    return tf.concat([tf.sin(angles), tf.cos(angles)], axis=-1)  # [R, d]


def relative_positional_encoding(q_len, k_len, d_model, bi_data, clamp_len):
    """[X, R, d] float32, R = k_len + q_len; X = 2 (forward, backward) with bi_data, else 1.

    Row r holds distance `k_len - r` (forward) or `r - k_len` (backward). One table per
    direction, shared by every example of that direction (the original tiles it per example;
    the values are the same).
    """
    forward = relative_distances(q_len, k_len)  # [R]
    directions = [forward, -forward] if bi_data else [forward]
    if clamp_len > 0:
        directions = [tf.clip_by_value(d, -clamp_len, clamp_len) for d in directions]
    return tf.stack([sinusoid_encoding(d, d_model) for d in directions])  # [X, R, d]


def relative_segment_matrix(segment_ids, mem_len):
    """bool [B, L, M+L]: True where query i and key j are in different segments.

    Memory keys count as segment 0; only equality matters (original-xlnet.md §6.6)."""
    segment_ids = tf.cast(segment_ids, tf.int32)  # [B, L]
    memory_segments = tf.zeros([tf.shape(segment_ids)[0], mem_len], tf.int32)  # [B, M]
    key_segments = tf.concat([memory_segments, segment_ids], axis=1)  # [B, M+L]
    return tf.not_equal(segment_ids[:, :, None], key_segments[:, None, :])  # [B, L, M+L]
