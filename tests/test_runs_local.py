"""The local executor: background processes, kill -9 and resume, graceful stop, the queue, correcting a status."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from runs_helpers import ended_process, epoch_lines, forge_status, new_run, playing_trainer, wait_until

from s7core.data import make_tiny_cifar10
from s7core.runs.executor import EXECUTORS, LOCAL, executor_for, get_executor
from s7core.runs.local import LocalExecutor, process_handle
from s7core.runs.status import RunError, RunState
from s7core.runs.store import list_runs, read_status


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


@pytest.fixture
def executor(tmp_path):
    return LocalExecutor(tmp_path / "runs")


def test_a_running_run_whose_process_is_gone_is_failed_by_state_quoting_its_log(tmp_path, data_dir, executor):
    run_dir = new_run(tmp_path, data_dir)
    (run_dir / "train.log").write_text("epoch 1/3 train loss 2.1\nTraceback (most recent call last):\nMemoryError\n")
    forge_status(run_dir, state=RunState.RUNNING, executor=LOCAL, handle={"pid": ended_process()})
    status = executor.state(run_dir)
    assert status.state == "failed" and "resume" in status.message and status.message.endswith("MemoryError")
    assert read_status(run_dir) == status  # written: state() is where a status is corrected
    playing_trainer(run_dir, os.getpid())
    assert executor.state(run_dir).state == "running"  # alive: left as it is
    # a live pid with another start time is another process that reused the number
    forge_status(run_dir, handle={"pid": os.getpid(), "pid_start": 1})
    assert executor.state(run_dir).state == "failed"


def test_refresh_corrects_every_run_whose_process_is_gone(tmp_path, data_dir, executor):
    for name in ("a", "b"):
        forge_status(new_run(tmp_path, data_dir, name=name), state=RunState.RUNNING, handle={"pid": ended_process()})
    executor.refresh()
    assert {i.name: i.state for i in list_runs(tmp_path / "runs")} == {"a": "failed", "b": "failed"}


def test_kill_9_then_resume_finishes_with_every_epoch_once(tmp_path, data_dir, executor):
    run_dir = new_run(tmp_path, data_dir, epochs=12)
    started = executor.start(run_dir)
    assert started.state == "running" and started.executor == LOCAL and started.handle["pid"]
    wait_until(lambda: (run_dir / "checkpoint_latest.pt").exists())
    os.kill(started.handle["pid"], signal.SIGKILL)
    wait_until(lambda: executor.state(run_dir).state != "running")
    killed = read_status(run_dir)
    assert killed.state == "failed" and "resume" in killed.message
    done = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)["epoch"]
    assert 1 <= done < 12, "the run finished before it could be killed"

    assert executor.start(run_dir).state == "running"
    final = executor.wait(run_dir, timeout_s=90)
    assert final.state == "finished", (final, executor.logs(run_dir))
    assert epoch_lines(run_dir) == list(range(1, 13))
    assert (run_dir / "predictions.npz").exists()


def test_sigterm_stops_after_the_step_with_a_save_and_resume_finishes(tmp_path, data_dir, executor):
    run_dir = new_run(tmp_path, data_dir, epochs=300)
    executor.start(run_dir)
    wait_until(lambda: read_status(run_dir).message.startswith(("training", "epoch")))
    assert executor.stop(run_dir).message.startswith("stopping")
    stopped = executor.wait(run_dir, timeout_s=60)
    assert stopped.state == "stopped", (stopped, executor.logs(run_dir))
    state = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)
    assert state["global_step"] >= 1 and state["epoch"] < 300
    with pytest.raises(RunError, match="not running"):
        executor.stop(run_dir)


def test_a_second_run_waits_in_the_queue_and_starts_when_the_first_finishes(tmp_path, data_dir, executor):
    first = new_run(tmp_path, data_dir, name="first", epochs=1)
    second = new_run(tmp_path, data_dir, name="second", epochs=1)
    assert executor.start(first).state == "running"
    queued = executor.start(second)
    assert queued.state == "queued" and "first" in queued.message
    with pytest.raises(RunError, match="already queued"):
        executor.start(second)
    assert executor.wait(first, timeout_s=60).state == "finished"
    wait_until(lambda: read_status(second).state != "queued", timeout_s=30)  # started by the first as it ended
    assert executor.wait(second, timeout_s=60).state == "finished"
    assert {i.name: i.state for i in list_runs(tmp_path / "runs")} == {"first": "finished", "second": "finished"}
    with pytest.raises(RunError, match="has finished"):
        executor.start(first)


def test_six_runs_with_one_slot_train_one_at_a_time_in_the_order_they_were_queued(tmp_path, data_dir, monkeypatch):
    launched = []

    def launch(self, folder):  # plays the trainer: this test process, alive for as long as it is needed
        launched.append(folder.name)
        return folder.update_status(state=RunState.RUNNING, executor=LOCAL, handle=process_handle(os.getpid()))

    monkeypatch.setattr(LocalExecutor, "_launch", launch)
    executor, root = LocalExecutor(tmp_path / "runs", max_concurrent=1), tmp_path / "runs"
    names = ["f", "e", "d", "c", "b", "a"]  # an order their names would not give
    statuses = [executor.start(new_run(tmp_path, data_dir, name=name)) for name in names]
    assert [s.state for s in statuses] == ["running"] + ["queued"] * 5
    assert all(s.message == "queued: waiting for f to finish" for s in statuses[1:])
    for name in names:
        executor.refresh()  # a slot is taken: nothing more starts
        assert [i.name for i in list_runs(root) if i.state == "running"] == [name]
        forge_status(root / name, state=RunState.FINISHED)
        executor.refresh()
    assert launched == names
    assert {i.state for i in list_runs(root)} == {"finished"}


def test_two_slots_take_two_runs_and_queue_the_third(tmp_path, data_dir, monkeypatch):
    def launch(self, folder):
        return folder.update_status(state=RunState.RUNNING, executor=LOCAL, handle=process_handle(os.getpid()))

    monkeypatch.setattr(LocalExecutor, "_launch", launch)
    executor = LocalExecutor(tmp_path / "runs", max_concurrent=2)
    states = [executor.start(new_run(tmp_path, data_dir, name=name)).state for name in ("a", "b", "c")]
    assert states == ["running", "running", "queued"]
    assert read_status(tmp_path / "runs" / "c").handle == {"max_concurrent": 2}


def test_stopping_a_queued_run_takes_it_off_the_queue(tmp_path, data_dir, executor):
    run_dir = new_run(tmp_path, data_dir)
    forge_status(run_dir, state=RunState.QUEUED, executor=LOCAL, handle={"max_concurrent": 1})
    stopped = executor.stop(run_dir)
    assert stopped.state == "stopped" and "removed from the queue" in stopped.message
    executor.refresh()
    assert read_status(run_dir).state == "stopped"  # not started by the next refresh


def test_start_refuses_a_damaged_config_before_launching(tmp_path, data_dir, executor):
    run_dir = new_run(tmp_path, data_dir)
    (run_dir / "config.json").write_text('{"spec": ')
    with pytest.raises(RunError, match=r"config\.json"):
        executor.start(run_dir)
    assert read_status(run_dir).state == "stopped" and not (run_dir / "train.log").exists()


def test_a_run_another_executor_launched_is_left_to_it(tmp_path, data_dir, executor):
    run_dir = new_run(tmp_path, data_dir)
    forge_status(run_dir, state=RunState.RUNNING, executor="cluster", handle={"job_id": "raysubmit_1"})
    assert executor.state(run_dir).state == "running"  # no pid to check: not this executor's to correct
    with pytest.raises(RunError, match="launched by the cluster executor — stop it there"):
        executor.stop(run_dir)


def test_logs_are_the_last_lines_of_train_log(tmp_path, data_dir, executor):
    run_dir = new_run(tmp_path, data_dir)
    assert executor.logs(run_dir) == ""
    (run_dir / "train.log").write_text("".join(f"line {i}\n" for i in range(100)))
    assert executor.logs(run_dir, 2) == "line 98\nline 99"
    assert len(executor.logs(run_dir).splitlines()) == 50


def test_executors_are_found_by_name(tmp_path, data_dir):
    assert all(get_executor(name).name == name for name in EXECUTORS)
    assert isinstance(get_executor(), LocalExecutor)
    assert get_executor(max_concurrent=3, runs_dir=tmp_path).max_concurrent == 3
    with pytest.raises(RunError, match="unknown executor 'slurm': choose one of local"):
        get_executor("slurm")
    with pytest.raises(RunError, match="max_concurrent must be at least 1"):
        get_executor(max_concurrent=0)
    run_dir = new_run(tmp_path, data_dir)
    assert isinstance(executor_for(run_dir), LocalExecutor)  # never launched: the default executor
    forge_status(run_dir, executor="slurm")
    with pytest.raises(RunError, match="unknown executor 'slurm'"):
        executor_for(run_dir)
