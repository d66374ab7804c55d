"""Names that become paths: one validator for run names and any folder a user names inside a root.

A name typed in a page or given on the command line must stay inside its folder: no '..', no absolute path,
no NUL, no symlink that leads out, nothing too long for the file system. Download names are made safe instead of
refused, since they are only a suggestion to the browser.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from s7core.errors import UserError

MAX_NAME_CHARS = 80  # a run name; file systems allow 255 bytes, the run list has to show it
NAME_RULE = f"letters, digits, '.', '_' or '-', at most {MAX_NAME_CHARS}, starting with a letter or digit"
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_NAME_CHARS - 1}}}")
_UNSAFE_IN_DOWNLOAD = re.compile(r"[^A-Za-z0-9._-]+")


class PathError(UserError):
    """A name or path that would leave its folder, or that no file system can hold."""


def _shown(text: object) -> str:
    shown = repr(text)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def check_name(name: object, what: str = "run name") -> str:
    """`name` when it is a safe single folder name (see NAME_RULE); a PathError saying why otherwise."""
    if not isinstance(name, str):
        raise PathError(f"{what} must be text, got {type(name).__name__}")
    if "\0" in name:
        raise PathError(f"{what} {_shown(name)} holds a NUL character — use {NAME_RULE}")
    if len(name) > MAX_NAME_CHARS:
        raise PathError(f"{what} is {len(name):,} characters long — use {NAME_RULE}")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise PathError(f"{what} {_shown(name)} is a path, not a name — use {NAME_RULE}")
    if not _NAME.fullmatch(name):
        raise PathError(f"{what} {_shown(name)}: use {NAME_RULE}")
    return name


def resolve_inside(root: str | os.PathLike, name: str, what: str = "run") -> Path:
    """The folder `root/name`, with `name` checked and symlinks followed: a PathError if it would leave `root`."""
    check_name(name, f"{what} name")
    base = Path(root).resolve()
    target = (base / name).resolve()  # follows a symlink planted under the root
    if target.parent != base:
        raise PathError(f"{what} {name!r} under {root} is a link to {target}, outside that folder — remove the link")
    return base / name


def download_name(text: object, suffix: str) -> str:
    """A file name for a download, built from `text` (a spec or run name): only safe characters, never empty."""
    stem = _UNSAFE_IN_DOWNLOAD.sub("_", str(text)).strip("._-")[:MAX_NAME_CHARS] or "download"
    return f"{stem}{suffix}"
