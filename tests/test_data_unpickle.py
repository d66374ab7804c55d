"""The restricted unpickler: a CIFAR-10 python batch reads, anything else is refused before it runs."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from test_data_testsets import assert_data_error, small_arrays

from s7core.data import PY, load_cifar10, write_cifar10


@pytest.fixture
def arrays():
    return small_arrays()


def test_garbage_pickle_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="py")
    (folder / "data_batch_1").write_bytes(b"\x80\x04not a pickle at all")
    err = assert_data_error("data_batch_1 is not a CIFAR-10 python batch", load_cifar10, tmp_path)
    assert err.path == folder / "data_batch_1"


class _Trap:
    """Unpickling this would create a file: the reader must refuse it without running it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_foreign_global_refused_unrun(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="py")
    marker = tmp_path / "ran"
    batch = {"data": np.zeros((10, 3072), np.uint8), "labels": [0] * 10, "trap": _Trap(marker)}
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=4))
    assert_data_error("refused global io.open", load_cifar10, tmp_path)
    assert not marker.exists()


def test_pickle_with_object_array_refused(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="py")
    data = np.empty((10, 3072), dtype=object)
    data[:] = 0
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": [0] * 10}, protocol=4))
    assert_data_error("test_batch is not a CIFAR-10 python batch.*refused dtype object", load_cifar10, tmp_path)


def test_official_protocol2_numpy1_pickle_reads(tmp_path, arrays):
    """The official files were pickled under Python 2 and numpy 1 (numpy.core.multiarray, byte strings)."""
    folder = write_cifar10(tmp_path, *arrays, format="py")
    data = np.arange(10 * 3072, dtype=np.int64).astype(np.uint8).reshape(10, 3072)
    blob = pickle.dumps({"data": data, "labels": list(range(10))}, protocol=3)  # no frames, text GLOBAL opcodes
    assert b"numpy._core.multiarray\n_reconstruct" in blob
    blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    (folder / "data_batch_1").write_bytes(blob)
    images, labels = PY.read_batch(folder / "data_batch_1")
    assert np.array_equal(images.reshape(10, -1), data) and labels.tolist() == list(range(10))
