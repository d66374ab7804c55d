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


def settings_form() -> None:
    """Every class setting in one form; saved together."""
    runs = user_runs()
    current = runs.settings
    with st.form("class_settings_form"):
        st.markdown("**Assignment thresholds** (every student's rule badges and the leaderboard use these)")
        a, b = st.columns(2)
        max_params = a.number_input("Parameters below", 1, MAX_PARAMS_LIMIT, current.rules.max_params, 50_000,
                                    key="class_max_params")  # fmt: skip
        min_rf = b.number_input("Global RF above", 0, MAX_RF_LIMIT, current.rules.min_rf, 1, key="class_min_rf")
        separable = a.checkbox("Require a depthwise-separable conv", current.rules.require_separable,
                               key="class_require_separable")  # fmt: skip
        dilated = b.checkbox("Require a dilated conv", current.rules.require_dilated, key="class_require_dilated")
        st.markdown("**Runs**")
        cols = st.columns(len(CLASS_SETTINGS))
        values = {}
        for col, s in zip(cols, CLASS_SETTINGS, strict=True):
            value = getattr(current, s.name)
            if s.kind is bool:
                values[s.name] = col.toggle(s.title, value, key=f"class_{s.name}", help=s.help)
            else:
                values[s.name] = int(col.number_input(s.title, int(s.low), int(s.high), value, int(s.step or 1),
                                                      key=f"class_{s.name}", help=s.help))  # fmt: skip
        data_dir = st.text_input(
            "Data folder on the server", current.data_dir or "", key="class_data_dir",
            placeholder="empty: $S7_DATA_DIR or the default", help="The CIFAR-10 folder every run of the class "
            "trains on. Students never see it.",
        )  # fmt: skip
        teachers = st.text_area(
            "Teachers' e-mail addresses (identity provider)", "\n".join(current.teachers), key="class_teachers",
            help="One a line. Whoever signs in with the school's identity provider under one of these is a teacher; "
            "everyone else is a student.",
        )  # fmt: skip
        saved = st.form_submit_button("Save the class's settings", type="primary", icon=":material/save:")
    if saved:
        try:
            rules = RuleSettings(int(max_params), int(min_rf), bool(separable), bool(dilated))
            emails = tuple(t.strip() for t in teachers.splitlines() if t.strip())
            runs.change_settings(rules=rules, data_dir=data_dir.strip() or None, teachers=emails, **values)
        except UserError as err:
            show_error(err)
            return
        st.success("Saved: every page uses the new settings from now on.", icon=":material/check:")


def runs_panel() -> None:
    """Every run of the class with its owner; stop or remove one."""
    runs = user_runs()
    infos = runs.list()
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
    left, right = st.columns(2)
    try:
        if info.state in ("queued", "running") and left.button("Stop", icon=":material/stop:", key=f"stop_{name}"):
            st.toast(runs.stop(name).message)
        active = info.state in ("queued", "running")
        hint = "Delete the run folder; stop it first."
        if right.button("Remove", icon=":material/delete:", key=f"remove_{name}", disabled=active, help=hint):
            runs.remove(name)
            st.toast(f"Removed {name}")
            st.rerun()
    except UserError as err:
        show_error(err)


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
settings_tab, runs_tab, roster_tab = st.tabs(["Settings", "Runs", "Accounts"])
with settings_tab:
    settings_form()
with runs_tab:
    runs_panel()
with roster_tab:
    roster_panel()
