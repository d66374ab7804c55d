"""Writing small CIFAR-format sets on disk; the helpers the other data tests build their sets with."""

from __future__ import annotations

import numpy as np
import pytest

from s7core.data import CIFAR10_CLASSES, DataError, load_cifar10, make_tiny_cifar10, write_cifar10

Arrays = tuple[np.ndarray, np.ndarray]


def random_set(n: int, seed: int) -> Arrays:
    """n random uint8 images (N, 3, 32, 32) and labels 0-9, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def assert_data_error(match: str, fn, *args, **kwargs) -> DataError:
    """Call fn, expecting a DataError whose message matches; returns it for further checks."""
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    return info.value


def small_arrays() -> tuple[Arrays, Arrays]:
    """A training set of 50 random images and a test set of 20, the same at every call."""
    return random_set(50, 1), random_set(20, 2)


@pytest.fixture
def arrays():
    return small_arrays()


def test_channels_last_input_is_transposed(tmp_path, arrays):
    (train_x, train_y), (test_x, test_y) = arrays
    write_cifar10(tmp_path, (train_x.transpose(0, 2, 3, 1), train_y), (test_x, test_y), format="bin")
    assert np.array_equal(load_cifar10(tmp_path).train_images.numpy(), train_x)


def test_write_refuses_mismatched_labels(tmp_path, arrays):
    (train_x, train_y), test = arrays
    with pytest.raises(ValueError, match="labels must be 50 integers"):
        write_cifar10(tmp_path, (train_x, train_y[:-1]), test)


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_make_tiny(tmp_path, fmt):
    data_dir = make_tiny_cifar10(tmp_path / "tiny", format=fmt)
    data = load_cifar10(data_dir)
    assert len(data.train_labels) == 500 and len(data.test_labels) == 200 and data.classes == CIFAR10_CLASSES


def test_write_refuses_unknown_format(tmp_path, arrays):
    with pytest.raises(ValueError, match="format must be 'bin' or 'py', got 'png'"):
        write_cifar10(tmp_path, *arrays, format="png")
