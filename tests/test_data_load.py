"""Loading the whole set: checks across its files, and the real copy when it is present."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from conftest import REAL_DATA
from test_data_testsets import assert_data_error, small_arrays

from s7core.data import CIFAR10_CLASSES, CIFAR10_MEAN, find_cifar10, load_cifar10, write_cifar10


@pytest.fixture
def arrays():
    return small_arrays()


def test_missing_batch_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    (folder / "test_batch.bin").unlink()
    err = assert_data_error("test_batch.bin is missing", load_cifar10, tmp_path)
    assert err.path == folder / "test_batch.bin" and "--data-dir" in str(err)
    status = find_cifar10(tmp_path)
    assert not status.found and "test_batch.bin is missing" in status.message


def test_bin_cut_at_record_boundary_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    path = folder / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[: 4 * 3073])
    err = assert_data_error("data_batch_3.bin is truncated: it holds 4 records", load_cifar10, tmp_path)
    assert err.path == path


def test_py_batch_short_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="py")
    batch = {"data": np.zeros((3, 3072), np.uint8), "labels": [0] * 3}
    (folder / "data_batch_4").write_bytes(pickle.dumps(batch, protocol=4))
    assert_data_error("data_batch_4 is truncated: it holds 3 records", load_cifar10, tmp_path)


@pytest.mark.realdata
def test_real_cifar10(real_data_dir):
    assert real_data_dir == REAL_DATA
    status = find_cifar10(real_data_dir.parent)
    assert status.found and status.format == "bin" and status.path == real_data_dir
    data = load_cifar10(real_data_dir)
    assert tuple(data.train_images.shape) == (50000, 3, 32, 32) and tuple(data.test_images.shape) == (10000, 3, 32, 32)
    assert data.classes == CIFAR10_CLASSES
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(data.test_labels, minlength=10).tolist() == [1000] * 10
    mean = data.train_images.sum((0, 2, 3), dtype=torch.int64).double() / (50000 * 32 * 32 * 255)
    assert torch.allclose(mean, torch.tensor(CIFAR10_MEAN, dtype=torch.double), atol=0.002)
