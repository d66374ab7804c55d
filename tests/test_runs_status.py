"""The typed run status: JSON round trip, old status files, damaged values, and the progress it implies."""

from __future__ import annotations

import json

import pytest

from s7core.runs.status import RunError, RunInfo, RunState, RunStatus, progress_fraction


def full_status() -> RunStatus:
    return RunStatus(
        RunState.RUNNING,
        epoch=3,
        epochs=20,
        best_accuracy=0.625,
        best_epoch=2,
        final_accuracy=0.5,
        message="epoch 3",
        executor="local",
        handle={"pid": 1234, "pid_start": 98765},
        queued_at="2025-01-02T03:04:05.123456+00:00",
        started_at="2025-01-02T03:05:00+00:00",
        updated="2025-01-02T03:06:00+00:00",
    )


def test_a_status_survives_a_round_trip_through_json():
    status = full_status()
    text = json.dumps(status.to_dict())
    assert json.loads(text)["state"] == "running"
    assert RunStatus.from_dict(json.loads(text)) == status


def test_a_state_reads_and_prints_as_its_value():
    assert RunState("queued") is RunState.QUEUED and RunState.QUEUED == "queued"
    assert f"{RunState.FAILED}" == str(RunState.FAILED) == "failed"
    assert [s.value for s in RunState if s.active] == ["queued", "running"]


def test_changed_stamps_the_time_and_keeps_the_rest():
    status = full_status().changed(message="stopping")
    assert status.message == "stopping" and status.updated != full_status().updated
    assert status.handle == full_status().handle and status.epoch == 3


def test_a_status_file_from_before_executors_keeps_its_process_and_queue_limit():
    old = RunStatus.from_dict({"state": "running", "pid": 42, "pid_start": 7, "epoch": 1, "max_concurrent": 2})
    assert (old.state, old.executor, old.handle, old.epoch) == (RunState.RUNNING, None, {"pid": 42, "pid_start": 7}, 1)
    queued = RunStatus.from_dict({"state": "queued", "pid": None, "queued_at": "t", "max_concurrent": 3})
    assert queued.handle == {"max_concurrent": 3} and queued.queued_at == "t"
    assert RunStatus.from_dict({"state": "finished", "pid": None}).handle == {}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"state": "paused"}, "unknown state 'paused'"),
        ({}, "unknown state None"),
        ({"state": "running", "epoch": "three"}, "epoch is 'three', not a int"),
        ({"state": "running", "handle": [1]}, "handle is \\[1\\], not a dict"),
    ],
)
def test_a_damaged_status_is_a_run_error_saying_which_value(data, message):
    with pytest.raises(RunError, match=message):
        RunStatus.from_dict(data)


def test_run_info_is_a_status_with_where_the_run_lives():
    info = RunInfo(state=RunState.FINISHED, epoch=2, epochs=2, name="r", path="/runs/r", preset="micro")
    data = info.to_dict()
    assert (data["state"], data["name"], data["path"], data["preset"], data["recipe"]) == (
        "finished", "r", "/runs/r", "micro", None
    )  # fmt: skip
    assert RunStatus.from_dict(data).state is RunState.FINISHED


def test_progress_fraction_counts_epochs_and_the_running_epochs_steps():
    def info(state: str, epoch: int, epochs: int) -> RunInfo:
        return RunInfo(state=RunState(state), epoch=epoch, epochs=epochs, name="r", path="r", preset="tiny")

    running = info("running", 1, 4)
    assert progress_fraction(running) == 0.25
    assert progress_fraction(running, {"epoch": 2, "step": 50, "steps_per_epoch": 100}) == 0.375
    assert progress_fraction(running, {"epoch": 1, "step": 100, "steps_per_epoch": 100}) == 0.25  # a stale step line
    assert progress_fraction(info("queued", 0, 0)) == 0.0
