"""Class mode against a student who crafts what their browser sends: another student's run name put into every
widget that picks a run, or typed as a run name, then the buttons pressed. Each attempt is refused in s7core's own
words (`authorize`), the page draws on without an exception box, nothing of the other student's run shows, and
that run is left exactly as it was: still training, still there, its status unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runs_helpers import forge_status
from streamlit.testing.v1 import AppTest
from test_classroom_pages import APP, ROLES, TIMEOUT, _copy, bobs_running_run, finished_run, school, tiny_data

from s7core import runs
from s7core.classroom import PermissionDenied, Role, User, runs_for

__all__ = ["bobs_running_run", "finished_run", "school", "tiny_data"]  # fixtures this module uses
ALICE = User("alice", Role.STUDENT)
BOBS = ("bobs", "bob-done", "bob-stopped")  # running, finished, stopped


@pytest.fixture
def two_students(school: Path, finished_run: Path, bobs_running_run) -> Path:
    """Alice's finished run, and bob's three: one training, one finished, one stopped half way."""
    _copy(finished_run, school, "alice-done", "alice", 0.5)
    _copy(finished_run, school, "bob-done", "bob", 0.6)
    _copy(finished_run, school, "bob-stopped", "bob", 0.4)
    forge_status(school / "bob-stopped", state=runs.RunState.STOPPED, epoch=0, epochs=3)
    return school


def _snapshot(root: Path) -> dict[str, tuple]:
    """What must not change in bob's runs: the folder's files, the status, the owner."""
    return {
        name: (
            sorted(p.name for p in (root / name).iterdir()),
            runs.read_status(root / name),
            json.loads((root / name / "config.json").read_text())["owner"],
        )
        for name in BOBS
    }


def _as(user: str, page: str, query: dict[str, str] | None = None, **crafted) -> AppTest:
    """The page as `user` sees it after their browser sent `crafted` widget values."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["s7_user"] = {"name": user, "role": ROLES[user].value}
    at.query_params.update(query or {})
    for key, value in crafted.items():
        at.session_state[key] = value
    at.switch_page(f"pages/{page}.py")
    return at.run()


def _shown(at: AppTest) -> str:
    """Every text, option and table cell the page drew."""
    parts = [
        str(e.value) for kind in ("markdown", "caption", "info", "success", "warning", "metric") for e in at.get(kind)
    ]
    parts += [str(o) for kind in ("selectbox", "multiselect") for w in at.get(kind) for o in w.options]
    parts += [frame.value.to_csv() for frame in at.dataframe]
    return "\n".join(parts)


CRAFTED = {
    "train": ("train_watch_run", "bobs", None),
    "results": ("results_runs", ["bob-done"], None),
    "misclassified": ("mis_run", "bob-done", None),
    "receptive_field": ("rf_run", "bob-done", {"preset": "tiny"}),  # a run of the network being edited
}


@pytest.mark.parametrize("page", sorted(CRAFTED))
def test_another_students_run_crafted_into_a_run_picker_is_refused_and_left_alone(two_students, page) -> None:
    key, value, query = CRAFTED[page]
    before = _snapshot(two_students)
    at = _as("alice", page, query, **{key: value})
    assert not at.exception, [e.message for e in at.exception]
    name = value[0] if isinstance(value, list) else value
    refusals = [e.value for e in at.main.error]
    assert any(f"run {name} is not yours" in e for e in refusals), refusals
    shown = _shown(at)
    assert not any(run in shown for run in BOBS), shown  # the picker fell back to alice's own runs
    assert not [b.key for b in at.button if b.key and "bob" in b.key]
    for button in [b for b in at.main.button if b.key]:  # whatever alice can press acts on her own runs only
        button.click().run()
        assert not at.exception, [e.message for e in at.exception]
    assert _snapshot(two_students) == before
    assert runs.RunFolder(two_students / "bobs").read_status().state == "running"


@pytest.mark.parametrize("name", ["bob-done", "../bob-done", "bob-done/..", "/etc"])
def test_a_run_name_typed_to_reach_another_students_run_is_refused(two_students, name) -> None:
    before = _snapshot(two_students)
    at = _as("alice", "train")
    at.selectbox(key="train_network").select("tiny").run()
    at.number_input(key="train_default_val_split").set_value(0)  # the tiny class data set has 200 images
    at.text_input(key="train_run_name").input(name)
    (launch,) = [b for b in at.button if b.label == "Launch training"]
    launch.click().run()
    assert not at.exception, [e.message for e in at.exception]
    refusals = [e.value for e in at.main.error]
    assert any("exists already" in e or "run name" in e for e in refusals), refusals
    assert not any(str(two_students) in e for e in refusals)  # a student never sees a server path
    assert _snapshot(two_students) == before


def test_the_class_page_with_another_students_run_crafted_in_stays_closed_to_a_student(two_students) -> None:
    before = _snapshot(two_students)
    at = _as("alice", "class", class_run="bobs")
    assert not at.exception
    assert "Class" not in [t.value for t in at.title]  # a student's menu has no such page, even asked by address
    assert not [b for b in at.button if b.key and ("stop_" in b.key or "remove_" in b.key)]
    assert _snapshot(two_students) == before


ACTIONS = {
    "stop": lambda r, n: r.stop(n),
    "resume": lambda r, n: r.resume(n),
    "remove": lambda r, n: r.remove(n),
    "metrics": lambda r, n: r.metrics(n),
    "checkpoint": lambda r, n: r.checkpoint(n),
    "view": lambda r, n: r.info(n),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
@pytest.mark.parametrize("name", BOBS)
def test_every_action_on_another_students_run_is_refused_in_s7core(two_students, action, name) -> None:
    """What a page's button would call, called straight: the check is s7core's, not the page's."""
    before = _snapshot(two_students)
    with pytest.raises(PermissionDenied, match=f"run {name} is not yours|only a teacher can remove runs"):
        ACTIONS[action](runs_for(ALICE, two_students), name)
    assert _snapshot(two_students) == before
