"""What every page shares: the network being edited, the data folder, cached library calls, errors.

Pages import this module as `pages._shared`; Streamlit puts the main script's folder (the
repository root) on `sys.path` under both `streamlit run app.py` and `AppTest.from_file`.
State lives in `st.session_state` under the `s7_` keys below, never in module globals,
so two browser tabs never see each other's network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import streamlit as st

from s7core.errors import UserError
from s7core.links import canonical_json, spec_from_link
from s7core.rf.table import RFRecord, rf_table
from s7core.rules import RuleSettings
from s7core.spec import (
    FIELD_ORDER,
    INT_FIELDS,
    LAYER_FIELDS,
    PRESETS,
    Layer,
    NetworkSpec,
    SpecError,
    get_preset,
    layer_from_dict,
    spec_from_dict,
    validate,
)

if TYPE_CHECKING:
    from s7core.evaluate import Evaluation

DEFAULT_PRESET = "seed"
SPEC_KEY = "s7_spec"  # the current valid network, as the dict NetworkSpec.to_dict() gives
SPEC_VERSION_KEY = "s7_spec_version"  # bumped when the network is replaced from outside the layer editor
ERROR_KEY = "s7_last_error"  # the last UserError as a dict (message, position, field), or None
DATA_DIR_KEY = "s7_data_dir"  # the sidebar's data folder text; empty means S7_DATA_DIR or the default
RULES_KEY = "s7_rule_settings"  # the assignment's thresholds, as a RuleSettings dict
SHELL_KEY = "s7_through_app"  # set by app.py just before it runs the page
DEFAULT_RULES = asdict(RuleSettings())  # the assignment's thresholds, as RuleSettings declares them


# ---------------------------------------------------------------- the app shell


def ensure_shell() -> None:
    """Rerun through app.py when Streamlit ran this page on its own; call it first on every page.

    Until st.navigation has run once in the process, Streamlit treats a pages/ folder beside
    the main script as an old-style multipage app: the first request for /<page> on a fresh
    server runs that page alone, without app.py (no sidebar, no wide layout, no shared link).
    A run that came through app.py is left alone: a rerun there would drop what the user just did (a form's
    submit button is True for one run only).
    """
    if st.session_state.pop(SHELL_KEY, False):
        return
    try:  # a Streamlit internal: if a release renames it, the page still works, only bare
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False  # app.py's st.navigation would set the same
        st.rerun()


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
    return canonical_json(spec)


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


# ---------------------------------------------------------------- links


def load_network_from_query() -> str | None:
    """Load the network named by ?preset= or ?spec= once per link; returns an error message for a bad link."""
    params = st.query_params
    name = "spec" if "spec" in params else "preset" if "preset" in params else None
    if name is None:
        return None
    marker = f"{name}={params[name]}"
    if st.session_state.get("s7_query_loaded") == marker:
        return st.session_state.get("s7_query_error")
    st.session_state["s7_query_loaded"] = marker
    st.session_state["s7_query_error"] = None
    try:
        spec = get_preset(params[name]) if name == "preset" else spec_from_link(params[name])
    except SpecError as err:
        spec = get_preset(DEFAULT_PRESET)
        st.session_state["s7_query_error"] = (
            f"The link's network could not be loaded: {err}. Showing the '{DEFAULT_PRESET}' network instead."
        )
    set_spec(spec)
    return st.session_state["s7_query_error"]


def forget_link() -> None:
    """Drop ?preset= / ?spec= from the address once the network has changed, so the address never lies."""
    for name in ("spec", "preset"):  # other parameters (?projector=1) stay
        if name in st.query_params:
            del st.query_params[name]
    st.session_state["s7_query_loaded"] = None


def mark_link_loaded(params: dict[str, str]) -> None:
    """Record that the page's own link is already loaded, so writing it to the URL reloads nothing."""
    name, value = next(iter(params.items()))
    st.session_state["s7_query_loaded"] = f"{name}={value}"
    st.session_state["s7_query_error"] = None


# ---------------------------------------------------------------- the layer table

TABLE_COLUMNS = ("type", *FIELD_ORDER)


def layers_to_rows(layers: Iterable[Layer]) -> list[dict[str, Any]]:
    """One row per layer with every column; fields the layer's type does not use are None."""
    return [{"type": lay.type, **{f: lay.fields().get(f) for f in FIELD_ORDER}} for lay in layers]


def spec_to_rows(spec: NetworkSpec) -> list[dict[str, Any]]:
    """The layer table of `spec`."""
    return layers_to_rows(spec.layers)


def _empty(value: Any) -> bool:
    """True for a blank cell: None, NaN or pandas' NA."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def row_to_layer(row: dict[str, Any], position: int) -> Layer:
    """The layer a table row describes: empty cells take the type's default; unused columns are ignored."""
    kind = row.get("type")
    if _empty(kind) or kind == "":
        raise SpecError(f"layer {position}: choose a layer type ({', '.join(LAYER_FIELDS)})", position, "type")
    data: dict[str, Any] = {"type": kind}
    for name in LAYER_FIELDS.get(kind, {}):
        value = row.get(name)
        if _empty(value):
            continue
        if hasattr(value, "item"):
            value = value.item()  # numpy / pandas scalars to plain Python
        if name in INT_FIELDS and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif name == "bias":
            value = bool(value)
        data[name] = value
    return layer_from_dict(data, position)


def rows_to_spec(rows: list[dict[str, Any]], like: NetworkSpec) -> NetworkSpec:
    """A validated spec from table rows, keeping `like`'s name, input shape and classes."""
    layers = tuple(row_to_layer(row, i) for i, row in enumerate(rows))
    name = like.name
    if name in PRESETS and spec_to_rows(get_preset(name)) != rows:
        name = f"{name}-edited"
    spec = NetworkSpec(layers, name, like.description, like.input_shape, like.num_classes)
    return validate(spec)


def apply_editor_delta(base: list[dict[str, Any]], delta: dict[str, Any] | None) -> list[dict[str, Any]]:
    """`base` with a data editor's edits applied the way st.data_editor applies them.

    Cell edits address rows of `base` by position (positions past its end are added rows),
    deletions then drop rows of `base`, and added rows go at the end.
    """
    delta = delta or {}
    rows = [dict(row) for row in base]
    added = [dict.fromkeys(TABLE_COLUMNS) | dict(row) for row in delta.get("added_rows", [])]
    for index, changes in (delta.get("edited_rows") or {}).items():
        index = int(index)
        target = (
            rows[index] if index < len(rows) else added[index - len(rows)] if index - len(rows) < len(added) else None
        )
        if target is not None:
            target.update(changes)
    deleted = {int(i) for i in delta.get("deleted_rows", [])}
    return [row for i, row in enumerate(rows) if i not in deleted] + added


# ---------------------------------------------------------------- cached library calls


@st.cache_data(max_entries=256, show_spinner=False)
def _rf_records(key: str) -> list[RFRecord]:
    return rf_table(spec_from_dict(json.loads(key)))


def rf_records(spec: NetworkSpec) -> list[RFRecord]:
    """The RF table of `spec` (s7core.rf.table.rf_table), cached on the spec's JSON."""
    return _rf_records(spec_key(spec))


@st.cache_data(max_entries=256, show_spinner=False)
def _summary(key: str):
    from s7core.summary import summarize

    return summarize(spec_from_dict(json.loads(key)))


def summary(spec: NetworkSpec):
    """The parameter table of `spec` (s7core.summary.summarize), cached on the spec's JSON."""
    return _summary(spec_key(spec))


def rule_settings_dict() -> dict[str, Any]:
    """The assignment's thresholds in force: in class mode the class's (set by the teacher), else this session's
    (changed on the Architecture page)."""
    from pages._classroom import class_thresholds

    fixed = class_thresholds()
    if fixed is not None:
        return fixed
    if RULES_KEY not in st.session_state:
        st.session_state[RULES_KEY] = dict(DEFAULT_RULES)
    return st.session_state[RULES_KEY]


@st.cache_data(max_entries=256, show_spinner=False)
def _rules(key: str, settings_key: str):
    from s7core.rules import check_rules

    return check_rules(spec_from_dict(json.loads(key)), RuleSettings(**json.loads(settings_key)))


def rules(spec: NetworkSpec):
    """The rule results of `spec` under the current thresholds (s7core.rules.check_rules), cached."""
    return _rules(spec_key(spec), json.dumps(rule_settings_dict(), sort_keys=True))


@st.cache_data(max_entries=32, show_spinner=False)
def _predictions(run_dir: str, mtime: float) -> Evaluation:
    """The run's saved evaluation; `mtime` makes a rewritten file a new cache entry."""
    from s7core.runs import load_predictions

    return load_predictions(run_dir)


def has_predictions(run_dir: str) -> bool:
    """Whether the run has saved its test-set predictions (it has finished)."""
    from s7core.runs.store import PREDICTIONS_FILE

    return (Path(run_dir) / PREDICTIONS_FILE).is_file()


def predictions(run_dir: str) -> Evaluation | None:
    """The run's test-set predictions (s7core.runs.load_predictions, cached), or None before it has finished."""
    from s7core.runs.store import PREDICTIONS_FILE

    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    return _predictions(run_dir, path.stat().st_mtime)


# ---------------------------------------------------------------- data and device


def data_dir_setting() -> str | None:
    """The data folder typed in the sidebar (in class mode the class's), or None to use S7_DATA_DIR / the default.

    A typed path no folder can have ('..', NUL, a newline, too long) is a PathError (s7core.paths).
    """
    from pages._classroom import class_mode, class_settings
    from s7core.paths import check_folder_path

    if class_mode():
        return class_settings().data_dir
    text = st.session_state.get(DATA_DIR_KEY) or ""
    return str(check_folder_path(text.strip(" "))) if text.strip() else None


def checked_data_status():
    """Where CIFAR-10 is for the current setting (s7core.data.find_cifar10); a UserError for a path that cannot be."""
    from s7core.data import find_cifar10

    return find_cifar10(data_dir_setting())


def data_status():
    """Where CIFAR-10 is for the current setting; a typed path that cannot be a folder reads as not found, with why."""
    from s7core.data import DataStatus

    try:
        return checked_data_status()
    except UserError as err:
        return DataStatus(False, Path(), None, str(err))


def data_dir() -> Path:
    """The data folder in force (s7core.data.resolve_data_dir of the sidebar setting)."""
    from s7core.data import resolve_data_dir

    return resolve_data_dir(data_dir_setting())


@st.cache_resource(show_spinner=False)
def device_name() -> str:
    """The device training uses with device 'auto' (s7core.device.resolve_device): 'CUDA: <GPU name>' or 'CPU'."""
    import torch

    from s7core.device import resolve_device

    device = resolve_device("auto")
    return f"CUDA: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "CPU"


# ---------------------------------------------------------------- sidebar


def _sidebar_data() -> None:
    from pages._classroom import class_mode, is_teacher

    if class_mode():  # the class's folder: a teacher sets it on the Class page; students never see a server path
        _sidebar_class_data(is_teacher())
        return
    st.text_input(
        "Data folder",
        key=DATA_DIR_KEY,
        placeholder=os.environ.get("S7_DATA_DIR", "S7_DATA_DIR or the default"),
        help="The folder holding cifar-10-batches-bin (or the python version). Empty: S7_DATA_DIR, "
        "else the default. The command line takes it as --data-dir.",
    )
    try:
        status = checked_data_status()
    except UserError as err:
        show_error(err, st.sidebar)
        return
    if status.found:
        st.success(f"CIFAR-10 found ({status.format}) at `{status.path}`", icon=":material/database:")
    else:
        st.warning(status.message, icon=":material/folder_off:")


def _sidebar_class_data(teacher: bool) -> None:
    try:
        status = data_status()
    except UserError as err:
        show_error(err if teacher else "The class's data set cannot be read: tell your teacher.", st.sidebar)
        return
    if status.found:
        where = f" at `{status.path}` (set on the Class page)" if teacher else ""
        st.success(f"CIFAR-10 ready{where}", icon=":material/database:")
    else:
        st.warning(status.message if teacher else "The class's data set is not there yet: tell your teacher.",
                   icon=":material/folder_off:")  # fmt: skip


def _sidebar_network() -> None:
    spec = get_spec()
    st.markdown(f"**Network being edited:** `{spec.name}` · {len(spec.layers)} layers")
    records = rf_records(spec)
    params = summary(spec).total_params
    results = rules(spec)
    passed = sum(r.passed for r in results)
    st.markdown(f"Parameters **{params:,}** · global RF **{records[-1].rf}**")
    badge = ":green-badge" if passed == len(results) else ":orange-badge"
    st.markdown(f"{badge}[Rules passed: {passed} of {len(results)}]")
    if last_error():
        st.caption("The layer table has an error; this is the last valid network.")


CLUSTER_QUERY_TTL_S = 5  # thirty sessions polling share one query of the cluster's free resources
STORAGE_CHECK_TTL_S = 300  # and one storage check (s7core keeps a passed one longer, in the runs root)


@st.cache_data(ttl=CLUSTER_QUERY_TTL_S, show_spinner=False)
def _capacity(name: str, runs_dir: str) -> dict[str, Any]:
    from s7core.runs import get_executor

    return asdict(get_executor(name, runs_dir=runs_dir).capacity())


@st.cache_data(ttl=STORAGE_CHECK_TTL_S, show_spinner="Checking that the cluster's workers see the runs folder…")
def _storage(name: str, runs_dir: str) -> dict[str, Any] | None:
    from s7core.runs import get_executor

    check = get_executor(name, runs_dir=runs_dir).check_storage()
    return check.to_dict() if check else None


def _sidebar_executor() -> None:
    """Where runs train: the executor, its cluster, the free CPUs and GPUs, and whether the workers see the runs."""
    from s7core.runs import Capacity, executor_name, runs_root

    name, root = executor_name(), str(runs_root().resolve())
    try:
        capacity = Capacity(**_capacity(name, root))
        storage = _storage(name, root)
    except UserError as err:
        show_error(f"Runs: the {name} executor is not usable: {err}")
        return
    st.caption(f"Runs train on: **{capacity.summary()}**")
    if storage and not storage["ok"]:
        show_error(storage["message"])


def sidebar() -> None:
    """The shared sidebar: who is signed in (class mode), the network being edited, the data folder, the device,
    where runs train."""
    from pages._classroom import sidebar_user

    with st.sidebar:
        sidebar_user()
        from pages._display import toggle

        toggle()
        try:
            _sidebar_network()
        except UserError as err:
            show_error(err)
        st.divider()
        _sidebar_data()
        st.caption(f"Device: **{device_name()}**")
        _sidebar_executor()


# ---------------------------------------------------------------- the layer being studied

LAYER_KEY = "s7_layer"  # the RF-table row studied on Architecture and Receptive field; kept across pages


def selected_layer(records: list[RFRecord]) -> int:
    """The RF-table row being studied (1 .. last), half way down on a first visit, kept inside the table."""
    last = len(records) - 1
    if not 1 <= st.session_state.get(LAYER_KEY, 0) <= last:
        st.session_state[LAYER_KEY] = max((last + 1) // 2, 1)  # half way, where the window is already sizeable
    return st.session_state[LAYER_KEY]


def set_layer(index: int, last: int) -> None:
    """Study RF-table row `index`, kept between 1 and `last`."""
    st.session_state[LAYER_KEY] = min(max(index, 1), last)


def layer_buttons(records: list[RFRecord], prefix: str) -> None:
    """Previous and Next layer buttons, the same on every page that steps through the layers."""
    last, here = len(records) - 1, selected_layer(records)
    with st.container(horizontal=True, wrap=True):  # as wide as their labels; on a narrow column, one a line
        st.button(
            "Previous layer", key=f"{prefix}_previous", on_click=set_layer, args=(here - 1, last),
            icon=":material/skip_previous:", disabled=here <= 1,
        )  # fmt: skip
        st.button(
            "Next layer", key=f"{prefix}_next", on_click=set_layer, args=(here + 1, last),
            icon=":material/skip_next:", disabled=here >= last,
        )  # fmt: skip


@st.cache_resource(show_spinner="Reading CIFAR-10…", max_entries=2)
def cifar_test_set(path: str):
    """The CIFAR-10 test images (N, 3, 32, 32) uint8, labels and class names of a data folder, read once."""
    from s7core.data import load_cifar10

    data = load_cifar10(path)
    return data.test_images.numpy(), data.test_labels.numpy(), data.classes


@st.cache_data(show_spinner=False)
def synthetic_images():
    """Ten synthetic test images (N, 3, 32, 32) uint8 and their labels, for when there is no data set."""
    from s7core.data import synthetic_cifar10

    return synthetic_cifar10(0, 10, seed=0)[1]


def sample_image():
    """An (H, W, 3) uint8 picture to draw boxes on: the first CIFAR-10 test image, else a synthetic one."""
    import numpy as np

    try:
        status = data_status()
        images = cifar_test_set(str(status.path))[0] if status.found else synthetic_images()[0]
    except UserError:
        images = synthetic_images()[0]
    return np.ascontiguousarray(images[0].transpose(1, 2, 0))


def records_dicts(records: list[RFRecord]) -> list[dict[str, Any]]:
    """RF records as plain dicts, ready for a DataFrame."""
    return [asdict(r) for r in records]
