"""Class mode's core: the roster and its hashes, slowing down wrong passwords, the class settings, who may do what
with runs (checked in s7core, not in a page), and the leaderboard."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from runs_helpers import forge_status, playing_trainer
from test_train import micro_spec, quick_config

from s7core import classroom, runs
from s7core.classroom import (
    Action,
    ClassError,
    ClassSettings,
    PermissionDenied,
    Role,
    Roster,
    SignInError,
    TooManyAttempts,
    User,
    authorize,
    change_settings,
    class_leaderboard,
    leaderboard_csv,
    load_settings,
    runs_for,
)
from s7core.classroom.roster import FREE_FAILURES, MAX_WAIT_S
from s7core.data import make_tiny_cifar10
from s7core.errors import UserError
from s7core.rules import RuleSettings
from s7core.runs.status import RunState
from s7core.spec import get_preset

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)  # the real scheme, cheap for tests
ALICE, BOB = User("alice", Role.STUDENT), User("bob", Role.STUDENT)
TEACHER = User("tess", Role.TEACHER)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=200, n_test=100)


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def class_on(root, data_dir) -> Path:
    change_settings(root, enabled=True, data_dir=str(data_dir), max_active_per_student=1)
    return root


def _run(root: Path, data_dir: Path, name: str, owner: str | None, **changes) -> Path:
    return runs.create_run(micro_spec(), quick_config(**changes), root, name, data_dir, "default", owner=owner)


# ---------------------------------------------------------------- the roster


def test_the_roster_file_holds_a_salted_hash_never_the_password(root) -> None:
    roster = Roster(root)  # the library's own default parameters
    roster.add("Alice", "student", "correct horse")
    roster.add("bob", Role.STUDENT, "correct horse")
    text = roster.path.read_text()
    assert "correct horse" not in text
    users = json.loads(text)["users"]
    assert users["alice"]["hash"].startswith("$argon2id$") and users["alice"]["role"] == "student"
    assert users["alice"]["hash"] != users["bob"]["hash"]  # a fresh salt for each
    assert stat.S_IMODE(roster.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(roster.folder.stat().st_mode) == 0o700
    assert not list(roster.folder.glob(".roster.json.*"))  # no temp file left behind
    assert roster.verify("ALICE ", "correct horse") == User("alice", Role.STUDENT)


def test_a_wrong_password_is_refused_with_a_clear_message(root) -> None:
    roster = Roster(root, FAST_HASHER)
    roster.add("alice", "student", "correct horse")
    with pytest.raises(SignInError, match="wrong name or password"):
        roster.verify("alice", "Correct horse")
    with pytest.raises(SignInError, match="wrong name or password"):  # an unknown name reads the same
        roster.verify("mallory", "correct horse")
    with pytest.raises(SignInError):
        roster.verify("not a name!", "x")
    assert roster.failures("alice") == 1
    assert roster.verify("alice", "correct horse").name == "alice"
    assert roster.failures("alice") == 0


def test_repeated_failures_slow_down_and_a_new_roster_object_cannot_reset_them(root) -> None:
    clock = Clock()
    roster = Roster(root, FAST_HASHER, clock)
    roster.add("alice", "student", "correct horse")
    for _ in range(FREE_FAILURES - 1):
        with pytest.raises(SignInError) as refused:
            roster.verify("alice", "guess")
        assert not isinstance(refused.value, TooManyAttempts)
    with pytest.raises(SignInError):
        roster.verify("alice", "guess")  # the FREE_FAILURES-th: from now on each try waits
    fresh = Roster(root, FAST_HASHER, clock)  # another server session, or a restarted server
    with pytest.raises(TooManyAttempts, match=r"wait 2 s") as waiting:
        fresh.verify("alice", "correct horse")  # even the right password waits
    assert waiting.value.wait_s == pytest.approx(2.0)
    clock.t += 2.0
    with pytest.raises(SignInError):
        fresh.verify("alice", "guess")
    with pytest.raises(TooManyAttempts, match=r"wait 4 s"):  # doubled
        fresh.verify("alice", "guess")
    clock.t += 4.0
    assert fresh.verify("alice", "correct horse").name == "alice"
    assert fresh.failures("alice") == 0
    assert classroom.wait_after(100) == MAX_WAIT_S


def test_add_remove_reset_and_list(root) -> None:
    roster = Roster(root, FAST_HASHER)
    roster.add("tess", "teacher", "teacher pass")
    roster.add("alice", "student", "first password")
    with pytest.raises(ClassError, match="already on the roster"):
        roster.add("alice", "student", "other password")
    with pytest.raises(ClassError, match="at least 8 characters"):
        roster.add("carl", "student", "short")
    with pytest.raises(ClassError, match="unknown role 'admin'"):
        roster.add("carl", "admin", "long enough")
    assert [(e.name, e.role) for e in roster.users()] == [("alice", Role.STUDENT), ("tess", Role.TEACHER)]
    roster.reset_password("alice", "second password")
    with pytest.raises(SignInError):
        roster.verify("alice", "first password")
    assert roster.verify("alice", "second password").role is Role.STUDENT
    roster.remove("alice")
    with pytest.raises(ClassError, match="not on the roster"):
        roster.remove("alice")
    assert [e.name for e in roster.users()] == ["tess"]


def test_a_damaged_roster_is_reported_with_the_fix(root) -> None:
    roster = Roster(root, FAST_HASHER)
    roster.path.write_text("{not json")
    with pytest.raises(ClassError, match="roster is damaged.*class add"):
        roster.users()


# ---------------------------------------------------------------- the class settings


def test_settings_default_to_solo_mode_and_round_trip(root) -> None:
    assert load_settings(root) == ClassSettings()
    assert not (root / ".class").exists()  # reading makes nothing
    changed = change_settings(root, enabled=True, rules=RuleSettings(max_params=500_000), teachers=("T@School.org",))
    assert load_settings(root) == changed
    assert changed.teachers == ("t@school.org",) and load_settings(root).rules.max_params == 500_000
    assert stat.S_IMODE((root / ".class" / "settings.json").stat().st_mode) == 0o600


def test_bad_settings_are_refused_with_their_limits(root) -> None:
    with pytest.raises(ClassError, match=r"runs per student must be whole runs from 1 to 20, got 0"):
        change_settings(root, max_active_per_student=0)
    with pytest.raises(UserError, match="max_params"):
        change_settings(root, rules=RuleSettings(max_params=-1))
    (root / ".class").mkdir(parents=True, exist_ok=True)
    (root / ".class" / "settings.json").write_text('{"enabled": true, "colour": "red"}')
    with pytest.raises(ClassError, match="unknown class setting 'colour'.*delete it"):
        load_settings(root)


# ---------------------------------------------------------------- who may do what


def test_a_student_may_only_touch_their_own_runs(root, data_dir) -> None:
    change_settings(root, enabled=True)
    mine, theirs = _run(root, data_dir, "mine", "alice"), _run(root, data_dir, "theirs", "bob")
    info_mine, info_theirs = runs.run_info(mine), runs.run_info(theirs)
    assert info_mine.owner == "alice"
    for action in (Action.VIEW, Action.STOP, Action.RESUME, Action.DOWNLOAD):
        authorize(ALICE, action, info_mine, load_settings(root))
        with pytest.raises(PermissionDenied, match="run theirs is not yours: you can only .* your own runs"):
            authorize(ALICE, action, info_theirs, load_settings(root))
        authorize(TEACHER, action, info_theirs)
    with pytest.raises(PermissionDenied, match="only a teacher can remove runs"):
        authorize(ALICE, Action.REMOVE, info_mine)
    with pytest.raises(PermissionDenied, match="only a teacher"):
        authorize(ALICE, Action.MANAGE)
    alice = runs_for(ALICE, root)
    assert [i.name for i in alice.list()] == ["mine"]
    assert sorted(i.name for i in runs_for(TEACHER, root).list()) == ["mine", "theirs"]
    with pytest.raises(PermissionDenied):
        alice.stop("theirs")
    with pytest.raises(PermissionDenied):
        alice.checkpoint("theirs")
    with pytest.raises(PermissionDenied):
        alice.metrics("theirs")
    with pytest.raises(UserError, match="no run '../theirs'"):  # names only, never paths
        alice.info("../theirs")


def test_runs_made_before_class_mode_have_no_owner_and_are_the_teachers(root, data_dir) -> None:
    old = _run(root, data_dir, "old", None)
    assert runs.run_info(old).owner is None and json.loads((old / "config.json").read_text())["owner"] is None
    change_settings(root, enabled=True)
    assert runs_for(ALICE, root).list() == []
    assert [i.name for i in runs_for(TEACHER, root).list()] == ["old"]


def test_the_teacher_stops_a_students_run_and_the_student_cannot(root, data_dir) -> None:
    change_settings(root, enabled=True)
    run_dir = _run(root, data_dir, "bobs", "bob")
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # plays the trainer
    try:
        playing_trainer(run_dir, trainer.pid)
        with pytest.raises(PermissionDenied):
            runs_for(ALICE, root).stop("bobs")
        assert trainer.poll() is None  # the refusal sent no signal
        runs_for(TEACHER, root).stop("bobs")
        assert trainer.wait(timeout=10) < 0  # SIGTERM: the trainer saves and exits
    finally:
        trainer.kill()
        trainer.wait()


def test_a_students_launch_uses_the_class_data_and_respects_the_limit(class_on, data_dir, tmp_path) -> None:
    busy = _run(class_on, data_dir, "busy", "tess")
    playing_trainer(busy, os.getpid())  # the class's one slot is taken: launches queue, no process starts
    alice = runs_for(ALICE, class_on)
    with pytest.raises(PermissionDenied, match="data folder is the class's"):
        alice.launch(micro_spec(), quick_config(), "a1", data_dir=tmp_path)
    run_dir, status = alice.launch(micro_spec(), quick_config(), "a1")
    assert status.state == "queued" and runs.run_info(run_dir).owner == "alice"
    assert runs.run_data_dir(run_dir) == data_dir.resolve()
    with pytest.raises(PermissionDenied, match=r"already have 1 run queued or running \(a1\); the class allows 1"):
        alice.launch(micro_spec(), quick_config(), "a2")
    assert not (class_on / "a2").exists()
    runs_for(BOB, class_on).launch(micro_spec(), quick_config(), "b1")  # the limit is per student
    alice.stop("a1")
    assert runs.run_info(run_dir).state == "stopped"
    alice.resume("a1")
    assert runs.run_info(run_dir).state == "queued"


def test_a_students_cpu_and_gpu_requests_are_capped_by_the_class_and_a_teachers_are_not(class_on, data_dir) -> None:
    from s7core.config import Resources

    busy = _run(class_on, data_dir, "busy", "tess")
    playing_trainer(busy, os.getpid())  # launches queue: only the checks before the executor are tested here
    change_settings(class_on, max_cpus_per_run=2, max_gpus_per_run=0.25, max_active_per_student=5)
    alice = runs_for(ALICE, class_on)
    with pytest.raises(
        PermissionDenied, match=r"asks for 8 CPU cores; the class allows at most 2 per run .* 2 or fewer"
    ):
        alice.launch(micro_spec(), quick_config(), "a1", resources=Resources(cpus=8))
    with pytest.raises(PermissionDenied, match=r"asks for 1 GPUs; the class allows at most 0.25 GPUs per run"):
        alice.launch(micro_spec(), quick_config(), "a1", resources=Resources(gpus=1))
    assert not (class_on / "a1").exists()  # refused before a run folder was made
    for cpus in (0, 2):  # automatic (one core on a cluster) and the cap itself are allowed
        alice.launch(micro_spec(), quick_config(), f"a-{cpus}", resources=Resources(cpus=cpus))
    runs_for(TEACHER, class_on).launch(micro_spec(), quick_config(), "t1", resources=Resources(cpus=8))
    # a lower cap holds for a resume too, whether it asks anew or takes the run's earlier request
    alice.stop("a-2")
    change_settings(class_on, max_cpus_per_run=1, max_gpus_per_run=0)
    alice = runs_for(ALICE, class_on)  # as the page's next call sees the class
    with pytest.raises(PermissionDenied, match="asks for 2 CPU cores; the class allows at most 1"):
        alice.resume("a-2")
    with pytest.raises(PermissionDenied, match="the class allows no GPUs: its runs train on CPUs — ask for 0 GPUs"):
        alice.resume("a-2", resources=Resources(cpus=1, gpus=0.5))
    assert alice.resume("a-2", resources=Resources(cpus=1)).state == "queued"


def test_the_caps_take_their_limits_from_what_a_run_may_ask(root) -> None:
    from s7core.config import resource_settings

    asked = {s.name: s.high for s in resource_settings()}
    with pytest.raises(ClassError, match="CPU cores per run must be"):
        change_settings(root, max_cpus_per_run=int(asked["cpus"]) + 1)
    with pytest.raises(ClassError, match="GPUs per run must be"):
        change_settings(root, max_gpus_per_run=-1)
    assert change_settings(root, max_gpus_per_run=1).max_gpus_per_run == 1.0
    assert load_settings(root).to_dict()["max_gpus_per_run"] == 1.0


def test_closed_submissions_stop_students_launching_but_not_stopping(class_on, data_dir) -> None:
    queued = _run(class_on, data_dir, "a1", "alice")
    forge_status(queued, state=RunState.QUEUED, executor="local", handle={"max_concurrent": 1})
    change_settings(class_on, submissions_open=False)
    alice = runs_for(ALICE, class_on)
    with pytest.raises(PermissionDenied, match="submissions are closed"):
        alice.launch(micro_spec(), quick_config(), "a2")
    assert alice.stop("a1").state == "stopped"
    with pytest.raises(PermissionDenied, match="submissions are closed"):
        alice.resume("a1")


def test_only_a_teacher_removes_a_run_and_never_an_active_one(class_on, data_dir) -> None:
    run_dir = _run(class_on, data_dir, "a1", "alice")
    with pytest.raises(PermissionDenied):
        runs_for(ALICE, class_on).remove("a1")
    playing_trainer(run_dir, os.getpid())
    with pytest.raises(UserError, match="stop it first"):
        runs_for(TEACHER, class_on).remove("a1")
    forge_status(run_dir, state=RunState.STOPPED, handle={})
    runs_for(TEACHER, class_on).remove("a1")
    assert not run_dir.exists()


def test_an_identity_provider_user_is_a_student_unless_listed_as_a_teacher(root) -> None:
    change_settings(root, enabled=True, teachers=("tess@school.org",))
    assert classroom.identity_user("Tess@School.org", "Tess", root) == User("tess@school.org", Role.TEACHER, "Tess")
    assert classroom.identity_user("al@school.org", runs_dir=root).role is Role.STUDENT


# ---------------------------------------------------------------- the leaderboard


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir) -> Path:
    """One trained run of the micro net (it fails the RF rule) and one of tiny (passes every rule), finished."""
    root = tmp_path_factory.mktemp("board")
    config = quick_config(epochs=1, batch_size=50)
    for name, spec in (("micro-run", micro_spec()), ("tiny-run", get_preset("tiny"))):
        run_dir = runs.create_run(spec, config, root, name, data_dir, "default", owner="alice")
        runs.execute_run(run_dir)
    return root


def _copy_run(src: Path, dst: Path, owner: str | None, best: float) -> None:
    import shutil

    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["owner"] = owner
    (dst / "config.json").write_text(json.dumps(config))
    forge_status(dst, best_accuracy=best)


def test_the_leaderboard_ranks_each_students_best_passing_run(finished, tmp_path) -> None:
    root = tmp_path / "runs"
    tiny, micro = finished / "tiny-run", finished / "micro-run"
    _copy_run(tiny, root / "alice-1", "alice", 0.40)
    _copy_run(tiny, root / "alice-2", "alice", 0.55)
    _copy_run(tiny, root / "bob-1", "bob", 0.50)
    _copy_run(micro, root / "bob-micro", "bob", 0.90)  # the best accuracy, but it fails a rule
    _copy_run(tiny, root / "tess-1", "tess", 0.99)  # a teacher's run is not ranked
    _copy_run(tiny, root / "old", None, 0.98)
    change_settings(root, enabled=True, teachers=("tess",))
    board = class_leaderboard(root)
    assert [(r.rank, r.student, r.run, r.best_test_accuracy) for r in board.ranked] == [
        (1, "alice", "alice-2", 0.55),
        (2, "bob", "bob-1", 0.50),
    ]
    tiny_params = 32_298  # the README's figure for the tiny preset
    first = board.ranked[0]
    assert (first.parameters, first.global_rf, first.rules_passed, first.rules_total) == (tiny_params, 65, 4, 4)
    assert first.epochs == 1 and first.training_time_s > 0 and first.link == {"preset": "tiny"}
    (failing,) = board.failing
    assert failing.run == "bob-micro" and failing.rank is None
    assert any(f.startswith("Global receptive field above 44") for f in failing.failed_rules)
    # the teacher's thresholds judge every run: under a 30k parameter limit tiny fails too
    change_settings(root, rules=RuleSettings(max_params=30_000))
    stricter = class_leaderboard(root)
    assert stricter.ranked == () and {r.run for r in stricter.failing} == {"alice-1", "alice-2", "bob-1", "bob-micro"}
    csv_text = leaderboard_csv(board).splitlines()
    assert csv_text[0].startswith("rank,student,run,best_test_accuracy,parameters,global_rf,rules_passed")
    assert csv_text[1].startswith(f"1,alice,alice-2,0.5500,{tiny_params},65,4/4,")


def test_solo_mode_ranks_every_local_run(finished) -> None:
    board = class_leaderboard(finished)
    assert [r.run for r in board.ranked] == ["tiny-run"] and [r.run for r in board.failing] == ["micro-run"]
    loose = class_leaderboard(finished, RuleSettings(min_rf=1, require_dilated=False))  # the micro net passes
    assert {r.run for r in loose.ranked} == {"tiny-run", "micro-run"}
