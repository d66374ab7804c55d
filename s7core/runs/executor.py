"""Where a run trains: the Executor interface, and `get_executor` to pick one by name.

An executor launches `python -m s7core train --run-dir RUN --resume` somewhere (so what runs there is what runs
on a laptop), and keeps in the run's status its own name and its handle to the job. It is the one place a
status is corrected: `state()` reconciles what status.json says with what the engine knows, and `refresh()`
does that for every run and starts queued ones. Reading a run folder (`store.list_runs`) never does either.

To add an executor, write a module with an Executor subclass whose constructor takes `runs_dir` (and its own
options as keywords), and name it in EXECUTORS.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from s7core.runs.status import RunError, RunStatus
from s7core.runs.store import read_status

LOCAL = "local"  # background processes on this machine (local.py)
DEFAULT_EXECUTOR = LOCAL


class Executor(abc.ABC):
    """Starts, stops and watches the training process of run folders."""

    name: ClassVar[str]  # what the run's status records as its executor

    @abc.abstractmethod
    def start(self, run_dir: str | os.PathLike) -> RunStatus:
        """Launch the run's training (continuing from its last checkpoint), or queue it when the engine is full."""

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

    def wait(self, run_dir: str | os.PathLike, timeout_s: float = 60.0, poll_s: float = 0.2) -> RunStatus:
        """Block until the run is neither queued nor running (or the timeout passes); its last status."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.state(run_dir)
            if not status.state.active or time.monotonic() > deadline:
                return status
            time.sleep(poll_s)


def _local(**options: Any) -> Executor:
    from s7core.runs.local import LocalExecutor

    return LocalExecutor(**options)


# name -> factory; each imports its module only when asked for, so an engine's client library stays optional
EXECUTORS: dict[str, Callable[..., Executor]] = {LOCAL: _local}


def get_executor(name: str | None = None, **options: Any) -> Executor:
    """The executor of that name (default: the local one), built with `options` (runs_dir, max_concurrent, ...)."""
    name = name or DEFAULT_EXECUTOR
    if name not in EXECUTORS:
        raise RunError(f"unknown executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name](**options)


def executor_for(run_dir: str | os.PathLike, **options: Any) -> Executor:
    """The executor that launched the run (the default one for a run never launched), to stop or watch it."""
    return get_executor(read_status(run_dir).executor, runs_dir=Path(run_dir).parent, **options)
