"""Runs on a real Ray cluster: a head and a second node on 127.0.0.1, runs launched from the CLI and the Train page.

The session's cluster (tests/ray_cluster.py, started once for every cluster test): a head with 2 CPUs and a node with
1 CPU on 127.0.0.1. On a
500-image synthetic set with the `tiny` preset: two long runs hold a CPU each, so a run asking for 2 CPUs waits as
PENDING (shown 'queued'); a run from the Train page trains beside them; one long run is stopped and resumed, the
other's trainer is killed with SIGKILL, shows 'failed' with its log, and is resumed to the end. Ray's own job list
must agree with every run's state.

Skipped with the reason where Ray is not installed; S7_REQUIRE_CLUSTER=1 (as in CI) makes that a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ray_cluster import trainer_pid
from runs_helpers import epoch_lines, wait_until

from s7core.config import settings
from s7core.data import make_tiny_cifar10
from s7core.runs import RunState, read_status, run_info
from s7core.runs.ray_jobs import CLUSTER_DEFAULT_CPUS, RayExecutor

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]  # one long story on a busy 2-core machine

REPO = Path(__file__).resolve().parents[1]
# the most a run may train: on a quiet machine `tiny` on 500 images trains 300 epochs in about two minutes, before
# the story below has stopped and killed its two long runs
LONG_EPOCHS = int(next(s.high for s in settings() if s.name == "epochs"))
JOB_STATE = {"finished": "SUCCEEDED", "stopped": "STOPPED", "failed": "FAILED"}  # run state -> Ray's job status


@pytest.fixture(scope="module")
def cluster(ray_cluster: str) -> str:
    """The session's local Ray cluster (tests/conftest.py), shared with the executors' fault and race tests."""
    return ray_cluster


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cifar10(tmp_path_factory.mktemp("data"), n_train=500, n_test=200)


@pytest.fixture
def on_cluster(cluster: str, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The environment of a session on the cluster: RAY_ADDRESS, S7_BACKEND=ray, the data and a runs root."""
    root = tmp_path / "runs"
    for name, value in {"RAY_ADDRESS": cluster, "S7_BACKEND": "ray", "S7_RUNS_DIR": str(root)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("S7_DATA_DIR", str(tiny_data))
    return root


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "s7core", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def _detach(root: Path, name: str, epochs: int, cpus: int) -> Path:
    args = ["--preset", "tiny", "--run-dir", str(root / name), "--val-split", "0", "--batch-size", "50"]
    done = _cli("train", *args, "--epochs", str(epochs), "--device", "cpu", "--cpus", str(cpus), "--detach")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(root / name)  # the run folder, printed at once
    return root / name


def _states(root: Path) -> dict[str, str]:
    listing = _cli("runs", "--json", "--runs-dir", str(root))
    assert listing.returncode == 0, listing.stderr
    return {row["name"]: row["state"] for row in json.loads(listing.stdout)}


def _training(run_dir: Path) -> bool:
    status = read_status(run_dir)
    return status.state is RunState.RUNNING and status.message.startswith("epoch") and status.epoch >= 1


def _trainer_pid(run_dir: Path) -> int:
    pid = trainer_pid(run_dir)
    assert pid is not None, f"no trainer process for {run_dir}"
    return pid


def _wait_for(executor: RayExecutor, run_dir: Path, state: str, timeout_s: float = 120) -> None:
    wait_until(lambda: executor.state(run_dir).state == state, timeout_s=timeout_s, poll_s=0.5)


def _launch_from_the_train_page(name: str) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90)
    at.run()  # through app.py, which draws the sidebar: the executor, its cluster and the free CPUs
    assert not at.exception, [e.message for e in at.exception]
    assert any("ray at http://127.0.0.1" in c.value and "CPUs" in c.value for c in at.sidebar.caption)
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]  # the workers see the runs folder
    at.switch_page("pages/train.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not [n for n in at.number_input if n.key == "train_max_concurrent"]  # Ray queues, not a local limit
    at.selectbox(key="train_network").select("tiny").run()
    at.number_input(key="train_default_val_split").set_value(0)
    at.number_input(key="train_default_epochs").set_value(1)
    at.number_input(key="train_res_cpus").set_value(1)
    at.text_input(key="train_run_name").input(name)
    (launch,) = [b for b in at.button if b.label == "Launch training"]
    launch.click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.main.error, [e.value for e in at.main.error]


def test_runs_queue_train_stop_fail_and_resume_on_the_cluster(on_cluster: Path) -> None:
    root, executor = on_cluster, RayExecutor()
    # two long runs hold one CPU each: at least one of them is on the head, so no node has 2 CPUs free
    long_a, long_b = (_detach(root, name, epochs=LONG_EPOCHS, cpus=1) for name in ("a", "b"))
    wait_until(lambda: _training(long_a) and _training(long_b), timeout_s=180, poll_s=0.5)
    waiting = _detach(root, "c", epochs=1, cpus=2)
    assert read_status(waiting).state is RunState.QUEUED
    assert executor.client.get_job_status(read_status(waiting).handle["submission_id"]).value == "PENDING"
    assert _states(root) == {"a": "running", "b": "running", "c": "queued"}

    _launch_from_the_train_page("d")  # the third CPU is free: it trains beside the long runs
    assert read_status(root / "d").resources == {"cpus": 1, "gpus": 0.0}
    _wait_for(executor, root / "d", "finished")
    assert read_status(waiting).state is RunState.QUEUED  # still waiting for 2 CPUs on one node

    stop = _cli("stop", "a", "--runs-dir", str(root))
    assert stop.returncode == 0 and "stopping" in stop.stdout, stop.stderr
    _wait_for(executor, long_a, "stopped")
    os.kill(_trainer_pid(long_b), signal.SIGKILL)
    _wait_for(executor, long_b, "failed")
    killed = read_status(long_b)
    assert "the Ray job failed" in killed.message and "resume" in killed.message, killed.message
    _wait_for(executor, waiting, "finished", timeout_s=180)  # both CPUs of the head are free now

    for run_dir in (long_a, long_b):  # resume each to the end: one epoch past its last checkpoint
        done = run_info(run_dir).epoch
        resumed = _cli("train", "--run-dir", str(run_dir), "--resume", "--detach", "--epochs", str(done + 1))
        assert resumed.returncode == 0, resumed.stderr
        _wait_for(executor, run_dir, "finished")
        assert epoch_lines(run_dir) == list(range(1, done + 2))  # every epoch once, across the kill or the stop
        assert (run_dir / "predictions.npz").exists()
    assert _states(root) == dict.fromkeys("abcd", "finished")

    jobs = {job.submission_id: job for job in executor.client.list_jobs() if (job.metadata or {}).get("s7_run")}
    for name in "abcd":
        status = read_status(root / name)
        assert jobs[status.handle["submission_id"]].status.value == JOB_STATE[status.state.value]
        assert jobs[status.handle["submission_id"]].metadata["s7_run"] == str(root / name)
    earlier = sorted(str(j.status.value) for j in jobs.values() if Path(j.metadata["s7_run"]).name in "ab")
    assert earlier == ["FAILED", "STOPPED", "SUCCEEDED", "SUCCEEDED"]  # Ray's own record of the stop and the kill


def test_a_request_no_node_can_meet_is_refused_saying_what_the_cluster_has(on_cluster: Path) -> None:
    args = ["--preset", "tiny", "--run-dir", str(on_cluster / "big"), "--val-split", "0", "--detach"]
    refused = _cli("train", *args, "--cpus", "3")
    assert refused.returncode == 2
    assert "no node of the Ray cluster has 3 CPUs and 0 GPUs" in refused.stderr
    assert ": 2 CPUs, 0 GPUs" in refused.stderr and ": 1 CPUs, 0 GPUs" in refused.stderr  # each node, by address
    assert "Traceback" not in refused.stderr
    assert not (on_cluster / "big").exists()  # refused before a run folder was made
    gpus = _cli("train", *args, "--gpus", "0.5")
    assert gpus.returncode == 2 and f"{CLUSTER_DEFAULT_CPUS} CPUs and 0.5 GPUs" in gpus.stderr


def test_the_cluster_command_reports_the_nodes_and_the_storage_check(on_cluster: Path) -> None:
    done = _cli("cluster", "--json", "--recheck", "--runs-dir", str(on_cluster))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert (report["executor"], report["nodes"], report["cpus"], report["gpus"]) == ("ray", 2, 3.0, 0.0)
    assert 0 <= report["free_cpus"] <= 3
    assert report["storage"]["ok"] and len(report["storage"]["nodes"]) == 2
