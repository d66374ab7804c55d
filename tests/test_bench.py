"""The time-to-accuracy benchmark runs end to end on a tiny data set (its real runs take minutes to hours)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from s7core.data import make_tiny_cifar10

BENCH = Path(__file__).resolve().parents[1] / "bench" / "time_to_accuracy.py"


def test_time_to_accuracy_with_compare_writes_its_report(tmp_path: Path) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=512, n_test=128)
    report = tmp_path / "report.json"
    command = [sys.executable, str(BENCH), "--preset", "fast", "--epochs", "1", "--data-dir", str(data),
               "--compare", "--compare-max-epochs", "1", "--compare-max-steps", "3", "--json", str(report)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the reference's own log" in done.stdout and "58.96" in done.stdout  # the reference's epoch 1 beside ours
    figures = json.loads(report.read_text())
    (run,) = figures["runs"]
    assert run["preset"] == "fast" and len(run["epochs"]) == 1 and run["epochs"][0]["test_acc"] is not None
    assert figures["compare"]["reference_kind"] == "ESTIMATE" and figures["compare"]["reference_s"] > 0
