"""Leaderboard: each student's best finished run under the class's thresholds, and below, the runs failing a rule.

The rows come from s7core.classroom.class_leaderboard; this page only draws them. It redraws itself every few
seconds, so a run that finishes shows up without a reload. In solo mode it ranks every local run.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pages._classroom import class_mode, guard_page, is_teacher
from pages._shared import rule_settings_dict, show_error
from s7core.classroom import BoardRow, class_leaderboard, leaderboard_csv
from s7core.errors import UserError
from s7core.rules import RuleSettings

REFRESH_S = 5  # how often the board is read again while the page is open
ACCURACY = "best test accuracy"  # the one accuracy figure: the test accuracy of the run's best checkpoint


def _link(row: BoardRow) -> str:
    """The address that opens the run's network on the Architecture page."""
    name, value = next(iter(row.link.items()))
    return f"/architecture?{name}={value}"


def _table(rows: tuple[BoardRow, ...], ranked: bool, key: str) -> None:
    frame = pd.DataFrame(
        [
            {"rank": r.rank, "student": r.student, "run": r.run, ACCURACY: r.best_test_accuracy,
             "parameters": r.parameters, "global RF": r.global_rf, "rules passed": f"{r.rules_passed}/{r.rules_total}",
             "fails": "; ".join(r.failed_rules), "epochs": r.epochs, "training time (s)": r.training_time_s,
             "network": _link(r)}
            for r in rows
        ]
    )  # fmt: skip
    if ranked:
        frame = frame.drop(columns=["fails"])
    else:
        frame = frame.drop(columns=["rank"])
    st.dataframe(
        frame,
        hide_index=True,
        key=key,
        column_config={
            ACCURACY: st.column_config.NumberColumn(format="percent", help="test accuracy of the best checkpoint"),
            "parameters": st.column_config.NumberColumn(format="localized"),
            "training time (s)": st.column_config.NumberColumn(format="%.0f"),
            "network": st.column_config.LinkColumn("network", display_text="open on Architecture"),
        },
    )


@st.fragment(run_every=REFRESH_S)
def board() -> None:
    """The ranked table, the failing runs and (for a teacher) the CSV; read again every REFRESH_S seconds."""
    try:
        result = class_leaderboard(solo_rules=RuleSettings(**rule_settings_dict()))
    except UserError as err:
        show_error(err)
        return
    if not result.ranked and not result.failing:
        st.info("No finished run yet: the board fills in as runs finish.", icon=":material/hourglass_empty:")
        return
    if result.ranked:
        _table(result.ranked, True, "board_ranked")
    else:
        st.info("No finished run passes every rule yet.", icon=":material/rule:")
    if result.failing:
        st.subheader("Failing a rule")
        st.caption("Finished runs that break at least one of the class's rules, with the rule they fail.")
        _table(result.failing, False, "board_failing")
    if is_teacher():
        st.download_button(
            "Leaderboard (CSV)", leaderboard_csv(result), "leaderboard.csv", "text/csv",
            icon=":material/download:", on_click="ignore", key="board_csv",
        )  # fmt: skip


guard_page()
st.title("Leaderboard")
rules = RuleSettings(**rule_settings_dict())
who = "each student's best finished run" if class_mode() else "every finished run on this machine"
st.caption(
    f"Ranked by {ACCURACY} (the test accuracy of a run's best checkpoint): {who} that passes the rules — fewer "
    f"than {rules.max_params:,} parameters, a global RF above {rules.min_rf}"
    + (", a depthwise-separable conv" if rules.require_separable else "")
    + (", a dilated conv" if rules.require_dilated else "")
    + "."
)
board()
