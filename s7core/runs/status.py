"""The typed status of a run: its state, progress, accuracies, message, times, and who runs it.

status.json holds one RunStatus, written whole. `executor` names what launched the run and `handle` is
that executor's key to its job: for the local executor the pid and the process start time (the start time
tells the process from a later one that reuses its pid), for a cluster a job id. `resources` is what the latest
launch asked for (cpus, gpus), so that a resume asks for the same.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from s7core.errors import UserError


class RunError(UserError):
    """A run folder that is missing, damaged or in the wrong state for the request."""


class RunState(str, enum.Enum):
    """Where a run is in its life; the value is what status.json holds."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value

    @property
    def active(self) -> bool:
        """Whether an executor holds the run (queued or running)."""
        return self in (RunState.QUEUED, RunState.RUNNING)


def now(timespec: str = "seconds") -> str:
    """The time now, ISO 8601 in UTC (to the second unless told): how every time in a run folder is written."""
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


@dataclass(frozen=True)
class RunStatus:
    """What status.json says about a run; plain data, always written whole."""

    state: RunState
    epoch: int = 0  # epochs completed
    epochs: int = 0  # epochs planned
    best_accuracy: float | None = None  # test accuracy of the best checkpoint (0..1)
    best_epoch: int | None = None  # the epoch of the best checkpoint
    final_accuracy: float | None = None  # test accuracy after the last epoch whose test accuracy was measured (0..1)
    message: str = ""
    executor: str | None = None  # name of the executor that launched the run; None: the default one
    handle: dict[str, Any] = field(default_factory=dict)  # the executor's key to its job (local: pid, pid_start)
    resources: dict[str, Any] = field(default_factory=dict)  # what the latest launch asked for (config.Resources)
    queued_at: str | None = None  # when the run last joined a queue; the queue's order
    started_at: str | None = None  # when the latest training process began
    updated: str = ""  # when this status was written

    def to_dict(self) -> dict[str, Any]:
        """The status as JSON-ready plain data."""
        return {**dataclasses.asdict(self), "state": self.state.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        """A status from what `to_dict` wrote (or from a status.json older than the executor fields)."""
        try:
            state = RunState(data.get("state"))
        except ValueError:
            raise RunError(f"unknown state {data.get('state')!r}") from None
        known = {f.name for f in dataclasses.fields(cls)} - {"state"}
        values = {k: v for k, v in data.items() if k in known} | _legacy_handle(data)
        status = cls(state, **values)
        for name, kind in (("epoch", int), ("epochs", int), ("message", str), ("handle", dict), ("resources", dict)):
            if not isinstance(getattr(status, name), kind):
                raise RunError(f"{name} is {getattr(status, name)!r}, not a {kind.__name__}")
        return status

    def changed(self, **changes: Any) -> RunStatus:
        """A copy with `changes` applied and `updated` set to now."""
        return dataclasses.replace(self, **changes, updated=now())


def _legacy_handle(data: dict[str, Any]) -> dict[str, Any]:
    """Executor and handle of a status.json that kept pid, pid_start and max_concurrent at the top level."""
    if "handle" in data:
        return {}
    if data.get("pid"):  # executor None is the default one, the local executor, as it was then
        return {"handle": {"pid": data["pid"], "pid_start": data.get("pid_start")}}
    if data.get("state") == "queued":
        return {"handle": {"max_concurrent": data.get("max_concurrent", 1)}}
    return {}


@dataclass(frozen=True, kw_only=True)
class RunInfo(RunStatus):
    """What the run list shows about one run: its status, plus its name, folder, network and recipe."""

    name: str
    path: str
    created: str = ""  # ISO 8601, UTC
    preset: str = "?"  # the spec's name
    recipe: str | None = None
    owner: str | None = None  # the user the run belongs to; None for a run made outside class mode


def progress_fraction(info: RunInfo, last_step: dict | None = None) -> float:
    """How much of the run is done, 0 to 1: finished epochs, plus the running epoch's share from its last step line."""
    if not info.epochs:
        return 0.0
    done = info.epoch / info.epochs
    if info.state == RunState.RUNNING and last_step and last_step.get("epoch", 0) > info.epoch:
        done = (info.epoch + last_step["step"] / last_step["steps_per_epoch"]) / info.epochs
    return min(max(done, 0.0), 1.0)
