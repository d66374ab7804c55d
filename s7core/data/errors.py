"""The data error, and the fixes its messages offer: another copy, the folder variable, the download command."""

from __future__ import annotations

from pathlib import Path

from s7core.errors import UserError

DATA_ENV = "S7_DATA_DIR"
DOWNLOAD_COMMAND = "python -m s7core data --download"


class DataError(UserError):
    """The data set is missing, truncated or corrupt; the message names the file and the fix."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.path = path


def file_fix(path: Path) -> str:
    """How to repair a data set with one bad or missing file."""
    return (
        f"replace it with a good copy, point --data-dir or {DATA_ENV} at another copy of CIFAR-10, "
        f"or delete {path.parent} and download it again ({DOWNLOAD_COMMAND})"
    )
