"""The two on-disk layouts: what each writes, reads back, and says about a damaged file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from test_data_testsets import assert_data_error, small_arrays

from s7core.data import CIFAR10_CLASSES, FORMATS, find_cifar10, load_cifar10, write_cifar10


@pytest.fixture
def arrays():
    return small_arrays()


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_round_trip_exact(tmp_path, arrays, fmt):
    (train_x, train_y), (test_x, test_y) = arrays
    classes = tuple(f"class{i}" for i in range(10))
    write_cifar10(tmp_path, (train_x, train_y), (test_x, test_y), format=fmt, classes=classes)
    data = load_cifar10(tmp_path)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    assert tuple(data.train_images.shape) == (50, 3, 32, 32) and tuple(data.test_images.shape) == (20, 3, 32, 32)
    assert np.array_equal(data.train_images.numpy(), train_x) and np.array_equal(data.train_labels.numpy(), train_y)
    assert np.array_equal(data.test_images.numpy(), test_x) and np.array_equal(data.test_labels.numpy(), test_y)
    assert data.classes == classes and data.source == tmp_path / FORMATS[fmt].folder
    assert data.summary() == {"train": 50, "test": 20, "classes": list(classes), "source": str(data.source)}


def test_bin_record_layout(tmp_path, arrays):
    """A record is the label byte, then the red, green and blue planes row by row."""
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    raw = (folder / "data_batch_1.bin").read_bytes()
    (train_x, train_y), _ = arrays
    assert len(raw) == 10 * 3073
    assert raw[0] == train_y[0] and raw[1:3073] == train_x[0].tobytes()
    assert raw[3073] == train_y[1] and raw[1 + 1024 + 32 * 5 + 7] == train_x[0, 1, 5, 7]


def test_missing_meta_falls_back_to_cifar_names(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    (folder / "batches.meta.txt").unlink()
    assert load_cifar10(tmp_path).classes == CIFAR10_CLASSES


def test_truncated_bin_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    err = assert_data_error(r"data_batch_2.bin is truncated: 30,630 bytes", load_cifar10, tmp_path)
    assert err.path == path and "download" in str(err)
    assert not find_cifar10(tmp_path).found


def test_empty_bin_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    (folder / "data_batch_5.bin").write_bytes(b"")
    assert_data_error("data_batch_5.bin is truncated", load_cifar10, tmp_path)


def test_bad_label_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    path = folder / "data_batch_4.bin"
    raw = bytearray(path.read_bytes())
    raw[3 * 3073] = 10
    path.write_bytes(bytes(raw))
    err = assert_data_error(r"data_batch_4.bin is corrupt: label 10 is outside 0-9", load_cifar10, tmp_path)
    assert err.path == path


def test_bad_label_py_named(tmp_path, arrays):
    (train_x, train_y), test = arrays
    train_y = train_y.copy()
    train_y[-1] = 12
    write_cifar10(tmp_path, (train_x, train_y), test, format="py")
    assert_data_error(r"data_batch_5 is corrupt: label 12 is outside 0-9", load_cifar10, tmp_path)


def test_pickle_label_count_mismatch(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="py")
    batch = {"data": np.zeros((10, 3072), np.uint8), "labels": [0] * 9}
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=4))
    assert_data_error("data_batch_2 is truncated or corrupt: 10 images but 9 labels", load_cifar10, tmp_path)


@pytest.mark.parametrize("key", list(FORMATS))
def test_format_reads_back_what_it_encodes(tmp_path, arrays, key):
    fmt = FORMATS[key]
    (images, labels), _ = arrays
    path = tmp_path / fmt.batch_file("data_batch_1")
    path.write_bytes(fmt.encode_batch(images, labels, "one batch"))
    read_images, read_labels = fmt.read_batch(path)
    assert read_images.dtype == np.uint8 and np.array_equal(read_images, images)
    assert read_labels.dtype == np.int64 and np.array_equal(read_labels, labels)
    meta = tmp_path / fmt.meta_file
    meta.write_bytes(fmt.encode_meta(("cat", "dog"), len(images)))
    assert fmt.read_classes(meta) == ("cat", "dog")
    assert fmt.read_classes(tmp_path / "absent") == CIFAR10_CLASSES
