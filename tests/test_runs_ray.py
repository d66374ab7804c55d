"""Choosing an executor, resources per run and --detach, without a cluster; the Ray cluster itself: test_ray_cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from runs_helpers import new_run

from s7core.config import ConfigError, Resources, resource_settings
from s7core.data import make_tiny_cifar10
from s7core.runs import executor_name, get_executor, read_status
from s7core.runs.executor import BACKEND_ENV, StorageCheck
from s7core.runs.local import LocalExecutor
from s7core.runs.ray_jobs import ClusterError, RayExecutor, cluster_address, entrypoint, probe_storage
from s7core.runs.status import RunError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=200, n_test=100)


def test_the_backend_comes_from_the_flag_then_s7_backend_then_local(monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    assert executor_name() == "local" and isinstance(get_executor(), LocalExecutor)
    monkeypatch.setenv(BACKEND_ENV, "ray")
    assert executor_name() == "ray" and isinstance(get_executor(), RayExecutor)
    assert executor_name("local") == "local"
    monkeypatch.setenv(BACKEND_ENV, "slurm")
    with pytest.raises(RunError, match="unknown executor 'slurm': choose one of local, ray"):
        get_executor()


def test_the_ray_executor_is_made_without_importing_ray():
    code = "import sys; from s7core.runs import get_executor; get_executor('ray'); print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr


def test_no_cluster_named_says_to_set_ray_address(monkeypatch):
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ClusterError, match="set RAY_ADDRESS to the head's dashboard address"):
        cluster_address()
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert cluster_address() == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://api:8265")  # Ray's own order: this one first
    assert cluster_address() == "http://api:8265"


def test_an_unreachable_cluster_is_a_message_not_a_traceback(tmp_path):
    pytest.importorskip("ray.job_submission")
    executor = RayExecutor(tmp_path, address="http://127.0.0.1:9")  # the discard port: nothing listens
    with pytest.raises(ClusterError, match="cannot reach the Ray cluster at http://127.0.0.1:9"):
        executor.check_launch(Resources())


def test_a_request_no_node_can_meet_names_what_each_node_has(tmp_path, monkeypatch):
    nodes = [
        {"id": "a", "ip": "10.0.0.1", "cpus": 4.0, "gpus": 1.0},
        {"id": "b", "ip": "10.0.0.2", "cpus": 8.0, "gpus": 0.0},
    ]
    monkeypatch.setattr(RayExecutor, "_nodes", lambda self: nodes)
    checked = []
    monkeypatch.setattr(
        RayExecutor, "check_storage", lambda self, force=False: checked.append(1) or StorageCheck(True, "")
    )
    executor = RayExecutor(tmp_path, address="http://head:8265")
    with pytest.raises(
        ClusterError, match=r"no node .* has 6 CPUs and 1 GPUs .*10\.0\.0\.1: 4 CPUs, 1 GPUs; 10\.0\.0\.2"
    ):
        executor.check_launch(Resources(cpus=6, gpus=1))  # 8 CPUs on one node, a GPU on the other: not on one
    assert not checked  # refused before any probe job
    executor.check_launch(Resources(cpus=4, gpus=0.5))  # fits on the first node: on to the storage check
    assert checked == [1]
    monkeypatch.setattr(RayExecutor, "check_storage", lambda self, force=False: StorageCheck(False, "mount it"))
    with pytest.raises(ClusterError, match="mount it"):
        executor.check_launch(Resources(cpus=4))


def test_the_probe_reads_the_marker_back_and_says_when_it_cannot(tmp_path):
    marker = tmp_path / ".s7-storage-probe"
    missing = probe_storage(marker)
    assert "cannot read" in missing["error"] and "token" not in missing
    marker.write_text("abc123\n")
    report = probe_storage(marker)
    assert report["token"] == "abc123" and report["writable"] and "error" not in report
    assert report["torch"] == torch.__version__
    assert list(tmp_path.iterdir()) == [marker]  # the write test leaves nothing behind


def test_a_runs_entrypoint_is_the_projects_own_command_line():
    assert entrypoint(Path("/shared/runs/my run"), 2) == (
        "python -m s7core train --run-dir '/shared/runs/my run' --resume --cpus 2"
    )


def test_resources_are_declared_once_and_checked():
    assert [s.path for s in resource_settings()] == ["cpus", "gpus"]
    assert Resources() == Resources(cpus=0, gpus=0.0)
    assert Resources.from_dict({"cpus": 2, "gpus": 0.25}).to_dict() == {"cpus": 2, "gpus": 0.25}
    with pytest.raises(ConfigError, match="above one GPU, ask for whole GPUs"):
        Resources(gpus=1.5)
    with pytest.raises(ConfigError, match="CPU cores must be whole cores from 0 to 1024"):
        Resources(cpus=-1)
    with pytest.raises(ConfigError, match="unknown resource setting 'memory'"):
        Resources.from_dict({"memory": 4})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU to give")
def test_the_local_executor_refuses_gpus_this_machine_lacks(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    with pytest.raises(RunError, match="asks for 0.5 GPUs but this machine has 0"):
        LocalExecutor(tmp_path / "runs").start(run_dir, Resources(gpus=0.5))
    assert read_status(run_dir).state == "stopped" and not (run_dir / "train.log").exists()


def test_train_detach_on_the_local_executor_returns_at_once_and_the_run_trains(tmp_path, data_dir, monkeypatch):
    monkeypatch.delenv(BACKEND_ENV, raising=False)
    run_dir = tmp_path / "runs" / "detached"
    args = ["--preset", "tiny", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--val-split", "0"]
    args += ["--epochs", "1", "--batch-size", "50", "--device", "cpu", "--cpus", "1", "--detach"]
    done = subprocess.run(
        [sys.executable, "-m", "s7core", "train", *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run_dir)
    status = read_status(run_dir)
    assert status.executor == "local" and status.state.active and status.resources == {"cpus": 1, "gpus": 0.0}
    final = LocalExecutor(run_dir.parent).wait(run_dir, timeout_s=120)
    assert final.state == "finished", (run_dir / "train.log").read_text()
    assert "--resume --cpus 1" in (run_dir / "train.log").read_text()  # the trainer was told its cores


def test_resume_detach_keeps_the_resources_of_the_last_launch(tmp_path, data_dir, monkeypatch):
    launched = []
    monkeypatch.setattr(LocalExecutor, "_launch", lambda self, folder: launched.append(folder) or folder.read_status())
    executor = LocalExecutor(tmp_path / "runs")
    run_dir = new_run(tmp_path, data_dir)
    executor.start(run_dir, Resources(cpus=3))
    assert read_status(run_dir).resources == {"cpus": 3, "gpus": 0.0}
    executor.start(run_dir)  # the Resume button asks for nothing: the same as before
    assert read_status(run_dir).resources == {"cpus": 3, "gpus": 0.0} and len(launched) == 2
