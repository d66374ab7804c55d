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
from test_train import micro_spec, quick_config

from s7core.runs.executor import LOCAL
from s7core.runs.local import process_handle
from s7core.runs.ray_jobs import ADDRESS_ENVS
from s7core.runs.status import RunState
from s7core.runs.store import RunFolder, create_run, read_metrics


def new_run(tmp_path: Path, data_dir: Path, name: str = "r1", **changes) -> Path:
    """A run of the micro net under tmp_path/runs, not started."""
    return create_run(micro_spec(), quick_config(**changes), tmp_path / "runs", name, data_dir, "default")


def needs_cluster(executor: str) -> None:
    """Skip a test of an executor that needs a cluster when none is named (tests/test_ray_cluster.py starts one)."""
    if executor != LOCAL and not any(os.environ.get(name) for name in ADDRESS_ENVS):
        pytest.skip(f"the {executor} executor needs a cluster: set RAY_ADDRESS; tests/test_ray_cluster.py covers it")


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
