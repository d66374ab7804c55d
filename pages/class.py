"""Class: the teacher's panel. The thresholds every student is judged by, the run limits, submissions open or
closed, the data folder, the teachers' e-mail addresses, and every run of the class to stop or remove.

Each change goes through s7core (ClassRuns.change_settings, stop, remove), which refuses anyone but a teacher.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._classroom import guard_page, require_user, user_runs
from pages._shared import show_error
from s7core.classroom import CLASS_SETTINGS, Action, PermissionDenied, Roster, authorize
from s7core.errors import UserError
from s7core.rules import MAX_PARAMS_LIMIT, MAX_RF_LIMIT, RuleSettings

FLASH_KEY = "class_flash"  # what the last button's callback did: (kind, text), shown once by the next run
RULE_KEYS = {"max_params": "class_max_params", "min_rf": "class_min_rf",
             "require_separable": "class_require_separable", "require_dilated": "class_require_dilated"}  # fmt: skip


def _save_settings() -> None:
    """The Save button's callback: every value of the form, checked and stored by s7core (teachers only)."""
    state = st.session_state
    try:
        rules = RuleSettings(
            **{name: type(getattr(RuleSettings(), name))(state[key]) for name, key in RULE_KEYS.items()}
        )
        values = {s.name: s.kind(state[f"class_{s.name}"]) for s in CLASS_SETTINGS}
        emails = tuple(t.strip() for t in state["class_teachers"].splitlines() if t.strip())
        data_dir = state["class_data_dir"].strip() or None
        user_runs().change_settings(rules=rules, data_dir=data_dir, teachers=emails, **values)
    except UserError as err:
        state[FLASH_KEY] = ("error", str(err))
        return
    state[FLASH_KEY] = ("success", "Saved: every page uses the new settings from now on.")


def _stop(name: str) -> None:
    try:
        st.session_state[FLASH_KEY] = ("success", user_runs().stop(name).message)
    except UserError as err:
        st.session_state[FLASH_KEY] = ("error", str(err))


def _remove(name: str) -> None:
    try:
        user_runs().remove(name)
    except UserError as err:
        st.session_state[FLASH_KEY] = ("error", str(err))
        return
    st.session_state[FLASH_KEY] = ("success", f"Removed run {name}.")


def _flash() -> None:
    kind, text = st.session_state.pop(FLASH_KEY, (None, None))
    if kind == "error":
        show_error(text)
    elif kind == "success":
        st.success(text, icon=":material/check:")


def settings_form() -> None:
    """Every class setting in one form, saved together by its button's callback (which acts once, before the
    page's script runs)."""
    current = user_runs().settings
    with st.form("class_settings_form"):
        st.markdown("**Assignment thresholds** (every student's rule badges and the leaderboard use these)")
        a, b = st.columns(2)
        a.number_input("Parameters below", 1, MAX_PARAMS_LIMIT, current.rules.max_params, 50_000,
                       key=RULE_KEYS["max_params"])  # fmt: skip
        b.number_input("Global RF above", 0, MAX_RF_LIMIT, current.rules.min_rf, 1, key=RULE_KEYS["min_rf"])
        a.checkbox("Require a depthwise-separable conv", current.rules.require_separable,
                   key=RULE_KEYS["require_separable"])  # fmt: skip
        b.checkbox("Require a dilated conv", current.rules.require_dilated, key=RULE_KEYS["require_dilated"])
        st.markdown("**Runs**")
        for col, s in zip(st.columns(len(CLASS_SETTINGS)), CLASS_SETTINGS, strict=True):
            value = getattr(current, s.name)
            if s.kind is bool:
                col.toggle(s.title, value, key=f"class_{s.name}", help=s.help)
            else:  # whole runs and cores, or a share of a GPU: the number's kind is the setting's own
                kind = s.kind
                col.number_input(s.title, kind(s.low), kind(s.high), kind(value), kind(s.step or 1),
                                 key=f"class_{s.name}", help=s.help)  # fmt: skip
        st.text_input(
            "Data folder on the server", current.data_dir or "", key="class_data_dir",
            placeholder="empty: $S7_DATA_DIR or the default", help="The CIFAR-10 folder every run of the class "
            "trains on. Students never see it.",
        )  # fmt: skip
        st.text_area(
            "Teachers' e-mail addresses (identity provider)", "\n".join(current.teachers), key="class_teachers",
            help="One a line. Whoever signs in with the school's identity provider under one of these is a teacher; "
            "everyone else is a student.",
        )  # fmt: skip
        st.form_submit_button("Save the class's settings", type="primary", icon=":material/save:",
                              on_click=_save_settings)  # fmt: skip


def runs_panel() -> None:
    """Every run of the class with its owner; stop or remove one."""
    infos = user_runs().list()
    if not infos:
        st.info("No runs yet.")
        return
    table = pd.DataFrame(
        [dict(run=i.name, owner=i.owner or "—", state=i.state, epoch=f"{i.epoch}/{i.epochs}", best=i.best_accuracy,
              network=i.preset, created=i.created) for i in infos]
    )  # fmt: skip
    st.dataframe(table, hide_index=True, key="class_runs_table",
                 column_config={"best": st.column_config.NumberColumn("best test acc", format="percent")})  # fmt: skip
    name = st.selectbox("Run", [i.name for i in infos], key="class_run")
    info = next(i for i in infos if i.name == name)
    active = info.state in ("queued", "running")
    left, right = st.columns(2)
    if active:
        left.button("Stop", icon=":material/stop:", key=f"stop_{name}", on_click=_stop, args=(name,))
    right.button("Remove", icon=":material/delete:", key=f"remove_{name}", disabled=active,
                 help="Delete the run folder; stop it first.", on_click=_remove, args=(name,))  # fmt: skip


def roster_panel() -> None:
    """Who can sign in with a class account; the accounts are made on the server's command line."""
    try:
        users = Roster().users()
    except UserError as err:
        show_error(err)
        return
    st.caption(
        "Add, remove or reset accounts on the server: `python -m s7core class add NAME --role student` "
        "(or `teacher`), `class remove NAME`, `class reset-password NAME`."
    )
    if users:
        st.dataframe(pd.DataFrame([dict(name=u.name, role=u.role.value, added=u.added) for u in users]),
                     hide_index=True, key="class_roster")  # fmt: skip


guard_page()
st.title("Class")
try:
    authorize(require_user(), Action.MANAGE)
except PermissionDenied as err:
    show_error(err)
    st.stop()
st.caption("The class's settings, its runs and its accounts. Students see none of this page.")
_flash()
settings_tab, runs_tab, roster_tab = st.tabs(["Settings", "Runs", "Accounts"])
with settings_tab:
    settings_form()
with runs_tab:
    runs_panel()
with roster_tab:
    roster_panel()
