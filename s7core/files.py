"""Writing files so that a killed process never leaves a half-written one; where s7 keeps its caches."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, binary: bool = True) -> Iterator[IO[Any]]:
    """Open a temp file beside `path` for writing; on success fsync it and rename it over `path`.

    Readers see the old file or the new one, never a torn one; on an error the temp file is removed.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def cache_root() -> Path:
    """The folder of s7's caches (the data set, measured speeds): $XDG_CACHE_HOME/s7, else ~/.cache/s7."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "s7"


# errno values that mean the disk, not the program, is at fault
DISK_ERRORS = {
    errno.ENOSPC: "the disk is full",
    errno.EFBIG: "the disk is full (a file-size limit was reached)",
    errno.EDQUOT: "the disk is full (the disk quota is used up)",
    errno.EROFS: "the runs folder is read-only",
    errno.EACCES: "the runs folder cannot be written (permission denied)",
}
DISK_FIX = "the last good checkpoint is kept; make room (or make the folder writable) and resume the run"


def disk_error(err: BaseException) -> str | None:
    """What a failed write means for the user when the disk is at fault (full, read-only), else None.

    torch.save reports a failed write as a RuntimeError of its zip writer, the OSError behind it lost.
    """
    for cause in (err, err.__cause__, err.__context__):
        if isinstance(cause, OSError) and cause.errno in DISK_ERRORS:
            return f"{DISK_ERRORS[cause.errno]} ({cause.strerror}) — {DISK_FIX}"
    text = str(err).lower()
    if isinstance(err, RuntimeError) and ("file write failed" in text or "unexpected pos" in text):
        return f"the disk is full or failed while a checkpoint was written — {DISK_FIX}"
    return None
