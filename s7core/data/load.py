"""The whole of CIFAR-10 in memory: four tensors (uint8 images, int64 labels), read once, checked as they are read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from s7core.data import download as _official
from s7core.data.archive import extract_archive
from s7core.data.errors import DataError, file_fix
from s7core.data.find import Location, locate, resolve_data_dir, setup_hint
from s7core.data.formats import TEST_BATCH, TRAIN_BATCHES, CifarFormat, folder_format


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


def _check_counts(folder: Path, fmt: CifarFormat, counts: list[int]) -> None:
    """The five training batches hold equal shares (within one record); a short one was cut off."""
    if max(counts) - min(counts) > 1:
        short = int(np.argmin(counts))
        path = folder / fmt.batch_file(TRAIN_BATCHES[short])
        raise DataError(
            f"{path} is truncated: it holds {counts[short]:,} records where the other training batches hold "
            f"{max(counts):,}; {file_fix(path)}",
            path,
        )


def read_folder(folder: Path, fmt: CifarFormat) -> CifarData:
    """Read and check every batch of a batches folder in format fmt."""
    fmt.check_files(folder)
    meta = folder / fmt.meta_file
    classes = fmt.read_classes(meta)
    if len(classes) < 2:
        raise DataError(f"{meta} names {len(classes)} classes; it should list one class a line (or delete it)", meta)
    train_images, train_labels, counts = fmt.read_split(folder, TRAIN_BATCHES, len(classes))
    _check_counts(folder, fmt, counts)
    test_images, test_labels, _ = fmt.read_split(folder, (TEST_BATCH,), len(classes))
    return CifarData(
        train_images=torch.from_numpy(train_images),
        train_labels=torch.from_numpy(train_labels),
        test_images=torch.from_numpy(test_images),
        test_labels=torch.from_numpy(test_labels),
        classes=classes,
        source=folder,
    )


def load_cifar10(
    data_dir: str | Path | None = None, download: bool = False, progress: _official.Progress | None = None
) -> CifarData:
    """Read all of CIFAR-10 into uint8 tensors (extracting an archive, or downloading, when needed)."""
    # No in-process cache: a load is quick, and a cache would hand every caller the same mutable
    # tensors and pin the whole set in memory; a page that reloads often caches with st.cache_resource.
    root = resolve_data_dir(data_dir)
    found = locate(root)
    if found is None:
        if not download:
            raise DataError(f"CIFAR-10 not found in {root}: {setup_hint(root)}", root)
        folder = _official.download_cifar10(root, _official.CIFAR10_URL, _official.CIFAR10_MD5, progress)
        found = Location(folder, _official.CIFAR10_FORMAT, False)
    path, fmt, is_archive = found
    if is_archive:
        path = extract_archive(path, path.parent)
        fmt = folder_format(path) or fmt
    return read_folder(path, fmt)
