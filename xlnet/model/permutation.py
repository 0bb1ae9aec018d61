"""Permutation-LM inputs from stored factorization ranks (original-xlnet.md §5), as batched TF ops.

The dataset stores, per example, `input_ids`, `is_masked` and `perm_rank` (a few KB); the
[L, L] attention mask and the target rows are derived here, the same way for the trainer and
the tests. Shapes are static (fixed `L` and `K`), so the ops compile under XLA.

Conventions are the original's: `perm_mask[b, i, j] = 1` means query `i` may NOT attend to key
`j`; targets are the input tokens themselves (§5.4); functional tokens (`<sep>`, `<cls>`) take
part in the order but are never targets, even when the span sampler marked them (Q11).
"""

import tensorflow as tf

from xlnet.schema import CLS_ID, SEP_ID


def permutation_inputs(input_ids, is_masked, perm_rank, reuse_len, num_predict):
    """Derives the model's permutation inputs for a batch of examples.

    Args:
      input_ids: int [B, L] token ids.
      is_masked: int/bool [B, L], 1 = chosen for prediction by the span sampler.
      perm_rank: int [B, L], each position's rank in the factorization order of its half
        (ranks are compared only within a half, so an offset per half does not matter).
      reuse_len: R, the length of the first half (0 = one block over the whole segment).
      num_predict: K, the number of target rows (padding rows are all zero).

    Returns a dict:
      perm_mask: float32 [B, L, L], 1 = cannot attend.
      target_mapping: float32 [B, K, L], one-hot rows at the target positions in ascending
        position order, then zero rows.
      targets: int32 [B, K] token ids at the target positions, then zeros.
      target_weights: float32 [B, K], 1 for real target rows, 0 for padding.
    """
    input_ids = tf.cast(input_ids, tf.int32)  # [B, L]
    perm_rank = tf.cast(perm_rank, tf.int32)  # [B, L]
    functional = tf.logical_or(tf.equal(input_ids, SEP_ID), tf.equal(input_ids, CLS_ID))
    is_target = tf.logical_and(tf.cast(is_masked, tf.bool), tf.logical_not(functional))
    hidden = tf.logical_or(is_target, functional)  # [B, L]
    perm_mask = _perm_mask(perm_rank, is_target, functional, hidden, reuse_len)
    target_mapping = _target_mapping(is_target, num_predict)  # [B, K, L]
    targets = tf.reduce_sum(
        tf.cast(target_mapping, tf.int32) * input_ids[:, None, :], axis=-1)  # [B, K]
    return {
        "perm_mask": perm_mask,
        "target_mapping": target_mapping,
        "targets": targets,
        "target_weights": tf.reduce_sum(target_mapping, axis=-1),  # [B, K]
    }


def _perm_mask(perm_rank, is_target, functional, hidden, reuse_len):
    """§5.2 rule inside each half, §5.3 blocks across the halves."""
    context_key_rank = tf.fill(tf.shape(perm_rank), -1)
    key_rank = tf.where(hidden, perm_rank, context_key_rank)  # [B, L]
    query_rank = tf.where(is_target, perm_rank, key_rank + 1)  # [B, L]
    blocked = tf.logical_and(
        hidden[:, None, :], query_rank[:, :, None] <= key_rank[:, None, :])  # [B, L, L]
    seq_len = perm_rank.shape[1]
    if reuse_len:
        position = tf.range(seq_len)
        query_in_reuse = position[:, None] < reuse_len  # [L, 1]
        key_in_reuse = position[None, :] < reuse_len  # [1, L]
        same_half = tf.equal(query_in_reuse, key_in_reuse)  # [L, L]
        reuse_sees_new = tf.logical_and(query_in_reuse, tf.logical_not(key_in_reuse))  # [L, L]
        # Across halves: the reuse part never sees the new part (ONES top-right), the new part
        # sees the whole reuse part (ZEROS bottom-left).
        blocked = tf.where(same_half[None], blocked, reuse_sees_new[None])
    return tf.cast(blocked, tf.float32)


def _target_mapping(is_target, num_predict):
    """One-hot rows for the target positions in ascending order, zero rows after them."""
    slot = tf.cumsum(tf.cast(is_target, tf.int32), axis=1) - 1  # [B, L] row of each target
    slot = tf.where(is_target, slot, -1)
    rows = tf.range(num_predict)  # [K]
    return tf.cast(tf.equal(slot[:, None, :], rows[None, :, None]), tf.float32)  # [B, K, L]


def ranks_from_block_permutation(sigma, half_len):
    """§5.1: ranks of one half of length S from a within-block permutation `sigma` [B, P].

    Position `c·P + r` gets rank `c·P + sigma[r]`: blocks of P positions keep their order and
    every block is permuted by the same sigma. Returns int32 [B, S].
    """
    sigma = tf.cast(sigma, tf.int32)  # [B, P]
    perm_size = sigma.shape[1]
    block_starts = tf.range(0, half_len, perm_size)  # [S/P]
    ranks = block_starts[None, :, None] + sigma[:, None, :]  # [B, S/P, P]
    return tf.reshape(ranks, [-1, half_len])  # [B, S]


def sample_perm_ranks(seed, batch_size, seq_len, reuse_len, perm_size):
    """A fresh factorization order per example and half, from a stateless seed.

    Each half (the reuse part and the rest) draws its own uniform within-block permutation of
    `perm_size`, as the original parser does per record. Returns int32 [B, L] with ranks
    counted within each half. `seed`: int32/int64 [2].
    """
    halves = [reuse_len, seq_len - reuse_len] if reuse_len else [seq_len]
    ranks = []
    for half_index, half_len in enumerate(halves):
        half_seed = tf.random.experimental.stateless_fold_in(seed, half_index)
        keys = tf.random.stateless_uniform([batch_size, perm_size], seed=half_seed)  # [B, P]
        sigma = tf.argsort(keys, axis=1, stable=True)  # [B, P] uniform permutation
        ranks.append(ranks_from_block_permutation(sigma, half_len))
    return tf.concat(ranks, axis=1)  # [B, L]
