"""Finding CIFAR-10 without reading it: which folder s7 looks in, and what it holds there.

The folder is the explicit argument, else $S7_DATA_DIR, else a cache folder. In it, or at
it, s7 takes a batches folder of either format, or either official archive.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from s7core.data.errors import DATA_ENV, DOWNLOAD_COMMAND, DataError
from s7core.data.formats import FORMATS, TRAIN_BATCHES, CifarFormat, archive_format, folder_format
from s7core.files import cache_root
from s7core.paths import check_folder_path


def default_data_dir() -> Path:
    """The cache folder used when neither an argument nor $S7_DATA_DIR names one."""
    return cache_root() / "cifar10"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data folder: the explicit argument, else $S7_DATA_DIR, else the default cache folder.

    A path no folder can have (a NUL or a newline in it, too long) is a PathError; '..' is allowed here, as a
    command line's relative path. Whether the folder exists is find_cifar10's question.
    """
    if data_dir is not None and str(data_dir) != "":
        return check_folder_path(data_dir, allow_parent=True)
    env = os.environ.get(DATA_ENV)
    if env:
        return check_folder_path(env, f"{DATA_ENV} folder", allow_parent=True)
    return default_data_dir()


def setup_hint(root: Path) -> str:
    """How to give s7 a data set where it found none."""
    folders = " or ".join(fmt.folder for fmt in FORMATS.values())
    return (
        f"put CIFAR-10 in {root} (the folder {folders}, or its .tar.gz), "
        f"or point to it with --data-dir PATH or the {DATA_ENV} environment variable, "
        f"or download it there ({DOWNLOAD_COMMAND} --data-dir {root})"
    )


@dataclass
class DataStatus:
    """Whether CIFAR-10 is where s7 will look, and what it says about it (where it is, or the fix)."""

    found: bool
    path: Path  # the batches folder when found (or the archive, before extraction); else the folder searched
    format: str | None  # a key of FORMATS ("bin" | "py"), or None
    message: str

    def to_dict(self) -> dict:
        """Plain JSON-ready form."""
        return {"found": self.found, "path": str(self.path), "format": self.format, "message": self.message}


class Location(NamedTuple):
    """Where a data set is: its batches folder, or an archive still to extract."""

    path: Path
    format: CifarFormat
    is_archive: bool


def locate(root: Path) -> Location | None:
    """The first data set found in or at root: a batches folder, else an archive; None when there is none."""
    if root.is_file() and root.name.endswith((".tar.gz", ".tgz")):
        return Location(root, archive_format(root), True)
    fmt = folder_format(root)
    if fmt:
        return Location(root, fmt, False)
    for fmt in FORMATS.values():
        if folder_format(root / fmt.folder) is fmt:
            return Location(root / fmt.folder, fmt, False)
    for fmt in FORMATS.values():
        if (root / fmt.archive).is_file():
            return Location(root / fmt.archive, fmt, True)
    return None


def find_cifar10(data_dir: str | Path | None = None) -> DataStatus:
    """Look for CIFAR-10 without reading it: where it is and in which format, or how to get it."""
    root = resolve_data_dir(data_dir)
    try:
        found = locate(root)
    except OSError as err:  # a folder s7 may not enter, or a name the file system refuses
        return DataStatus(False, root, None, f"cannot look in {root} ({err.strerror}) — give a folder s7 can read")
    if found is None and root != default_data_dir() and not root.exists():  # a folder someone named, mistyped?
        named = f"the {DATA_ENV} folder" if data_dir in (None, "") else "the folder"
        hint = f"check the path, or create it and download CIFAR-10 there ({DOWNLOAD_COMMAND} --data-dir {root})"
        return DataStatus(False, root, None, f"CIFAR-10 not found: {named} {root} does not exist — {hint}")
    if found is None:
        return DataStatus(False, root, None, f"CIFAR-10 not found in {root}: {setup_hint(root)}")
    path, fmt, is_archive = found
    if is_archive:
        return DataStatus(True, path, fmt.key, f"CIFAR-10 archive {path}; it is extracted beside it on first load")
    try:
        fmt.check_files(path)
    except DataError as err:
        return DataStatus(False, path, fmt.key, str(err))
    return DataStatus(True, path, fmt.key, f"CIFAR-10 ({fmt.name} version) in {path}")


def count_train_images(data_dir: str | Path | None = None) -> int | None:
    """The number of training images, read from the files' sizes without loading them; None when that
    takes more than a look (the Python format, an archive, or no data set)."""
    found = locate(resolve_data_dir(data_dir))
    if found is None or found.is_archive:
        return None
    return found.format.count_images(found.path, TRAIN_BATCHES)
