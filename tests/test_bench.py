"""The benchmarks run end to end on tiny inputs (their real runs take minutes to hours)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s7core.data import make_tiny_cifar10
from s7core.spec import get_preset
from s7core.summary import summarize

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


THROUGHPUT = BENCH.with_name("throughput.py")


def test_throughput_reports_train_and_eval_rates_against_the_peak(tmp_path: Path) -> None:
    report = tmp_path / "throughput.json"
    command = [sys.executable, str(THROUGHPUT), "--presets", "tiny", "--batch-sizes", "8", "--steps", "1",
               "--warmup", "1", "--eval-batch", "16", "--json", str(report)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "peak (2048^3 matrix multiply)" in done.stdout and "of peak" in done.stdout
    figures = json.loads(report.read_text())
    assert figures["peak_gmac_s"]["fp32"] > 0 and figures["peak_gmac_s"]["bf16"] > 0
    rows = figures["rows"]
    variants = [(r["precision"], r["channels_last"]) for r in rows]
    assert variants == [("fp32", False), ("fp32", True), ("bf16", True), ("bf16-dw32", True)]
    for row in rows:
        assert row["train_images_s"] > 0 and row["eval_images_s"] > 0
        assert row["peak_gmac_s"] == figures["peak_gmac_s"][row["precision"]]
        # the achieved rate is the image rate times the forward multiply-adds (3x when training)
        per_train_image = row["train_gmac_s"] / row["train_images_s"]
        assert per_train_image == pytest.approx(3 * row["eval_gmac_s"] / row["eval_images_s"])


def test_throughput_times_a_spec_file_beside_a_preset(tmp_path: Path) -> None:
    spec_file = tmp_path / "mine.json"
    spec_file.write_text(get_preset("tiny").to_json())
    report = tmp_path / "throughput.json"
    command = [sys.executable, str(THROUGHPUT), "--presets", "fast", str(spec_file), "--batch-sizes", "8",
               "--steps", "1", "--warmup", "0", "--eval-batch", "8", "--json", str(report)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tiny_macs = summarize(get_preset("tiny")).mult_adds
    assert f"{spec_file}: {tiny_macs / 1e6:.1f}M multiply-adds" in done.stdout
    rows = json.loads(report.read_text())["rows"]
    assert [r["preset"] for r in rows] == ["fast"] * 4 + [str(spec_file)] * 4
    mine = rows[-1]
    assert mine["eval_gmac_s"] / mine["eval_images_s"] == pytest.approx(tiny_macs / 1e9)


def test_price_of_rules_races_best_and_the_peer_and_reports_both(tmp_path: Path) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=256, n_test=64)  # one step an epoch at batch 512
    report = tmp_path / "report.json"
    bench = BENCH.parent / "price_of_rules.py"
    command = [sys.executable, str(bench), "--epochs", "2", "--report-from", "1", "--data-dir", str(data),
               "--json", str(report)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "breaks:" in done.stdout and "separable" in done.stdout and "time to  90%" in done.stdout
    figures = json.loads(report.read_text())
    best, peer = figures["runs"]
    assert best["params"] < 1_000_000 < peer["params"]
    assert [e["epoch"] for e in best["scored"]] == [1, 2] == [e["epoch"] for e in peer["scored"]]
    assert best["wall_s_without_reporting"] <= best["wall_s"] and best["scoring_s"] > 0
    assert [row["threshold"] for row in figures["table"]] == ["90%", "93%", "94%"]


def test_depthwise_speed_times_each_depthwise_conv_each_way(tmp_path: Path) -> None:
    report = tmp_path / "depthwise.json"
    command = [sys.executable, str(BENCH.parent / "depthwise_speed.py"), "--presets", "fast", "tiny", "--batch", "4",
               "--repeats", "1", "--json", str(report)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(report.read_text())
    fast = [r for r in rows if r["preset"] == "fast"]
    # fast has one depthwise conv, dilated at 4x4: s7core's way in training, its sums in fp32, products in bf16
    assert [(r["input"], r["dilation"], r["dtype"], r["training_takes"]) for r in fast] == [
        ([128, 4, 4], 2, "float32", "sums"),
        ([128, 4, 4], 2, "bfloat16", "products"),
    ]
    assert {r["training_takes"] for r in rows if r["preset"] == "tiny"} == {"torch"}  # its maps are larger
    assert all(r["torch_ms"] > 0 and r["sums_ms"] > 0 and r["products_ms"] > 0 for r in rows)
    assert done.stdout.count("training takes") == len(rows)


def test_gpu_check_packs_the_data_in_parts_and_checks_them_before_it_needs_a_gpu(tmp_path: Path) -> None:
    source = make_tiny_cifar10(tmp_path / "tiny", n_train=50, n_test=20)
    sums = [f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}" for f in sorted(source.glob("*.bin"))]
    (source / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    env = {**os.environ, "S7_GPU_DATA": str(tmp_path / "parts"), "TMPDIR": str(tmp_path), "OUT": str(tmp_path / "out")}
    script = str(BENCH.with_name("gpu_check.sh"))

    def check(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", script, *args], env=env, capture_output=True, text=True, timeout=60)

    packed = check("pack", str(source))
    assert packed.returncode == 0, packed.stderr
    packed_files = list((tmp_path / "parts").glob("*/*"))  # every file once, in parts 1, 2 and 3
    assert sorted(f.name for f in packed_files) == sorted(f.name for f in source.iterdir())
    assert {f.parent.name for f in packed_files} == {"1", "2", "3"}
    if not torch.cuda.is_available():  # the parts check out, then it says what it lacks
        ran = check("run")
        assert ran.returncode == 2 and "torch sees no CUDA GPU here" in ran.stderr, ran.stderr
    (tmp_path / "parts" / "3" / "test_batch.bin").write_bytes(b"torn")
    torn = check("run")
    assert torn.returncode == 2 and "do not match SHA256SUMS" in torn.stderr, torn.stderr
    (tmp_path / "parts" / "2" / "data_batch_3.bin").unlink()
    (tmp_path / "parts" / "2" / "data_batch_4.bin").unlink()
    (tmp_path / "parts" / "2").rmdir()
    missing = check("run")
    assert missing.returncode == 2 and "parts/2 is missing: send it first" in missing.stderr, missing.stderr
    assert check("pack", str(tmp_path / "nowhere")).returncode == 2


@pytest.mark.parametrize("freeze", ["--freeze-stem-bn", "--no-freeze-stem-bn"])
def test_step_parts_times_each_part_of_a_training_step(tmp_path: Path, freeze: str) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=64, n_test=16)
    command = [sys.executable, str(BENCH.with_name("step_parts.py")), "--preset", "fast", "--precision", "fp32",
               "--steps", "2", "--warmup", "1", "--data-dir", str(data), freeze]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert ("stem BN frozen" in line) == (freeze == "--freeze-stem-bn"), line
    assert all(f"{part} " in line for part in ("augment", "forward", "backward", "optimizer")), line
    assert "batch 64" in line and "images/s" in line
