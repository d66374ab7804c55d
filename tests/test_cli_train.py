"""The train, evaluate and runs commands end to end on the tiny synthetic set."""

from __future__ import annotations

import io
import json
import signal

import pytest
from test_train import micro_spec

from s7core.__main__ import main
from s7core.cli_train import ProgressPrinter, format_table
from s7core.data import make_tiny_cifar10
from s7core.recipes import get_recipe
from s7core.runs import read_metrics, read_run_config, run_info
from s7core.train import EpochEvent, StepEvent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "micro.json"
    path.write_text(micro_spec().to_json())
    return path


def train_args(spec_file, data_dir, run_dir, *more):
    return ["train", "--spec", str(spec_file), "--data-dir", str(data_dir), "--run-dir", str(run_dir),
            "--batch-size", "32", "--lr", "0.05", "--val-split", "0", *more]  # fmt: skip


def test_train_then_evaluate_then_list(tmp_path, spec_file, data_dir, capsys):
    run_dir = tmp_path / "runs" / "cli"
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    assert main(train_args(spec_file, data_dir, run_dir, "--epochs", "3")) == 0
    err = capsys.readouterr().err
    assert "epoch 3/3 train loss" in err and "finished 3 epochs" in err and "best test accuracy" in err
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # restored
    log = (run_dir / "train.log").read_text()
    assert "epoch 3/3 train loss" in log and "finished 3 epochs" in log and "\r" not in log
    info = run_info(run_dir)
    assert info.state == "finished" and info.recipe == "default" and info.best_accuracy > 0.8

    assert main(["evaluate", "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert f"test accuracy {100 * info.best_accuracy:.2f}%" in out
    assert "airplane" in out and "confusion matrix" in out and "precision" in out

    for flags in (["--tta"], ["--tta", "--tta-shift"]):
        assert main(["evaluate", "--run", str(run_dir), "--json", *flags]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["count"] == 200 and sum(map(sum, summary["confusion"])) == 200

    assert main(["runs", "--runs-dir", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "cli" in out and "finished" in out and "3/3" in out


def test_resume_trains_further_without_repeating_epochs(tmp_path, spec_file, data_dir, capsys):
    run_dir = tmp_path / "runs" / "more"
    assert main(train_args(spec_file, data_dir, run_dir, "--epochs", "1")) == 0
    assert main(["train", "--run-dir", str(run_dir), "--resume", "--epochs", "2"]) == 0
    assert [r["epoch"] for r in read_metrics(run_dir, "epoch")] == [1, 2]
    assert "finished 2 epochs" in capsys.readouterr().err


def test_setting_flags_land_in_the_run_config(tmp_path, spec_file, data_dir):
    run_dir = tmp_path / "runs" / "flags"
    flags = ["--epochs", "1", "--max-steps", "2", "--no-tta", "--tta-shift", "--ema", "0.5", "--label-smoothing", "0.2"]
    assert main(train_args(spec_file, data_dir, run_dir, *flags)) == 0
    _, config, _ = read_run_config(run_dir)
    assert (config.tta_flip, config.tta_shift, config.ema, config.label_smoothing) == (False, True, 0.5, 0.2)


def test_only_the_flags_given_override_the_recipe(tmp_path, spec_file, data_dir):
    run_dir = tmp_path / "runs" / "ref"
    flags = ["--recipe", "reference", "--epochs", "1", "--max-steps", "1", "--cutout", "8", "--no-affine"]
    assert main(train_args(spec_file, data_dir, run_dir, *flags)) == 0
    _, config, _ = read_run_config(run_dir)
    given = {"epochs": 1, "max_steps": 1, "batch_size": 32, "lr": 0.05, "val_split": 0}
    expected = get_recipe("reference").config.replace(**given, augment={"crop_padding": 0, "flip": True, "cutout": 8})
    assert config == expected


def test_max_steps_is_a_smoke_test(tmp_path, spec_file, data_dir, capsys):
    run_dir = tmp_path / "runs" / "smoke"
    assert main(train_args(spec_file, data_dir, run_dir, "--epochs", "5", "--max-steps", "2")) == 0
    assert read_metrics(run_dir, "epoch")[-1]["global_step"] == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--recipe", "nope"], "unknown recipe 'nope'"),
        (["train", "--lr", "-1"], "peak learning rate must be above 0"),
        (["train", "--optimizer", "rmsprop"], "optimizer must be one of"),
        (["train", "--weight-decay", "5"], "weight decay must be between 0 and 1, got 5.0 (given as --weight-decay)"),
        (["train", "--batch-size", "0"], "batch size must be whole images per step from 1 to 4096, got 0 (given as"),
        (["train", "--cutout", "40"], "cutout square must be whole pixels from 0 to 32, got 40 (given as --cutout)"),
        (["train", "--warmup", "1.5"], "warm-up must be between 0 and 0.99 (fraction of all steps), got 1.5"),
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--resume"], "--resume needs --run-dir"),
        (["train", "--run-dir", "nowhere", "--resume"], "not a run folder"),
        (["train", "--spec", "missing.json"], "cannot read the spec file"),
        (["evaluate", "--run", "no-such-run"], "no run 'no-such-run'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1


def test_missing_data_is_refused_before_a_run_folder_is_made(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "x"
    assert main(["train", "--preset", "tiny", "--data-dir", str(tmp_path / "empty"), "--run-dir", str(run_dir)]) == 2
    assert "error:" in capsys.readouterr().err and not run_dir.exists()


def test_an_existing_run_needs_resume(tmp_path, spec_file, data_dir, capsys):
    run_dir = tmp_path / "runs" / "twice"
    assert main(train_args(spec_file, data_dir, run_dir, "--epochs", "1", "--max-steps", "1")) == 0
    assert main(train_args(spec_file, data_dir, run_dir, "--epochs", "1")) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run_dir), "--resume", "--lr", "0.1"]) == 2
    assert "fixed once created (lr)" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(run_dir), "--resume", "--cutout", "4", "--no-flip"]) == 2
    assert "fixed once created (augment.cutout, augment.flip)" in capsys.readouterr().err


def test_progress_lines_when_not_a_terminal():
    stream = io.StringIO()
    printer = ProgressPrinter(stream, batch_size=32, epochs=2, plain_every_s=0)
    printer(StepEvent(1, 5, 10, 5, 1.23456, 0.5, 0.01, 320.0, 1.0, work_done=0.25, work_total=2.0))
    printer(EpochEvent(1, 2, 10, 1.1, 0.6, None, None, 1.0, 0.65, 0.01, 2.0, 2.0, 2.0, True))
    printer(EpochEvent(2, 3, 20, 1.0, 0.7, None, None, 0.9, 0.7, 0.01, 2.0, 4.0, 2.0, False, test_subset=500))
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 3
    # 1 s for a quarter of a full-size epoch's work: 1.75 epochs' work to go at 4 s each
    assert "step 5/10 loss 1.2346 acc 50.0%" in lines[0] and "320 img/s" in lines[0] and "ETA 0:07" in lines[0]
    assert "test loss 1.0000 acc 65.00%" in lines[1] and "*best" in lines[1] and "val" not in lines[1]
    assert "test (first 500 images) loss 0.9000 acc 70.00%" in lines[2]


def test_format_table_aligns_numbers_right():
    text = format_table(["name", "n"], [["a", 5], ["bb", 10]])
    assert text.splitlines() == ["name   n", "----  --", "a      5", "bb    10"]


def test_a_time_budget_plans_the_epochs_the_run_list_and_the_log_count_to(
    tmp_path, spec_file, data_dir, capsys, monkeypatch
):
    from s7core import speed

    rate = speed.Speed(1500.0, 4000.0, 32, "cpu", "fp32", None)
    monkeypatch.setattr(speed, "measure_speed", lambda spec, config, remember=False: rate)
    run_dir = tmp_path / "runs" / "budget"
    flags = ("--time-budget", "0.02", "--no-keep-to-budget", "--eval-every", "0")  # the plan as made, at any speed
    assert main(train_args(spec_file, data_dir, run_dir, *flags)) == 0
    err = capsys.readouterr().err
    plan = read_metrics(run_dir, "plan")[0]
    epochs = plan["epochs"]
    assert 2 <= epochs < 20 and f"time budget: {epochs} epochs fit in 1 s" in err  # not the recipe's 20 epochs
    assert f"epoch {epochs}/{epochs} train loss" in err and f"finished {epochs} epochs" in err
    info = run_info(run_dir)
    assert (info.state, info.epoch, info.epochs) == ("finished", epochs, epochs)
    _, config, meta = read_run_config(run_dir)
    assert config.time_budget == 0.02 and config.epochs == 20  # the run's settings stay as they were given
    assert meta["measured"]["plan"]["epochs"] == epochs and meta["measured"]["plan"]["text"] in err
    chosen = {k: v for k, v in read_metrics(run_dir, "precision")[0].items() if k != "kind"}
    assert meta["measured"]["precision"] == chosen  # what the trainer measured and chose is in the config too

    assert main(["train", "--run-dir", str(run_dir), "--resume", "--epochs", str(epochs + 1)]) == 0
    assert read_run_config(run_dir)[1].time_budget == 0  # epochs given: the budget no longer counts
    assert [r["epoch"] for r in read_metrics(run_dir, "epoch")] == list(range(1, epochs + 2))
    assert run_info(run_dir).epochs == epochs + 1
