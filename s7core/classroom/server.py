"""Starting the app for a class: `streamlit run app.py` with the class profile's settings as flags.

Streamlit reads .streamlit/config.toml from the folder it starts in, and takes any other option as a
`--section.option value` flag; the class profile (.streamlit/class/config.toml) is turned into those flags, so it
changes nothing for a laptop's `streamlit run app.py`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from s7core.classroom.users import ClassError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the toml package Streamlit itself depends on
    import toml as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]
PROFILE = REPO / ".streamlit" / "class" / "config.toml"
APP = REPO / "app.py"


def read_profile(path: Path = PROFILE) -> dict[str, dict[str, Any]]:
    """The profile's sections and options; a ClassError naming the file when it is missing or not TOML."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ClassError(f"{path}: no class profile here — restore it from the repository") from None
    except Exception as err:  # tomllib and toml raise different kinds for the same bad file
        raise ClassError(f"{path}: not valid TOML ({err}) — fix the line it names") from None
    if not all(isinstance(v, dict) for v in data.values()):
        raise ClassError(f"{path}: every option must sit under a [section] heading")
    return data


def _flag_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def serve_command(
    profile: Path = PROFILE, address: str | None = None, port: int | None = None, extra: list[str] | None = None
) -> list[str]:
    """The command that serves the app with the class profile (`address` and `port` override the profile's)."""
    options = read_profile(profile)
    server = options.setdefault("server", {})
    if address is not None:
        server["address"] = address
    if port is not None:
        server["port"] = port
    flags = [
        part
        for section, values in options.items()
        for name, value in values.items()
        for part in (f"--{section}.{name}", _flag_value(value))
    ]
    return [sys.executable, "-m", "streamlit", "run", str(APP), *flags, *(extra or [])]
