"""CIFAR-10 readers, download and augmentation, on small data sets written here (and the real copy when present)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import socket
import statistics
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s7core import data as D
from s7core.config import AugmentConfig
from s7core.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DataError,
    augment_batch,
    count_train_images,
    download_cifar10,
    find_cifar10,
    load_cifar10,
    make_tiny_cifar10,
    normalize,
    resolve_data_dir,
    synthetic_cifar10,
    write_cifar10,
)
from s7core.errors import UserError

REAL_DATA = Path(__file__).resolve().parents[2] / "shared/data/cifar-10-batches-bin"


def random_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


@pytest.fixture
def arrays():
    return random_set(50, 1), random_set(20, 2)


def assert_data_error(match: str, fn, *args, **kwargs) -> DataError:
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- locating


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
    assert folder == tmp_path / D.FOLDERS[fmt]
    for where in (tmp_path, folder):
        status = find_cifar10(where)
        assert (status.found, status.format, status.path) == (True, fmt, folder)


def test_find_uses_env_var(tmp_path, arrays, monkeypatch):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    monkeypatch.setenv("S7_DATA_DIR", str(tmp_path))
    assert find_cifar10().path == folder
    assert load_cifar10().source == folder


# --------------------------------------------------------------------------- reading


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
    assert data.classes == classes and data.source == tmp_path / D.FOLDERS[fmt]
    assert data.summary() == {"train": 50, "test": 20, "classes": list(classes), "source": str(data.source)}


def test_bin_record_layout(tmp_path, arrays):
    """A record is the label byte, then the red, green and blue planes row by row."""
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    raw = (folder / "data_batch_1.bin").read_bytes()
    (train_x, train_y), _ = arrays
    assert len(raw) == 10 * 3073
    assert raw[0] == train_y[0] and raw[1:3073] == train_x[0].tobytes()
    assert raw[3073] == train_y[1] and raw[1 + 1024 + 32 * 5 + 7] == train_x[0, 1, 5, 7]


def test_channels_last_input_is_transposed(tmp_path, arrays):
    (train_x, train_y), (test_x, test_y) = arrays
    write_cifar10(tmp_path, (train_x.transpose(0, 2, 3, 1), train_y), (test_x, test_y), format="bin")
    assert np.array_equal(load_cifar10(tmp_path).train_images.numpy(), train_x)


def test_prefers_bin_when_both_present(tmp_path, arrays):
    write_cifar10(tmp_path, *arrays, format="py")
    write_cifar10(tmp_path, *arrays, format="bin")
    assert find_cifar10(tmp_path).format == "bin"


def test_missing_meta_falls_back_to_cifar_names(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    (folder / "batches.meta.txt").unlink()
    assert load_cifar10(tmp_path).classes == CIFAR10_CLASSES


# --------------------------------------------------------------------------- broken data sets


def test_missing_batch_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    (folder / "test_batch.bin").unlink()
    err = assert_data_error("test_batch.bin is missing", load_cifar10, tmp_path)
    assert err.path == folder / "test_batch.bin" and "--data-dir" in str(err)
    status = find_cifar10(tmp_path)
    assert not status.found and "test_batch.bin is missing" in status.message


def test_truncated_bin_named(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="bin")
    path = folder / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    err = assert_data_error(r"data_batch_2.bin is truncated: 30,630 bytes", load_cifar10, tmp_path)
    assert err.path == path and "download" in str(err)
    assert not find_cifar10(tmp_path).found


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


def test_pickle_label_count_mismatch(tmp_path, arrays):
    folder = write_cifar10(tmp_path, *arrays, format="py")
    batch = {"data": np.zeros((10, 3072), np.uint8), "labels": [0] * 9}
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=4))
    assert_data_error("data_batch_2 is truncated or corrupt: 10 images but 9 labels", load_cifar10, tmp_path)


def test_official_protocol2_numpy1_pickle_reads(tmp_path, arrays):
    """The official files were pickled under Python 2 and numpy 1 (numpy.core.multiarray, byte strings)."""
    folder = write_cifar10(tmp_path, *arrays, format="py")
    data = np.arange(10 * 3072, dtype=np.int64).astype(np.uint8).reshape(10, 3072)
    blob = pickle.dumps({"data": data, "labels": list(range(10))}, protocol=3)  # no frames, text GLOBAL opcodes
    assert b"numpy._core.multiarray\n_reconstruct" in blob
    blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    (folder / "data_batch_1").write_bytes(blob)
    images, labels = D._read_py(folder / "data_batch_1")
    assert np.array_equal(images.reshape(10, -1), data) and labels.tolist() == list(range(10))


# --------------------------------------------------------------------------- archives


def make_archive(path: Path, source: Path, arcname: str) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=arcname)
    return path


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_archive_in_folder_is_extracted(tmp_path, arrays, fmt):
    source = write_cifar10(tmp_path / "src", *arrays, format=fmt)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    make_archive(data_dir / D.ARCHIVES[fmt], source, D.FOLDERS[fmt])
    status = find_cifar10(data_dir)
    assert status.found and status.format == fmt and status.path == data_dir / D.ARCHIVES[fmt]
    data = load_cifar10(data_dir)
    assert data.source == data_dir / D.FOLDERS[fmt]
    assert np.array_equal(data.train_images.numpy(), arrays[0][0])
    assert find_cifar10(data_dir).path == data_dir / D.FOLDERS[fmt]  # extracted once, found as a folder after
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
    make_archive(data_dir / D.ARCHIVES["py"], source, D.FOLDERS["py"])
    assert_data_error("exists but holds no data_batch_1; delete or rename it", load_cifar10, data_dir)
    assert (data_dir / "cifar-10-batches-py" / "notes.txt").read_text() == "mine"


def test_archive_with_path_traversal_refused(tmp_path, arrays):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / D.ARCHIVES["py"], "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    assert_data_error("points outside the folder", load_cifar10, data_dir)
    assert not (tmp_path / "evil.txt").exists()


def test_archive_with_link_refused(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / D.ARCHIVES["bin"], "w:gz") as tar:
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
    archive = make_archive(data_dir / D.ARCHIVES["bin"], source, D.FOLDERS["bin"])
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
    (tmp_path / D.ARCHIVES["py"]).write_bytes(b"\x1f\x8b not really gzip")
    assert_data_error("cifar-10-python.tar.gz is not a readable .tar.gz", load_cifar10, tmp_path)


# --------------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_folder(tmp_path):
    """A folder served over http://127.0.0.1 on a free port, stopped after the test."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_over_http_with_md5_and_progress(tmp_path, arrays, http_folder):
    served, base = http_folder
    source = write_cifar10(tmp_path / "src", *arrays, format="py")
    archive = make_archive(served / D.ARCHIVES["py"], source, D.FOLDERS["py"])
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    calls: list[tuple[int, int]] = []
    cache = tmp_path / "cache"
    folder = download_cifar10(cache, url=f"{base}/{archive.name}", md5=md5, progress=lambda a, b: calls.append((a, b)))
    assert folder == cache / "cifar-10-batches-py"
    assert calls[-1] == (archive.stat().st_size, archive.stat().st_size)
    assert (cache / archive.name).read_bytes() == archive.read_bytes()
    assert not (cache / (archive.name + ".part")).exists()
    data = load_cifar10(cache)
    assert np.array_equal(data.test_images.numpy(), arrays[1][0])


def test_load_downloads_when_asked(tmp_path, arrays, http_folder, monkeypatch):
    served, base = http_folder
    source = write_cifar10(tmp_path / "src", *arrays, format="py")
    make_archive(served / D.ARCHIVES["py"], source, D.FOLDERS["py"])
    monkeypatch.setattr(D, "CIFAR10_URL", f"{base}/{D.ARCHIVES['py']}")
    monkeypatch.setattr(D, "CIFAR10_MD5", None)
    cache = tmp_path / "cache"
    assert_data_error("not found", load_cifar10, cache)
    assert len(load_cifar10(cache, download=True).train_labels) == 50


class _NoHeadHandler(_QuietHandler):
    def do_HEAD(self):
        self.send_error(405)


def test_download_from_server_without_head(tmp_path, arrays, monkeypatch):
    served = tmp_path / "served"
    source = write_cifar10(tmp_path / "src", *arrays, format="bin")
    served.mkdir()
    archive = make_archive(served / D.ARCHIVES["bin"], source, D.FOLDERS["bin"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_NoHeadHandler, directory=served))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
        calls: list[tuple[int, int]] = []
        folder = download_cifar10(tmp_path / "cache", url=url, md5=None, progress=lambda a, b: calls.append((a, b)))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert folder == tmp_path / "cache/cifar-10-batches-bin"
    assert calls[-1] == (archive.stat().st_size,) * 2  # size unknown up front, known at the end


def test_command_line_finds_and_downloads(tmp_path, arrays, http_folder, monkeypatch, capsys):
    from s7core.__main__ import main as cli

    served, base = http_folder
    source = write_cifar10(tmp_path / "src", *arrays, format="py")
    make_archive(served / D.ARCHIVES["py"], source, D.FOLDERS["py"])
    monkeypatch.setattr(D, "CIFAR10_URL", f"{base}/{D.ARCHIVES['py']}")
    monkeypatch.setattr(D, "CIFAR10_MD5", None)
    cache = tmp_path / "cache"
    assert cli(["data", "--data-dir", str(cache)]) == 1
    assert f"python -m s7core data --download --data-dir {cache}" in capsys.readouterr().out
    assert cli(["data", "--data-dir", str(cache), "--download"]) == 0
    assert f"CIFAR-10 (python version) in {cache / 'cifar-10-batches-py'}" in capsys.readouterr().out
    monkeypatch.setattr(D, "CIFAR10_URL", f"{base}/gone.tar.gz")
    assert cli(["data", "--data-dir", str(tmp_path / "other"), "--download"]) == 2
    assert "error: cannot reach" in capsys.readouterr().err


def test_download_bad_md5_refused(tmp_path, arrays, http_folder):
    served, base = http_folder
    source = write_cifar10(tmp_path / "src", *arrays, format="py")
    archive = make_archive(served / D.ARCHIVES["py"], source, D.FOLDERS["py"])
    cache = tmp_path / "cache"
    url = f"{base}/{archive.name}"
    assert_data_error("does not match the md5 0{32}", download_cifar10, cache, url=url, md5="0" * 32)
    assert list(cache.iterdir()) == []


def test_download_unreachable_fails_fast(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.perf_counter()
    err = assert_data_error("cannot reach", download_cifar10, tmp_path, url=f"http://127.0.0.1:{port}/c.tar.gz")
    assert time.perf_counter() - start < 5
    assert "put it in" in str(err) and "S7_DATA_DIR" in str(err)


def test_download_refuses_non_http(tmp_path, arrays):
    archive = make_archive(tmp_path / D.ARCHIVES["py"], write_cifar10(tmp_path / "src", *arrays, "py"), "x")
    err = assert_data_error("only http", download_cifar10, tmp_path / "cache", url=archive.as_uri(), md5=None)
    assert f"put it in {tmp_path / 'cache'}" in str(err)


def test_download_missing_file_fails_fast(tmp_path, http_folder):
    _, base = http_folder
    assert_data_error("cannot reach .*HTTP 404", download_cifar10, tmp_path / "c", url=f"{base}/none.tar.gz", md5=None)


# --------------------------------------------------------------------------- synthetic sets


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


@pytest.mark.parametrize("fmt", ["bin", "py"])
def test_make_tiny(tmp_path, fmt):
    data_dir = make_tiny_cifar10(tmp_path / "tiny", format=fmt)
    data = load_cifar10(data_dir)
    assert len(data.train_labels) == 500 and len(data.test_labels) == 200 and data.classes == CIFAR10_CLASSES


# --------------------------------------------------------------------------- augmentation


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("field,value", [("crop_padding", -1), ("crop_padding", 17), ("cutout", 2.5), ("cutout", True)])
def test_augment_config_out_of_range(field, value):
    with pytest.raises(D.AugmentError, match=f"{field} must be whole pixels from 0 to"):
        AugmentConfig(**{field: value})
    assert issubclass(D.AugmentError, UserError)


def test_write_refuses_mismatched_labels(tmp_path, arrays):
    (train_x, train_y), test = arrays
    with pytest.raises(ValueError, match="labels must be 50 integers"):
        write_cifar10(tmp_path, (train_x, train_y[:-1]), test)


def test_normalize_values():
    x = torch.tensor([0, 255, 125], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    y = normalize(x)
    assert y.dtype == torch.float32 and y.shape == (2, 3, 2, 2)
    expected = [(0 - CIFAR10_MEAN[0]) / CIFAR10_STD[0], (1 - CIFAR10_MEAN[1]) / CIFAR10_STD[1]]
    assert y[0, 0, 0, 0].item() == pytest.approx(expected[0], abs=1e-6)
    assert y[1, 1, 1, 1].item() == pytest.approx(expected[1], abs=1e-6)
    assert y[0, 2, 0, 0].item() == pytest.approx((125 / 255 - CIFAR10_MEAN[2]) / CIFAR10_STD[2], abs=1e-6)


def test_denormalize_inverts_normalize():
    x = images(8)
    assert torch.equal(D.denormalize(normalize(x)), x)
    white = torch.full((1, 3, 2, 2), 10.0)  # far above any pixel: clipped
    assert D.denormalize(white).unique().tolist() == [255]


def test_augment_shapes_dtypes_and_off_is_normalize():
    x = images()
    for config in (AugmentConfig(), AugmentConfig(cutout=8), AugmentConfig(affine=True, crop_padding=0)):
        y = augment_batch(x, config, seeded())
        assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()
    off = AugmentConfig(crop_padding=0, flip=False, cutout=0, affine=False)
    assert torch.equal(augment_batch(x, off, seeded()), normalize(x))
    assert x.dtype == torch.uint8  # input left untouched
    with pytest.raises(ValueError, match="must be torch.uint8 pixels"):
        augment_batch(x.float(), AugmentConfig())
    with pytest.raises(ValueError, match=r"must be \(N, 3, H, W\)"):
        normalize(x[:, :1])


def test_flip_mirrors_exactly_the_selected_images():
    x = images(64)
    y = augment_batch(x, AugmentConfig(crop_padding=0, flip=True), seeded(5))
    plain, mirrored = normalize(x), normalize(x.flip(-1))
    same = (y == plain).flatten(1).all(1)
    flipped = (y == mirrored).flatten(1).all(1)
    assert torch.all(same ^ flipped)  # every image is exactly one of the two
    assert 16 <= int(flipped.sum()) <= 48


def test_crop_is_a_window_of_the_reflect_padded_image():
    x = images(12)
    pad = 4
    y = augment_batch(x, AugmentConfig(crop_padding=pad, flip=False), seeded(2))
    padded = F.pad(normalize(x), (pad,) * 4, mode="reflect")
    offsets = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(padded[i, :, dy : dy + 32, dx : dx + 32], y[i])
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 6  # the offsets vary from image to image


def test_cutout_zeroes_one_square_per_image():
    x = images(32)
    side = 8
    y = augment_batch(x, AugmentConfig(crop_padding=0, flip=False, cutout=side), seeded(1))
    cut = (y == 0).all(1)  # (N, H, W): normalised 0 is the mean colour; no uint8 pixel normalises to exactly 0
    assert not (normalize(x) == 0).any()
    tops = set()
    for i in range(len(x)):
        rows, cols = torch.nonzero(cut[i], as_tuple=True)
        assert len(rows) == side * side
        assert rows.max() - rows.min() == side - 1 and cols.max() - cols.min() == side - 1
        tops.add(int(rows.min()))
    assert torch.equal(y[~cut[:, None].expand_as(y)], normalize(x)[~cut[:, None].expand_as(y)])
    assert len(tops) > 5


def test_same_seed_same_batch():
    x = images(32)
    for config in (AugmentConfig(cutout=6), AugmentConfig(crop_padding=0, affine=True)):
        a, b = augment_batch(x, config, seeded(7)), augment_batch(x, config, seeded(7))
        assert torch.equal(a, b)
        assert not torch.equal(a, augment_batch(x, config, seeded(8)))


def test_affine_matches_torchvision_nearest_pixel():
    """Same parameters, same pixels as torchvision's affine with RandomAffine's defaults (nearest, fill 0)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    x = torch.rand(1, 3, 32, 32, generator=seeded(0))
    for angle, tx, ty, scale, shear in [(5.0, 2, -3, 1.07, 4.0), (-7.0, -3, 1, 0.9, -6.5), (3.0, 0, 0, 1.1, 7.0)]:
        params = dict(angle=angle, tx=tx, ty=ty, scale=scale, shear=shear)
        ours = D._affine_warp(x, {k: torch.tensor([float(v)]) for k, v in params.items()})
        nearest = InterpolationMode.NEAREST
        reference = TF.affine(x, angle, [tx, ty], scale, [shear, 0.0], interpolation=nearest, fill=0.0)
        same = (ours - reference).abs() < 1e-6
        assert same.float().mean() > 0.99, same.float().mean()  # a pixel may differ where a sample point is a tie
        assert set(ours.unique().tolist()) <= set(x.unique().tolist()) | {0.0}  # moved pixels, nothing blended


def test_affine_parameter_ranges():
    p = D._affine_params(4000, 32, 32, seeded(0))
    assert -7 <= p["angle"].min() < -6.9 and 6.9 < p["angle"].max() <= 7
    assert -7 <= p["shear"].min() < -6.9 and 6.9 < p["shear"].max() <= 7
    assert 0.9 <= p["scale"].min() < 0.901 and 1.099 < p["scale"].max() <= 1.1
    assert set(p["tx"].tolist()) == {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0} == set(p["ty"].tolist())


def test_affine_fills_black_outside():
    """A white batch stays white inside and turns black (normalised 0 pixel) where the image moved away."""
    x = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    y = augment_batch(x, AugmentConfig(crop_padding=0, flip=False, affine=True), seeded(3))
    white, black = normalize(x[:1, :, :1, :1]).view(3), normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).view(3)
    centre = y[:, :, 12:20, 12:20]
    assert torch.allclose(centre, white.view(1, 3, 1, 1).expand_as(centre), atol=1e-4)
    is_black = torch.isclose(y, black.view(1, 3, 1, 1), atol=1e-4).all(1)
    assert is_black.flatten(1).any(1).float().mean() > 0.5  # most images show some fill at an edge


def test_augment_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = images(64)
    for config in (AugmentConfig(cutout=8), AugmentConfig(crop_padding=0, affine=True)):
        cpu = augment_batch(x, config, seeded(4))
        gpu = augment_batch(x.cuda(), config, seeded(4))
        assert gpu.device.type == "cuda"
        assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


def test_augment_throughput_512():
    x = images(512)
    generator = seeded(0)
    config = AugmentConfig(crop_padding=4, flip=True, cutout=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core: a busy shared machine stalls multi-threaded kernels at their barriers
    try:
        times = []
        for _ in range(30):
            start = time.perf_counter()
            augment_batch(x, config, generator)
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    # about 2-3 ms on an idle core; the bound leaves room for a busy one
    assert min(times) < 0.025, f"512 images took {statistics.median(times) * 1000:.1f} ms (median)"


# --------------------------------------------------------------------------- the real data set


@pytest.mark.realdata
def test_real_cifar10(real_data_dir):
    assert real_data_dir == REAL_DATA
    status = find_cifar10(real_data_dir.parent)
    assert status.found and status.format == "bin" and status.path == real_data_dir
    start = time.perf_counter()
    data = load_cifar10(real_data_dir)
    elapsed = time.perf_counter() - start
    assert tuple(data.train_images.shape) == (50000, 3, 32, 32) and tuple(data.test_images.shape) == (10000, 3, 32, 32)
    assert data.classes == CIFAR10_CLASSES
    assert torch.bincount(data.train_labels, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(data.test_labels, minlength=10).tolist() == [1000] * 10
    mean = data.train_images.sum((0, 2, 3), dtype=torch.int64).double() / (50000 * 32 * 32 * 255)
    assert torch.allclose(mean, torch.tensor(CIFAR10_MEAN, dtype=torch.double), atol=0.002)
    assert elapsed < 3.0  # well under a second on an idle machine
