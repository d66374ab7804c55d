"""Downloading the official CIFAR-10 archive: a quick reachability check, progress, md5, an atomic move.

The archive is fetched to a partial file of this process's own, checked, renamed into place
and extracted safely; `python -m s7core data --download` runs it.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from s7core.data.archive import extract_archive
from s7core.data.errors import DATA_ENV, DataError
from s7core.data.formats import PY

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE_BYTES = 170_498_071  # size of the official python-version archive
CIFAR10_FORMAT = PY  # the format the official archive holds

Progress = Callable[[int, int], None]  # (bytes done, bytes total; total 0 when unknown)


def _remote_size(url: str, timeout: float) -> int:
    """Check that url answers (quickly), and return its size in bytes (0 when unknown)."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "s7"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
    except urllib.error.HTTPError as err:
        if err.code in (405, 501):  # the server does not answer HEAD; the download itself will tell
            return 0
        raise
    return int(length) if length and length.isdigit() else 0


def _reach(url: str, timeout: float, fix: str, archive: Path) -> int:
    """The size of url (0 when unknown), or DataError saying why it cannot be fetched."""
    if not url.lower().startswith(("http://", "https://")):
        raise DataError(f"cannot download {url}: only http(s) addresses are fetched; {fix}", archive)
    try:
        return _remote_size(url, timeout)
    except (urllib.error.URLError, OSError, ValueError) as err:
        why = getattr(err, "reason", err)
        if isinstance(err, urllib.error.HTTPError):
            why = f"HTTP {err.code} {err.reason}"
        raise DataError(f"cannot reach {url} ({why}); {fix}", archive) from err


def _make_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        hint = f"pass --data-dir or {DATA_ENV} to a folder you can write"
        raise DataError(f"cannot create {root} ({err}); {hint}", root) from err


def download_cifar10(
    root: Path,
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> Path:
    """Download the CIFAR-10 archive into root, check its md5, extract it; returns the batches folder."""
    from torchvision.datasets.utils import check_integrity

    root = Path(root).expanduser()
    filename = Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name or CIFAR10_FORMAT.archive
    archive = root / filename
    fix = f"download {url} yourself and put it in {root}, or pass --data-dir / {DATA_ENV} to a folder that has CIFAR-10"
    _make_root(root)
    if not check_integrity(str(archive), md5):
        total = _reach(url, timeout, fix, archive)
        _fetch(url, md5, root / f"{filename}.{os.getpid()}.part", total, progress, fix, archive)
    return extract_archive(archive, root)


def _fetch(
    url: str, md5: str | None, partial: Path, total: int, progress: Progress | None, fix: str, archive: Path
) -> None:
    """Download url to partial (one per process, so parallel downloads cannot mix), then rename it to archive."""
    from torchvision.datasets.utils import check_integrity, download_url

    partial.unlink(missing_ok=True)  # download_url would take a stale partial file for a finished one
    try:
        _run_with_progress(lambda: download_url(url, str(partial.parent), partial.name, md5), partial, total, progress)
    except Exception as err:
        bad_md5 = md5 is not None and partial.is_file() and not check_integrity(str(partial), md5)
        partial.unlink(missing_ok=True)
        why = f"the file does not match the md5 {md5}" if bad_md5 else str(err)
        raise DataError(f"downloading {url} failed: {why}; try again, or {fix}", archive) from err
    os.replace(partial, archive)


def _run_with_progress(fetch: Callable[[], None], partial: Path, total: int, progress: Progress | None) -> None:
    """Run fetch in a worker thread, reporting the growing size of `partial` from the caller's thread."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            fetch()
        except BaseException as err:  # re-raised on the caller's thread below
            errors.append(err)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.25)
        if progress is not None and partial.exists():
            progress(partial.stat().st_size, total)
    if errors:
        raise errors[0]
    if progress is not None:
        done = partial.stat().st_size
        progress(done, total or done)
