"""Archives: extracted once beside themselves, refused when a member is unsafe, never left half-extracted."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from test_data_testsets import assert_data_error, small_arrays

from s7core.data import FORMATS, find_cifar10, load_cifar10, make_tiny_cifar10, write_cifar10


def make_archive(path: Path, source: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return path


@pytest.fixture
def arrays():
    return small_arrays()


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_archive_in_folder_is_extracted(tmp_path, arrays, fmt):
    source = write_cifar10(tmp_path / "src", *arrays, format=fmt)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make_archive(data_dir / FORMATS[fmt].archive, source, FORMATS[fmt].folder)
    status = find_cifar10(data_dir)
    assert status.found and status.format == fmt and status.path == data_dir / FORMATS[fmt].archive
    data = load_cifar10(data_dir)
    assert data.source == data_dir / FORMATS[fmt].folder
    assert np.array_equal(data.train_images.numpy(), arrays[0][0])
    assert find_cifar10(data_dir).path == data_dir / FORMATS[fmt].folder  # extracted once, found as a folder after
    assert [p.name for p in data_dir.iterdir() if p.name.startswith(".")] == []


def test_archive_path_given_directly(tmp_path, arrays):
    source = write_cifar10(tmp_path / "src", *arrays, format="bin")
    archive = make_archive(tmp_path / "mine.tar.gz", source, "downloads/cifar-10-batches-bin")
    data = load_cifar10(archive)
    assert data.source == tmp_path / "cifar-10-batches-bin" and len(data.test_labels) == 20


def test_archive_never_overwrites_a_folder(tmp_path, arrays):
    source = write_cifar10(tmp_path / "src", *arrays, format="py")
    data_dir = tmp_path / "data"
    (data_dir / "cifar-10-batches-py").mkdir(parents=True)
    (data_dir / "cifar-10-batches-py" / "notes.txt").write_text("mine")
    make_archive(data_dir / FORMATS["py"].archive, source, FORMATS["py"].folder)
    assert_data_error("exists but holds no data_batch_1; delete or rename it", load_cifar10, data_dir)
    assert (data_dir / "cifar-10-batches-py" / "notes.txt").read_text() == "mine"


def test_archive_with_path_traversal_refused(tmp_path, arrays):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / FORMATS["py"].archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    assert_data_error("points outside the folder", load_cifar10, data_dir)
    assert not (tmp_path / "evil.txt").exists()


def test_archive_with_link_refused(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / FORMATS["bin"].archive, "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    assert_data_error("is a link or points outside", load_cifar10, data_dir)
    assert not (data_dir / "cifar-10-batches-bin").exists()


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_damaged_archive_leaves_no_partial_folder(tmp_path, damage):
    source = make_tiny_cifar10(tmp_path / "src", 50, 20, format="bin")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    archive = make_archive(data_dir / FORMATS["bin"].archive, source, FORMATS["bin"].folder)
    raw = bytearray(archive.read_bytes())
    if damage == "flip":
        middle = len(raw) // 3
        raw[middle : middle + 200] = bytes(b ^ 0x5A for b in raw[middle : middle + 200])
    else:
        del raw[len(raw) // 2 :]
    archive.write_bytes(bytes(raw))
    assert_data_error("cifar-10-binary.tar.gz is (incomplete or corrupt|not a readable)", load_cifar10, data_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == [archive.name]


def test_corrupt_archive_named(tmp_path):
    (tmp_path / FORMATS["py"].archive).write_bytes(b"\x1f\x8b not really gzip")
    assert_data_error("cifar-10-python.tar.gz is not a readable .tar.gz", load_cifar10, tmp_path)
