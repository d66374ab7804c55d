"""Class mode in the app, through AppTest: the sign-in gate, a student's and a teacher's pages, the leaderboard.

The page shows what s7core allows; the tests check both: what the page draws, and that the s7core call behind a
missing button refuses too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from runs_helpers import forge_status, playing_trainer
from streamlit.testing.v1 import AppTest

from s7core import runs
from s7core.classroom import PermissionDenied, Role, Roster, User, change_settings, runs_for
from s7core.config import TrainConfig
from s7core.data import make_tiny_cifar10
from s7core.spec import get_preset

APP = Path(__file__).resolve().parents[1] / "app.py"
TIMEOUT = 60
PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret", "tess": "tess-secret"}
ROLES = {"alice": Role.STUDENT, "bob": Role.STUDENT, "tess": Role.TEACHER}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_cifar10(tmp_path_factory.mktemp("data"), n_train=200, n_test=100)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data) -> Path:
    """One finished one-epoch run of the tiny preset, to copy into a class."""
    root = tmp_path_factory.mktemp("trained")
    config = TrainConfig(epochs=1, batch_size=50, val_split=0, device="cpu", seed=1)
    run_dir = runs.create_run(get_preset("tiny"), config, root, "tiny-one", tiny_data, "default", owner="alice")
    runs.execute_run(run_dir)
    return run_dir


@pytest.fixture
def school(tmp_path, tiny_data, monkeypatch) -> Path:
    """A class: class mode on, two students and a teacher on the roster, the data set chosen by the teacher."""
    root = tmp_path / "runs"
    monkeypatch.setenv("S7_RUNS_DIR", str(root))
    monkeypatch.setenv("S7_DATA_DIR", str(tmp_path / "not-the-class-data"))
    roster = Roster(root, PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for name, password in PASSWORDS.items():
        roster.add(name, ROLES[name], password)
    change_settings(root, enabled=True, data_dir=str(tiny_data))
    return root


@pytest.fixture
def bobs_running_run(school, tiny_data):
    """A run of bob's that a sleeping process plays the trainer of."""
    run_dir = runs.create_run(get_preset("tiny"), TrainConfig(epochs=1), school, "bobs", tiny_data, owner="bob")
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    playing_trainer(run_dir, trainer.pid)
    yield trainer
    trainer.kill()
    trainer.wait()


def _app(user: str | None = None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    if user:  # what the sign-in form leaves in the session (the form itself is tested below)
        at.session_state["s7_user"] = {"name": user, "role": ROLES[user].value}
    if page:
        at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    kinds = ("info", "error", "warning", "success", "markdown", "caption")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


def _button(at: AppTest, label: str):
    (button,) = [b for b in at.main.button if b.label == label]
    return button


def _button_keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button if b.key}


# ---------------------------------------------------------------- signing in


def test_signed_out_only_the_sign_in_page_shows(school) -> None:
    at = _app(page="train")  # asking for a page does not get past the gate
    assert [t.value for t in at.title] == ["Sign in"]
    assert not at.get("selectbox") and "Launch training" not in [b.label for b in at.button]


def test_a_wrong_password_is_refused_and_the_right_one_signs_in(school) -> None:
    at = _app()
    at.text_input(key="sign_in_name").input("alice")
    at.text_input(key="sign_in_password").input("not-her-password")
    at.button[0].click().run()
    assert any("wrong name or password" in e.value for e in at.error)
    assert [t.value for t in at.title] == ["Sign in"]
    assert Roster(school).failures("alice") == 1
    at.text_input(key="sign_in_password").input(PASSWORDS["alice"])
    at.button[0].click().run()
    assert not at.exception
    assert "Architecture" in [t.value for t in at.title]
    assert "**alice** · student" in _texts(at)
    at.button(key="sign_out").click().run()
    assert [t.value for t in at.title] == ["Sign in"] and "s7_user" not in at.session_state


def test_an_identity_provider_user_signs_in_through_st_user(school) -> None:
    change_settings(school, teachers=("tess@school.org",))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:1/oauth2callback", "cookie_secret": "x" * 32}
    at.user = {"is_logged_in": False}
    at.run()
    assert [b.label for b in at.button][0] == "Sign in with your school account"
    at.user = {"is_logged_in": True, "email": "Tess@School.org", "name": "Tess T."}
    at.run()
    assert not at.exception and "**Tess T.** · teacher" in _texts(at)


# ---------------------------------------------------------------- a student's pages


def test_a_student_sees_and_controls_only_their_own_runs(school, tiny_data, bobs_running_run) -> None:
    mine = runs.create_run(get_preset("tiny"), TrainConfig(epochs=1), school, "alices", tiny_data, owner="alice")
    forge_status(mine, state=runs.RunState.STOPPED, epoch=0)
    at = _app("alice", "train")
    assert at.selectbox(key="train_watch_run").options == ["alices"]
    assert at.dataframe[-1].value["run"].tolist() == ["alices"]
    assert "stop_bobs" not in _button_keys(at)
    with pytest.raises(PermissionDenied, match="run bobs is not yours"):
        runs_for(User("alice", Role.STUDENT)).stop("bobs")
    assert bobs_running_run.poll() is None  # still training
    assert not [n for n in at.main.number_input if n.key == "train_max_concurrent"]  # the class's limit holds
    # no server path anywhere for a student, and no box to type one (the sidebar, drawn by app.py)
    shell = _app("alice")
    assert not [t for t in shell.sidebar.text_input if t.label == "Data folder"]
    assert str(tiny_data) not in _texts(shell) and "CIFAR-10 ready" in _texts(shell)
    teacher = _app("tess")
    assert str(tiny_data) in _texts(teacher)


def test_a_students_launch_is_theirs_and_trains_on_the_class_data(school, tiny_data, bobs_running_run) -> None:
    at = _app("alice", "train")
    at.selectbox(key="train_network").select("tiny").run()
    at.number_input(key="train_default_val_split").set_value(0)
    at.text_input(key="train_run_name").input("alice-1")
    _button(at, "Launch training").click().run()
    assert not at.exception
    assert any("queued" in i.value for i in at.main.info)  # bob's run holds the class's one slot
    info = runs.run_info(school / "alice-1")
    assert info.owner == "alice" and runs.run_data_dir(info.path) == tiny_data.resolve()


def test_a_student_cannot_open_the_class_page(school) -> None:
    at = _app("alice", "class")  # asked for by its address: a student's menu has no such page
    assert "Class" not in [t.value for t in at.title]
    assert not [b for b in at.button if b.label.startswith("Save the class")]
    with pytest.raises(PermissionDenied, match="only a teacher can change the class's settings"):
        runs_for(User("alice", Role.STUDENT)).change_settings(submissions_open=False)  # what the page would call


def test_the_class_thresholds_decide_a_students_badges(school) -> None:
    change_settings(school, rules=runs_rules(max_params=500_000))
    at = _app("alice", "architecture")
    badges = [m.value for m in at.main.markdown if "-badge[" in m.value]
    assert badges[0].startswith(":red-badge[:material/cancel: Fewer than 500,000 parameters]")  # seed: 925,706
    (box,) = [n for n in at.main.number_input if n.label == "Parameters below"]
    assert box.value == 500_000 and box.disabled


def runs_rules(**changes):
    from s7core.rules import RuleSettings

    return RuleSettings(**changes)


# ---------------------------------------------------------------- a teacher's pages


def test_a_teacher_sees_every_run_and_stops_a_students(school, tiny_data, bobs_running_run) -> None:
    runs.create_run(get_preset("tiny"), TrainConfig(epochs=1), school, "alices", tiny_data, owner="alice")
    at = _app("tess", "train")
    watch = at.selectbox(key="train_watch_run")
    assert sorted(watch.options) == ["alices", "bobs"]
    assert dict(zip(at.dataframe[-1].value["run"], at.dataframe[-1].value["owner"], strict=True)) == {
        "alices": "alice",
        "bobs": "bob",
    }
    watch.select("bobs").run()
    at.button(key="stop_bobs").click().run()
    assert not at.exception
    assert bobs_running_run.wait(timeout=10) < 0  # SIGTERM reached the trainer


def test_the_teacher_sets_the_class_settings_on_the_class_page(school) -> None:
    at = _app("tess", "class")
    assert [t.value for t in at.title] == ["Class"]
    at.number_input(key="class_min_rf").set_value(50)
    at.toggle(key="class_submissions_open").set_value(False)
    _button(at, "Save the class's settings").click().run()
    assert not at.exception and any("Saved" in s.value for s in at.success)
    settings = json.loads((school / ".class" / "settings.json").read_text())
    assert settings["rules"]["min_rf"] == 50 and settings["submissions_open"] is False
    at.text_input(key="class_data_dir").input(str(school / "nowhere"))
    _button(at, "Save the class's settings").click().run()
    assert any("CIFAR-10" in e.value for e in at.error)  # a folder without the data set is refused


def test_the_teacher_caps_cpus_and_gpus_per_run_and_a_students_bigger_request_is_refused(school, bobs_running_run):
    at = _app("tess", "class")
    at.number_input(key="class_max_cpus_per_run").set_value(2)
    at.number_input(key="class_max_gpus_per_run").set_value(0.25)
    _button(at, "Save the class's settings").click().run()
    assert not at.exception and any("Saved" in s.value for s in at.success)
    settings = json.loads((school / ".class" / "settings.json").read_text())
    assert (settings["max_cpus_per_run"], settings["max_gpus_per_run"]) == (2, 0.25)
    student = _app("alice", "train")
    assert "at most 2 CPU cores and 0.25 GPUs" in _texts(student)
    student.selectbox(key="train_network").select("tiny").run()
    student.number_input(key="train_res_cpus").set_value(8)
    student.text_input(key="train_run_name").input("greedy")
    _button(student, "Launch training").click().run()
    assert not student.exception
    assert any("asks for 8 CPU cores; the class allows at most 2 per run" in e.value for e in student.main.error)
    assert not (school / "greedy").exists()


# ---------------------------------------------------------------- the leaderboard


def _copy(run_dir: Path, root: Path, name: str, owner: str, best: float) -> None:
    shutil.copytree(run_dir, root / name)
    config = json.loads((root / name / "config.json").read_text())
    config["owner"] = owner
    (root / name / "config.json").write_text(json.dumps(config))
    forge_status(root / name, best_accuracy=best)


def test_the_leaderboard_ranks_the_students_and_only_a_teacher_downloads_it(school, finished_run) -> None:
    _copy(finished_run, school, "alice-1", "alice", 0.61)
    _copy(finished_run, school, "bob-1", "bob", 0.72)
    at = _app("alice", "leaderboard")
    table = at.dataframe[0].value
    assert table["student"].tolist() == ["bob", "alice"] and table["rank"].tolist() == [1, 2]
    assert table["best test accuracy"].tolist() == [0.72, 0.61]
    assert table["network"].tolist() == ["/architecture?preset=tiny"] * 2
    assert not at.get("download_button")
    teacher = _app("tess", "leaderboard")
    assert [b.label for b in teacher.get("download_button")] == ["Leaderboard (CSV)"]


def test_solo_mode_has_no_sign_in_and_ranks_local_runs(tmp_path, finished_run, monkeypatch) -> None:
    root = tmp_path / "runs"
    monkeypatch.setenv("S7_RUNS_DIR", str(root))
    shutil.copytree(finished_run, root / "tiny-one")
    at = _app(page="leaderboard")
    assert [t.value for t in at.title] == ["Leaderboard"]
    assert at.dataframe[0].value["run"].tolist() == ["tiny-one"]
    assert "sign_out" not in _button_keys(at)
