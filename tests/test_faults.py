"""Faults while a run trains: kills at any moment, a full disk, a read-only folder, damaged files, data gone.

After each fault the run folder stays readable, the run reads as stopped or failed with a message that says what
happened, the last good checkpoint is kept, no other run is harmed, and a resumed run ends exactly where a run
left alone ends. The executor tests are parametrized over every registered executor; one that this file cannot
kill yet is skipped, with the reason. bench/kill_resume.py does the same with twenty and more kills.
"""

from __future__ import annotations

import errno
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from runs_helpers import EXECUTOR_PARAMS, epoch_lines, forge_status, new_run, on_cluster, trainer_of, wait_until

from s7core.data import make_tiny_cifar10
from s7core.errors import UserError
from s7core.runs import execute_run
from s7core.runs.executor import LOCAL, get_executor
from s7core.runs.ray_jobs import CLUSTER_DEFAULT_CPUS
from s7core.runs.status import RunError, RunState
from s7core.runs.store import (
    LATEST_CHECKPOINT,
    METRICS_FILE,
    PREDICTIONS_FILE,
    load_checkpoint,
    read_metrics,
    read_status,
    run_info,
)

# The epoch-line fields a resumed run must reproduce exactly (times differ by nature).
SAME_FIELDS = ("epoch", "global_step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "best")
EPOCHS = 4
# The run the random kills hit: long enough (about 1.5 s of training here, after about 1.5 s of start-up) that
# the first kill, 1.6 s after the launch, still finds it running on a faster machine.
KILLED_EPOCHS = 48


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200)


@pytest.fixture(params=EXECUTOR_PARAMS)
def executor(request, tmp_path, monkeypatch):
    """Each registered executor over this test's runs root (a cluster's on the session's local cluster)."""
    on_cluster(request, request.param, monkeypatch)
    return get_executor(request.param, runs_dir=tmp_path / "runs")


def kill(pid: int, sig: int) -> None:
    """Send `sig` to the run's training process, the way an operator or the kernel would."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it ended on its own a moment before


def train_epochs(run_dir: Path, epochs: int) -> None:
    """Train the run in this process until `epochs` epochs are done, then stop it (with its checkpoint saved)."""
    ended: list[int] = []
    execute_run(run_dir, lambda e: ended.append(e.epoch) if e.kind == "epoch" else None, lambda: len(ended) >= epochs)
    assert read_status(run_dir).state == "stopped" and load_checkpoint(run_dir / LATEST_CHECKPOINT)["epoch"] == epochs


def comparable(run_dir: Path) -> list[dict]:
    return [{k: row.get(k) for k in SAME_FIELDS} for row in read_metrics(run_dir, "epoch")]


def folder_is_readable(run_dir: Path) -> None:
    """Everything a page reads from the folder reads, whatever moment the kill came at."""
    info = run_info(run_dir)
    assert info.state in ("queued", "running", "stopped", "failed", "finished")
    read_metrics(run_dir)
    if (run_dir / LATEST_CHECKPOINT).exists():
        assert load_checkpoint(run_dir / LATEST_CHECKPOINT)["epoch"] <= info.epochs


def temp_files(run_dir: Path) -> list[str]:
    """Half-written files a kill left behind (atomic_write's temp files)."""
    return [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def _left_alone(tmp_path_factory, data_dir, epochs: int, threads: int | None = None):
    """The run of `epochs` epochs, never interrupted (on `threads` torch threads, if given): what every resumed
    run must end as."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        run_dir = new_run(tmp_path_factory.mktemp("alone"), data_dir, epochs=epochs)
        execute_run(run_dir)
    finally:
        torch.set_num_threads(before)
    return comparable(run_dir), read_status(run_dir).final_accuracy


@pytest.fixture(scope="module")
def left_alone(tmp_path_factory, data_dir):
    return _left_alone(tmp_path_factory, data_dir, EPOCHS)


@pytest.fixture(scope="module")
def left_alone_long(tmp_path_factory, data_dir):
    return _left_alone(tmp_path_factory, data_dir, KILLED_EPOCHS)


@pytest.fixture(scope="module")
def left_alone_long_on_one_thread(tmp_path_factory, data_dir):
    """As a cluster's trainer runs it by default: sums over two threads round differently in the last bits."""
    return _left_alone(tmp_path_factory, data_dir, KILLED_EPOCHS, CLUSTER_DEFAULT_CPUS)


def test_kills_at_random_moments_then_resume_end_as_the_run_left_alone(tmp_path, data_dir, executor, request):
    fixture = "left_alone_long" if executor.name == LOCAL else "left_alone_long_on_one_thread"
    left_alone = request.getfixturevalue(fixture)
    run_dir = new_run(tmp_path, data_dir, epochs=KILLED_EPOCHS)
    chance = random.Random(7)
    kills = 0
    # on a cluster each start is a new Ray job (its supervisor first, seconds): two kills keep the test short
    kinds = (
        (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL) if executor.name == LOCAL else (signal.SIGKILL, signal.SIGTERM)
    )
    for sig in kinds:
        executor.start(run_dir)
        pid = trainer_of(run_dir)
        time.sleep(chance.uniform(0.5, 4.0))  # somewhere in start-up, a step, an epoch end or a checkpoint write
        if not executor.state(run_dir).state.active:
            break
        kill(pid, sig)
        kills += 1
        wait_until(lambda: not executor.state(run_dir).state.active, timeout_s=120)
        folder_is_readable(run_dir)
        after = executor.state(run_dir)
        assert after.state in ("stopped", "failed", "finished"), after
        if after.state == "failed":
            assert "resume" in after.message, after.message
        if after.state == "finished":
            break
    if executor.state(run_dir).state != "finished":
        executor.start(run_dir)
    final = executor.wait(run_dir, timeout_s=240)
    assert final.state == "finished", (final, executor.logs(run_dir))
    assert kills >= 1, "the run ended before any kill: the kill moments need to come earlier"
    rows, accuracy = left_alone
    assert comparable(run_dir) == rows
    assert final.final_accuracy == accuracy
    assert (run_dir / PREDICTIONS_FILE).exists()
    assert temp_files(run_dir) == []  # what a kill left half-written is cleared when the run resumes


def test_a_run_killed_while_writing_its_predictions_finishes_on_resume(tmp_path, data_dir, executor, left_alone):
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    execute_run(run_dir)
    (run_dir / PREDICTIONS_FILE).unlink()  # as if the kill came after the last epoch, before predictions.npz
    forge_status(run_dir, state=RunState.FAILED, message="the training process ended unexpectedly")
    executor.start(run_dir)
    final = executor.wait(run_dir, timeout_s=120)
    assert final.state == "finished", (final, executor.logs(run_dir))
    assert (run_dir / PREDICTIONS_FILE).exists() and comparable(run_dir) == left_alone[0]


@pytest.mark.parametrize("delay_s", [0.0, 0.3], ids=["at-once", "while-importing"])
def test_a_sigterm_in_the_trainers_first_moments_ends_stopped_and_resumes(tmp_path, data_dir, left_alone, delay_s):
    """Before the interpreter has run a line (at once), or while it imports torch: the stop waits for the handler."""
    executor = get_executor(LOCAL, runs_dir=tmp_path / "runs")
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    pid = executor.start(run_dir).handle["pid"]
    time.sleep(delay_s)
    os.kill(pid, signal.SIGTERM)
    stopped = executor.wait(run_dir, timeout_s=120)
    assert stopped.state == "stopped", (stopped, executor.logs(run_dir))
    folder_is_readable(run_dir)
    assert executor.start(run_dir).state == "running"
    final = executor.wait(run_dir, timeout_s=120)
    assert final.state == "finished", (final, executor.logs(run_dir))
    assert comparable(run_dir) == left_alone[0] and final.final_accuracy == left_alone[1]


def test_the_command_line_trainer_installs_its_stop_before_importing_torch(tmp_path, data_dir) -> None:
    """A SIGTERM to `python -m s7core train` while its imports run ends the run 'stopped', never killed."""
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    code = (
        "import sys, os, signal\n"
        "import s7core.__main__ as cli\n"  # the handler is up once main() starts; torch is imported after it
        "real = cli.build_parser\n"
        "def parser():\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"  # the stop arrives before the parser's imports (torch)
        "    return real()\n"
        "cli.build_parser = parser\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    args = ["train", "--run-dir", str(run_dir), "--resume"]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert read_status(run_dir).state == "stopped" and "stopped after" in done.stderr


def _train_in_child(run_dir: Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
    """`python -m s7core train --resume` on the run, optionally under a file-size limit (a full disk, as seen)."""

    def limit() -> None:
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    command = [sys.executable, "-m", "s7core", "train", "--run-dir", str(run_dir), "--resume"]
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, preexec_fn=limit, timeout=120)


def test_a_full_disk_during_a_checkpoint_keeps_the_last_good_one(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    other = new_run(tmp_path, data_dir, name="other", epochs=EPOCHS)
    train_epochs(run_dir, 1)
    good = (run_dir / LATEST_CHECKPOINT).read_bytes()
    size = len(good)
    done = _train_in_child(run_dir, file_limit=size // 2)  # every new checkpoint is too large to write
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    status = read_status(run_dir)
    assert status.state == "failed"
    assert "disk is full" in status.message and "resume" in status.message, status.message
    assert status.message in done.stderr
    assert (run_dir / LATEST_CHECKPOINT).read_bytes() == good  # the last good checkpoint is kept whole
    assert load_checkpoint(run_dir / LATEST_CHECKPOINT)["epoch"] == 1
    assert temp_files(run_dir) == []  # no half-written temp file left
    assert read_status(other).state == "stopped" and not (other / METRICS_FILE).exists()  # the other run untouched
    execute_run(run_dir)  # room again: resume finishes
    assert epoch_lines(run_dir) == list(range(1, EPOCHS + 1))


def test_a_full_disk_during_a_metrics_line_is_a_clear_failure(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    train_epochs(run_dir, 1)
    metrics = (run_dir / METRICS_FILE).stat().st_size
    done = _train_in_child(run_dir, file_limit=metrics + 50)  # the next metrics lines do not fit
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    status = read_status(run_dir)
    assert status.state == "failed" and "disk is full" in status.message
    assert read_metrics(run_dir)  # what was written before still reads
    assert load_checkpoint(run_dir / LATEST_CHECKPOINT)["epoch"] == 1


def test_a_read_only_runs_folder_is_a_clear_message(tmp_path, data_dir, monkeypatch):
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)

    def read_only(*_args, **_kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("s7core.files.tempfile.mkstemp", read_only)  # every atomic write goes through it
    with pytest.raises(RunError, match="read-only"):
        execute_run(run_dir)
    assert read_status(run_dir).state == "stopped"  # what was there before still reads
    monkeypatch.setattr("s7core.runs.store.Path.mkdir", read_only)
    with pytest.raises(RunError, match="read-only"):
        new_run(tmp_path, data_dir, name="second")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_really_read_only_runs_folder_is_a_clear_message(tmp_path, data_dir):
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    run_dir.chmod(0o555)
    try:
        with pytest.raises(RunError, match="cannot write"):
            execute_run(run_dir)
    finally:
        run_dir.chmod(0o755)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_fails_the_resume_with_a_message_and_harms_no_other_run(tmp_path, data_dir, damage):
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    other = new_run(tmp_path, data_dir, name="other", epochs=1)
    train_epochs(run_dir, 1)
    path = run_dir / LATEST_CHECKPOINT
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 3], "garbage": os.urandom(4096), "empty": b""}[damage])
    with pytest.raises(RunError, match="checkpoint is damaged .* delete it"):
        execute_run(run_dir)
    status = read_status(run_dir)
    assert status.state == "failed" and "checkpoint is damaged" in status.message
    execute_run(other)
    assert read_status(other).state == "finished"


def test_a_torn_last_metrics_line_is_skipped_and_dropped_on_resume(tmp_path, data_dir, left_alone):
    run_dir = new_run(tmp_path, data_dir, epochs=EPOCHS)
    train_epochs(run_dir, 2)
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write('{"kind": "epoch", "epoch": 3, "train_lo')  # a kill in the middle of a line
    assert [r["epoch"] for r in read_metrics(run_dir, "epoch")] == [1, 2]
    execute_run(run_dir)
    assert comparable(run_dir) == left_alone[0]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_data_files_gone_between_sessions_fail_the_resume_naming_the_file(tmp_path, damage):
    data = make_tiny_cifar10(tmp_path / "data", n_train=320, n_test=200)
    run_dir = new_run(tmp_path, data, epochs=EPOCHS)
    train_epochs(run_dir, 1)
    victim = sorted(Path(data).glob("data_batch_*"))[0]
    victim.unlink() if damage == "missing" else victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(UserError):
        execute_run(run_dir)
    status = read_status(run_dir)
    named = victim.name if damage == "truncated" else str(victim.parent)  # a missing file: the folder lacks it
    assert status.state == "failed" and named in status.message, status.message
    assert load_checkpoint(run_dir / LATEST_CHECKPOINT)["epoch"] == 1  # the last good checkpoint is kept
