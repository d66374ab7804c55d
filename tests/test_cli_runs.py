"""The runs and stop commands: listing, the command-line Stop button, and their one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from runs_helpers import ended_process, forge_status, new_run, playing_trainer

from s7core.__main__ import main
from s7core.data import make_tiny_cifar10
from s7core.runs.executor import LOCAL
from s7core.runs.local import LocalExecutor, process_handle
from s7core.runs.status import RunState
from s7core.runs.store import read_status


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


@pytest.fixture
def trainer():
    """A process that plays a run's trainer: it sleeps until signalled."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_stop_signals_a_running_run_and_prints_its_state(tmp_path, data_dir, trainer, capsys):
    run_dir = new_run(tmp_path, data_dir, name="long")
    playing_trainer(run_dir, trainer.pid)
    assert main(["stop", "long", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out == "long: running — stopping: finishing the step and saving\n"
    assert trainer.wait(timeout=10) == -signal.SIGTERM


def test_stop_takes_a_queued_run_off_the_queue_by_its_folder(tmp_path, data_dir, capsys):
    run_dir = new_run(tmp_path, data_dir, name="waiting")
    forge_status(run_dir, state=RunState.QUEUED, executor=LOCAL, handle={"max_concurrent": 1})
    assert main(["stop", str(run_dir)]) == 0
    assert capsys.readouterr().out.startswith("waiting: stopped — removed from the queue")
    assert read_status(run_dir).state == "stopped"


def test_runs_stop_is_the_same_command(tmp_path, data_dir, trainer, capsys):
    playing_trainer(new_run(tmp_path, data_dir, name="long"), trainer.pid)
    assert main(["runs", "--runs-dir", str(tmp_path / "runs"), "--stop", "long"]) == 0
    assert "long: running — stopping" in capsys.readouterr().out
    assert trainer.wait(timeout=10) == -signal.SIGTERM


def test_stop_refuses_an_unknown_run_in_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["stop", "no-such-run", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "no run 'no-such-run'" in one_error_line(capsys)


def test_stop_refuses_a_run_that_is_not_running_in_one_line_with_exit_2(tmp_path, data_dir, capsys):
    new_run(tmp_path, data_dir, name="idle")
    assert main(["stop", "idle", "--runs-dir", str(tmp_path / "runs")]) == 2
    assert "run idle is not running (it is stopped)" in one_error_line(capsys)
    forge_status(tmp_path / "runs" / "idle", state=RunState.RUNNING, executor=LOCAL, handle={"pid": ended_process()})
    assert main(["stop", "idle", "--runs-dir", str(tmp_path / "runs")]) == 2  # its process had gone
    assert "not running (it is failed)" in one_error_line(capsys)


def test_runs_lists_after_correcting_and_starting_what_it_can(tmp_path, data_dir, capsys, monkeypatch):
    def launch(self, folder):  # plays the trainer of a queued run that gets its slot
        return folder.update_status(state=RunState.RUNNING, executor=LOCAL, handle=process_handle(os.getpid()))

    monkeypatch.setattr(LocalExecutor, "_launch", launch)
    forge_status(new_run(tmp_path, data_dir, name="dead"), state=RunState.RUNNING, handle={"pid": ended_process()})
    forge_status(new_run(tmp_path, data_dir, name="next"), state=RunState.QUEUED, executor=LOCAL)
    assert main(["runs", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert (listed["dead"]["state"], listed["next"]["state"]) == ("failed", "running")
    assert listed["next"]["executor"] == "local" and listed["next"]["handle"]["pid"] == os.getpid()
    assert main(["runs", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["run", "state", "epoch", "best", "final", "net", "recipe", "message"]
    assert "dead" in out and "failed" in out and "0/3" in out


def test_runs_says_when_there_are_none(tmp_path, capsys):
    assert main(["runs", "--runs-dir", str(tmp_path / "none")]) == 0
    assert capsys.readouterr().out == f"no runs under {tmp_path / 'none'}\n"
