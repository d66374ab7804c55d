"""Shared by the run tests: a run of the micro net on a tiny data set, waiting for it, and forged statuses."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ray_cluster import trainer_pid
from test_train import micro_spec, quick_config

from s7core.runs.executor import EXECUTORS, LOCAL
from s7core.runs.local import process_alive, process_handle
from s7core.runs.ray_jobs import ADDRESS_ENVS
from s7core.runs.status import RunState
from s7core.runs.store import RunFolder, create_run, read_metrics, read_status


def new_run(tmp_path: Path, data_dir: Path, name: str = "r1", **changes) -> Path:
    """A run of the micro net under tmp_path/runs, not started."""
    return create_run(micro_spec(), quick_config(**changes), tmp_path / "runs", name, data_dir, "default")


# Every registered executor as a test parameter; a cluster executor's tests are cluster tests, with time for Ray to
# start the session's cluster and each job's supervisor.
EXECUTOR_PARAMS = [
    pytest.param(name, marks=[] if name == LOCAL else [pytest.mark.cluster, pytest.mark.timeout(600)])
    for name in sorted(EXECUTORS)
]


def on_cluster(request: pytest.FixtureRequest, executor: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point a cluster executor's test at a cluster: the one RAY_ADDRESS names, else the session's local one (started
    on first use; skipped where Ray is missing, a failure under S7_REQUIRE_CLUSTER=1)."""
    if executor != LOCAL and not any(os.environ.get(name) for name in ADDRESS_ENVS):
        monkeypatch.setenv("RAY_ADDRESS", request.getfixturevalue("ray_cluster"))


def trainer_of(run_dir: Path, timeout_s: float = 180.0) -> int:
    """The pid of the run's training process on this machine, once it has one: the local executor's handle, or the
    process a Ray job started (found by its command line; Ray first starts the job's supervisor)."""
    found: list[int] = []

    def started() -> bool:
        status = read_status(run_dir)
        pid = status.handle.get("pid") if status.executor in (None, LOCAL) else trainer_pid(run_dir)
        found[:] = [pid] if pid else []
        return bool(found) or not status.state.active

    wait_until(started, timeout_s=timeout_s, poll_s=0.1)
    assert found, f"{run_dir.name} ended before a trainer was seen: {read_status(run_dir)}"
    return found[0]


def trainer_alive(run_dir: Path) -> bool:
    """Whether the run's trainer process still runs (either executor)."""
    status = read_status(run_dir)
    if status.executor in (None, LOCAL):
        return process_alive(status.handle.get("pid"), status.handle.get("pid_start"))
    return trainer_pid(run_dir) is not None


def epoch_lines(run_dir: Path) -> list[int]:
    """The epoch numbers of the run's epoch lines, in order."""
    return [row["epoch"] for row in read_metrics(run_dir, "epoch")]


def wait_until(condition: Callable[[], bool], timeout_s: float = 60.0, poll_s: float = 0.02) -> None:
    """Poll `condition` until it holds; fails the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(poll_s)


def forge_status(run_dir: Path, **changes) -> None:
    """Rewrite the run's status with `changes`, as if its trainer or executor had written them."""
    folder = RunFolder(Path(run_dir))
    folder.write_status(dataclasses.replace(folder.read_status(), **changes))


def playing_trainer(run_dir: Path, pid: int) -> None:
    """Make process `pid` the run's local trainer."""
    forge_status(run_dir, state=RunState.RUNNING, executor=LOCAL, handle=process_handle(pid))


def ended_process() -> int:
    """The pid of a process that has already ended."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid
