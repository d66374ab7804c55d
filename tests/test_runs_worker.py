"""The training process's side of a run: it fills the folder, refuses to share it, and records how it ended."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from runs_helpers import epoch_lines, new_run, playing_trainer

from s7core.data import make_tiny_cifar10
from s7core.errors import UserError
from s7core.runs.results import load_predictions, load_run_model
from s7core.runs.status import RunError
from s7core.runs.store import read_status, run_info
from s7core.runs.worker import execute_run


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


def test_execute_run_fills_the_folder(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=2)
    result = execute_run(run_dir)
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "status.json", "metrics.jsonl", "checkpoint_latest.pt", "checkpoint_best.pt"} <= names
    assert "predictions.npz" in names and not any(n.endswith(".tmp") for n in names)
    assert epoch_lines(run_dir) == [1, 2]
    info = run_info(run_dir)
    assert (info.state, info.epoch) == ("finished", 2)
    assert info.best_accuracy == pytest.approx(result.best_accuracy, abs=1e-6)
    assert info.final_accuracy == result.final_accuracy
    assert info.executor == "local" and info.started_at  # trained in the foreground: this process was its job
    predictions = load_predictions(run_dir)
    assert predictions.count == 200 and predictions.accuracy == info.best_accuracy  # one figure, the saved one
    model = load_run_model(run_dir, "latest")
    assert not model.training and isinstance(next(model.parameters()), torch.Tensor)
    with pytest.raises(RunError, match="already trained all 2 epochs"):
        execute_run(run_dir)
    execute_run(run_dir, epochs=3)  # trains one more epoch
    assert epoch_lines(run_dir) == [1, 2, 3] and run_info(run_dir).epochs == 3


def test_a_damaged_checkpoint_is_a_user_error_naming_the_file(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    (run_dir / "checkpoint_latest.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match=r"checkpoint_latest\.pt.*damaged.*delete it"):
        execute_run(run_dir)
    with pytest.raises(RunError, match=r"checkpoint_latest\.pt"):
        load_run_model(run_dir)


def test_a_run_another_live_process_trains_is_refused_and_left_alone(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        playing_trainer(run_dir, trainer.pid)
        before = (run_dir / "status.json").read_bytes()
        with pytest.raises(RunError, match=f"being trained by process {trainer.pid} — stop it first"):
            execute_run(run_dir, epochs=5)
        assert (run_dir / "status.json").read_bytes() == before
        assert json.loads((run_dir / "config.json").read_text())["train"]["epochs"] == 3  # not raised to 5
    finally:
        trainer.kill()
        trainer.wait()


def test_an_error_while_training_leaves_a_failed_status_saying_why(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir)
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "data_dir": str(tmp_path / "gone")}))
    with pytest.raises(UserError, match="gone"):
        execute_run(run_dir)
    status = read_status(run_dir)
    assert status.state == "failed" and "gone" in status.message


def test_a_stop_request_ends_the_run_stopped_after_a_save(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=5)
    steps = []
    result = execute_run(run_dir, callback=steps.append, should_stop=lambda: len(steps) >= 3)
    status = read_status(run_dir)
    assert result.stopped and status.state == "stopped" and status.message.startswith("stopped during epoch")
    assert torch.load(run_dir / "checkpoint_latest.pt", weights_only=True)["global_step"] >= 1
    assert not (run_dir / "predictions.npz").exists()
