"""The run folder: config, status, metrics and checkpoints on disk; damaged files; reading never writes."""

from __future__ import annotations

import json

import pytest
from runs_helpers import ended_process, forge_status, new_run
from test_train import micro_spec, quick_config

from s7core.data import make_tiny_cifar10
from s7core.errors import UserError
from s7core.runs.executor import LOCAL
from s7core.runs.status import RunError, RunState
from s7core.runs.store import (
    checkpoint_path,
    find_run,
    list_runs,
    read_metrics,
    read_run_config,
    read_status,
    run_data_dir,
    run_info,
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


def snapshot(run_dir):
    """Every file of the folder with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run_dir.iterdir()}


def test_create_run_writes_its_config_and_lists_as_not_started(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    spec, config, meta = read_run_config(run_dir)
    assert spec == micro_spec() and config == quick_config()
    assert set(meta["versions"]) == {"s7core", "torch", "python"} and meta["recipe"] == "default"
    assert run_data_dir(run_dir) == data_dir.resolve()
    [info] = list_runs(tmp_path / "runs")
    assert (info.name, info.state, info.epoch, info.epochs, info.preset) == ("r1", "stopped", 0, 3, "micro")
    assert info.executor is None and info.handle == {}
    with pytest.raises(RunError, match="exists"):
        new_run(tmp_path, data_dir)
    with pytest.raises(RunError, match="run name"):
        new_run(tmp_path, data_dir, name="../escape")


def test_create_run_refuses_a_validation_split_that_leaves_nothing_to_train(tmp_path, data_dir):
    with pytest.raises(RunError, match=r"val_split 320 would hold out every training image.*has 320.*lower val_split"):
        new_run(tmp_path, data_dir, val_split=320)
    assert not (tmp_path / "runs" / "r1").exists()  # nothing half made
    assert read_run_config(new_run(tmp_path, data_dir, val_split=319))[1].val_split == 319


def test_list_runs_is_newest_first(tmp_path, data_dir):
    for name in ("a", "b", "c"):
        run_dir = new_run(tmp_path, data_dir, name=name)
        config = json.loads((run_dir / "config.json").read_text())
        (run_dir / "config.json").write_text(json.dumps({**config, "created": f"2025-01-0{'acb'.index(name) + 1}"}))
    assert [i.name for i in list_runs(tmp_path / "runs")] == ["b", "c", "a"]
    assert list_runs(tmp_path / "nowhere") == []


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 1}\n{"kind": "epoch", "ep')
    assert read_metrics(tmp_path) == [{"kind": "epoch", "epoch": 1}]
    assert read_metrics(tmp_path / "nowhere") == []


def test_a_damaged_config_is_a_user_error_naming_the_file(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    (run_dir / "config.json").write_text('{"spec": ')
    with pytest.raises(RunError, match=r"config\.json.*damaged") as info:
        read_run_config(run_dir)
    assert isinstance(info.value, UserError)
    [listed] = list_runs(tmp_path / "runs")
    assert listed.state == "failed" and "config.json" in listed.message


def test_a_damaged_status_is_a_user_error_saying_how_to_recover(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    for damage in ("{not json", '["a list"]', '{"state": "paused"}', '{"state": "running", "epoch": "x"}'):
        (run_dir / "status.json").write_text(damage)
        with pytest.raises(RunError, match=r"status\.json.*delete it.*resume the run"):
            read_status(run_dir)
        before = snapshot(run_dir)
        info = run_info(run_dir)
        assert info.state == "failed" and "status.json" in info.message and info.preset == "micro"
        assert snapshot(run_dir) == before  # reported, not repaired
    (run_dir / "status.json").unlink()
    assert read_status(run_dir).state == "stopped"  # the way out the message names


def test_reading_a_run_whose_process_died_leaves_every_file_as_it_was(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    forge_status(run_dir, state=RunState.RUNNING, executor=LOCAL, handle={"pid": ended_process()})
    before = snapshot(run_dir)
    assert run_info(run_dir).state == "running"  # what the folder says; correcting it is the executor's job
    assert [i.state for i in list_runs(tmp_path / "runs")] == ["running"]
    assert read_status(run_dir).state == "running" and read_metrics(run_dir) == []
    read_run_config(run_dir)
    assert snapshot(run_dir) == before


def test_a_status_file_written_before_executors_reads(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    old = {"state": "finished", "pid": None, "epoch": 3, "epochs": 3, "best_accuracy": 0.5, "message": "finished"}
    (run_dir / "status.json").write_text(json.dumps(old))
    info = run_info(run_dir)
    assert (info.state, info.epoch, info.best_accuracy, info.handle) == ("finished", 3, 0.5, {})


def test_checkpoint_path_prefers_best_then_latest(tmp_path):
    assert checkpoint_path(tmp_path) is None
    (tmp_path / "checkpoint_latest.pt").write_bytes(b"x")
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoint_latest.pt"
    (tmp_path / "checkpoint_best.pt").write_bytes(b"x")
    assert checkpoint_path(tmp_path) == tmp_path / "checkpoint_best.pt"
    assert checkpoint_path(tmp_path, "latest") == tmp_path / "checkpoint_latest.pt"
    with pytest.raises(UserError):
        checkpoint_path(tmp_path, "newest")


def test_find_run_takes_a_folder_or_a_name_under_the_root(tmp_path, data_dir, monkeypatch):
    run_dir = new_run(tmp_path, data_dir)
    assert find_run(str(run_dir)) == run_dir
    assert find_run("r1", tmp_path / "runs") == tmp_path / "runs" / "r1"
    monkeypatch.setenv("S7_RUNS_DIR", str(tmp_path / "runs"))
    assert find_run("r1") == tmp_path / "runs" / "r1"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunError, match="no run 'r2'.*python -m s7core runs"):
        find_run("r2")
