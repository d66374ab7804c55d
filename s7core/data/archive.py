"""Extracting a CIFAR-10 .tar.gz safely: every member checked, staged beside the target, moved in whole.

An archive may come from anywhere, so a member that is a link, an absolute path or climbs out
with ".." is refused before anything is written; a damaged archive leaves no half folder.
"""

from __future__ import annotations

import errno
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from s7core.data.errors import DATA_ENV, DOWNLOAD_COMMAND, DataError
from s7core.data.formats import FORMATS, TRAIN_BATCHES, CifarFormat, folder_format

_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


def safe_members(archive: Path, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
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


def extract_archive(archive: Path, dest: Path) -> Path:
    """Safely extract a CIFAR-10 .tar.gz into dest; returns the batches folder it held."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = safe_members(archive, tar)
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
        if isinstance(err, OSError) and err.errno in _NO_ACCESS:
            raise DataError(
                f"cannot extract {archive} into {dest} ({err}): extract it yourself there, "
                f"or copy the archive to a folder you can write and pass that with --data-dir or {DATA_ENV}",
                archive,
            ) from err
        raise DataError(
            f"{archive} is not a readable .tar.gz ({err}); delete it and download it again", archive
        ) from err


def _check_extracted(archive: Path, folder: Path, fmt: CifarFormat) -> None:
    """A damaged archive can end early without an error from tarfile: check every batch came out whole."""
    try:
        fmt.check_files(folder)
    except DataError as err:
        name = err.path.name if err.path else "a batch"
        raise DataError(
            f"{archive} is incomplete or corrupt ({name} is missing or cut short); "
            f"delete it and download it again ({DOWNLOAD_COMMAND})",
            archive,
        ) from err


def _move_batches(archive: Path, staging: Path, dest: Path) -> Path:
    """Move the batches folder found under staging into dest (atomically), and return its new path."""
    for fmt in FORMATS.values():
        for candidate in (staging / fmt.folder, *staging.glob(f"*/{fmt.folder}")):
            if folder_format(candidate) is fmt:
                _check_extracted(archive, candidate, fmt)
                return _move_into(archive, candidate, dest / fmt.folder, fmt)
    folders = " or ".join(fmt.folder for fmt in FORMATS.values())
    raise DataError(f"{archive} holds no {folders} folder; delete it and download the official archive", archive)


def _move_into(archive: Path, folder: Path, target: Path, fmt: CifarFormat) -> Path:
    """Rename folder to target, unless another process extracted it there first; never overwrite."""
    if target.exists():
        if folder_format(target) is fmt:  # extracted meanwhile (another process)
            return target
        raise DataError(
            f"{target} exists but holds no {fmt.batch_file(TRAIN_BATCHES[0])}; "
            f"delete or rename it so that {archive.name} can be extracted there",
            target,
        )
    os.replace(folder, target)
    return target
