"""The run folder: its config, status, metrics, checkpoints and predictions. Reading never writes.

A run is a folder under the runs root (`./runs`, or $S7_RUNS_DIR):

    config.json            spec, training config, data folder, versions, creation time, owner (written once)
    status.json            a RunStatus (status.py): state, progress, accuracies, message, executor (atomic)
    metrics.jsonl          one JSON line per epoch, and a step line every few seconds (append + fsync)
    checkpoint_latest.pt   written at every epoch end and on stop (atomic); resuming continues from it
    checkpoint_best.pt     the checkpoint of the best epoch (validation accuracy, else test accuracy)
    predictions.npz        the test-set evaluation of the best checkpoint, once the run has finished
    train.log              what the training process printed

The process training a run and the executor that launched it write status.json. `run_info` and `list_runs`
only read it: a "running" status whose process has gone stays as it is until the executor's `state()` or
`refresh()` corrects it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

import s7core
from s7core.config import TrainConfig
from s7core.data import count_train_images, resolve_data_dir
from s7core.errors import UserError
from s7core.evaluate import Evaluation
from s7core.files import atomic_write, disk_error
from s7core.paths import MAX_NAME_CHARS, PathError, download_name, resolve_inside
from s7core.runs.status import RunError, RunInfo, RunState, RunStatus, now
from s7core.spec import NetworkSpec, spec_from_dict

RUNS_ENV = "S7_RUNS_DIR"
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
PREDICTIONS_FILE = "predictions.npz"
LATEST_CHECKPOINT = "checkpoint_latest.pt"
BEST_CHECKPOINT = "checkpoint_best.pt"
CONFIG_FIX = "the run cannot be used; start a new run (the checkpoints are kept)"
STATUS_FIX = "delete it (the run then reads as not started) and resume the run to continue from its last checkpoint"


# ---------------------------------------------------------------- one run's folder


def _read_json(path: Path, what: str, fix: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: no {what} here — {fix}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path}: the {what} is damaged ({err}) — {fix}") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: the {what} is not a JSON object — {fix}")
    return data


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync it, then rename it over `path`."""
    with atomic_write(path, binary=False) as f:
        json.dump(data, f, indent=2)


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: every read and write of its files goes through here."""

    path: Path

    @property
    def name(self) -> str:
        """The run's name: its folder's name."""
        return self.path.name

    def config(self) -> dict[str, Any]:
        """config.json as it is on disk."""
        return _read_json(self.path / CONFIG_FILE, "run config", CONFIG_FIX)

    def read_config(self) -> tuple[NetworkSpec, TrainConfig, dict[str, Any]]:
        """The run's spec, training config and the whole config.json; a damaged file is a RunError."""
        data = self.config()
        where = self.path / CONFIG_FILE
        try:
            return spec_from_dict(data["spec"]), TrainConfig.from_dict(data["train"]), data
        except KeyError as err:
            raise RunError(f"{where}: the run config has no {err} entry — {CONFIG_FIX}") from None
        except UserError as err:
            raise RunError(f"{where}: {err} — fix that entry, or {CONFIG_FIX}") from None

    def set_epochs(self, epochs: int) -> None:
        """Raise (or lower) the number of epochs the run plans; a time budget, if it had one, no longer counts."""
        data = self.config()
        data["train"]["epochs"] = epochs
        if data["train"].get("time_budget"):
            data["train"]["time_budget"] = 0.0
        write_json_atomic(self.path / CONFIG_FILE, data)

    def record_measured(self, kind: str, measured: dict[str, Any]) -> None:
        """Keep in config.json, under "measured", what the trainer measured and chose before training: its
        precision ("precision") and the epochs a time budget bought ("plan"); the training settings stay as given."""
        data = self.config()
        data.setdefault("measured", {})[kind] = measured
        write_json_atomic(self.path / CONFIG_FILE, data)

    def data_dir(self) -> Path:
        """The data folder the run trains on."""
        return Path(self.read_config()[2]["data_dir"])

    def read_status(self) -> RunStatus:
        """status.json as a RunStatus ('stopped' when there is none); a damaged file is a RunError naming it."""
        path = self.path / STATUS_FILE
        if not path.exists():
            return RunStatus(RunState.STOPPED, message="no status.json; not started")
        data = _read_json(path, "run status", STATUS_FIX)
        try:
            return RunStatus.from_dict(data)
        except (RunError, TypeError) as err:
            raise RunError(f"{path}: the run status is damaged ({err}) — {STATUS_FIX}") from None

    def write_status(self, status: RunStatus) -> RunStatus:
        """Replace status.json atomically with `status` (its `updated` set to now); returns what was written."""
        status = status.changed()
        write_json_atomic(self.path / STATUS_FILE, status.to_dict())
        return status

    def update_status(self, **changes: Any) -> RunStatus:
        """Read the status, apply `changes` and write it back; returns the new status."""
        return self.write_status(dataclasses.replace(self.read_status(), **changes))

    def info(self) -> RunInfo:
        """What the run list shows about this run; a damaged file reads as a failed run saying why."""
        try:
            status = self.read_status()
        except RunError as err:
            status = RunStatus(RunState.FAILED, message=str(err))
        try:
            config = self.config()
        except RunError as err:
            config, status = {}, dataclasses.replace(status, state=RunState.FAILED, message=str(err))
        values = {f.name: getattr(status, f.name) for f in dataclasses.fields(RunStatus)}
        values["epochs"] = status.epochs or (config.get("train") or {}).get("epochs") or 0
        spec = config.get("spec") or {}
        return RunInfo(
            **values,
            name=self.name,
            path=str(self.path),
            created=config.get("created", ""),
            preset=spec.get("name", "?"),
            recipe=config.get("recipe"),
            owner=config.get("owner"),
        )

    def read_metrics(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The lines of metrics.jsonl as dicts (optionally only kind 'epoch' or 'step'); a torn line is skipped."""
        try:
            text = (self.path / METRICS_FILE).read_text()
        except FileNotFoundError:
            return []
        rows = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill: the writer never finished it
            if isinstance(row, dict) and (kind is None or row.get("kind") == kind):
                rows.append(row)
        return rows

    def open_metrics(self, resume_from: dict[str, Any] | None) -> MetricsWriter:
        """A writer appending to metrics.jsonl, after dropping the lines (and any torn one) beyond `resume_from`."""
        path = self.path / METRICS_FILE
        if path.exists():
            epoch, step = (resume_from["epoch"], resume_from["global_step"]) if resume_from else (0, 0)
            keep = [
                r
                for r in self.read_metrics()
                if (r.get("kind") == "epoch" and r.get("epoch", 0) <= epoch)
                or (r.get("kind") == "step" and r.get("global_step", 0) <= step)
            ]
            with atomic_write(path, binary=False) as f:
                f.writelines(json.dumps(r) + "\n" for r in keep)
        return MetricsWriter(path)

    def checkpoint_path(self, which: str = "best") -> Path | None:
        """The best checkpoint (falling back to the latest) or the latest; None before the first epoch ends."""
        if which not in ("best", "latest"):
            raise RunError(f"which must be 'best' or 'latest', got {which!r}")
        names = (BEST_CHECKPOINT, LATEST_CHECKPOINT) if which == "best" else (LATEST_CHECKPOINT,)
        return next((self.path / n for n in names if (self.path / n).is_file()), None)

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The checkpoint a resumed run continues from; None when there is none yet."""
        path = self.path / LATEST_CHECKPOINT
        return load_checkpoint(path) if path.exists() else None

    def save_checkpoint(self, state: dict[str, Any], best: bool) -> None:
        """Write `state` as the latest checkpoint, and as the best one too when `best`."""
        save_checkpoint(state, self.path / LATEST_CHECKPOINT)
        if best:
            save_checkpoint(state, self.path / BEST_CHECKPOINT)

    def save_predictions(self, evaluation: Evaluation) -> None:
        """Keep the finished run's test-set evaluation."""
        evaluation.save(self.path / PREDICTIONS_FILE)

    def load_predictions(self) -> Evaluation:
        """The run's saved test-set evaluation (written when it finished)."""
        return Evaluation.load(self.path / PREDICTIONS_FILE)


class MetricsWriter:
    """Appends one JSON line at a time, flushed and fsynced, so a kill loses at most the line being written."""

    def __init__(self, path: Path):
        self.file = open(path, "a")  # noqa: SIM115 - kept open for the whole run

    def write(self, row: dict[str, Any]) -> None:
        """Append one line and make it durable."""
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename it over `path`."""
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint dict (weights_only=True); a missing or damaged file is a RunError naming it."""
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint here — the run has not finished an epoch yet")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many kinds for a truncated or foreign file
        raise RunError(
            f"{path}: the checkpoint is damaged or not a checkpoint ({type(err).__name__}) — delete it "
            "(and resume to restart the run from scratch), or start a new run"
        ) from None
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise RunError(f"{path}: not an s7 checkpoint — delete it, or start a new run")
    return state


# ---------------------------------------------------------------- the runs root


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs root: the argument, else $S7_RUNS_DIR, else ./runs."""
    return Path(runs_dir or os.environ.get(RUNS_ENV) or "runs")


def run_folders(root: Path) -> list[Path]:
    """The run folders directly under `root` (those holding a config.json)."""
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILE).exists()]


def find_run(name: str, runs_dir: str | os.PathLike | None = None) -> Path:
    """A run given as its folder, or as its name under the runs root; an unknown one is a RunError."""
    if (Path(name) / CONFIG_FILE).exists():
        return Path(name)
    try:
        path = resolve_inside(runs_root(runs_dir), name)  # a bare name never leads out of the runs root
    except PathError:
        path = None
    if path is not None and (path / CONFIG_FILE).exists():
        return path
    raise RunError(f"no run {name!r}: give a run folder, or a name listed by `python -m s7core runs`")


def _default_name(spec: NetworkSpec, recipe: str | None, root: Path) -> str:
    stamp = f"-{recipe or 'custom'}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    base = download_name(spec.name, "")[: MAX_NAME_CHARS - len(stamp) - 4] + re.sub(r"[^A-Za-z0-9._-]", "_", stamp)
    name, i = base, 2
    while (root / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


def _new_folder(root: Path, name: str | None, spec: NetworkSpec, recipe: str | None) -> RunFolder:
    """Make the run's folder: `name` checked and refused if taken; a default name retried until one is free."""
    if name is not None:
        try:
            path = resolve_inside(root, name)
        except PathError as err:
            raise RunError(str(err)) from None
        try:
            path.mkdir()
        except FileExistsError:
            # the name only: in class mode the one asking may be a student, who never sees a server path
            raise RunError(f"a run named {path.name} exists already — choose another name, or resume it") from None
        except OSError as err:
            raise RunError(f"cannot create the run folder {path}: {disk_error(err) or err}") from None
        return RunFolder(path)
    while True:  # two launches in the same second pick the same default name: mkdir decides who gets it
        path = root / _default_name(spec, recipe, root)
        try:
            path.mkdir()
            return RunFolder(path)
        except FileExistsError:
            continue
        except OSError as err:
            raise RunError(f"cannot create the run folder {path}: {disk_error(err) or err}") from None


def _check_val_split(config: TrainConfig, data_dir: str | os.PathLike | None) -> None:
    n_train = count_train_images(data_dir)
    if n_train is not None and config.val_split >= n_train:
        raise RunError(  # no folder named: in class mode a student may read it, and never sees a server path
            f"val_split {config.val_split} would hold out every training image: the data set has {n_train:,} — "
            "lower val_split (0 trains on all of them)"
        )


def create_run(
    spec: NetworkSpec,
    config: TrainConfig,
    runs_dir: str | os.PathLike | None = None,
    name: str | None = None,
    data_dir: str | os.PathLike | None = None,
    recipe: str | None = None,
    owner: str | None = None,
) -> Path:
    """Make a new run folder with its config.json and a 'stopped' (not started) status; returns its path.

    `owner` names the user the run belongs to (s7core.classroom checks it); None: no one's, a teacher's to manage.
    """
    _check_val_split(config, data_dir)
    root = runs_root(runs_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"cannot create the runs folder {root}: {disk_error(err) or err}") from None
    folder = _new_folder(root, name, spec, recipe)
    config_data = {
        "name": folder.name,
        "spec": spec.to_dict(),
        "train": config.to_dict(),
        "recipe": recipe,
        "data_dir": str(resolve_data_dir(data_dir).resolve()),
        "created": now(),
        "owner": owner,
        "versions": {"s7core": s7core.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    write_json_atomic(folder.path / CONFIG_FILE, config_data)
    folder.write_status(RunStatus(RunState.STOPPED, epochs=config.epochs, message="created; not started yet"))
    return folder.path


# ---------------------------------------------------------------- reading, for callers that hold a path


def read_run_config(run_dir: str | os.PathLike) -> tuple[NetworkSpec, TrainConfig, dict[str, Any]]:
    """The run's spec, training config and the whole config.json; a damaged file is a RunError."""
    return RunFolder(Path(run_dir)).read_config()


def measured_texts(config_data: dict[str, Any]) -> dict[str, str]:
    """Each entry of a config.json's "measured" (see `RunFolder.record_measured`) as its one line of text, by
    kind; entries that are not such records are left out."""
    measured = config_data.get("measured")
    entries = measured.items() if isinstance(measured, dict) else ()
    return {
        kind: entry["text"] for kind, entry in entries if isinstance(entry, dict) and isinstance(entry.get("text"), str)
    }


def run_data_dir(run_dir: str | os.PathLike) -> Path:
    """The data folder the run trains on."""
    return RunFolder(Path(run_dir)).data_dir()


def read_status(run_dir: str | os.PathLike) -> RunStatus:
    """The run's status as status.json holds it; a damaged file is a RunError."""
    return RunFolder(Path(run_dir)).read_status()


def read_metrics(run_dir: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The lines of metrics.jsonl as dicts (optionally only kind 'epoch' or 'step'); a torn line is skipped."""
    return RunFolder(Path(run_dir)).read_metrics(kind)


def checkpoint_path(run_dir: str | os.PathLike, which: str = "best") -> Path | None:
    """The run's best checkpoint (falling back to the latest) or its latest; None before the first epoch ends."""
    return RunFolder(Path(run_dir)).checkpoint_path(which)


def run_info(run_dir: str | os.PathLike) -> RunInfo:
    """What is known about one run, as its folder says (read only; `Executor.state` corrects a status)."""
    return RunFolder(Path(run_dir)).info()


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunInfo]:
    """Every run under the root, newest first (read only: starting queued runs is `Executor.refresh`)."""
    infos = [RunFolder(p).info() for p in run_folders(runs_root(runs_dir))]
    return sorted(infos, key=lambda i: (i.created, i.name), reverse=True)
