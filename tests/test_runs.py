"""Run folders: files on disk, background training, kill -9 and resume, graceful stop, the queue, damaged files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_train import micro_spec, quick_config

from s7core.data import make_tiny_cifar10
from s7core.errors import UserError
from s7core.runs import (
    RunError,
    create_run,
    execute_run,
    list_runs,
    load_predictions,
    load_run_model,
    read_metrics,
    read_run_config,
    resume_run,
    run_data_dir,
    run_info,
    start_run,
    stop_run,
    wait_for_run,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


def new_run(tmp_path, data_dir, name="r1", **changes):
    return create_run(micro_spec(), quick_config(**changes), tmp_path / "runs", name, data_dir, "default")


def epoch_lines(run_dir):
    return [row["epoch"] for row in read_metrics(run_dir, "epoch")]


def wait_until(condition, timeout_s=60.0, poll_s=0.02):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(poll_s)


def test_create_run_writes_its_config_and_lists_as_not_started(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    spec, config, meta = read_run_config(run_dir)
    assert spec == micro_spec() and config == quick_config()
    assert set(meta["versions"]) == {"s7core", "torch", "python"} and meta["recipe"] == "default"
    assert run_data_dir(run_dir) == data_dir.resolve()
    [info] = list_runs(tmp_path / "runs")
    assert (info.name, info.state, info.epoch, info.epochs, info.preset) == ("r1", "stopped", 0, 3, "micro")
    with pytest.raises(RunError, match="exists"):
        new_run(tmp_path, data_dir)
    with pytest.raises(RunError, match="run name"):
        new_run(tmp_path, data_dir, name="../escape")


def test_create_run_refuses_a_validation_split_that_leaves_nothing_to_train(tmp_path, data_dir):
    with pytest.raises(RunError, match=r"val_split 320 would hold out every training image.*has 320.*lower val_split"):
        new_run(tmp_path, data_dir, val_split=320)
    assert not (tmp_path / "runs" / "r1").exists()  # nothing half made
    assert read_run_config(new_run(tmp_path, data_dir, val_split=319))[1].val_split == 319


def test_execute_run_fills_the_folder(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=2)
    result = execute_run(run_dir)
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "status.json", "metrics.jsonl", "checkpoint_latest.pt", "checkpoint_best.pt"} <= names
    assert "predictions.npz" in names and not any(n.endswith(".tmp") for n in names)
    assert epoch_lines(run_dir) == [1, 2]
    info = run_info(run_dir)
    assert (info.state, info.epoch) == ("finished", 2)
    assert info.best_accuracy == result.best_accuracy and info.final_accuracy == result.final_accuracy
    predictions = load_predictions(run_dir)
    assert predictions.count == 200 and predictions.accuracy == pytest.approx(result.best_accuracy, abs=1e-6)
    model = load_run_model(run_dir, "latest")
    assert not model.training and isinstance(next(model.parameters()), torch.Tensor)
    with pytest.raises(RunError, match="already trained all 2 epochs"):
        execute_run(run_dir)
    execute_run(run_dir, epochs=3)  # trains one more epoch
    assert epoch_lines(run_dir) == [1, 2, 3] and run_info(run_dir).epochs == 3


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 1}\n{"kind": "epoch", "ep')
    assert read_metrics(tmp_path) == [{"kind": "epoch", "epoch": 1}]
    assert read_metrics(tmp_path / "nowhere") == []


def test_a_damaged_checkpoint_is_a_user_error_naming_the_file(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    (run_dir / "checkpoint_latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=r"checkpoint_latest\.pt.*damaged.*delete it"):
        execute_run(run_dir)
    with pytest.raises(RunError, match=r"checkpoint_latest\.pt"):
        load_run_model(run_dir)


def test_a_damaged_config_is_a_user_error_naming_the_file(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    (run_dir / "config.json").write_text('{"spec": ')
    with pytest.raises(RunError, match=r"config\.json.*damaged") as info:
        read_run_config(run_dir)
    assert isinstance(info.value, UserError)
    [listed] = list_runs(tmp_path / "runs")
    assert listed.state == "failed" and "config.json" in listed.message
    with pytest.raises(RunError, match=r"config\.json"):
        start_run(run_dir)


def test_a_running_run_whose_process_is_gone_becomes_failed_and_resumable(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "state": "running", "pid": gone.pid}))
    info = run_info(run_dir)
    assert info.state == "failed" and "resume" in info.message
    # a live pid with another start time is another process that reused the number
    (run_dir / "status.json").write_text(json.dumps({**status, "state": "running", "pid": os.getpid(), "pid_start": 1}))
    assert run_info(run_dir).state == "failed"


def test_kill_9_then_resume_finishes_with_every_epoch_once(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=12)
    info = start_run(run_dir)
    assert info.state == "running" and info.pid
    wait_until(lambda: (run_dir / "checkpoint_latest.pt").exists())
    os.kill(info.pid, signal.SIGKILL)
    wait_until(lambda: run_info(run_dir).state != "running")
    killed = run_info(run_dir)
    assert killed.state == "failed" and "resume" in killed.message
    done = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)["epoch"]
    assert 1 <= done < 12, "the run finished before it could be killed"

    assert resume_run(run_dir).state == "running"
    final = wait_for_run(run_dir, timeout_s=90)
    assert final.state == "finished", (final, (run_dir / "train.log").read_text()[-2000:])
    assert epoch_lines(run_dir) == list(range(1, 13))
    assert (run_dir / "predictions.npz").exists()


def test_sigterm_stops_after_the_step_with_a_save_and_resume_finishes(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=300)
    start_run(run_dir)
    wait_until(lambda: run_info(run_dir).message.startswith(("training", "epoch")))
    assert stop_run(run_dir).message.startswith("stopping")
    stopped = wait_for_run(run_dir, timeout_s=60)
    assert stopped.state == "stopped", (stopped, (run_dir / "train.log").read_text()[-2000:])
    state = torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)
    assert state["global_step"] >= 1 and state["epoch"] < 300
    with pytest.raises(RunError, match="not running"):
        stop_run(run_dir)


def test_a_second_run_waits_in_the_queue_and_starts_when_the_first_finishes(tmp_path, data_dir):
    first = new_run(tmp_path, data_dir, name="first", epochs=1)
    second = new_run(tmp_path, data_dir, name="second", epochs=1)
    assert start_run(first).state == "running"
    queued = start_run(second)
    assert queued.state == "queued" and "first" in queued.message
    with pytest.raises(RunError, match="already queued"):
        start_run(second)
    assert wait_for_run(first, timeout_s=60).state == "finished"
    wait_until(lambda: run_info(second).state != "queued", timeout_s=30)
    assert wait_for_run(second, timeout_s=60).state == "finished"
    assert {i.name: i.state for i in list_runs(tmp_path / "runs")} == {"first": "finished", "second": "finished"}


def test_stopping_a_queued_run_takes_it_off_the_queue(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    status = json.loads((run_dir / "status.json").read_text())
    (run_dir / "status.json").write_text(json.dumps({**status, "state": "queued"}))
    assert stop_run(run_dir).state == "stopped"


def test_checkpoint_path_prefers_best_then_latest(tmp_path):
    from s7core.runs import checkpoint_path

    assert checkpoint_path(tmp_path) is None
    (tmp_path / "checkpoint_latest.pt").write_bytes(b"x")
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoint_latest.pt"
    (tmp_path / "checkpoint_best.pt").write_bytes(b"x")
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoint_best.pt"
    assert checkpoint_path(tmp_path, "latest") == tmp_path / "checkpoint_latest.pt"
    with pytest.raises(UserError):
        checkpoint_path(tmp_path, "newest")


def test_progress_fraction_counts_epochs_and_the_running_epochs_steps():
    from s7core.runs import RunInfo, progress_fraction

    def info(state: str, epoch: int, epochs: int) -> RunInfo:
        return RunInfo("r", "r", state, epoch, epochs, None, None, None, "", "tiny", None)

    running = info("running", 1, 4)
    assert progress_fraction(running) == 0.25
    assert progress_fraction(running, {"epoch": 2, "step": 50, "steps_per_epoch": 100}) == 0.375
    assert progress_fraction(running, {"epoch": 1, "step": 100, "steps_per_epoch": 100}) == 0.25  # a stale step line
    assert progress_fraction(info("queued", 0, 0)) == 0.0
