"""Finding CIFAR-10 without reading it: the folder searched, the format found, the fix when there is none."""

from __future__ import annotations

import pytest
from conftest import REAL_DATA
from test_data_testsets import assert_data_error, small_arrays

from s7core.data import (
    FORMATS,
    count_train_images,
    find_cifar10,
    load_cifar10,
    make_tiny_cifar10,
    resolve_data_dir,
    write_cifar10,
)
from s7core.errors import UserError


@pytest.fixture
def arrays():
    return small_arrays()


def test_count_train_images_reads_file_sizes_only(tmp_path):
    assert count_train_images(make_tiny_cifar10(tmp_path / "bin", n_train=123, n_test=7)) == 123
    assert count_train_images(make_tiny_cifar10(tmp_path / "py", n_train=12, n_test=7, format="py")) is None
    assert count_train_images(tmp_path / "nothing here") is None
    if REAL_DATA.is_dir():
        assert count_train_images(REAL_DATA) == 50_000


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv("S7_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg/s7/cifar10"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir() == tmp_path / "home/.cache/s7/cifar10"
    monkeypatch.setenv("S7_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir() == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_find_missing_says_how_to_fix(tmp_path):
    status = find_cifar10(tmp_path)
    assert not status.found and status.format is None and status.path == tmp_path
    for hint in (str(tmp_path), "--data-dir", "S7_DATA_DIR", "download"):
        assert hint in status.message
    assert status.to_dict()["found"] is False
    err = assert_data_error("not found", load_cifar10, tmp_path)
    assert isinstance(err, UserError) and "S7_DATA_DIR" in str(err)


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_find_at_parent_and_batches_folder(tmp_path, arrays, fmt):
    folder = write_cifar10(tmp_path, *arrays, format=fmt)
    assert folder == tmp_path / FORMATS[fmt].folder
    for where in (tmp_path, folder):
        status = find_cifar10(where)
        assert (status.found, status.format, status.path) == (True, fmt, folder)


def test_find_uses_env_var(tmp_path, arrays, monkeypatch):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    monkeypatch.setenv("S7_DATA_DIR", str(tmp_path))
    assert find_cifar10().path == folder
    assert load_cifar10().source == folder


def test_prefers_bin_when_both_present(tmp_path, arrays):
    write_cifar10(tmp_path, *arrays, format="py")
    write_cifar10(tmp_path, *arrays, format="bin")
    assert find_cifar10(tmp_path).format == "bin"
