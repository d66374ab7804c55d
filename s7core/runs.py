"""Run folders on disk and the background process that trains one.

A run is a folder under the runs root (`./runs`, or $S7_RUNS_DIR):

    config.json            spec, training config, data folder, versions, creation time (written once)
    status.json            state, pid (+ its start time), epoch, best/final accuracy, message (atomic)
    metrics.jsonl          one JSON line per epoch, and a step line every few seconds (append + fsync)
    checkpoint_latest.pt   written at every epoch end and on stop (atomic); resuming continues from it
    checkpoint_best.pt     the checkpoint of the best epoch (validation accuracy, else test accuracy)
    predictions.npz        the test-set evaluation of the best checkpoint, once the run has finished
    train.log              stdout and stderr of the background process

States: queued, running, finished, failed, stopped. `start_run` launches `python -m s7core train --run-dir RUN
--resume` in its own session; when `max_concurrent` runs are already running the run is queued instead, and
the next run to finish (or the next `list_runs` that finds a free slot) starts it. A "running" run whose
process has gone (killed, machine restarted) is marked failed, and can be resumed from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

import s7core
from s7core.device import resolve_device
from s7core.errors import UserError
from s7core.evaluate import Evaluation, evaluate
from s7core.files import atomic_write
from s7core.model import build_model
from s7core.spec import NetworkSpec, spec_from_dict
from s7core.train import EpochEvent, StepEvent, TrainConfig, TrainResult, train

RUNS_ENV = "S7_RUNS_DIR"
STATES = ("queued", "running", "finished", "failed", "stopped")
STEP_LINE_EVERY_S = 5.0  # how often a step line goes into metrics.jsonl
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


class RunError(UserError):
    """A run folder that is missing, damaged or in the wrong state for the request."""


@dataclass
class RunInfo:
    """What the run list shows about one run; plain data."""

    name: str
    path: str
    state: str  # one of STATES
    epoch: int  # epochs completed
    epochs: int  # epochs planned
    best_accuracy: float | None  # test accuracy of the best checkpoint (0..1)
    final_accuracy: float | None  # test accuracy after the last epoch whose test accuracy was measured (0..1)
    best_epoch: int | None  # the epoch of the best checkpoint
    created: str  # ISO 8601, UTC
    preset: str  # the spec's name
    recipe: str | None
    message: str = ""
    pid: int | None = None
    updated: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- small file helpers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync it, then rename it over `path`."""
    with atomic_write(path, binary=False) as f:
        json.dump(data, f, indent=2)


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


# ---------------------------------------------------------------- folders and config


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """The runs root: the argument, else $S7_RUNS_DIR, else ./runs."""
    return Path(runs_dir or os.environ.get(RUNS_ENV) or "runs")


def _default_name(spec: NetworkSpec, recipe: str | None, root: Path) -> str:
    base = f"{spec.name}-{recipe or 'custom'}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)
    name, i = base, 2
    while (root / name).exists():
        name, i = f"{base}-{i}", i + 1
    return name


def create_run(
    spec: NetworkSpec,
    config: TrainConfig,
    runs_dir: str | os.PathLike | None = None,
    name: str | None = None,
    data_dir: str | os.PathLike | None = None,
    recipe: str | None = None,
) -> Path:
    """Make a new run folder with its config.json and a 'stopped' (not started) status; returns its path."""
    from s7core.data import count_train_images, resolve_data_dir

    config.validate()
    n_train = count_train_images(data_dir)
    if n_train is not None and config.val_split >= n_train:
        raise RunError(
            f"val_split {config.val_split} would hold out every training image: the data set in "
            f"{resolve_data_dir(data_dir)} has {n_train:,} — lower val_split (0 trains on all of them)"
        )
    root = runs_root(runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = name or _default_name(spec, recipe, root)
    if not NAME_PATTERN.match(name):
        raise RunError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (at most 80, no leading dot)")
    run_dir = root / name
    try:
        run_dir.mkdir()
    except FileExistsError:
        raise RunError(f"{run_dir}: a run of that name exists — choose another name or resume it") from None
    config_data = {
        "name": name,
        "spec": spec.to_dict(),
        "train": config.to_dict(),
        "recipe": recipe,
        "data_dir": str(resolve_data_dir(data_dir).resolve()),
        "created": _now(),
        "versions": {"s7core": s7core.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }
    write_json_atomic(run_dir / "config.json", config_data)
    _write_status(run_dir, state="stopped", epoch=0, epochs=config.epochs, message="created; not started yet")
    return run_dir


def read_run_config(run_dir: str | os.PathLike) -> tuple[NetworkSpec, TrainConfig, dict[str, Any]]:
    """The run's spec, training config and the whole config.json; a damaged file is a RunError."""
    path = Path(run_dir) / "config.json"
    fix = "the run cannot be used; start a new run (the checkpoints are kept)"
    data = _read_json(path, "run config", fix)
    try:
        return spec_from_dict(data["spec"]), TrainConfig.from_dict(data["train"]), data
    except KeyError as err:
        raise RunError(f"{path}: the run config has no {err} entry — {fix}") from None
    except UserError as err:
        raise RunError(f"{path}: {err} — fix that entry, or {fix}") from None


def _set_epochs(run_dir: Path, epochs: int) -> None:
    data = _read_json(run_dir / "config.json", "run config", "start a new run")
    data["train"]["epochs"] = epochs
    write_json_atomic(run_dir / "config.json", data)


def run_data_dir(run_dir: str | os.PathLike) -> Path:
    """The data folder the run trains on."""
    return Path(read_run_config(run_dir)[2]["data_dir"])


# ---------------------------------------------------------------- status and processes


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, from /proc; None if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # fields from 3 on; the name in () may hold spaces
    return fields[0], int(fields[19])


def process_start(pid: int) -> int | None:
    """The start time of a process, to tell it from a later one that reuses its pid."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int | None, start: int | None = None) -> bool:
    """Whether process `pid` (started at `start`, when given) still runs; a zombie counts as ended."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but belongs to someone else: the start time decides
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self/stat").exists()  # no /proc on this system: trust os.kill
    return stat[0] not in ("Z", "X") and (start is None or stat[1] == start)


def read_status(run_dir: Path) -> dict[str, Any]:
    """status.json as a dict; an unreadable file reads as a failed run."""
    try:
        data = json.loads((run_dir / "status.json").read_text())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {"state": "stopped", "message": "no status.json; not started"}
    except (OSError, ValueError) as err:
        return {"state": "failed", "message": f"status.json unreadable ({err}); resume the run to rewrite it"}


def _write_status(run_dir: Path, **changes: Any) -> dict[str, Any]:
    status = {**read_status(run_dir), **changes, "updated": _now()}
    write_json_atomic(run_dir / "status.json", status)
    return status


def run_info(run_dir: str | os.PathLike) -> RunInfo:
    """What is known about one run, correcting a 'running' state whose process is gone."""
    run_dir = Path(run_dir)
    status = read_status(run_dir)
    try:
        config = _read_json(run_dir / "config.json", "run config", "start a new run")
    except RunError as err:
        config, status = {}, {**status, "state": "failed", "message": str(err)}
    if status.get("state") == "running" and not process_alive(status.get("pid"), status.get("pid_start")):
        epoch = status.get("epoch", 0)
        message = (
            f"the training process ended unexpectedly after epoch {epoch} (killed?); see train.log — "
            "resume the run to continue from its last checkpoint"
        )
        status = _write_status(run_dir, state="failed", pid=None, message=message)
    train_cfg = config.get("train") or {}
    return RunInfo(
        name=run_dir.name,
        path=str(run_dir),
        state=status.get("state") if status.get("state") in STATES else "failed",
        epoch=int(status.get("epoch") or 0),
        epochs=int(status.get("epochs") or train_cfg.get("epochs") or 0),
        best_accuracy=status.get("best_accuracy"),
        final_accuracy=status.get("final_accuracy"),
        best_epoch=status.get("best_epoch"),
        created=config.get("created", ""),
        preset=(config.get("spec") or {}).get("name", "?"),
        recipe=config.get("recipe"),
        message=status.get("message", ""),
        pid=status.get("pid"),
        updated=status.get("updated", ""),
    )


def list_runs(runs_dir: str | os.PathLike | None = None) -> list[RunInfo]:
    """Every run under the root, newest first; also starts queued runs when a slot has come free."""
    root = runs_root(runs_dir)
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and (p / "config.json").exists()]
    infos = [run_info(p) for p in folders]
    if any(i.state == "queued" for i in infos) and _start_queued(root):
        infos = [run_info(p) for p in folders]
    return sorted(infos, key=lambda i: (i.created, i.name), reverse=True)


def _launch(run_dir: Path) -> RunInfo:
    """Start the trainer of a run as a detached process writing to train.log."""
    package_root = str(Path(s7core.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "s7core", "train", "--run-dir", str(run_dir.resolve()), "--resume"]
    with open(run_dir / "train.log", "ab") as log:
        log.write(f"\n--- {_now()} start: {' '.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    _write_status(run_dir, state="running", pid=proc.pid, pid_start=process_start(proc.pid), message="starting")
    return run_info(run_dir)


@contextlib.contextmanager
def _queue_lock(root: Path):
    with open(root / ".queue.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _start_queued(root: Path) -> bool:
    """Start the oldest queued runs while slots are free; whether any started."""
    started = False
    with _queue_lock(root):
        folders = [p for p in root.iterdir() if p.is_dir() and (p / "status.json").exists()]
        statuses = {p: read_status(p) for p in folders}
        running = sum(1 for p in folders if run_info(p).state == "running")
        queued = sorted((s.get("queued_at", ""), str(p)) for p, s in statuses.items() if s.get("state") == "queued")
        for _, path in queued:
            if running >= int(statuses[Path(path)].get("max_concurrent", 1)):
                break
            _launch(Path(path))
            running, started = running + 1, True
    return started


def start_run(run_dir: str | os.PathLike, max_concurrent: int = 1) -> RunInfo:
    """Launch the run's trainer in the background, or queue it when `max_concurrent` runs already run."""
    run_dir = Path(run_dir)
    read_run_config(run_dir)  # refuse a damaged config before launching anything
    info = run_info(run_dir)
    if info.state in ("running", "queued"):
        raise RunError(f"run {info.name} is already {info.state}")
    if info.state == "finished":
        raise RunError(f"run {info.name} has finished; start a new run, or train it further with --epochs")
    root = run_dir.parent
    with _queue_lock(root):
        running = [i for i in list_runs_no_queue(root) if i.state == "running"]
        if len(running) >= max_concurrent:
            message = f"queued: waiting for {', '.join(i.name for i in running)} to finish"
            _write_status(run_dir, state="queued", queued_at=_now(), max_concurrent=max_concurrent, message=message)
            return run_info(run_dir)
        return _launch(run_dir)


def list_runs_no_queue(root: Path) -> list[RunInfo]:
    """The runs under `root` without starting queued ones."""
    return [run_info(p) for p in root.iterdir() if p.is_dir() and (p / "config.json").exists()]


def resume_run(run_dir: str | os.PathLike, max_concurrent: int = 1) -> RunInfo:
    """Continue a stopped or failed run from its last checkpoint (in the background)."""
    return start_run(run_dir, max_concurrent)


def stop_run(run_dir: str | os.PathLike) -> RunInfo:
    """Ask a running run to stop (SIGTERM: it finishes the step, saves, exits 'stopped'); dequeue a queued one."""
    run_dir = Path(run_dir)
    info = run_info(run_dir)
    if info.state == "queued":
        _write_status(run_dir, state="stopped", message="removed from the queue; start it again to train")
        return run_info(run_dir)
    if info.state != "running":
        raise RunError(f"run {info.name} is not running (it is {info.state})")
    status = read_status(run_dir)
    if process_alive(status.get("pid"), status.get("pid_start")):
        os.kill(status["pid"], signal.SIGTERM)
        _write_status(run_dir, message="stopping: finishing the step and saving")
    return run_info(run_dir)


def wait_for_run(run_dir: str | os.PathLike, timeout_s: float = 60.0, poll_s: float = 0.2) -> RunInfo:
    """Block until the run is neither running nor queued (or the timeout passes); its final info."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = run_info(run_dir)
        if info.state not in ("running", "queued") or time.monotonic() > deadline:
            return info
        time.sleep(poll_s)


# ---------------------------------------------------------------- metrics


def read_metrics(run_dir: str | os.PathLike, kind: str | None = None) -> list[dict[str, Any]]:
    """The lines of metrics.jsonl as dicts (optionally only kind 'epoch' or 'step'); a torn line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        text = path.read_text()
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


class MetricsWriter:
    """Appends one JSON line at a time, flushed and fsynced, so a kill loses at most the line being written."""

    def __init__(self, path: Path):
        self.file = open(path, "a")  # noqa: SIM115 - kept open for the whole run

    def write(self, row: dict[str, Any]) -> None:
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _trim_metrics(run_dir: Path, state: dict[str, Any] | None) -> None:
    """Drop the lines written after the checkpoint we continue from (and any torn line)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return
    epoch, step = (state["epoch"], state["global_step"]) if state else (0, 0)
    keep = [
        r
        for r in read_metrics(run_dir)
        if (r.get("kind") == "epoch" and r.get("epoch", 0) <= epoch)
        or (r.get("kind") == "step" and r.get("global_step", 0) <= step)
    ]
    with atomic_write(path, binary=False) as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)


# ---------------------------------------------------------------- training a run (in this process)


def _latest_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "checkpoint_latest.pt"
    return load_checkpoint(path) if path.exists() else None


def execute_run(
    run_dir: str | os.PathLike,
    callback: Callable[[StepEvent | EpochEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    epochs: int | None = None,
) -> TrainResult:
    """Train a run in this process, from its last checkpoint if it has one, keeping the folder up to date.

    `epochs` raises the planned number of epochs (to train a run further). Writes status 'running' with this
    process's pid, then 'finished' (with predictions.npz), 'stopped' or 'failed'.
    """
    from s7core.data import load_cifar10

    run_dir = Path(run_dir)
    if epochs is not None:
        _set_epochs(run_dir, epochs)
    spec, config, meta = read_run_config(run_dir)
    state = _latest_state(run_dir)
    if state is not None and state["epoch"] >= config.epochs:
        raise RunError(f"run {run_dir.name} already trained all {config.epochs} epochs — raise --epochs to go on")
    _trim_metrics(run_dir, state)
    pid = os.getpid()
    _write_status(
        run_dir,
        state="running",
        pid=pid,
        pid_start=process_start(pid),
        epochs=config.epochs,
        epoch=state["epoch"] if state else 0,
        message="loading data",
    )
    try:
        data = load_cifar10(meta["data_dir"])
        result = _train_in_folder(run_dir, spec, config, data, state, callback, should_stop)
    except BaseException as err:
        message = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        if isinstance(err, KeyboardInterrupt):
            _write_status(run_dir, state="stopped", pid=None, message="interrupted; resume to continue")
        else:
            _write_status(run_dir, state="failed", pid=None, message=message)
        raise
    if result.stopped:
        _write_status(run_dir, state="stopped", pid=None, message=f"stopped during epoch {result.epochs_done + 1}")
    else:
        _save_predictions(run_dir, spec, config, data)
        _write_status(run_dir, state="finished", pid=None, message="finished")
    _start_queued(run_dir.parent)
    return result


def _train_in_folder(run_dir, spec, config, data, state, callback, should_stop) -> TrainResult:
    metrics = MetricsWriter(run_dir / "metrics.jsonl")
    last_step_line = [0.0]

    def on_event(event: StepEvent | EpochEvent) -> None:
        now = time.monotonic()
        if isinstance(event, EpochEvent):
            metrics.write(event.to_dict())
            tested = {"final_accuracy": event.test_acc} if event.test_acc is not None else {}
            _write_status(run_dir, epoch=event.epoch, message=f"epoch {event.epoch}", **tested)
        elif now - last_step_line[0] >= STEP_LINE_EVERY_S or event.step == event.steps_per_epoch:
            metrics.write(event.to_dict())
            last_step_line[0] = now
        if callback:
            callback(event)

    def on_checkpoint(ckpt: dict[str, Any], best: bool) -> None:
        save_checkpoint(ckpt, run_dir / "checkpoint_latest.pt")
        if best:
            save_checkpoint(ckpt, run_dir / "checkpoint_best.pt")
            _write_status(run_dir, best_accuracy=ckpt["best_accuracy"], best_epoch=ckpt["best_epoch"])

    try:
        _write_status(run_dir, message="training")
        return train(spec, config, data, on_event, should_stop, state, on_checkpoint)
    finally:
        metrics.close()


def _save_predictions(run_dir: Path, spec: NetworkSpec, config: TrainConfig, data) -> Evaluation:
    device = resolve_device(config.device)
    model = load_run_model(run_dir, "best").to(device)
    ev = evaluate(
        model,
        data.test_images,
        data.test_labels,
        device=device,
        tta_flip=config.tta_flip,
        tta_shift=config.tta_shift,
        classes=data.classes,
    )
    ev.save(run_dir / "predictions.npz")
    return ev


# ---------------------------------------------------------------- using a finished run


def progress_fraction(info: RunInfo, last_step: dict | None = None) -> float:
    """How much of the run is done, 0 to 1: finished epochs, plus the running epoch's share from its last step line."""
    if not info.epochs:
        return 0.0
    done = info.epoch / info.epochs
    if info.state == "running" and last_step and last_step.get("epoch", 0) > info.epoch:
        done = (info.epoch + last_step["step"] / last_step["steps_per_epoch"]) / info.epochs
    return min(max(done, 0.0), 1.0)


def checkpoint_path(run_dir: str | os.PathLike, which: str = "best") -> Path | None:
    """The run's best checkpoint (falling back to the latest) or its latest; None before the first epoch ends."""
    if which not in ("best", "latest"):
        raise RunError(f"which must be 'best' or 'latest', got {which!r}")
    names = ("checkpoint_best.pt", "checkpoint_latest.pt") if which == "best" else ("checkpoint_latest.pt",)
    return next((Path(run_dir) / n for n in names if (Path(run_dir) / n).is_file()), None)


def load_run_model(run_dir: str | os.PathLike, which: str = "best") -> nn.Module:
    """The run's model on the CPU in eval mode, from checkpoint_best.pt (falling back to the latest) or
    checkpoint_latest.pt; the averaged weights when the run used ema."""
    run_dir = Path(run_dir)
    path = checkpoint_path(run_dir, which) or run_dir / "checkpoint_latest.pt"  # checks `which`
    spec, _, _ = read_run_config(run_dir)
    state = load_checkpoint(path)
    model = build_model(spec)
    try:
        model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    except RuntimeError as err:
        raise RunError(f"{path}: the weights do not fit the run's network ({err}) — start a new run") from None
    return model.eval()


def load_predictions(run_dir: str | os.PathLike) -> Evaluation:
    """The run's saved test-set evaluation (written when it finished)."""
    return Evaluation.load(Path(run_dir) / "predictions.npz")


def evaluate_run(
    run_dir: str | os.PathLike, which: str = "best", tta_flip: bool = False, tta_shift: bool = False
) -> Evaluation:
    """A fresh evaluation of the run's model on the test set of its data folder."""
    from s7core.data import load_cifar10

    model = load_run_model(run_dir, which)
    data = load_cifar10(run_data_dir(run_dir))
    return evaluate(
        model, data.test_images, data.test_labels, tta_flip=tta_flip, tta_shift=tta_shift, classes=data.classes
    )
