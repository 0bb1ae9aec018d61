import numpy as np
import pytest
import tensorflow as tf

from xlnet.model.permutation import (permutation_inputs, ranks_from_block_permutation,
                               sample_perm_ranks)
from xlnet.schema import CLS_ID, SEP_ID


def _derive(input_ids, is_masked, rank, reuse_len, num_predict):
    out = permutation_inputs(tf.constant([input_ids]), tf.constant([is_masked]),
                             tf.constant([rank]), reuse_len, num_predict)
    return {k: v.numpy()[0] for k, v in out.items()}


def test_rank_test_vector_5_1():
    ranks = ranks_from_block_permutation(tf.constant([[2, 0, 3, 1]]), 8)
    assert ranks.numpy().tolist() == [[2, 0, 3, 1, 6, 4, 7, 5]]


def test_worked_example_1_identity_order():
    out = _derive([10, 20, 4, 40, 50, 4], [0, 0, 0, 1, 1, 0], [0, 1, 2, 3, 4, 5], 0, 2)
    np.testing.assert_array_equal(out["perm_mask"], [
        [0, 0, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(out["target_mapping"], np.eye(6)[[3, 4]])
    assert out["targets"].tolist() == [40, 50]
    assert out["target_weights"].tolist() == [1, 1]


def test_worked_example_2_masked_cls_is_not_a_target():
    out = _derive([11, 12, 13, 4, 21, 22, 4, 3], [0, 1, 1, 0, 1, 0, 0, 1],
                  [5, 2, 7, 0, 3, 6, 1, 4], 0, 4)
    np.testing.assert_array_equal(out["perm_mask"], [
        [0, 1, 1, 1, 1, 0, 1, 1],
        [0, 1, 1, 0, 1, 0, 0, 1],
        [0, 0, 1, 0, 0, 0, 0, 0],
        [0, 1, 1, 0, 1, 0, 1, 1],
        [0, 0, 1, 0, 1, 0, 0, 1],
        [0, 1, 1, 1, 1, 0, 1, 1],
        [0, 1, 1, 0, 1, 0, 0, 1],
        [0, 0, 1, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(out["target_mapping"],
                                  np.concatenate([np.eye(8)[[1, 2, 4]], np.zeros((1, 8))]))
    assert out["targets"].tolist() == [12, 13, 21, 0]
    assert out["target_weights"].tolist() == [1, 1, 1, 0]


def _reference_half(x, m, rank):
    """Spec §5.2 table, row class by row class (an independent reading of the rule)."""
    n = len(x)
    functional = [t in (SEP_ID, CLS_ID) for t in x]
    target = [bool(mk) and not f for mk, f in zip(m, functional)]
    mask = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if not (target[j] or functional[j]):
                continue  # context keys are visible to everyone
            if target[i]:
                visible = rank[j] < rank[i]
            elif functional[i]:
                visible = rank[j] <= rank[i]
            else:
                visible = False
            mask[i, j] = 0 if visible else 1
    return mask


@pytest.mark.parametrize("seed", range(5))
def test_two_halves_match_the_rule_and_block_structure(seed):
    rng = np.random.default_rng(seed)
    seq_len, reuse_len, k = 16, 8, 6
    x = rng.integers(10, 50, seq_len)
    x[[11, 14]] = SEP_ID
    x[15] = CLS_ID
    m = np.zeros(seq_len, int)
    m[rng.choice(seq_len, k, replace=False)] = 1
    m[15] = 1  # a masked <cls>, dropped from the targets (Q11)
    rank = np.concatenate([rng.permutation(reuse_len), rng.permutation(seq_len - reuse_len)])
    out = _derive(x.tolist(), m.tolist(), rank.tolist(), reuse_len, k + 1)
    pm = out["perm_mask"]
    np.testing.assert_array_equal(pm[:8, :8], _reference_half(x[:8], m[:8], rank[:8]))
    np.testing.assert_array_equal(pm[8:, 8:], _reference_half(x[8:], m[8:], rank[8:]))
    assert (pm[:8, 8:] == 1).all() and (pm[8:, :8] == 0).all()
    positions = [p for p in range(seq_len) if m[p] and x[p] not in (SEP_ID, CLS_ID)]
    assert out["targets"][:len(positions)].tolist() == x[positions].tolist()
    assert out["target_mapping"].argmax(-1)[:len(positions)].tolist() == positions
    assert out["target_weights"].sum() == len(positions)
    assert (out["target_mapping"][len(positions):] == 0).all()


def test_compiles_under_xla():
    fn = tf.function(lambda i, m, r: permutation_inputs(i, m, r, 4, 3), jit_compile=True)
    ids = tf.constant([[5, 6, 7, 8, 9, 4, 10, 3]] * 2)
    out = fn(ids, tf.constant([[0, 1, 0, 1, 0, 0, 1, 0]] * 2),
             tf.constant([[0, 1, 2, 3, 3, 2, 1, 0]] * 2))
    assert out["perm_mask"].shape == (2, 8, 8) and out["targets"].shape == (2, 3)


def test_sampled_ranks_are_block_permutations_and_depend_on_the_seed():
    ranks = sample_perm_ranks(tf.constant([3, 7]), 64, 16, 8, 4).numpy()
    for row in ranks:
        for half in (row[:8], row[8:]):
            assert sorted(half) == list(range(8))
            sigma = half[:4]
            np.testing.assert_array_equal(half[4:], sigma + 4)  # every block shares sigma
    first_halves = {tuple(r[:4]) for r in ranks}
    assert len(first_halves) > 10  # 24 possible orders of 4; 64 draws are not all equal
    again = sample_perm_ranks(tf.constant([3, 7]), 64, 16, 8, 4).numpy()
    other = sample_perm_ranks(tf.constant([3, 8]), 64, 16, 8, 4).numpy()
    np.testing.assert_array_equal(ranks, again)
    assert (ranks != other).any()
