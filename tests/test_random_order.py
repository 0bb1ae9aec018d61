import numpy as np
import pytest

from preprocessing.random_order import random_orders


@pytest.mark.parametrize("size", [1, 2, 8, 256, 300, 70000])
def test_rows_are_permutations(size):
    rows = 3 if size > 1000 else 50
    orders = random_orders(np.random.default_rng(0), rows, size)
    assert orders.shape == (rows, size)
    assert (np.sort(orders, axis=1) == np.arange(size)).all()


def test_every_order_of_three_is_equally_likely():
    orders = random_orders(np.random.default_rng(1), 60000, 3)
    codes = orders @ np.array([9, 3, 1])
    _, counts = np.unique(codes, return_counts=True)
    assert len(counts) == 6
    expected = 10000
    chi_square = ((counts - expected) ** 2 / expected).sum()
    assert chi_square < 20.5  # p = 0.001 at 5 degrees of freedom


def test_position_of_each_item_is_uniform():
    orders = random_orders(np.random.default_rng(2), 20000, 256)
    first_items = np.bincount(orders[:, 0], minlength=256)
    expected = 20000 / 256
    chi_square = ((first_items - expected) ** 2 / expected).sum()
    assert chi_square < 330  # p = 0.001 at 255 degrees of freedom


def test_rows_with_ties_are_redrawn_as_permutations():
    """512 positions leave 23 random bits per 32-bit key: ~1.6% of rows tie and are redrawn."""
    orders = random_orders(np.random.default_rng(3), 2000, 512)
    assert (np.sort(orders, axis=1) == np.arange(512)).all()
    assert len({tuple(o[:10]) for o in orders}) == 2000


def test_same_seed_same_orders():
    first = random_orders(np.random.default_rng(4), 10, 64)
    again = random_orders(np.random.default_rng(4), 10, 64)
    assert (first == again).all()
