"""CIFAR-10 on disk and in memory: readers, download, synthetic sets, batched augmentation.

The whole data set is held as four tensors (uint8 images, int64 labels), read once; the
binary version loads with one `numpy.fromfile` a file. Augmentation works on a batch of
uint8 images on whatever device they live on, with tensor ops only (no per-image Python,
no PIL), and is reproducible under a seeded `torch.Generator`.

Formats read (as `find_cifar10` recognises them in a data folder):
- "bin": `cifar-10-batches-bin/` (data_batch_1..5.bin, test_batch.bin, batches.meta.txt);
  records of 3,073 bytes: a label byte, then 1,024 red, green and blue bytes.
- "py": `cifar-10-batches-py/` as torchvision downloads it (pickled data_batch_1..5,
  test_batch, batches.meta), read with an unpickler that builds nothing but plain
  containers and numpy uint8 arrays.
- either as a `.tar.gz` archive in the folder, extracted safely on first load.

Measured on the 2-core development machine (shared, busy): the full binary set loads in
about 0.1 s (median of 9 loads, page cache warm); a 512-image batch takes about 1 ms for
crop + flip, 2 ms with cutout, 20-25 ms with the random affine on the CPU.

Design choices: the crop pads by reflection, not zeros, so a shifted image has no black
border the net could learn to key on and keeps its colour statistics; cutout sets its
square to 0 after normalising, i.e. the mean colour, the least informative value.
`python -m s7core data [--data-dir DIR] [--download]` says where the data is, or fetches it.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from s7core.config import AugmentConfig, AugmentError
from s7core.errors import UserError
from s7core.files import atomic_write

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the training pixels, in [0, 1]
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per-channel standard deviation, in [0, 1]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE_BYTES = 170_498_071  # size of the official python-version archive

IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32  # label byte + three 32x32 planes
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
FOLDERS = {"bin": "cifar-10-batches-bin", "py": "cifar-10-batches-py"}
ARCHIVES = {"bin": "cifar-10-binary.tar.gz", "py": "cifar-10-python.tar.gz"}
DATA_ENV = "S7_DATA_DIR"
DOWNLOAD_COMMAND = "python -m s7core data --download"

Progress = Callable[[int, int], None]  # (bytes done, bytes total; total 0 when unknown)


class DataError(UserError):
    """The data set is missing, truncated or corrupt; the message names the file and the fix."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


# --------------------------------------------------------------------------- locating


def default_data_dir() -> Path:
    """The cache folder used when neither an argument nor $S7_DATA_DIR names one."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "s7" / "cifar10"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: the explicit argument, else $S7_DATA_DIR, else the default cache folder."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return default_data_dir()


def _file_fix(path: Path) -> str:
    """How to repair a data set with one bad or missing file."""
    return (
        f"replace it with a good copy, point --data-dir or {DATA_ENV} at another copy of CIFAR-10, "
        f"or delete {path.parent} and download it again ({DOWNLOAD_COMMAND})"
    )


def _fix_hint(root: Path) -> str:
    return (
        f"put CIFAR-10 in {root} (the folder cifar-10-batches-bin or cifar-10-batches-py, or its .tar.gz), "
        f"or point to it with --data-dir PATH or the {DATA_ENV} environment variable, "
        f"or download it there ({DOWNLOAD_COMMAND} --data-dir {root})"
    )


@dataclass
class DataStatus:
    """Whether CIFAR-10 is where s7 will look, and what it says about it (where it is, or the fix)."""

    found: bool
    path: Path  # the batches folder when found (or the archive, before extraction); else the folder searched
    format: str | None  # "bin" | "py" | None
    message: str

    def to_dict(self) -> dict:
        """Plain JSON-ready form."""
        return {"found": self.found, "path": str(self.path), "format": self.format, "message": self.message}


def _batch_file(fmt: str, name: str) -> str:
    return f"{name}.bin" if fmt == "bin" else name


def _meta_file(fmt: str) -> str:
    return "batches.meta.txt" if fmt == "bin" else "batches.meta"


def _folder_format(folder: Path) -> str | None:
    """The format of a folder that itself holds the batch files, if it does."""
    for fmt in ("bin", "py"):  # binary first: it loads fastest
        if (folder / _batch_file(fmt, TRAIN_BATCHES[0])).is_file():
            return fmt
    return None


def _locate(root: Path) -> tuple[Path, str, bool] | None:
    """(batches folder or archive, format, is_archive) for the first data set found in or at root."""
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz")):
        return root, "py" if "python" in root.name else "bin", True
    fmt = _folder_format(root)
    if fmt:
        return root, fmt, False
    for fmt, name in FOLDERS.items():
        if _folder_format(root / name) == fmt:
            return root / name, fmt, False
    for fmt, name in ARCHIVES.items():
        if (root / name).is_file():
            return root / name, fmt, True
    return None


def _check_files(folder: Path, fmt: str) -> None:
    """Cheap checks (existence, sizes) that every batch file is there; raises DataError."""
    for name in (*TRAIN_BATCHES, TEST_BATCH):
        path = folder / _batch_file(fmt, name)
        if not path.is_file():
            raise DataError(f"{path} is missing: the data set in {folder} is incomplete; {_file_fix(path)}", path)
        size = path.stat().st_size
        if fmt == "bin" and (size == 0 or size % RECORD_BYTES):
            raise DataError(_truncated_message(path, size), path)


def _truncated_message(path: Path, size: int) -> str:
    return (
        f"{path} is truncated: {size:,} bytes is not a whole number of {RECORD_BYTES:,}-byte records; {_file_fix(path)}"
    )


def find_cifar10(data_dir: str | Path | None = None) -> DataStatus:
    """Look for CIFAR-10 without reading it: where it is and in which format, or how to get it."""
    root = resolve_data_dir(data_dir)
    found = _locate(root)
    if found is None:
        return DataStatus(False, root, None, f"CIFAR-10 not found in {root}: {_fix_hint(root)}")
    path, fmt, is_archive = found
    if is_archive:
        return DataStatus(True, path, fmt, f"CIFAR-10 archive {path}; it is extracted beside it on first load")
    try:
        _check_files(path, fmt)
    except DataError as err:
        return DataStatus(False, path, fmt, str(err))
    return DataStatus(True, path, fmt, f"CIFAR-10 ({'binary' if fmt == 'bin' else 'python'} version) in {path}")


def count_train_images(data_dir: str | Path | None = None) -> int | None:
    """The number of training images, read from the binary files' sizes without loading them; None when that
    takes more than a look (the Python format, an archive, or no data set)."""
    found = _locate(resolve_data_dir(data_dir))
    if found is None or found[2] or found[1] != "bin":
        return None
    paths = [found[0] / _batch_file("bin", name) for name in TRAIN_BATCHES]
    return sum(path.stat().st_size for path in paths if path.is_file()) // RECORD_BYTES


# --------------------------------------------------------------------------- reading


@dataclass
class CifarData:
    """The whole data set in memory: uint8 images (N, 3, 32, 32) and int64 labels, train and test."""

    train_images: torch.Tensor  # (50000, 3, 32, 32) uint8
    train_labels: torch.Tensor  # (50000,) int64
    test_images: torch.Tensor  # (10000, 3, 32, 32) uint8
    test_labels: torch.Tensor  # (10000,) int64
    classes: tuple[str, ...]
    source: Path  # the batches folder read

    def summary(self) -> dict:
        """Plain JSON-ready description (sizes, classes, source)."""
        return {
            "train": int(self.train_labels.numel()),
            "test": int(self.test_labels.numel()),
            "classes": list(self.classes),
            "source": str(self.source),
        }


def _read_bin_records(path: Path) -> np.ndarray:
    """The (N, 3073) uint8 records of one binary batch file, in one read."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}; {_file_fix(path)}", path) from err
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(_truncated_message(path, raw.size), path)
    return raw.reshape(-1, RECORD_BYTES)


def _read_bin_classes(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return CIFAR10_CLASSES
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read the class names in {path}: {err}; copy it again or delete it", path) from err
    return names


# Only these globals may appear in a CIFAR-10 pickle: numpy's array rebuilders. Plain
# containers (dict, list, str, bytes, int) have their own opcodes and need no global.
_NUMPY_REBUILDERS = {
    ("numpy.core.multiarray", "_reconstruct"),  # pickles from numpy < 2 (the official files)
    ("numpy._core.multiarray", "_reconstruct"),  # pickles from numpy >= 2
    ("numpy._core.numeric", "_frombuffer"),  # protocol-5 pickles from numpy >= 2
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
}


def _plain_dtype(*args):
    """numpy.dtype, refusing object dtypes (an object array could hold anything)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refused dtype {dtype}")
    return dtype


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds dicts, lists, strings, bytes, ints and numpy arrays, and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "dtype"):
            return _plain_dtype
        if (module, name) in _NUMPY_REBUILDERS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}; {_file_fix(path)}", path) from err
    except Exception as err:  # any unpickling failure means a corrupt or foreign file
        raise DataError(
            f"{path} is not a CIFAR-10 python batch ({err}); {_file_fix(path)}",
            path,
        ) from err
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, not a CIFAR-10 batch dict; replace it", path)
    return obj


def _read_py(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 from one pickled python batch."""
    batch = _unpickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path} has no uint8 'data' array of 3,072 bytes a row; {_file_fix(path)}", path)
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise DataError(
            f"{path} is truncated or corrupt: {len(data):,} images but "
            f"{len(labels) if labels is not None else 'no'} labels; {_file_fix(path)}",
            path,
        )
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as err:
        raise DataError(f"{path} has labels that are not integers; {_file_fix(path)}", path) from err
    return np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE), labels


def _read_py_classes(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return CIFAR10_CLASSES
    names = _unpickle(path).get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{path} has no list of label_names; replace it or delete it", path)
    return tuple(names)


def _check_labels(path: Path, labels: np.ndarray, n_classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise DataError(
            f"{path} is corrupt: label {int(bad)} is outside 0-{n_classes - 1}; {_file_fix(path)}",
            path,
        )


def _check_counts(folder: Path, fmt: str, counts: list[int]) -> None:
    """The five training batches hold equal shares (within one record); a short one was cut off."""
    if max(counts) - min(counts) > 1:
        short = int(np.argmin(counts))
        path = folder / _batch_file(fmt, TRAIN_BATCHES[short])
        raise DataError(
            f"{path} is truncated: it holds {counts[short]:,} records where the other training batches hold "
            f"{max(counts):,}; {_file_fix(path)}",
            path,
        )


def _read_bin_split(folder: Path, names: tuple[str, ...], n_classes: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Images, labels and per-file counts of binary batches, read straight into one preallocated array."""
    paths = [folder / _batch_file("bin", name) for name in names]
    counts = [path.stat().st_size // RECORD_BYTES for path in paths]
    images = np.empty((sum(counts), *IMAGE_SHAPE), np.uint8)
    labels = np.empty(sum(counts), np.int64)
    start = 0
    for path, count in zip(paths, counts, strict=True):
        records = _read_bin_records(path)
        if len(records) != count:  # the file changed since it was measured
            raise DataError(_truncated_message(path, records.size), path)
        labels[start : start + count] = records[:, 0]
        _check_labels(path, labels[start : start + count], n_classes)
        images[start : start + count] = records[:, 1:].reshape(count, *IMAGE_SHAPE)
        start += count
    return images, labels, counts


def _read_py_split(folder: Path, names: tuple[str, ...], n_classes: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Images, labels and per-file counts of pickled batches, concatenated."""
    parts = []
    for name in names:
        path = folder / _batch_file("py", name)
        images, labels = _read_py(path)
        _check_labels(path, labels, n_classes)
        parts.append((images, labels))
    images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return images, labels, [len(p[1]) for p in parts]


def _read_folder(folder: Path, fmt: str) -> CifarData:
    _check_files(folder, fmt)
    meta = folder / _meta_file(fmt)
    classes = (_read_bin_classes if fmt == "bin" else _read_py_classes)(meta)
    if len(classes) < 2:
        raise DataError(f"{meta} names {len(classes)} classes; it should list one class a line (or delete it)", meta)
    read_split = _read_bin_split if fmt == "bin" else _read_py_split
    train_images, train_labels, counts = read_split(folder, TRAIN_BATCHES, len(classes))
    _check_counts(folder, fmt, counts)
    test_images, test_labels, _ = read_split(folder, (TEST_BATCH,), len(classes))
    return CifarData(
        train_images=torch.from_numpy(train_images),
        train_labels=torch.from_numpy(train_labels),
        test_images=torch.from_numpy(test_images),
        test_labels=torch.from_numpy(test_labels),
        classes=classes,
        source=folder,
    )


def load_cifar10(
    data_dir: str | Path | None = None, download: bool = False, progress: Progress | None = None
) -> CifarData:
    """Read all of CIFAR-10 into uint8 tensors (extracting an archive, or downloading, when needed)."""
    # No in-process cache: a load takes about 0.1 s, and a cache would hand every caller the same
    # mutable tensors and pin 180 MB; a page that reloads often caches with st.cache_resource.
    root = resolve_data_dir(data_dir)
    found = _locate(root)
    if found is None:
        if not download:
            raise DataError(f"CIFAR-10 not found in {root}: {_fix_hint(root)}", root)
        found = (download_cifar10(root, CIFAR10_URL, CIFAR10_MD5, progress), "py", False)
    path, fmt, is_archive = found
    if is_archive:
        path = _extract_archive(path, path.parent)
        fmt = _folder_format(path) or fmt
    return _read_folder(path, fmt)


# --------------------------------------------------------------------------- archives and download


def _safe_members(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member, if all are plain files or folders inside the target; else DataError."""
    members = tar.getmembers()
    for member in members:
        parts = Path(member.name).parts
        bad_name = member.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0])
        if bad_name or not (member.isfile() or member.isdir()):
            raise DataError(
                f"{archive} holds {member.name!r}, which is a link or points outside the folder; "
                "it is not a CIFAR-10 archive: delete it and download the official one",
                archive,
            )
    return members


def _extract_archive(archive: Path, dest: Path) -> Path:
    """Safely extract a CIFAR-10 .tar.gz into dest; returns the batches folder it held."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _safe_members(archive, tar)
            dest.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
            try:
                # members are checked above; the "data" filter (where this Python has it) checks again
                extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                tar.extractall(staging, members=members, **extra)
                return _move_batches(archive, staging, dest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise DataError(
                f"cannot extract {archive} into {dest} ({err}): extract it yourself there, "
                f"or copy the archive to a folder you can write and pass that with --data-dir or {DATA_ENV}",
                archive,
            ) from err
        raise DataError(
            f"{archive} is not a readable .tar.gz ({err}); delete it and download it again", archive
        ) from err


def _check_extracted(archive: Path, folder: Path, fmt: str) -> None:
    """A damaged archive can end early without an error from tarfile: check every batch came out whole."""
    try:
        _check_files(folder, fmt)
    except DataError as err:
        name = err.path.name if err.path else "a batch"
        raise DataError(
            f"{archive} is incomplete or corrupt ({name} is missing or cut short); "
            f"delete it and download it again ({DOWNLOAD_COMMAND})",
            archive,
        ) from err


def _move_batches(archive: Path, staging: Path, dest: Path) -> Path:
    """Move the batches folder found under staging into dest (atomically), and return its new path."""
    for fmt, name in FOLDERS.items():
        for candidate in (staging / name, *staging.glob(f"*/{name}")):
            if _folder_format(candidate) == fmt:
                _check_extracted(archive, candidate, fmt)
                target = dest / name
                if target.exists():
                    if _folder_format(target) == fmt:  # extracted meanwhile (another process)
                        return target
                    raise DataError(
                        f"{target} exists but holds no {_batch_file(fmt, TRAIN_BATCHES[0])}; "
                        f"delete or rename it so that {archive.name} can be extracted there",
                        target,
                    )
                os.replace(candidate, target)
                return target
    raise DataError(
        f"{archive} holds no cifar-10-batches-bin or cifar-10-batches-py folder; "
        "delete it and download the official archive",
        archive,
    )


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


def download_cifar10(
    root: Path,
    url: str = CIFAR10_URL,
    md5: str | None = CIFAR10_MD5,
    progress: Progress | None = None,
    timeout: float = 10.0,
) -> Path:
    """Download the CIFAR-10 archive into root, check its md5, extract it; returns the batches folder."""
    from torchvision.datasets.utils import check_integrity, download_url

    root = Path(root).expanduser()
    filename = Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name or ARCHIVES["py"]
    archive = root / filename
    fix = f"download {url} yourself and put it in {root}, or pass --data-dir / {DATA_ENV} to a folder that has CIFAR-10"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        hint = f"pass --data-dir or {DATA_ENV} to a folder you can write"
        raise DataError(f"cannot create {root} ({err}); {hint}", root) from err
    if not check_integrity(str(archive), md5):
        if not url.lower().startswith(("http://", "https://")):
            raise DataError(f"cannot download {url}: only http(s) addresses are fetched; {fix}", archive)
        try:
            total = _remote_size(url, timeout)
        except (urllib.error.URLError, OSError, ValueError) as err:
            why = getattr(err, "reason", err)
            if isinstance(err, urllib.error.HTTPError):
                why = f"HTTP {err.code} {err.reason}"
            raise DataError(f"cannot reach {url} ({why}); {fix}", archive) from err
        partial = root / f"{filename}.{os.getpid()}.part"  # one per process, so parallel downloads cannot mix
        partial.unlink(missing_ok=True)  # download_url would take a stale partial file for a finished one
        try:
            _run_with_progress(lambda: download_url(url, str(root), partial.name, md5), partial, total, progress)
        except Exception as err:
            bad_md5 = md5 is not None and partial.is_file() and not check_integrity(str(partial), md5)
            partial.unlink(missing_ok=True)
            why = f"the file does not match the md5 {md5}" if bad_md5 else str(err)
            raise DataError(f"downloading {url} failed: {why}; try again, or {fix}", archive) from err
        os.replace(partial, archive)
    return _extract_archive(archive, root)


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


# --------------------------------------------------------------------------- writing and synthetic sets


def _atomic_write(path: Path, payload: bytes) -> None:
    with atomic_write(path) as fh:
        fh.write(payload)


def _as_chw(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, 32, 32, 3) or (N, 3, 32, 32), got {images.dtype} {images.shape}")
    if images.shape[1:] == (32, 32, 3):
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be (N, 32, 32, 3) or (N, 3, 32, 32), got {images.shape}")
    return np.ascontiguousarray(images)


def _as_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or labels.dtype.kind not in "iu" or (n and (labels.min() < 0 or labels.max() > 255)):
        raise ValueError(f"labels must be {n} integers from 0 to 255, got {labels.dtype} {labels.shape}")
    return labels


def _batch_bytes(fmt: str, images: np.ndarray, labels: np.ndarray, label: str) -> bytes:
    if fmt == "bin":
        records = np.empty((len(images), RECORD_BYTES), np.uint8)
        records[:, 0] = labels
        records[:, 1:] = images.reshape(len(images), -1)
        return records.tobytes()
    batch = {
        "batch_label": label,
        "labels": [int(v) for v in labels],
        "data": images.reshape(len(images), -1),
        "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=4)


def write_cifar10(
    folder: Path,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    format: str = "bin",
    classes: tuple[str, ...] = CIFAR10_CLASSES,
) -> Path:
    """Write a data set in the official on-disk layout ("bin" or "py") inside folder; returns the batches folder."""
    if format not in FOLDERS:
        raise ValueError(f"format must be 'bin' or 'py', got {format!r}")
    out = Path(folder) / FOLDERS[format]
    out.mkdir(parents=True, exist_ok=True)
    train_images, test_images = _as_chw(train[0]), _as_chw(test[0])
    train_labels, test_labels = _as_labels(train[1], len(train_images)), _as_labels(test[1], len(test_images))
    chunks = np.array_split(np.arange(len(train_images)), len(TRAIN_BATCHES))
    for i, (name, idx) in enumerate(zip(TRAIN_BATCHES, chunks, strict=True)):
        payload = _batch_bytes(format, train_images[idx], train_labels[idx], f"training batch {i + 1} of 5")
        _atomic_write(out / _batch_file(format, name), payload)
    _atomic_write(out / _batch_file(format, TEST_BATCH), _batch_bytes(format, test_images, test_labels, "testing"))
    if format == "bin":
        meta = ("\n".join(classes) + "\n").encode()
    else:
        meta = pickle.dumps({"label_names": list(classes), "num_cases_per_batch": len(chunks[0]), "num_vis": 3072}, 4)
    _atomic_write(out / _meta_file(format), meta)
    return out


# One colour a class, far apart in RGB, and one stripe pattern a class: learnable in seconds.
_SYNTH_COLOURS = np.array(
    [
        (230, 40, 40),
        (40, 200, 40),
        (40, 60, 230),
        (230, 220, 40),
        (220, 40, 220),
        (40, 220, 220),
        (250, 250, 250),
        (30, 30, 30),
        (240, 140, 30),
        (120, 60, 180),
    ],
    dtype=np.float32,
)


def _synthetic(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.arange(n) % 10).astype(np.int64)
    ys, xs = np.mgrid[0:32, 0:32].astype(np.float32)
    period = 4.0 + (labels % 5)[:, None, None]  # class k: period 4..8 ...
    phase = rng.uniform(0, 8, size=(n, 1, 1)).astype(np.float32)
    coord = np.where((labels < 5)[:, None, None], ys, xs)  # ... horizontal stripes for 0-4, vertical for 5-9
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * (coord + phase) / period)  # (N, 32, 32) in [0, 1]
    colour = _SYNTH_COLOURS[labels][:, :, None, None]  # (N, 3, 1, 1)
    images = colour * (0.55 + 0.45 * stripes[:, None]) + rng.normal(0, 18, size=(n, 3, 32, 32))
    return np.clip(images, 0, 255).astype(np.uint8), labels


def synthetic_cifar10(
    n_train: int, n_test: int, seed: int = 0
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Small learnable stand-in for CIFAR-10: ((train images, labels), (test images, labels)), uint8 (N, 3, 32, 32).

    Each class is a distinct colour with its own stripe direction and period, plus noise,
    so a small net reaches high accuracy within seconds of training.
    """
    rng = np.random.default_rng(seed)
    return _synthetic(n_train, rng), _synthetic(n_test, rng)


def make_tiny_cifar10(folder: Path, n_train: int = 500, n_test: int = 200, format: str = "bin", seed: int = 0) -> Path:
    """Write a synthetic data set on disk in the official layout; returns the folder to pass as data_dir."""
    train, test = synthetic_cifar10(n_train, n_test, seed)
    return write_cifar10(Path(folder), train, test, format)


# --------------------------------------------------------------------------- augmentation


def _channel_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return mean, std


def _check_images(images: torch.Tensor, dtype: torch.dtype | None = torch.uint8) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if dtype is not None and images.dtype != dtype:
        raise ValueError(f"images must be {dtype} pixels, got {images.dtype}")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float32 (x/255 - mean)/std, on the images' device."""
    _check_images(images)
    mean, std = _channel_constants(images.device)
    return images.float().mul_(1.0 / 255.0).sub_(mean).div_(std)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Normalised float images (N, 3, H, W) -> uint8 pixels, rounded and clipped (the inverse of normalize)."""
    _check_images(x, dtype=None)
    mean, std = _channel_constants(x.device)
    return (x.float() * std + mean).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _normalize_unit(x: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] -> normalised, in place."""
    mean, std = _channel_constants(x.device)
    return x.sub_(mean).div_(std)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _randint(n: int, high: int, generator: torch.Generator | None) -> torch.Tensor:
    """n integers in [0, high]."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high + 1, (n,), generator=generator, device=device)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect out-of-range indices back inside [0, size) (edge pixel not repeated, like F.pad 'reflect')."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _crop_flip(images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop of the reflect-padded image and random horizontal flip, as one gather (any dtype)."""
    n, c, h, w = images.shape
    device = images.device
    rows = torch.arange(h, device=device).expand(n, h)
    cols = torch.arange(w, device=device).expand(n, w)
    if pad:
        rows = _reflect(rows + _randint(n, 2 * pad, generator).to(device)[:, None] - pad, h)
        cols = _reflect(cols + _randint(n, 2 * pad, generator).to(device)[:, None] - pad, w)
    if flip:
        flipped = (_uniform(n, 0, 1, generator) < 0.5).to(device)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)


def _affine_params(n: int, h: int, w: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Per-image parameters drawn as RandomAffine(degrees=7, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=7) does."""
    return {
        "angle": _uniform(n, -7.0, 7.0, generator),  # degrees
        "tx": torch.round(_uniform(n, -0.1 * w, 0.1 * w, generator)),  # whole pixels, as RandomAffine
        "ty": torch.round(_uniform(n, -0.1 * h, 0.1 * h, generator)),
        "scale": _uniform(n, 0.9, 1.1, generator),
        "shear": _uniform(n, -7.0, 7.0, generator),  # degrees, along x only (a single shear number)
    }


def _affine_theta(p: dict[str, torch.Tensor], h: int, w: int) -> torch.Tensor:
    """(N, 2, 3) matrices for F.affine_grid: output -> input, the inverse of torchvision's affine map."""
    angle, shear = torch.deg2rad(p["angle"]), torch.deg2rad(p["shear"])
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # forward map in pixels about the centre, as torchvision's: p' = scale * R(angle) @ [[1, -tan], [0, 1]] @ p + t
    a, b, c, d = cos, -cos * tan - sin, sin, -sin * tan + cos  # rotation @ shear, determinant 1
    # inverse of scale * [[a, b], [c, d]] in closed form (no batched linalg call on the device)
    inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / p["scale"][:, None, None]
    shift = -(inv @ torch.stack([p["tx"], p["ty"]], -1)[:, :, None])[..., 0]  # (N, 2)
    # pixels -> affine_grid's [-1, 1] units: divide by half the side on each axis
    half = torch.tensor([w / 2.0, h / 2.0], device=inv.device)
    inv = inv * half[None, None, :] / half[None, :, None]
    return torch.cat([inv, (shift / half)[:, :, None]], dim=2)


def _affine_warp(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each float image through its own affine map, nearest pixel and black outside the image: what
    RandomAffine does with its defaults (interpolation NEAREST, fill 0), so no image is blurred."""
    n, c, h, w = x.shape
    theta = _affine_theta(params, h, w).to(x.device, torch.float32)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _random_affine(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per-image random affine of float images, with RandomAffine's ranges and defaults."""
    n, _, h, w = x.shape
    return _affine_warp(x, _affine_params(n, h, w, generator))


def _cutout_mask(n: int, h: int, w: int, side: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """(N, 1, H, W) bool: one side x side square a image, wholly inside it."""
    side = min(side, h, w)
    top = _randint(n, h - side, generator).to(device)[:, None]
    left = _randint(n, w - side, generator).to(device)[:, None]
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    in_rows = (rows >= top) & (rows < top + side)
    in_cols = (cols >= left) & (cols < left + side)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def augment_batch(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 batch (N, 3, H, W) on any device -> augmented, normalised float32 batch on that device.

    Order: crop and flip (one gather on the uint8 pixels), the random affine (on [0, 1]
    floats, black outside the image, as RandomAffine fills), normalisation, cutout (the
    square set to 0, i.e. the mean colour). Flipping before the affine instead of after is
    the same distribution, since every affine range is symmetric about zero.
    """
    _check_images(images)
    n, _, h, w = images.shape
    x = images
    if config.crop_padding or config.flip:
        pad = min(int(config.crop_padding), h - 1, w - 1)  # reflection needs pad < side
        x = _crop_flip(x, pad, config.flip, generator)
    if config.affine:
        x = _normalize_unit(_random_affine(x.float().mul_(1.0 / 255.0), generator))
    else:
        x = normalize(x)
    if config.cutout > 0:
        x = x.masked_fill_(_cutout_mask(n, h, w, int(config.cutout), generator, x.device), 0.0)
    return x


__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "AugmentConfig",
    "AugmentError",
    "CifarData",
    "DataError",
    "DataStatus",
    "augment_batch",
    "denormalize",
    "download_cifar10",
    "find_cifar10",
    "load_cifar10",
    "make_tiny_cifar10",
    "normalize",
    "resolve_data_dir",
    "synthetic_cifar10",
    "write_cifar10",
]
