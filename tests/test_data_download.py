"""Downloading over http from a server on 127.0.0.1 that serves an archive built here; never the internet."""

from __future__ import annotations

import functools
import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest
from test_data_archive import make_archive
from test_data_testsets import assert_data_error, small_arrays

import s7core.data
from s7core.data import FORMATS, download_cifar10, load_cifar10, write_cifar10
from s7core.data import download as official


@pytest.fixture
def arrays():
    return small_arrays()


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
    archive = make_archive(served / FORMATS["py"].archive, source, FORMATS["py"].folder)
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
    make_archive(served / FORMATS["py"].archive, source, FORMATS["py"].folder)
    # load_cifar10 reads the address from the download module at call time
    monkeypatch.setattr(official, "CIFAR10_URL", f"{base}/{FORMATS['py'].archive}")
    monkeypatch.setattr(official, "CIFAR10_MD5", None)
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
    archive = make_archive(served / FORMATS["bin"].archive, source, FORMATS["bin"].folder)
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
    make_archive(served / FORMATS["py"].archive, source, FORMATS["py"].folder)
    # the command line reads the address the package exports
    monkeypatch.setattr(s7core.data, "CIFAR10_URL", f"{base}/{FORMATS['py'].archive}")
    monkeypatch.setattr(s7core.data, "CIFAR10_MD5", None)
    cache = tmp_path / "cache"
    assert cli(["data", "--data-dir", str(cache)]) == 1
    assert f"python -m s7core data --download --data-dir {cache}" in capsys.readouterr().out
    assert cli(["data", "--data-dir", str(cache), "--download"]) == 0
    assert f"CIFAR-10 (python version) in {cache / 'cifar-10-batches-py'}" in capsys.readouterr().out
    monkeypatch.setattr(s7core.data, "CIFAR10_URL", f"{base}/gone.tar.gz")
    assert cli(["data", "--data-dir", str(tmp_path / "other"), "--download"]) == 2
    assert "error: cannot reach" in capsys.readouterr().err


def test_download_bad_md5_refused(tmp_path, arrays, http_folder):
    served, base = http_folder
    source = write_cifar10(tmp_path / "src", *arrays, format="py")
    archive = make_archive(served / FORMATS["py"].archive, source, FORMATS["py"].folder)
    cache = tmp_path / "cache"
    url = f"{base}/{archive.name}"
    assert_data_error("does not match the md5 0{32}", download_cifar10, cache, url=url, md5="0" * 32)
    assert list(cache.iterdir()) == []


def test_download_unreachable_fails_fast(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    started: list[tuple] = []
    monkeypatch.setattr(tv_utils, "download_url", lambda *args, **kwargs: started.append(args))
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    err = assert_data_error("cannot reach", download_cifar10, tmp_path, url=f"http://127.0.0.1:{port}/c.tar.gz")
    assert started == [] and list(tmp_path.iterdir()) == []  # the quick check refused it before any download
    assert "put it in" in str(err) and "S7_DATA_DIR" in str(err)


def test_download_refuses_non_http(tmp_path, arrays):
    archive = make_archive(tmp_path / FORMATS["py"].archive, write_cifar10(tmp_path / "src", *arrays, "py"), "x")
    err = assert_data_error("only http", download_cifar10, tmp_path / "cache", url=archive.as_uri(), md5=None)
    assert f"put it in {tmp_path / 'cache'}" in str(err)


def test_download_missing_file_fails_fast(tmp_path, http_folder):
    _, base = http_folder
    assert_data_error("cannot reach .*HTTP 404", download_cifar10, tmp_path / "c", url=f"{base}/none.tar.gz", md5=None)
