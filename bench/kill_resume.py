"""Kill one short run twenty and more times, resuming after each kill, and check it ends as the run left alone.

Kills alternate SIGKILL and SIGTERM. A quarter come at a random moment from the launch on (interpreter start-up
included), a quarter at a random moment of training (a step, an epoch's end), half the instant a file is being
written (a checkpoint, metrics rewritten on resume, status, predictions: an atomic write's temp file is in the
folder). After every kill the folder must read whole (status, metrics, the
latest checkpoint), and the run must read as stopped or failed with a message; at the end its epoch lines and
its final accuracy must equal those of the same run trained without a break. Prints a report and writes it as
JSON.

    python bench/kill_resume.py --kills 24
    python bench/kill_resume.py --kills 24 --time-budget 0.3   # runs whose epochs a time budget plans

With --time-budget the copies train the epochs planned before their first step ('keep to the budget' off). A
run that keeps to its budget trains fewer epochs when its own pace falls behind the plan's, and epochs of a
fraction of a second do that by chance: with it on, in one run of 24 kills the run left alone cut 121 epochs to
118 after its second, and its copies cut to 117 or 118 after other epochs, so they ended differently.
    python bench/kill_resume.py --kills 12 --preset fast       # another network (default: tiny)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing s7core

from s7core.config import TrainConfig  # noqa: E402
from s7core.data import make_tiny_cifar10  # noqa: E402
from s7core.runs.executor import get_executor  # noqa: E402
from s7core.runs.store import LATEST_CHECKPOINT, create_run, load_checkpoint, read_metrics, read_status  # noqa: E402
from s7core.spec import get_preset  # noqa: E402
from s7core.speed import read_measurements, remember_measurement, speed_cache_path  # noqa: E402

MAX_WAIT_S = 12.0  # the latest a random kill comes after a start: most sessions die young, as in a class
# Fresh copies a run may train before the kills asked for have landed: a run too short for its kills (each one
# finishing first) ends the benchmark with a message instead of looping on.
MAX_COPIES_PER_KILL = 4
SAME_FIELDS = ("epoch", "global_step", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "best")


def epoch_rows(run_dir: Path) -> list[dict]:
    return [{k: r.get(k) for k in SAME_FIELDS} for r in read_metrics(run_dir, "epoch")]


def new_run(root: Path, data: Path, name: str, epochs: int, time_budget: float = 0.0, preset: str = "tiny") -> Path:
    config = TrainConfig(
        epochs=epochs, batch_size=64, lr=0.05, val_split=0, device="cpu", seed=3, time_budget=time_budget,
        small_epochs=epochs // 2 if time_budget else 0, small_size=24, keep_to_budget=False,
    )  # fmt: skip
    return create_run(get_preset(preset), config, root, name, data, "default")


def plan_as_the_first() -> None:
    """Drop what finished runs kept of their speed (`remember_run_speed`) from this bench's own cache, so that every
    copy plans its epochs from the measurement the run left alone planned from."""
    path = speed_cache_path()
    for key, entry in read_measurements(path).items():
        if isinstance(entry, dict) and entry.pop("runs", None) is not None:
            remember_measurement(path, key, entry)


def moment(run_dir: Path) -> str:
    """What the run was doing as the kill landed, from what its folder shows."""
    writing = [p.name.split(".")[1] for p in run_dir.glob(".*.tmp")]
    if writing:
        return f"writing {writing[0]}"
    message = read_status(run_dir).message
    return "training" if message.startswith(("training", "epoch")) else message.split(":")[0] or "?"


def wait_for_write(run_dir: Path, stale: set[str], timeout_s: float) -> bool:
    """Poll until a new atomic write is in progress in the folder (True) or the time is up.

    Temp files an earlier SIGKILL left behind (`stale`) do not count: the trainer clears them as it resumes.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(p.name not in stale for p in run_dir.glob(".*.tmp")):
            return True
        time.sleep(0.0005)
    return False


def wait_for_training(run_dir: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not read_status(run_dir).message.startswith(("training", "epoch")):
        time.sleep(0.01)


def check_readable(run_dir: Path) -> None:
    status = read_status(run_dir)
    read_metrics(run_dir)
    if (run_dir / LATEST_CHECKPOINT).exists():
        load_checkpoint(run_dir / LATEST_CHECKPOINT)
    assert status.state.value in ("stopped", "failed", "finished"), status
    assert status.state.value == "finished" or status.message, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--time-budget", type=float, default=0.0,
        help="minutes: every copy plans its epochs from this budget (half of them small), from the speed kept "
        "for this machine, so each must plan as the run left alone did",
    )  # fmt: skip
    parser.add_argument("--preset", default="tiny", help="the network every copy trains (default: tiny)")
    parser.add_argument("--out", type=Path, default=Path("bench/out/kill_resume.json"))
    args = parser.parse_args()
    chance = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="s7-kill-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # the runs' measured speeds: this bench's, not the user's
    data = make_tiny_cifar10(work / "data", n_train=512, n_test=128)
    root = work / "runs"
    executor = get_executor(runs_dir=root)

    alone = new_run(root, data, "alone", args.epochs, args.time_budget, args.preset)
    started = time.monotonic()
    executor.start(alone)
    reference = executor.wait(alone, timeout_s=600)
    run_s = time.monotonic() - started
    assert reference.state.value == "finished", (reference, executor.logs(alone))
    print(f"left alone: finished in {run_s:.1f} s, final accuracy {reference.final_accuracy}", flush=True)
    # a kill in training comes within the time the run left alone trained, so most land before the end
    train_s = max((r["elapsed_s"] for r in read_metrics(alone, "epoch")), default=MAX_WAIT_S)
    training_wait_s = min(MAX_WAIT_S, train_s)
    plan_as_the_first()

    run_dir = new_run(root, data, "killed", args.epochs, args.time_budget, args.preset)
    kills: list[dict] = []
    copies: list[bool] = []  # per killed copy of the run that finished: whether it ended as the one left alone

    def ends_as_alone(run: Path) -> bool:
        final = read_status(run)
        same = final.final_accuracy == reference.final_accuracy and epoch_rows(run) == epoch_rows(alone)
        return final.state.value == "finished" and same and (run / "predictions.npz").exists()

    while len(kills) < args.kills:
        if read_status(run_dir).state.value == "finished":  # the run outran the kills: train it again from scratch
            copies.append(ends_as_alone(run_dir))
            if len(copies) > MAX_COPIES_PER_KILL * args.kills:
                print(f"FAIL: the run finished first {len(copies)} times with {len(kills)} of {args.kills} kills "
                      "landed; train longer runs (--epochs)")  # fmt: skip
                return 1
            plan_as_the_first()
            print(f"copy {len(copies)} finished, same as left alone: {copies[-1]}; starting a fresh copy", flush=True)
            run_dir = new_run(root, data, f"killed-{len(copies)}", args.epochs, args.time_budget, args.preset)
        stale = {p.name for p in run_dir.glob(".*.tmp")}
        executor.start(run_dir)
        kind = ("start-up", "write", "training", "write")[len(kills) % 4]
        if kind == "start-up":  # anywhere from the launch on, start-up included
            time.sleep(chance.uniform(0.05, 3.0))
        else:
            wait_for_training(run_dir, timeout_s=120)
            if kind == "write":
                time.sleep(chance.uniform(0.0, 2.0))  # not always the first write after start-up
                wait_for_write(run_dir, stale, timeout_s=run_s)
            else:
                time.sleep(chance.uniform(0.0, training_wait_s))
        status = executor.state(run_dir)
        if not status.state.active:
            continue
        sig = signal.SIGKILL if len(kills) % 8 < 4 else signal.SIGTERM
        when = moment(run_dir)
        try:
            os.kill(status.handle["pid"], sig)
        except (ProcessLookupError, KeyError):
            continue
        after = executor.wait(run_dir, timeout_s=120)
        check_readable(run_dir)
        kills.append({"signal": sig.name, "moment": when, "state_after": after.state.value, "epoch": after.epoch})
        print(
            f"kill {len(kills):2d}: {sig.name:7s} while {when:26s} -> {after.state.value} at epoch {after.epoch}",
            flush=True,
        )
    if read_status(run_dir).state.value != "finished":
        executor.start(run_dir)
    final = executor.wait(run_dir, timeout_s=600)
    copies.append(ends_as_alone(run_dir))
    same_metrics = all(copies)
    report = {
        "kills": len(kills),
        "by_signal": Counter(k["signal"] for k in kills),
        "by_moment": Counter(k["moment"] for k in kills),
        "states_after": Counter(k["state_after"] for k in kills),
        "final_state": final.state.value,
        "final_accuracy": final.final_accuracy,
        "final_accuracy_left_alone": reference.final_accuracy,
        "copies_finished": len(copies),
        "copies_same_as_left_alone": sum(copies),
        "same_epoch_metrics": same_metrics,
        "left_alone_s": round(run_s, 1),
        "kill_log": kills,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "kill_log"}, indent=2))
    ok = final.state.value == "finished" and same_metrics and final.final_accuracy == reference.final_accuracy
    print("PASS: ends as the run left alone" if ok else "FAIL: the killed run ended differently")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
