"""Pieces of the attention against the test vectors of original-xlnet.md and invariants
(§6.3-§6.6)."""

import numpy as np
import tensorflow as tf

from xlnet.model.dropout import drop_threshold, site_seed, stateless_dropout
from xlnet.model.positional_encoding import (relative_distances, relative_positional_encoding,
                                       relative_segment_matrix)
from xlnet.model.relative_attention import rel_shift, target_rel_shift


def test_rel_shift_gives_the_spec_distances():
    q_len, m_len = 3, 2
    distances = relative_distances(q_len, m_len + q_len)  # [5, 4, ..., -2]
    np.testing.assert_array_equal(distances, [5, 4, 3, 2, 1, 0, -1, -2])
    scores = tf.tile(distances[None, None, None, :], [1, 1, q_len, 1])  # [1, 1, 3, 8]
    np.testing.assert_array_equal(rel_shift(scores)[0, 0],
                                  [[2, 1, 0, -1, -2], [3, 2, 1, 0, -1], [4, 3, 2, 1, 0]])


def test_target_rows_read_the_same_distances_as_their_content_rows():
    rng = np.random.default_rng(0)
    batch, heads, q_len, m_len = 2, 3, 6, 4
    k_len = m_len + q_len
    scores = rng.normal(size=(batch, heads, q_len, k_len + q_len)).astype(np.float32)
    positions = np.array([[5, 0, 2], [3, 3, 1]], np.int32)  # [B, K]
    per_target = np.stack([scores[b][:, positions[b]] for b in range(batch)])  # [B, n, K, R]
    shifted = rel_shift(tf.constant(scores)).numpy()  # [B, n, L, k]
    expected = np.stack([shifted[b][:, positions[b]] for b in range(batch)])
    np.testing.assert_array_equal(
        target_rel_shift(tf.constant(per_target), positions, q_len), expected)


def test_rel_shift_gradient_is_the_inverse_shift():
    scores = tf.constant(np.random.default_rng(1).normal(size=(2, 3, 4, 9)), tf.float32)
    upstream = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 4, 5)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(scores)
        total = tf.reduce_sum(rel_shift(scores) * upstream)
    expected = np.zeros(scores.shape, np.float32)
    for i in range(4):
        for j in range(5):
            expected[:, :, i, j + 4 - i] = upstream[:, :, i, j]
    np.testing.assert_array_equal(tape.gradient(total, scores), expected)


def test_positional_encoding_is_sin_then_cos_and_backward_negates_the_sine_half():
    q_len, k_len, d = 4, 7, 8
    encoding = relative_positional_encoding(q_len, k_len, d, bi_data=True, clamp_len=-1).numpy()
    assert encoding.shape == (2, k_len + q_len, d)
    distances = k_len - np.arange(k_len + q_len)
    angles = distances[:, None] / 10000.0 ** (np.arange(0, d, 2) / d)
    np.testing.assert_allclose(encoding[0], np.concatenate([np.sin(angles), np.cos(angles)], 1),
                               atol=1e-6)
    np.testing.assert_allclose(encoding[1, :, :d // 2], -encoding[0, :, :d // 2], atol=1e-6)
    np.testing.assert_allclose(encoding[1, :, d // 2:], encoding[0, :, d // 2:], atol=1e-6)
    forward_only = relative_positional_encoding(q_len, k_len, d, bi_data=False, clamp_len=-1)
    assert forward_only.shape == (1, k_len + q_len, d)


def test_clamp_len_clips_distances():
    encoding = relative_positional_encoding(3, 9, 6, bi_data=False, clamp_len=2).numpy()[0]
    # rows hold distances 9..-2: every distance >= 2 reads the row of distance 2
    np.testing.assert_array_equal(encoding[:8], np.tile(encoding[7], (8, 1)))
    assert not np.allclose(encoding[8], encoding[7])


def test_segment_matrix_counts_memory_as_segment_zero():
    different = relative_segment_matrix(tf.constant([[0, 1, 2]]), mem_len=2).numpy()[0]
    np.testing.assert_array_equal(different, [[0, 0, 0, 1, 1],
                                              [1, 1, 1, 0, 1],
                                              [1, 1, 1, 1, 0]])


def test_dropout_masks_depend_on_seed_and_site_only():
    ones = tf.ones([64, 64])

    def dropped(seed, site):
        return stateless_dropout(ones, 0.25, tf.constant(seed), site, training=True).numpy()

    first = dropped([1, 2], 0)
    np.testing.assert_array_equal(dropped([1, 2], 0), first)  # same seed and site: same mask
    assert not np.array_equal(dropped([1, 3], 0), first)  # another seed
    assert not np.array_equal(dropped([1, 2], 1), first)  # another site
    np.testing.assert_allclose(np.unique(first), [0.0, 1.0 / 0.75], rtol=1e-6)
    assert 0.2 < np.mean(first == 0) < 0.3
    assert not np.array_equal(site_seed(tf.constant([1, 2]), 0), site_seed(tf.constant([1, 2]), 1))
    np.testing.assert_array_equal(stateless_dropout(ones, 0.25, None, 0, training=False), ones)


def test_dropout_rate_is_quantised_to_16_bits_and_odd_sizes_work():
    assert int(drop_threshold(0.1)) == 6554 and int(drop_threshold(0.25)) == 16384
    dropped = stateless_dropout(tf.ones([3, 5]), 0.5, tf.constant([0, 1]), 0, training=True)
    assert dropped.shape == (3, 5) and 0 < np.sum(dropped == 0) < 15
