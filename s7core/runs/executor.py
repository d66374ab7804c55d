"""Where a run trains: the Executor interface, and `get_executor` to pick one by name.

An executor launches `python -m s7core train --run-dir RUN --resume` somewhere (so what runs there is what runs
on a laptop), and keeps in the run's status its own name and its handle to the job. It is the one place a
status is corrected: `state()` reconciles what status.json says with what the engine knows, and `refresh()`
does that for every run and starts queued ones. Reading a run folder (`store.list_runs`) never does either.

To add an executor, write a module with an Executor subclass whose constructor takes `runs_dir` (and its own
options as keywords), and name it in EXECUTORS. Which one a command uses is its `--backend` flag, else
$S7_BACKEND, else the local one (`executor_name`).
"""

from __future__ import annotations

import abc
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from s7core.config import Resources
from s7core.runs.status import RunError, RunState, RunStatus
from s7core.runs.store import RunFolder, read_status, run_folders, runs_root

LOCAL = "local"  # background processes on this machine (local.py)
RAY = "ray"  # jobs on a Ray cluster (ray_jobs.py)
DEFAULT_EXECUTOR = LOCAL
BACKEND_ENV = "S7_BACKEND"  # names the executor when no --backend is given


@dataclass(frozen=True)
class Capacity:
    """Where an executor trains runs, and how many CPUs and GPUs it has (free ones None where it cannot tell)."""

    executor: str
    where: str  # "this machine", or the cluster's dashboard address
    nodes: int
    cpus: float
    gpus: float
    free_cpus: float | None = None
    free_gpus: float | None = None

    def summary(self) -> str:
        """The executor, where it trains, and its CPUs and GPUs, in one line."""

        def count(free: float | None, total: float) -> str:
            return f"{total:g}" if free is None else f"{free:g} free of {total:g}"

        return (
            f"{self.executor} at {self.where} · {self.nodes} node(s) · CPUs {count(self.free_cpus, self.cpus)} · "
            f"GPUs {count(self.free_gpus, self.gpus)}"
        )


@dataclass(frozen=True)
class StorageCheck:
    """Whether every node that trains runs sees the runs folder (and can run s7core and torch)."""

    ok: bool
    message: str
    nodes: tuple[str, ...] = ()  # the ids of the nodes checked
    checked_at: float = 0.0  # time.time() of the check

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)


class Executor(abc.ABC):
    """Starts, stops and watches the training process of run folders."""

    name: ClassVar[str]  # what the run's status records as its executor

    @abc.abstractmethod
    def start(self, run_dir: str | os.PathLike, resources: Resources | None = None) -> RunStatus:
        """Launch the run's training (continuing from its last checkpoint), or queue it when the engine is full.

        `resources` (CPUs, GPUs) default to what the run's latest launch asked for, else the declared defaults.
        """

    @abc.abstractmethod
    def stop(self, run_dir: str | os.PathLike) -> RunStatus:
        """Ask a running run to stop after saving, or take a queued one off the queue."""

    @abc.abstractmethod
    def state(self, run_dir: str | os.PathLike) -> RunStatus:
        """The run's status, corrected (and written) where the engine knows better than status.json."""

    @abc.abstractmethod
    def logs(self, run_dir: str | os.PathLike, lines: int = 50) -> str:
        """The last `lines` lines the run's training process printed."""

    @abc.abstractmethod
    def refresh(self) -> None:
        """Correct the status of every run under the runs root, and start queued runs when the engine has room."""

    def check_launch(self, resources: Resources) -> None:
        """Refuse, before any run folder is made, resources this executor can never give one run."""
        return None  # an executor that can give any request refuses nothing

    def capacity(self) -> Capacity:
        """Where runs train and the CPUs and GPUs there (this machine's, unless the executor says otherwise)."""
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return Capacity(self.name, "this machine", 1, float(os.cpu_count() or 1), float(gpus))

    def check_storage(self, force: bool = False) -> StorageCheck | None:
        """Whether the machines that train runs see the runs folder; None where they are this machine."""
        return None

    def run_ended(self, run_dir: str | os.PathLike) -> None:
        """Called by the trainer as its run ends: an executor that queues runs itself starts the next one here."""
        self.refresh()

    def wait(self, run_dir: str | os.PathLike, timeout_s: float = 60.0, poll_s: float = 0.2) -> RunStatus:
        """Block until the run is neither queued nor running (or the timeout passes); its last status."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.state(run_dir)
            if not status.state.active or time.monotonic() > deadline:
                return status
            time.sleep(poll_s)


def check_can_start(folder: RunFolder, status: RunStatus) -> None:
    """Refuse to launch a run that an executor already holds, or one that has trained all its epochs."""
    if status.state.active:
        raise RunError(f"run {folder.name} is already {status.state}")
    if status.state is RunState.FINISHED:
        raise RunError(f"run {folder.name} has finished; start a new run, or train it further with --epochs")


def launch_resources(status: RunStatus, resources: Resources | None) -> Resources:
    """The resources of a launch: those asked for, else the ones the run's latest launch asked for."""
    return resources if resources is not None else Resources.from_dict(status.resources)


def _local(**options: Any) -> Executor:
    from s7core.runs.local import LocalExecutor

    return LocalExecutor(**options)


def _ray(**options: Any) -> Executor:
    from s7core.runs.ray_jobs import RayExecutor  # ray itself is imported only when a cluster is asked something

    return RayExecutor(**options)


# name -> factory; each imports its module only when asked for, so an engine's client library stays optional
EXECUTORS: dict[str, Callable[..., Executor]] = {LOCAL: _local, RAY: _ray}


def executor_name(name: str | None = None) -> str:
    """The executor a command uses: `name` (its --backend flag), else $S7_BACKEND, else the local one."""
    return name or os.environ.get(BACKEND_ENV, "").strip() or DEFAULT_EXECUTOR


def get_executor(name: str | None = None, **options: Any) -> Executor:
    """The executor of that name (default: `executor_name()`), built with `options` (runs_dir, max_concurrent, ...)."""
    name = executor_name(name)
    if name not in EXECUTORS:
        raise RunError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name](**options)


def executor_for(run_dir: str | os.PathLike, **options: Any) -> Executor:
    """The executor that launched the run (the local one for a run never launched), to stop or watch it."""
    name = read_status(run_dir).executor or DEFAULT_EXECUTOR  # None was written by the local executor's first release
    return get_executor(name, runs_dir=Path(run_dir).parent, **options)


def refresh_runs(runs_dir: str | os.PathLike | None = None, **options: Any) -> None:
    """Correct every run under the root with the executor that launched it (and the default one), start queued runs."""
    root = runs_root(runs_dir)
    names = {executor_name()}
    for path in run_folders(root):
        try:
            status = read_status(path)
        except RunError:
            continue  # a damaged status is shown as such by the run list
        if status.state.active:
            names.add(status.executor or DEFAULT_EXECUTOR)
    for name in sorted(names):
        get_executor(name, runs_dir=root, **options).refresh()
