"""python -m s7core class ...: the roster, the class's settings, the leaderboard and the serve command, run as a
teacher would run them (a fresh interpreter for the password paths, where stdin matters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from s7core.__main__ import main
from s7core.classroom import Role, Roster, load_settings
from s7core.classroom.server import read_profile, serve_command
from s7core.data import make_tiny_cifar10
from s7core.images import MAX_UPLOAD_BYTES

REPO = Path(__file__).resolve().parents[1]


def _cli(root: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "s7core", "class", *args, "--runs-dir", str(root)]
    return subprocess.run(command, cwd=REPO, input=stdin, capture_output=True, text=True, timeout=60)


def test_add_reads_the_password_from_stdin_and_never_stores_it(tmp_path) -> None:
    root = tmp_path / "runs"
    added = _cli(root, "add", "Alice", "--role", "student", "--password-stdin", stdin="tr0ub4dor&3\n")
    assert added.returncode == 0 and added.stdout.strip() == "added alice (student)"
    assert "tr0ub4dor" not in (root / ".class" / "roster.json").read_text()
    assert Roster(root).verify("alice", "tr0ub4dor&3").role is Role.STUDENT
    listed = _cli(root, "list", "--json")
    assert [(u["name"], u["role"]) for u in json.loads(listed.stdout)] == [("alice", "student")]
    again = _cli(root, "add", "alice", "--password-stdin", stdin="another one\n")
    assert again.returncode == 2 and again.stderr.startswith("error: alice is already on the roster")
    short = _cli(root, "add", "bob", "--password-stdin", stdin="abc\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr and "Traceback" not in short.stderr


def test_reset_password_and_remove(tmp_path) -> None:
    root = tmp_path / "runs"
    _cli(root, "add", "tess", "--role", "teacher", "--password-stdin", stdin="first secret\n")
    reset = _cli(root, "reset-password", "tess", "--password-stdin", stdin="second secret\n")
    assert reset.returncode == 0
    assert Roster(root).verify("tess", "second secret").role is Role.TEACHER
    assert _cli(root, "remove", "tess").returncode == 0
    gone = _cli(root, "reset-password", "tess", "--password-stdin", stdin="third secret\n")
    assert gone.returncode == 2 and "not on the roster" in gone.stderr


def test_on_off_and_settings(tmp_path, capsys) -> None:
    root = str(tmp_path / "runs")
    data = make_tiny_cifar10(tmp_path / "data", n_train=20, n_test=10)
    assert main(["class", "on", "--runs-dir", root]) == 0
    assert "nobody can sign in yet" in capsys.readouterr().out
    args = ["class", "settings", "--runs-dir", root, "--min-rf", "50", "--no-require-dilated", "--no-submissions-open",
            "--max-active-per-student", "3", "--data-dir", str(data), "--teacher", "Tess@School.org"]  # fmt: skip
    assert main(args) == 0
    settings = load_settings(root)
    assert settings.enabled and settings.rules.min_rf == 50 and not settings.rules.require_dilated
    assert settings.rules.max_params == 1_000_000  # untouched thresholds keep their values
    assert not settings.submissions_open and settings.max_active_per_student == 3
    assert settings.data_dir == str(data.resolve()) and settings.teachers == ("tess@school.org",)
    assert "global RF above 50" in capsys.readouterr().out
    assert main(["class", "settings", "--runs-dir", root, "--data-dir", str(tmp_path / "none")]) == 2
    assert "CIFAR-10" in capsys.readouterr().err
    assert main(["class", "settings", "--runs-dir", root, "--min-rf", "-3"]) == 2
    assert "min_rf" in capsys.readouterr().err
    assert main(["class", "settings", "--runs-dir", root, "--max-cpus-per-run", "4", "--max-gpus-per-run", "0.5"]) == 0
    assert (load_settings(root).max_cpus_per_run, load_settings(root).max_gpus_per_run) == (4, 0.5)
    assert "4 CPU cores, 0.5 GPUs" in capsys.readouterr().out
    assert main(["class", "settings", "--runs-dir", root, "--max-gpus-per-run", "99"]) == 2
    assert "GPUs per run must be" in capsys.readouterr().err
    assert main(["class", "off", "--runs-dir", root]) == 0 and not load_settings(root).enabled


def test_leaderboard_of_an_empty_class(tmp_path, capsys) -> None:
    assert main(["class", "leaderboard", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.strip() == "no finished runs yet"
    assert main(["class", "leaderboard", "--csv", "--runs-dir", str(tmp_path / "runs")]) == 0
    assert capsys.readouterr().out.startswith("rank,student,run,best_test_accuracy")


def test_serve_turns_the_class_profile_into_streamlit_flags() -> None:
    command = serve_command(address="127.0.0.1", port=9999)
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("app.py")
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert flags["--server.enableXsrfProtection"] == "true"
    # what every server has from the project's config, each set there once: usage statistics off, no Deploy
    # button, and the upload cap of s7core.images, a few MB and not Streamlit's 200
    base = read_profile(REPO / ".streamlit" / "config.toml")
    effective = {f"--{k}.{n}": str(v).lower() for k, vs in base.items() for n, v in vs.items()} | flags
    assert effective["--server.headless"] == "true" and effective["--browser.gatherUsageStats"] == "false"
    assert effective["--client.toolbarMode"] == "viewer" and effective["--client.showErrorDetails"] == "none"
    cap_mb = int(effective["--server.maxUploadSize"])
    assert cap_mb * 2**20 == MAX_UPLOAD_BYTES and cap_mb <= 10
    assert not set(flags) & {f"--{k}.{n}" for k, vs in base.items() for n in vs}  # nothing said twice
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "9999"


@pytest.mark.parametrize("bad", ["[server\nport = 1", "port = 1"])
def test_a_broken_profile_is_reported_by_name(tmp_path, bad) -> None:
    from s7core.classroom import ClassError

    profile = tmp_path / "config.toml"
    profile.write_text(bad)
    with pytest.raises(ClassError, match="config.toml"):
        serve_command(profile)


def test_the_sign_in_benchmark_runs(tmp_path) -> None:
    bench = REPO / "bench" / "sign_in_speed.py"
    done = subprocess.run([sys.executable, str(bench), "--checks", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "argon2id time_cost=3" in done.stdout and "1 sign-in(s) at once, 1 times: median" in done.stdout


def test_remove_run_acts_as_the_teacher_and_refuses_an_active_run(tmp_path, capsys) -> None:
    import os

    from runs_helpers import forge_status, playing_trainer
    from test_train import micro_spec, quick_config

    from s7core.runs import RunState, create_run

    root = tmp_path / "runs"
    data = make_tiny_cifar10(tmp_path / "data", n_train=20, n_test=10)
    run_dir = create_run(micro_spec(), quick_config(), root, "alices", data, owner="alice")
    playing_trainer(run_dir, os.getpid())
    assert main(["class", "remove-run", "alices", "--runs-dir", str(root)]) == 2
    assert "stop it first" in capsys.readouterr().err and run_dir.exists()
    forge_status(run_dir, state=RunState.STOPPED, handle={})
    assert main(["class", "remove-run", "alices", "--runs-dir", str(root)]) == 0
    assert not run_dir.exists()
