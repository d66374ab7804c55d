"""Who is using the app: the sign-in gate of class mode, the signed-in user, and the runs as they may reach them.

In solo mode (class mode off) there is no sign-in and the one user acts as a teacher. In class mode a user signs
in with the school's identity provider (Streamlit's st.login, when `[auth]` is set in .streamlit/secrets.toml)
or with a name and password from the class roster. Every check of what a user may do is made in s7core
(`s7core.classroom`); this module only finds out who the user is and draws the sign-in form.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import streamlit as st

from s7core.classroom import (
    SOLO_USER,
    ClassRuns,
    ClassSettings,
    PermissionDenied,
    Role,
    Roster,
    SignInError,
    User,
    identity_user,
    load_settings,
    runs_for,
)
from s7core.errors import UserError

USER_KEY = "s7_user"  # a roster sign-in: {"name", "role"}; identity-provider users come from st.user instead


def class_settings() -> ClassSettings:
    """The class's settings as the file holds them now (a teacher's change shows on the next rerun)."""
    return load_settings()


def class_mode() -> bool:
    """Whether class mode is on (a damaged settings file counts as on: nothing opens until it is fixed)."""
    try:
        return class_settings().enabled
    except UserError:
        return True


def class_thresholds() -> dict[str, Any] | None:
    """The class's thresholds as a RuleSettings dict in class mode (every page judges by them); None in solo mode."""
    if not class_mode():
        return None
    return asdict(class_settings().rules)


def data_problem(message: str) -> str:
    """What to tell the user when the data is missing: the details (with server paths) only for a teacher."""
    if class_mode() and not is_teacher():
        return "The class's data set is not there yet: tell your teacher."
    return message


def identity_provider() -> bool:
    """Whether an OpenID Connect provider is configured ([auth] in .streamlit/secrets.toml)."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all: Streamlit raises rather than answering no
        return False


def _identity() -> dict[str, Any]:
    try:
        return st.user.to_dict()
    except Exception:  # st.user outside a session (bare mode)
        return {}


def current_user() -> User | None:
    """The signed-in user (the solo user in solo mode); None when class mode is on and nobody is signed in."""
    settings = class_settings()
    if not settings.enabled:
        return SOLO_USER
    identity = _identity() if identity_provider() else {}
    if identity.get("is_logged_in"):
        return identity_user(str(identity.get("email") or identity.get("sub")), str(identity.get("name") or ""))
    signed = st.session_state.get(USER_KEY)
    if not signed:
        return None
    entry = Roster().get(signed["name"])
    if entry is None or entry.role.value != signed["role"]:  # taken off the roster, or their role changed
        st.session_state.pop(USER_KEY, None)
        return None
    return User(entry.name, entry.role)


def require_user() -> User:
    """The signed-in user; a page run without one (never, behind the gate) stops here."""
    user = current_user()
    if user is None:
        st.warning("Sign in first.", icon=":material/lock:")
        st.stop()
    return user


def user_runs() -> ClassRuns:
    """The runs as the signed-in user may reach them: every listing, launch, stop and download goes through it."""
    return runs_for(require_user())


def refuse_foreign_runs(key: str, offered: list[str]) -> None:
    """Say why, in s7core's words, when widget `key` holds run names it never offered (a value crafted by hand,
    someone else's run); the widget then falls back to the user's own choices (Streamlit drops a value it did not
    offer, and so do the pages)."""
    value = st.session_state.get(key)
    asked = value if isinstance(value, list) else [value]
    for name in [v for v in asked if isinstance(v, str) and v not in offered]:
        try:
            user_runs().info(name)
        except PermissionDenied as err:  # someone else's run
            st.error(str(err), icon=":material/block:")
        except UserError:  # no such run (any more: removed since the last rerun): the fallback says enough
            pass


def is_teacher() -> bool:
    """Whether the user may manage the class (always in solo mode)."""
    user = current_user()
    return user is not None and user.is_teacher


# ---------------------------------------------------------------- signing in and out


def _roster_form() -> None:
    with st.form("sign_in_form"):
        name = st.text_input("Name", key="sign_in_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if submitted:
        try:
            user = Roster().verify(name, password)
        except SignInError as err:
            st.error(str(err), icon=":material/error:")
            return
        st.session_state[USER_KEY] = {"name": user.name, "role": user.role.value}
        st.rerun()


def sign_in_page() -> None:
    """The only page while nobody is signed in: the identity provider's button and/or the roster's form."""
    st.title("Sign in")
    st.caption("s7 is running for a class: sign in to design, train and compare your networks.")
    with st.columns([2, 3])[0]:  # a form as wide as a name, not as the window
        _sign_in_choices()


def _sign_in_choices() -> None:
    try:
        has_roster = bool(Roster().users())
    except UserError as err:
        st.error(str(err), icon=":material/error:")
        has_roster = False
    if identity_provider():
        if st.button("Sign in with your school account", type="primary", icon=":material/account_circle:"):
            st.login()
        if has_roster:
            st.caption("Or, with a class account:")
    if has_roster:
        _roster_form()
    if not identity_provider() and not has_roster:
        st.warning(
            "Nobody can sign in yet. The teacher adds accounts on the server with "
            "`python -m s7core class add NAME --role student` (or `--role teacher`), "
            "or sets up the school's identity provider: see the README, *Running it for a class*.",
            icon=":material/group_off:",
        )


def gate() -> User | None:
    """Who may see the pages: the user, or None (the caller then shows only the sign-in page)."""
    try:
        return current_user()
    except UserError as err:  # a damaged class settings file or roster: say which and how to fix it
        st.error(str(err), icon=":material/error:")
        st.stop()


def guard_page() -> None:
    """The first call of the class pages: app.py's shell (and its sign-in gate) on a first direct visit, and nothing
    drawn for nobody."""
    from pages._shared import ensure_shell

    ensure_shell()
    if gate() is None:
        st.stop()


def sign_out() -> None:
    """Forget the roster sign-in; log out of the identity provider too when signed in there (the Sign out button's
    callback: it acts before the script runs, which then finds nobody signed in)."""
    st.session_state.pop(USER_KEY, None)
    if identity_provider() and _identity().get("is_logged_in"):
        st.logout()


def sidebar_user() -> None:
    """Who is signed in and as what, with the sign-out button (nothing in solo mode)."""
    user = current_user()
    if user is None or not user.signed_in:
        return
    role = "teacher" if user.role is Role.TEACHER else "student"
    st.markdown(f":material/person: **{user.label}** · {role}")
    st.button("Sign out", icon=":material/logout:", key="sign_out", on_click=sign_out)
