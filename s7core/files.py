"""Writing files so that a killed process never leaves a half-written one; where s7 keeps its caches."""

from __future__ import annotations

import contextlib
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
