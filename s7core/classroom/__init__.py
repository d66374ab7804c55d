"""Class mode: users and roles, the roster, the class's settings, who may do what with runs, the leaderboard.

    users.py        User, Role, SOLO_USER and COMMAND_LINE (both act as a teacher)
    settings.py     ClassSettings: class mode on/off, thresholds, limits, submissions, data folder, teachers
    roster.py       Roster: names, roles and argon2 password hashes; sign-in with a persisted count of failures
    access.py       authorize(user, action, run), and ClassRuns, the runs as one user may reach them
    leaderboard.py  each student's best finished run under the class's thresholds; CSV

Everything a page may do with runs goes through `runs_for(user)`, so the checks hold whatever draws the page.
"""

from __future__ import annotations

import os

from s7core.classroom.access import Action, ClassRuns, PermissionDenied, authorize, command_line_runs, runs_for
from s7core.classroom.leaderboard import BoardRow, Leaderboard, board_row, leaderboard, leaderboard_csv
from s7core.classroom.roster import (
    ROSTER_FILE,
    Roster,
    RosterEntry,
    SignInError,
    TooManyAttempts,
    check_password,
    wait_after,
)
from s7core.classroom.settings import (
    CLASS_SETTINGS,
    ClassSettings,
    change_settings,
    class_folder,
    load_settings,
    save_settings,
)
from s7core.classroom.users import COMMAND_LINE, ROLES, SOLO_USER, ClassError, Role, User, normalise_name, parse_role
from s7core.rules import RuleSettings


def teachers(settings: ClassSettings, runs_dir: str | os.PathLike | None = None) -> frozenset[str]:
    """The names that sign in as teachers: the roster's teachers and the e-mail addresses in the settings."""
    listed = Roster(runs_dir).users() if (class_folder(runs_dir) / ROSTER_FILE).exists() else []
    return frozenset({e.name for e in listed if e.role is Role.TEACHER} | set(settings.teachers))


def identity_user(identity: str, display: str = "", runs_dir: str | os.PathLike | None = None) -> User:
    """The user an identity provider signed in (by e-mail, else subject): a teacher when listed as one, else a
    student."""
    name = normalise_name(identity)
    role = Role.TEACHER if name in teachers(load_settings(runs_dir), runs_dir) else Role.STUDENT
    return User(name, role, display)


def class_leaderboard(runs_dir: str | os.PathLike | None = None, solo_rules: RuleSettings | None = None) -> Leaderboard:
    """The board as the app shows it: in class mode each student's best run under the class's thresholds (the
    teachers' runs and runs with no owner left out); in solo mode every run, under `solo_rules`."""
    settings = load_settings(runs_dir)
    if not settings.enabled:
        return leaderboard(rules=solo_rules, per_owner=False, runs_dir=runs_dir)
    leave_out = frozenset({None, *teachers(settings, runs_dir)})
    return leaderboard(rules=settings.rules, per_owner=True, runs_dir=runs_dir, leave_out=leave_out)


__all__ = [
    "CLASS_SETTINGS",
    "COMMAND_LINE",
    "ROLES",
    "SOLO_USER",
    "Action",
    "BoardRow",
    "ClassError",
    "ClassRuns",
    "ClassSettings",
    "Leaderboard",
    "PermissionDenied",
    "Role",
    "Roster",
    "RosterEntry",
    "SignInError",
    "TooManyAttempts",
    "User",
    "authorize",
    "board_row",
    "change_settings",
    "check_password",
    "class_folder",
    "class_leaderboard",
    "command_line_runs",
    "identity_user",
    "leaderboard",
    "leaderboard_csv",
    "load_settings",
    "normalise_name",
    "parse_role",
    "runs_for",
    "save_settings",
    "teachers",
    "wait_after",
]
