"""The two on-disk layouts of CIFAR-10, behind one interface: how each names, checks, reads and writes its files.

- `BIN`: `cifar-10-batches-bin/` (data_batch_1..5.bin, test_batch.bin, batches.meta.txt);
  records of 3,073 bytes: a label byte, then 1,024 red, green and blue bytes. One
  `numpy.fromfile` a file, straight into one preallocated array.
- `PY`: `cifar-10-batches-py/` as torchvision downloads it (pickled data_batch_1..5,
  test_batch, batches.meta), read with `unpickle_batch`, which builds nothing but plain
  containers and numpy uint8 arrays.

`FORMATS` holds both, keyed by the name `DataStatus.format` reports, in the order a folder is
searched for them.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from s7core.data.errors import DataError, file_fix
from s7core.data.unpickle import unpickle_batch

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

IMAGE_SHAPE = (3, 32, 32)
IMAGE_BYTES = 3 * 32 * 32  # three 32x32 planes
RECORD_BYTES = 1 + IMAGE_BYTES  # label byte + the image
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"

Split = tuple[np.ndarray, np.ndarray, list[int]]  # images (N, 3, 32, 32) uint8, labels (N,) int64, count a file


def check_labels(path: Path, labels: np.ndarray, n_classes: int) -> None:
    """DataError naming the first label outside 0..n_classes-1, if any."""
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)][0]
        raise DataError(
            f"{path} is corrupt: label {int(bad)} is outside 0-{n_classes - 1}; {file_fix(path)}",
            path,
        )


class CifarFormat(ABC):
    """One on-disk layout of CIFAR-10: its file names, cheap checks, readers and writers."""

    key: str  # "bin" | "py": the name DataStatus.format and write_cifar10 use
    name: str  # "binary" | "python": how messages say it, and a word in its archive's name
    folder: str  # the batches folder
    archive: str  # the official .tar.gz holding that folder
    meta_file: str  # the class names, inside the batches folder

    @abstractmethod
    def batch_file(self, name: str) -> str:
        """The file name of batch `name` ("data_batch_1", "test_batch")."""

    @abstractmethod
    def read_batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one batch file."""

    @abstractmethod
    def read_classes(self, path: Path) -> tuple[str, ...]:
        """The class names in the meta file at path; the CIFAR-10 names when it is absent."""

    @abstractmethod
    def encode_batch(self, images: np.ndarray, labels: np.ndarray, label: str) -> bytes:
        """The bytes of one batch file holding uint8 images (N, 3, 32, 32) and labels; label describes it."""

    @abstractmethod
    def encode_meta(self, classes: tuple[str, ...], per_batch: int) -> bytes:
        """The bytes of the meta file naming classes."""

    @abstractmethod
    def check_size(self, path: Path, size: int) -> None:
        """Raise DataError when a batch file of this size cannot be whole."""

    def count_images(self, folder: Path, names: tuple[str, ...]) -> int | None:
        """Images in the named batches, from file sizes alone; None where that takes a read."""
        return None

    def holds(self, folder: Path) -> bool:
        """Whether folder itself holds this format's batch files."""
        return (folder / self.batch_file(TRAIN_BATCHES[0])).is_file()

    def check_files(self, folder: Path) -> None:
        """Cheap checks (existence, sizes) that every batch file is there; raises DataError."""
        for name in (*TRAIN_BATCHES, TEST_BATCH):
            path = folder / self.batch_file(name)
            if not path.is_file():
                raise DataError(f"{path} is missing: the data set in {folder} is incomplete; {file_fix(path)}", path)
            self.check_size(path, path.stat().st_size)

    def read_split(self, folder: Path, names: tuple[str, ...], n_classes: int) -> Split:
        """Images, labels and per-file counts of the named batches, concatenated."""
        parts = []
        for name in names:
            path = folder / self.batch_file(name)
            images, labels = self.read_batch(path)
            check_labels(path, labels, n_classes)
            parts.append((images, labels))
        images, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return images, labels, [len(p[1]) for p in parts]


def truncated_message(path: Path, size: int) -> str:
    """The message for a binary batch that is not a whole number of records."""
    return (
        f"{path} is truncated: {size:,} bytes is not a whole number of {RECORD_BYTES:,}-byte records; {file_fix(path)}"
    )


class _BinaryFormat(CifarFormat):
    key, name = "bin", "binary"
    folder, archive, meta_file = "cifar-10-batches-bin", "cifar-10-binary.tar.gz", "batches.meta.txt"

    def batch_file(self, name: str) -> str:
        return f"{name}.bin"

    def check_size(self, path: Path, size: int) -> None:
        if size == 0 or size % RECORD_BYTES:
            raise DataError(truncated_message(path, size), path)

    def count_images(self, folder: Path, names: tuple[str, ...]) -> int | None:
        paths = [folder / self.batch_file(name) for name in names]
        return sum(path.stat().st_size for path in paths if path.is_file()) // RECORD_BYTES

    def read_records(self, path: Path) -> np.ndarray:
        """The (N, 3073) uint8 records of one batch file, in one read."""
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}; {file_fix(path)}", path) from err
        self.check_size(path, raw.size)
        return raw.reshape(-1, RECORD_BYTES)

    def read_batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        records = self.read_records(path)
        return np.ascontiguousarray(records[:, 1:]).reshape(-1, *IMAGE_SHAPE), records[:, 0].astype(np.int64)

    def read_split(self, folder: Path, names: tuple[str, ...], n_classes: int) -> Split:
        """As CifarFormat.read_split, but read straight into one preallocated array (no concatenation copy)."""
        paths = [folder / self.batch_file(name) for name in names]
        counts = [path.stat().st_size // RECORD_BYTES for path in paths]
        images = np.empty((sum(counts), *IMAGE_SHAPE), np.uint8)
        labels = np.empty(sum(counts), np.int64)
        start = 0
        for path, count in zip(paths, counts, strict=True):
            records = self.read_records(path)
            if len(records) != count:  # the file changed since it was measured
                raise DataError(truncated_message(path, records.size), path)
            labels[start : start + count] = records[:, 0]
            check_labels(path, labels[start : start + count], n_classes)
            images[start : start + count] = records[:, 1:].reshape(count, *IMAGE_SHAPE)
            start += count
        return images, labels, counts

    def read_classes(self, path: Path) -> tuple[str, ...]:
        if not path.is_file():
            return CIFAR10_CLASSES
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"cannot read the class names in {path}: {err}; copy it again or delete it", path) from err
        return tuple(line.strip() for line in text.splitlines() if line.strip())

    def encode_batch(self, images: np.ndarray, labels: np.ndarray, label: str) -> bytes:
        records = np.empty((len(images), RECORD_BYTES), np.uint8)
        records[:, 0] = labels
        records[:, 1:] = images.reshape(len(images), -1)
        return records.tobytes()

    def encode_meta(self, classes: tuple[str, ...], per_batch: int) -> bytes:
        return ("\n".join(classes) + "\n").encode()


class _PickleFormat(CifarFormat):
    key, name = "py", "python"
    folder, archive, meta_file = "cifar-10-batches-py", "cifar-10-python.tar.gz", "batches.meta"

    def batch_file(self, name: str) -> str:
        return name

    def check_size(self, path: Path, size: int) -> None:
        pass  # a pickle's size says nothing about whether it is whole; reading it does

    def read_batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        batch = unpickle_batch(path)
        data, labels = batch.get("data"), batch.get("labels")
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
            raise DataError(f"{path} has no uint8 'data' array of {IMAGE_BYTES:,} bytes a row; {file_fix(path)}", path)
        if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
            raise DataError(
                f"{path} is truncated or corrupt: {len(data):,} images but "
                f"{len(labels) if labels is not None else 'no'} labels; {file_fix(path)}",
                path,
            )
        try:
            labels = np.asarray(labels, dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as err:
            raise DataError(f"{path} has labels that are not integers; {file_fix(path)}", path) from err
        return np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE), labels

    def read_classes(self, path: Path) -> tuple[str, ...]:
        if not path.is_file():
            return CIFAR10_CLASSES
        names = unpickle_batch(path).get("label_names")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"{path} has no list of label_names; replace it or delete it", path)
        return tuple(names)

    def encode_batch(self, images: np.ndarray, labels: np.ndarray, label: str) -> bytes:
        batch = {
            "batch_label": label,
            "labels": [int(v) for v in labels],
            "data": images.reshape(len(images), -1),
            "filenames": [f"image_{i:05d}.png" for i in range(len(images))],
        }
        return pickle.dumps(batch, protocol=4)

    def encode_meta(self, classes: tuple[str, ...], per_batch: int) -> bytes:
        meta = {"label_names": list(classes), "num_cases_per_batch": per_batch, "num_vis": IMAGE_BYTES}
        return pickle.dumps(meta, 4)


BIN = _BinaryFormat()
PY = _PickleFormat()
FORMATS: dict[str, CifarFormat] = {fmt.key: fmt for fmt in (BIN, PY)}  # binary first: it loads fastest


def folder_format(folder: Path) -> CifarFormat | None:
    """The format of a folder that itself holds the batch files, if it does."""
    return next((fmt for fmt in FORMATS.values() if fmt.holds(folder)), None)


def archive_format(archive: Path) -> CifarFormat:
    """The format an archive's name suggests ("python" or "binary" in it), else the first in FORMATS."""
    return next((fmt for fmt in FORMATS.values() if fmt.name in archive.name), next(iter(FORMATS.values())))
