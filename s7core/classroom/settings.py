"""The class's settings, one file beside the runs: class mode on or off, the thresholds every student is judged by,
the per-student run limits (runs at once, CPUs and GPUs a run may ask for), whether submissions are open, the data
folder, and the teachers' e-mail addresses.

The file is ROOT/.class/settings.json (ROOT the runs root); a missing file means solo mode with the defaults.
The run names cannot start with a dot, so the folder never clashes with a run.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s7core.classroom.users import ClassError, normalise_name
from s7core.config import ConfigError, Setting, resource_settings
from s7core.files import atomic_write
from s7core.rules import RuleSettings
from s7core.runs.store import runs_root

CLASS_FOLDER = ".class"  # under the runs root; holds settings.json, roster.json and sign-in failures
SETTINGS_FILE = "settings.json"
PRIVATE_FILE_MODE = 0o600  # the roster and the class files: readable by the server's user only
PRIVATE_FOLDER_MODE = 0o700
_GROUP = "Class"
_ASKED = {s.name: s for s in resource_settings()}  # what a run may ask for: a cap is never above that limit

# The class's own settings with their limits, declared once: the command line's flags and the teacher's panel
# are made from these. The thresholds are RuleSettings' own fields.
CLASS_SETTINGS = (
    Setting(
        "max_active_per_student", int, 2, "runs per student", group=_GROUP, unit="runs", low=1, high=20,
        help="a student may have at most this many runs queued or training at the same time", step=1,
    ),
    Setting(
        "max_concurrent", int, 1, "runs at once", group=_GROUP, unit="runs", low=1, high=64, step=1,
        help="at most this many runs train together on this server; further launches wait in the queue",
    ),
    Setting(
        "submissions_open", bool, True, "submissions open", group=_GROUP,
        help="while closed, students can still watch and stop their runs, but cannot launch or resume any",
    ),
    Setting(
        "max_cpus_per_run", int, 2, "CPU cores per run", group=_GROUP, unit="cores", low=1,
        high=_ASKED["cpus"].high, step=1,
        help="a student's run may reserve at most this many CPU cores (automatic, 0, is always allowed: one core "
        "on a cluster); teachers are not limited",
    ),
    Setting(
        "max_gpus_per_run", float, 1.0, "GPUs per run", group=_GROUP, unit="GPUs", low=0,
        high=_ASKED["gpus"].high, step=0.25,
        help="a student's run may reserve at most this many GPUs on a cluster (0: students train on CPUs only; "
        "0.25: a quarter of one); teachers are not limited",
    ),
)  # fmt: skip
_DEFAULTS = {s.name: s.default for s in CLASS_SETTINGS}


def class_folder(runs_dir: str | os.PathLike | None = None) -> Path:
    """Where the class's files live: ROOT/.class under the runs root."""
    return runs_root(runs_dir) / CLASS_FOLDER


def private_folder(runs_dir: str | os.PathLike | None = None) -> Path:
    """The class folder, made if needed, open to the server's user only."""
    folder = class_folder(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, PRIVATE_FOLDER_MODE)
    return folder


def write_private_json(path: Path, data: Any) -> None:
    """Write JSON atomically into a file only the server's user can read."""
    with atomic_write(path, binary=False) as f:
        os.fchmod(f.fileno(), PRIVATE_FILE_MODE)  # before any byte is written, and kept by the rename
        json.dump(data, f, indent=2)


def read_json_file(path: Path, what: str, fix: str) -> dict[str, Any] | None:
    """A JSON object from `path`; None when there is no file; a ClassError naming it when it is damaged."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ClassError(f"{path}: the {what} is damaged ({err}) — {fix}") from None
    if not isinstance(data, dict):
        raise ClassError(f"{path}: the {what} is not a JSON object — {fix}")
    return data


@dataclass(frozen=True)
class ClassSettings:
    """What the teacher has set for the class; the defaults are solo mode and the assignment's own thresholds."""

    enabled: bool = False  # class mode: every page needs a signed-in user
    rules: RuleSettings = field(default_factory=RuleSettings)  # the thresholds every student's badges use
    max_active_per_student: int = _DEFAULTS["max_active_per_student"]
    max_concurrent: int = _DEFAULTS["max_concurrent"]
    submissions_open: bool = _DEFAULTS["submissions_open"]
    max_cpus_per_run: int = _DEFAULTS["max_cpus_per_run"]  # a student's request; teachers are not limited
    max_gpus_per_run: float = _DEFAULTS["max_gpus_per_run"]
    data_dir: str | None = None  # the CIFAR-10 folder runs train on; None: $S7_DATA_DIR or the default
    teachers: tuple[str, ...] = ()  # identity-provider e-mail addresses that sign in as teachers

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ClassError(f"enabled must be true or false, got {self.enabled!r}")
        for s in CLASS_SETTINGS:
            try:
                object.__setattr__(self, s.name, s.check(getattr(self, s.name)))  # 1 GPU is 1.0, as JSON reads back
            except ConfigError:
                raise ClassError(f"{s.label} must be {s.allowed()}, got {getattr(self, s.name)!r}") from None
        if self.data_dir is not None and not (isinstance(self.data_dir, str) and self.data_dir.strip()):
            raise ClassError(f"data_dir must be a folder path or null, got {self.data_dir!r}")
        object.__setattr__(self, "teachers", tuple(sorted({normalise_name(t) for t in self.teachers})))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {**dataclasses.asdict(self), "teachers": list(self.teachers)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassSettings:
        """Checked settings from what `to_dict` wrote; missing entries take their defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ClassError(f"unknown class setting {unknown[0]!r}: use one of {', '.join(sorted(known))}")
        values = dict(data)
        if "rules" in values:
            if not isinstance(values["rules"], dict):
                raise ClassError("rules must be an object of thresholds")
            values["rules"] = RuleSettings(**values["rules"])
        if not isinstance(values.get("teachers", []), list):
            raise ClassError("teachers must be a list of e-mail addresses")
        values["teachers"] = tuple(values.get("teachers", ()))
        return cls(**values)


def settings_path(runs_dir: str | os.PathLike | None = None) -> Path:
    """The class-settings file."""
    return class_folder(runs_dir) / SETTINGS_FILE


def load_settings(runs_dir: str | os.PathLike | None = None) -> ClassSettings:
    """The class's settings (the defaults, solo mode, when the file does not exist)."""
    path = settings_path(runs_dir)
    fix = "fix it, or delete it to go back to solo mode with the default settings"
    data = read_json_file(path, "class settings file", fix)
    if data is None:
        return ClassSettings()
    try:
        return ClassSettings.from_dict(data)
    except (TypeError, ClassError, ConfigError) as err:
        raise ClassError(f"{path}: {err} — {fix}") from None


def save_settings(settings: ClassSettings, runs_dir: str | os.PathLike | None = None) -> ClassSettings:
    """Write the class's settings (atomically, readable by the server's user only)."""
    private_folder(runs_dir)
    write_private_json(settings_path(runs_dir), settings.to_dict())
    return settings


def change_settings(runs_dir: str | os.PathLike | None = None, **changes: Any) -> ClassSettings:
    """Apply `changes` (checked) to the stored settings and write them; returns the new settings."""
    current = load_settings(runs_dir)
    known = {f.name for f in dataclasses.fields(ClassSettings)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ClassError(f"unknown class setting {unknown[0]!r}: use one of {', '.join(sorted(known))}")
    return save_settings(dataclasses.replace(current, **changes), runs_dir)
