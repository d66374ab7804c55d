"""A small learnable stand-in for CIFAR-10, made in memory: one colour and one stripe pattern a class, plus noise.

Tests and demos train on it in seconds; the Receptive-field page shows one of its images
when no data set is found.
"""

from __future__ import annotations

import numpy as np

from s7core.data.formats import IMAGE_SHAPE

# One colour a class, far apart in RGB, and one stripe pattern a class: learnable in seconds.
_SYNTH_COLOURS = np.array(
    [
        (230, 40, 40),
        (40, 200, 40),
        (40, 60, 230),
        (230, 220, 40),
        (220, 40, 220),
        (40, 220, 220),
        (250, 250, 250),
        (30, 30, 30),
        (240, 140, 30),
        (120, 60, 180),
    ],
    dtype=np.float32,
)


def _synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n images and labels, every class equally often, in a random order."""
    labels = rng.permutation(np.arange(n) % len(_SYNTH_COLOURS)).astype(np.int64)
    _, height, width = IMAGE_SHAPE
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    period = 4.0 + (labels % 5)[:, None, None]  # class k: period 4..8 ...
    phase = rng.uniform(0, 8, size=(n, 1, 1)).astype(np.float32)
    coord = np.where((labels < 5)[:, None, None], ys, xs)  # ... horizontal stripes for 0-4, vertical for 5-9
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (coord + phase) / period)  # (N, H, W) in [0, 1]
    colour = _SYNTH_COLOURS[labels][:, :, None, None]  # (N, 3, 1, 1)
    images = colour * (0.55 + 0.45 * stripes[:, None]) + rng.normal(0, 18, size=(n, *IMAGE_SHAPE))
    return np.clip(images, 0, 255).astype(np.uint8), labels


def synthetic_cifar10(
    n_train: int, n_test: int, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Small learnable stand-in for CIFAR-10: ((train images, labels), (test images, labels)), uint8 (N, 3, 32, 32).

    Each class is a distinct colour with its own stripe direction and period, plus noise,
    so a small net reaches high accuracy within seconds of training.
    """
    rng = np.random.default_rng(seed)
    return _synthetic(n_train, rng), _synthetic(n_test, rng)
