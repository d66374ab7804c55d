"""Many users at once: launches at the same moment, the concurrency limit under a race, stops that hit only their
own run, and the app restarted while runs train. Parametrized over every registered executor; the parts that need
an executor's own way to fake or kill a job are skipped for the others, with the reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from runs_helpers import (
    EXECUTOR_PARAMS,
    ended_process,
    forge_status,
    new_run,
    on_cluster,
    trainer_alive,
    trainer_of,
    wait_until,
)
from test_train import micro_spec, quick_config

from s7core.data import make_tiny_cifar10
from s7core.runs.executor import LOCAL, get_executor
from s7core.runs.local import LocalExecutor, process_alive, process_handle
from s7core.runs.status import RunState
from s7core.runs.store import create_run, list_runs, read_status

REPO = Path(__file__).resolve().parents[1]
USERS = 8  # sessions pressing the button in the same instant


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


@pytest.fixture(params=EXECUTOR_PARAMS)
def executor_name(request, monkeypatch) -> str:
    on_cluster(request, request.param, monkeypatch)
    return request.param


def all_at_once(jobs: list[Callable[[], object]]) -> list[object]:
    """Run the jobs in threads released together by a barrier; their results in order (an error fails the test)."""
    barrier, results, errors = threading.Barrier(len(jobs)), [None] * len(jobs), []

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = jobs[i]()
        except BaseException as err:  # a thread's error must reach the test
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, repr(errors[0])
    return results


def test_launches_at_the_same_moment_get_distinct_run_folders(tmp_path, data_dir):
    root = tmp_path / "runs"
    make = lambda: create_run(micro_spec(), quick_config(), root, None, data_dir, "default")  # noqa: E731
    folders = all_at_once([make] * USERS)
    assert len(set(folders)) == USERS  # same spec, same recipe, same second: still one folder each
    assert sorted(i.name for i in list_runs(root)) == sorted(p.name for p in folders)
    assert all(read_status(p).state == "stopped" for p in folders)


def test_the_concurrency_limit_holds_when_everyone_starts_at_once(tmp_path, data_dir, executor_name, monkeypatch):
    if executor_name != LOCAL:
        pytest.skip(
            f"the {executor_name} executor has no limit of its own: Ray queues runs by the CPUs they ask for "
            "(tests/test_ray_cluster.py: a run waits as PENDING until a node has them)"
        )

    def launch(self, folder):  # this test process plays every trainer, so that only the queue is raced
        return folder.update_status(state=RunState.RUNNING, executor=LOCAL, handle=process_handle(os.getpid()))

    monkeypatch.setattr(LocalExecutor, "_launch", launch)
    runs = [new_run(tmp_path, data_dir, name=f"s{i}") for i in range(USERS)]
    executors = [get_executor(executor_name, runs_dir=tmp_path / "runs", max_concurrent=2) for _ in runs]
    states = all_at_once([lambda e=e, r=r: e.start(r).state for e, r in zip(executors, runs, strict=True)])
    assert sorted(states) == ["queued"] * (USERS - 2) + ["running"] * 2
    assert sum(i.state == "running" for i in list_runs(tmp_path / "runs")) == 2
    all_at_once([lambda e=e: e.refresh() for e in executors])  # every page polling at once starts nothing more
    assert sum(i.state == "running" for i in list_runs(tmp_path / "runs")) == 2


def test_stopping_one_run_never_stops_another(tmp_path, data_dir, executor_name):
    executor = get_executor(executor_name, runs_dir=tmp_path / "runs", max_concurrent=2)
    mine, theirs = (new_run(tmp_path, data_dir, name=n, epochs=300) for n in ("mine", "theirs"))
    executor.start(mine)
    executor.start(theirs)
    training = lambda run: read_status(run).message.startswith(("training", "epoch"))  # noqa: E731
    wait_until(lambda: training(mine) and training(theirs), timeout_s=180)
    executor.stop(mine)
    assert executor.wait(mine, timeout_s=120).state == "stopped"
    assert executor.state(theirs).state == "running" and trainer_alive(theirs)
    executor.stop(theirs)
    assert executor.wait(theirs, timeout_s=120).state == "stopped"


def test_runs_are_found_again_after_the_app_restarts(tmp_path, data_dir, executor_name):
    root = tmp_path / "runs"
    alive = new_run(tmp_path, data_dir, name="alive", epochs=300)
    dead = new_run(tmp_path, data_dir, name="dead", epochs=300)
    if executor_name == LOCAL:  # died with the app
        forge_status(dead, state=RunState.RUNNING, executor=LOCAL, handle={"pid": ended_process()})
    else:  # a job the cluster no longer knows (restarted, or its record expired)
        handle = {"submission_id": "s7-dead-00000000", "address": os.environ["RAY_ADDRESS"]}
        forge_status(dead, state=RunState.RUNNING, executor=executor_name, handle=handle)
    app = (
        "import sys; from s7core.runs.executor import get_executor; "
        f"get_executor({executor_name!r}, runs_dir=sys.argv[1], max_concurrent=2).start(sys.argv[2])"
    )
    subprocess.run([sys.executable, "-c", app, str(root), str(alive)], cwd=REPO, check=True, timeout=120)
    # the app's process has ended; a new one (this test) takes over with a fresh executor
    restarted = get_executor(executor_name, runs_dir=root, max_concurrent=2)
    restarted.refresh()
    found = {i.name: i for i in list_runs(root)}
    assert found["alive"].state in ("queued", "running") and found["dead"].state == "failed"
    assert "resume" in found["dead"].message
    pid = trainer_of(alive)  # found again: by its process here, by its job on a cluster
    assert restarted.state(alive).state == "running"
    os.kill(pid, signal.SIGKILL)  # now the trainer dies too, with no app watching
    wait_until(lambda: not process_alive(pid), timeout_s=30)
    wait_until(lambda: (restarted.refresh(), read_status(alive).state == "failed")[1], timeout_s=120, poll_s=0.5)
    assert restarted.start(dead).state in ("queued", "running")  # a dead run is resumable
    wait_until(lambda: read_status(dead).message.startswith(("training", "epoch")), timeout_s=180)
    restarted.stop(dead)
    assert restarted.wait(dead, timeout_s=120).state == "stopped"
