"""Factorization-order ranks with perm_size blocks (original-xlnet.md §5.1), pure numpy.

Each half of an example (the reuse part, then the rest) gets its own row permutation σ of a
P × (S/P) matrix read column by column: rank[c·P + r] = c·P + σ(r). The second half's ranks
are offset by reuse_len, so perm_rank is a permutation of 0..L-1 that puts the whole reuse part
first, which is the effective order of the original's two-block perm_mask (§5.3).
"""

import numpy as np

from preprocessing.random_order import random_orders


def block_ranks(sigma, length):
    """Ranks of one half of `length` positions from within-block permutations σ.

    `sigma` is [P] or [count, P]; the result is [length] or [count, length].
    """
    sigma = np.asarray(sigma, dtype=np.int64)
    block = sigma.shape[-1]
    columns = np.arange(length // block, dtype=np.int64)[:, None] * block  # [S/P, 1]
    ranks = columns + sigma[..., None, :]  # [..., S/P, P]
    return ranks.reshape(sigma.shape[:-1] + (length,))


class PermRankSampler:
    def __init__(self, seq_len, reuse_len, perm_size):
        for name, length in (("reuse_len", reuse_len),
                             ("seq_len - reuse_len", seq_len - reuse_len)):
            if length % perm_size:
                raise ValueError(f"perm_size {perm_size} does not divide {name} = {length}")
        self.seq_len = seq_len
        self.reuse_len = reuse_len
        self.perm_size = perm_size

    def sample(self, rng, count=1):
        """[count, L] int64 ranks, each row a permutation of 0..L-1."""
        sigmas = random_orders(rng, 2 * count, self.perm_size).reshape(count, 2, -1)  # [n, 2, P]
        first = block_ranks(sigmas[:, 0], self.reuse_len)  # [count, R]
        second = self.reuse_len + block_ranks(sigmas[:, 1], self.seq_len - self.reuse_len)
        return np.concatenate([first, second], axis=1)  # [count, L]
