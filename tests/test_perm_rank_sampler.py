import numpy as np
import pytest

from preprocessing.perm_rank_sampler import PermRankSampler, block_ranks


def test_spec_test_vector():
    assert block_ranks([2, 0, 3, 1], 8).tolist() == [2, 0, 3, 1, 6, 4, 7, 5]


def test_ranks_are_permutations_with_the_block_structure():
    seq_len, reuse_len, perm_size = 64, 32, 8
    sampler = PermRankSampler(seq_len, reuse_len, perm_size)
    ranks = sampler.sample(np.random.default_rng(0), count=50)
    assert ranks.shape == (50, 64)
    for row in ranks:
        assert sorted(row.tolist()) == list(range(seq_len))
        assert row[:reuse_len].max() < reuse_len <= row[reuse_len:].min()
        for start, length in ((0, reuse_len), (reuse_len, seq_len - reuse_len)):
            half = row[start:start + length] - start
            blocks = half.reshape(-1, perm_size)
            sigma = blocks[0]
            assert sorted(sigma.tolist()) == list(range(perm_size))
            expected = np.arange(length // perm_size)[:, None] * perm_size + sigma
            assert (blocks == expected).all()  # every block reuses the same σ
    assert len({tuple(r[:perm_size]) for r in ranks}) > 40  # σ is drawn per example


def test_one_block_per_half_is_a_free_permutation():
    ranks = PermRankSampler(16, 8, 8).sample(np.random.default_rng(1), count=2000)
    first_positions = np.bincount(ranks[:, 0], minlength=8)[:8]
    assert first_positions.min() > 180  # each rank about 250 times


def test_perm_size_must_divide_both_halves():
    with pytest.raises(ValueError, match="does not divide"):
        PermRankSampler(64, 32, 12)
