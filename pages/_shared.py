"""What every page shares: the network being edited, the data folder, cached library calls, errors.

Pages import this module as `pages._shared`; Streamlit puts the main script's folder (the
repository root) on `sys.path` under both `streamlit run app.py` and `AppTest.from_file`.
State lives in `st.session_state` under the `s7_` keys below, never in module globals,
so two browser tabs never see each other's network.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import streamlit as st

from s7core.errors import UserError
from s7core.receptive_field import RFRecord, rf_table
from s7core.spec import NetworkSpec, SpecError, get_preset, spec_from_dict

DEFAULT_PRESET = "seed"
SPEC_KEY = "s7_spec"  # the current valid network, as the dict NetworkSpec.to_dict() gives
SPEC_VERSION_KEY = "s7_spec_version"  # bumped when the network is replaced from outside the layer editor
ERROR_KEY = "s7_last_error"  # the last UserError as a dict (message, position, field), or None
DATA_DIR_KEY = "s7_data_dir"  # the sidebar's data folder text; empty means S7_DATA_DIR or the default
RULES_KEY = "s7_rule_settings"  # the assignment's thresholds, as a RuleSettings dict
DEFAULT_RULES = dict(max_params=1_000_000, min_rf=44, require_separable=True, require_dilated=True)


# ---------------------------------------------------------------- the network being edited


def get_spec() -> NetworkSpec:
    """The current valid network (the default preset on a first visit)."""
    if SPEC_KEY not in st.session_state:
        st.session_state[SPEC_KEY] = get_preset(DEFAULT_PRESET).to_dict()
    return spec_from_dict(st.session_state[SPEC_KEY])


def set_spec(spec: NetworkSpec, from_editor: bool = False) -> None:
    """Make `spec` the current network; from outside the editor it also resets the editor's table."""
    st.session_state[SPEC_KEY] = spec.to_dict()
    if not from_editor:
        st.session_state[SPEC_VERSION_KEY] = spec_version() + 1


def spec_version() -> int:
    """How many times the network was replaced from outside the editor (preset, upload, link, ...)."""
    return st.session_state.get(SPEC_VERSION_KEY, 0)


def spec_key(spec: NetworkSpec) -> str:
    """A compact canonical JSON text of `spec`: the cache key of every library call on it."""
    return json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def last_error() -> dict[str, Any] | None:
    """The last error a user can fix, as {message, position, field}, or None."""
    return st.session_state.get(ERROR_KEY)


def set_error(err: UserError | None) -> None:
    """Remember `err` (None clears it) so the page can show it after a rerun."""
    if err is None:
        st.session_state[ERROR_KEY] = None
        return
    st.session_state[ERROR_KEY] = dict(
        message=str(err), position=getattr(err, "position", None), field=getattr(err, "field", None)
    )


def show_error(err: UserError | dict[str, Any] | str, where: Any = None) -> None:
    """Show a user's error as one red message (never a traceback)."""
    message = err["message"] if isinstance(err, dict) else str(err)
    (where or st).error(message, icon=":material/error:")


# ---------------------------------------------------------------- cached library calls


@st.cache_data(max_entries=256, show_spinner=False)
def _rf_records(key: str) -> list[RFRecord]:
    return rf_table(spec_from_dict(json.loads(key)))


def rf_records(spec: NetworkSpec) -> list[RFRecord]:
    """The RF table of `spec` (s7core.receptive_field.rf_table), cached on the spec's JSON."""
    return _rf_records(spec_key(spec))


@st.cache_data(max_entries=256, show_spinner=False)
def _summary(key: str):
    from s7core.summary import summarize

    return summarize(spec_from_dict(json.loads(key)))


def summary(spec: NetworkSpec):
    """The parameter table of `spec` (s7core.summary.summarize), cached on the spec's JSON."""
    return _summary(spec_key(spec))


def rule_settings_dict() -> dict[str, Any]:
    """The assignment's thresholds in force (teachers change them on the Architecture page)."""
    if RULES_KEY not in st.session_state:
        st.session_state[RULES_KEY] = dict(DEFAULT_RULES)
    return st.session_state[RULES_KEY]


@st.cache_data(max_entries=256, show_spinner=False)
def _rules(key: str, settings_key: str):
    from s7core.rules import RuleSettings, check_rules

    return check_rules(spec_from_dict(json.loads(key)), RuleSettings(**json.loads(settings_key)))


def rules(spec: NetworkSpec):
    """The rule results of `spec` under the current thresholds (s7core.rules.check_rules), cached."""
    return _rules(spec_key(spec), json.dumps(rule_settings_dict(), sort_keys=True))


# ---------------------------------------------------------------- data and device


def data_dir_setting() -> str | None:
    """The data folder typed in the sidebar, or None to use S7_DATA_DIR / the default."""
    text = (st.session_state.get(DATA_DIR_KEY) or "").strip()
    return text or None


def data_status():
    """Where CIFAR-10 is for the current setting (s7core.data.find_cifar10)."""
    from s7core.data import find_cifar10

    return find_cifar10(data_dir_setting())


def data_dir() -> Path:
    """The data folder in force (s7core.data.resolve_data_dir of the sidebar setting)."""
    from s7core.data import resolve_data_dir

    return resolve_data_dir(data_dir_setting())


@st.cache_resource(show_spinner=False)
def device_name() -> str:
    """'CUDA: <GPU name>' when a GPU is usable, else 'CPU'; torch is imported only when asked."""
    import torch

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return "CPU"


# ---------------------------------------------------------------- sidebar


def _sidebar_data() -> None:
    st.text_input(
        "Data folder",
        key=DATA_DIR_KEY,
        placeholder=os.environ.get("S7_DATA_DIR", "S7_DATA_DIR or the default"),
        help="The folder holding cifar-10-batches-bin (or the python version). Empty: S7_DATA_DIR, "
        "else the default. The command line takes it as --data-dir.",
    )
    try:
        status = data_status()
    except UserError as err:
        show_error(err, st.sidebar)
        return
    if status.found:
        st.success(f"CIFAR-10 found ({status.format}) at `{status.path}`", icon=":material/database:")
    else:
        st.warning(status.message, icon=":material/folder_off:")


def _sidebar_network() -> None:
    spec = get_spec()
    st.markdown(f"**Network:** `{spec.name}` · {len(spec.layers)} layers")
    records = rf_records(spec)
    params = summary(spec).total_params
    results = rules(spec)
    passed = sum(r.passed for r in results)
    cols = st.columns(2)
    cols[0].metric("Parameters", f"{params:,}")
    cols[1].metric("Global RF", f"{records[-1].rf}")
    badge = ":green-badge" if passed == len(results) else ":orange-badge"
    st.markdown(f"{badge}[Rules passed: {passed} of {len(results)}]")


def sidebar() -> None:
    """The shared sidebar: the network being edited, the data folder, the device."""
    with st.sidebar:
        try:
            _sidebar_network()
        except UserError as err:
            show_error(err)
        except ImportError as err:  # TEMP until summary/rules land
            st.caption(str(err))
        st.divider()
        try:
            _sidebar_data()
        except ImportError as err:  # TEMP until data lands
            st.caption(str(err))
        st.caption(f"Device: **{device_name()}**")


def records_dicts(records: list[RFRecord]) -> list[dict[str, Any]]:
    """RF records as plain dicts, ready for a DataFrame."""
    return [asdict(r) for r in records]


__all__ = [
    "SpecError",
    "get_spec",
    "set_spec",
    "spec_version",
    "spec_key",
    "last_error",
    "set_error",
    "show_error",
    "rf_records",
    "summary",
    "rules",
    "rule_settings_dict",
    "data_status",
    "data_dir",
    "data_dir_setting",
    "device_name",
    "sidebar",
]
