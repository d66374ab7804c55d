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
MAX_PATH_CHARS = 4096  # a folder path typed in a box or given on the command line (Linux's PATH_MAX)
MAX_PART_BYTES = 255  # one folder name inside such a path, as file systems allow
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


def check_folder_path(text: object, what: str = "data folder", allow_parent: bool = False) -> Path:
    """The folder path `text` names (`~` expanded), or a PathError saying why no folder can have it.

    It holds no NUL, newline or other control character and is not too long for the file system; unless
    `allow_parent` (the command line's relative paths), it has no '..' part either, so a box on a page names the
    folder itself and not a way out of another one. Whether the folder exists is the caller's question.
    """
    if not isinstance(text, (str, os.PathLike)):
        raise PathError(f"the {what} must be a folder path, got {type(text).__name__}")
    path = os.fspath(text)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    if "\0" in path:
        raise PathError(f"the {what} {_shown(path)} holds a NUL character — type the folder's path alone")
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise PathError(
            f"the {what} {_shown(path)} holds a newline or control character — type the folder's path alone"
        )
    if len(path) > MAX_PATH_CHARS:
        raise PathError(f"the {what} is {len(path):,} characters long; a folder path has at most {MAX_PATH_CHARS:,}")
    longest = max(path.split("/"), key=lambda part: len(part.encode("utf-8", "surrogateescape")))
    if len(longest.encode("utf-8", "surrogateescape")) > MAX_PART_BYTES:
        raise PathError(
            f"the {what} has a folder name {_shown(longest)} of over {MAX_PART_BYTES} bytes, more than a file "
            "system allows — check what was pasted"
        )
    if not allow_parent and ".." in Path(path).parts:
        raise PathError(f"the {what} {_shown(path)} has a '..' part — give the folder's own full path, without '..'")
    return Path(path).expanduser()


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
