"""The in-memory synthetic stand-in: balanced, learnable, reproducible."""

from __future__ import annotations

import numpy as np

from s7core.data import synthetic_cifar10


def test_synthetic_is_balanced_and_learnable():
    (train_x, train_y), (test_x, test_y) = synthetic_cifar10(500, 200, seed=3)
    assert train_x.shape == (500, 3, 32, 32) and train_x.dtype == np.uint8
    assert np.bincount(train_y, minlength=10).tolist() == [50] * 10
    # a nearest-class-mean classifier on mean colour already separates the classes
    means = np.stack([train_x[train_y == k].mean((0, 2, 3)) for k in range(10)])
    test_colour = test_x.mean((2, 3))
    predicted = ((test_colour[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == test_y).mean() > 0.95
    again = synthetic_cifar10(500, 200, seed=3)
    assert np.array_equal(again[0][0], train_x) and not np.array_equal(synthetic_cifar10(500, 200, 4)[0][0], train_x)
