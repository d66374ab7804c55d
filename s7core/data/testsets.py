"""Writers of small CIFAR-format data sets on disk, in either official layout, for tests, benches and demos.

`write_cifar10` writes given arrays; `make_tiny_cifar10` writes a synthetic set. Every file is
written atomically, so a reader never sees a half-written batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from s7core.data.formats import BIN, CIFAR10_CLASSES, FORMATS, IMAGE_SHAPE, TEST_BATCH, TRAIN_BATCHES
from s7core.data.synthetic import synthetic_cifar10
from s7core.files import atomic_write


def _atomic_write(path: Path, payload: bytes) -> None:
    with atomic_write(path) as fh:
        fh.write(payload)


def _as_chw(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, 3, 32, 32), from that layout or channels last."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, 32, 32, 3) or (N, 3, 32, 32), got {images.dtype} {images.shape}")
    if images.shape[1:] == (*IMAGE_SHAPE[1:], IMAGE_SHAPE[0]):
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be (N, 32, 32, 3) or (N, 3, 32, 32), got {images.shape}")
    return np.ascontiguousarray(images)


def _as_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """n labels that fit the binary format's label byte."""
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu" or (n and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(f"labels must be {n} integers from 0 to 255, got {labels.dtype} {labels.shape}")
    return labels


def write_cifar10(
    folder: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    format: str = BIN.key,
    classes: tuple[str, ...] = CIFAR10_CLASSES,
) -> Path:
    """Write a data set in the official on-disk layout ("bin" or "py") inside folder; returns the batches folder."""
    if format not in FORMATS:
        raise ValueError(f"format must be {' or '.join(map(repr, FORMATS))}, got {format!r}")
    fmt = FORMATS[format]
    out = Path(folder) / fmt.folder
    out.mkdir(parents=True, exist_ok=True)
    train_images, test_images = _as_chw(train[0]), _as_chw(test[0])
    train_labels, test_labels = _as_labels(train[1], len(train_images)), _as_labels(test[1], len(test_images))
    chunks = np.array_split(np.arange(len(train_images)), len(TRAIN_BATCHES))
    for i, (name, idx) in enumerate(zip(TRAIN_BATCHES, chunks, strict=True)):
        label = f"training batch {i + 1} of {len(TRAIN_BATCHES)}"
        _atomic_write(out / fmt.batch_file(name), fmt.encode_batch(train_images[idx], train_labels[idx], label))
    _atomic_write(out / fmt.batch_file(TEST_BATCH), fmt.encode_batch(test_images, test_labels, "testing"))
    _atomic_write(out / fmt.meta_file, fmt.encode_meta(classes, len(chunks[0])))
    return out


def make_tiny_cifar10(
    folder: Path, n_train: int = 500, n_test: int = 200, format: str = BIN.key, seed: int = 0
) -> Path:
    """Write a synthetic data set on disk in the official layout; returns the folder to pass as data_dir."""
    train, test = synthetic_cifar10(n_train, n_test, seed)
    return write_cifar10(Path(folder), train, test, format)
