"""Architecture: edit the network layer by layer and see its RF, parameters and rules on every edit.

The editor's input table (`arch_base`) only changes when the network is replaced from
outside the editor (preset, upload, link, block insert, reorder); then the editor gets a
new key. Between those, the current rows are always `arch_base` plus the editor's own
edit state, so an edit is applied exactly once and survives reruns and page switches.
"""

from __future__ import annotations

from dataclasses import asdict

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import _shared as sh
from pages._classroom import class_thresholds
from s7core.errors import UserError
from s7core.links import spec_to_link
from s7core.paths import download_name
from s7core.rules import MAX_PARAMS_LIMIT, MAX_RF_LIMIT
from s7core.spec import BLOCKS, LAYER_DESCRIPTIONS, LAYER_FIELDS, PRESETS, get_preset, make_block, spec_from_json

BASE_KEY = "arch_base"  # rows given to the editor
BASE_VERSION_KEY = "arch_base_version"  # the spec version arch_base was made from
NONCE_KEY = "arch_nonce"  # bumped when the page itself replaces arch_base (insert, reorder)
DRAFT_KEY = "arch_draft"  # arch_base plus the editor's edits: what the student sees, valid or not
TAB_KEY = "arch_tab"  # the open tab beside the editor (RF table, RF chart or Parameters)


# ---------------------------------------------------------------- editor state


def _editor_key() -> str:
    return f"arch_layers_{sh.spec_version()}_{st.session_state.get(NONCE_KEY, 0)}"


def _ensure_base() -> None:
    """(Re)build the editor's input when the network was replaced, or restore a draft after a page switch."""
    if st.session_state.get(BASE_VERSION_KEY) != sh.spec_version() or BASE_KEY not in st.session_state:
        st.session_state[BASE_KEY] = sh.spec_to_rows(sh.get_spec())
        st.session_state[BASE_VERSION_KEY] = sh.spec_version()
        st.session_state[DRAFT_KEY] = st.session_state[BASE_KEY]
    elif _editor_key() not in st.session_state and st.session_state.get(DRAFT_KEY) != st.session_state[BASE_KEY]:
        # Streamlit drops a widget's state when another page runs; the draft keeps the edits.
        _replace_rows(st.session_state[DRAFT_KEY])


def _sync() -> None:
    """Recompute the draft from the base and the editor's edits; adopt it when it is valid."""
    rows = sh.apply_editor_delta(st.session_state[BASE_KEY], st.session_state.get(_editor_key()))
    st.session_state[DRAFT_KEY] = rows
    if rows == sh.spec_to_rows(sh.get_spec()):
        sh.set_error(None)  # nothing edited: keep the network (and its name) as loaded
        return
    try:
        spec = sh.rows_to_spec(rows, sh.get_spec())
    except UserError as err:
        sh.set_error(err)
        return
    sh.set_error(None)
    if sh.spec_key(spec) != sh.spec_key(sh.get_spec()):
        sh.set_spec(spec, from_editor=True)
        sh.forget_link()


def _replace_rows(rows: list[dict]) -> None:
    """Give the editor new rows (a fresh key, so no stale edit is applied twice), then sync."""
    st.session_state[BASE_KEY] = [dict(r) for r in rows]
    st.session_state[NONCE_KEY] = st.session_state.get(NONCE_KEY, 0) + 1
    st.session_state[DRAFT_KEY] = st.session_state[BASE_KEY]
    _sync()


def _move(step: int) -> None:
    rows = list(st.session_state[DRAFT_KEY])
    i = st.session_state["arch_row"]
    j = i + step
    if 0 <= i < len(rows) and 0 <= j < len(rows):
        rows[i], rows[j] = rows[j], rows[i]
        st.session_state["arch_row"] = j
        _replace_rows(rows)


def _insert_block() -> None:
    rows = list(st.session_state[DRAFT_KEY])
    position = min(st.session_state["arch_block_at"], len(rows))
    block = make_block(st.session_state["arch_block"], st.session_state["arch_block_channels"])
    new = sh.layers_to_rows(block)
    _replace_rows(rows[:position] + new + rows[position:])


def _load_preset() -> None:
    sh.set_spec(get_preset(st.session_state["arch_preset"]))
    sh.set_error(None)
    sh.forget_link()


def _load_upload() -> None:
    upload = st.session_state.get("arch_upload")
    st.session_state["arch_upload_error"] = None
    if upload is None:
        return
    try:
        sh.set_spec(spec_from_json(upload.getvalue()))
        sh.set_error(None)
        sh.forget_link()
    except UserError as err:
        st.session_state["arch_upload_error"] = f"{upload.name}: {err}"


def _share() -> None:
    params = spec_to_link(sh.get_spec())
    sh.mark_link_loaded(params)
    st.query_params.clear()
    st.query_params.update(params)


# ---------------------------------------------------------------- widgets


def _column_config() -> dict:
    def number(name: str, low: float, high: float, help: str, **kw) -> st.column_config.NumberColumn:
        return st.column_config.NumberColumn(name, width="small", min_value=low, max_value=high, help=help, **kw)

    return {
        "type": st.column_config.SelectboxColumn(
            "type",
            options=list(LAYER_FIELDS),
            required=True,
            help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()),
        ),
        "channels": number("channels", 1, 4096, "Output channels (linear: features)", step=1),
        "kernel": number("kernel", 1, 64, "Square kernel side", step=1),
        "stride": number("stride", 1, 64, "Step between windows; empty on a pool = kernel", step=1),
        "padding": number("padding", 0, 64, "Zero padding on each side", step=1),
        "dilation": number("dilation", 1, 64, "Spacing between kernel taps (1 = dense)", step=1),
        "groups": number("groups", 1, 4096, "conv only; groups = input channels makes it depthwise", step=1),
        "bias": st.column_config.CheckboxColumn("bias", width="small", help="conv, sepconv and linear only"),
        "p": number("p", 0.0, 0.99, "Dropout probability", step=0.05, format="%.2f"),
    }


def _base_frame() -> pd.DataFrame:
    frame = pd.DataFrame(st.session_state[BASE_KEY], columns=list(sh.TABLE_COLUMNS))
    for name in ("channels", "kernel", "stride", "padding", "dilation", "groups"):
        frame[name] = frame[name].astype("Int64")
    frame["bias"] = frame["bias"].astype("boolean")
    frame["p"] = frame["p"].astype("float64")
    return frame


def _toolbar(spec) -> None:
    cols = st.columns([2, 3, 2, 2])
    names = list(PRESETS)
    cols[0].selectbox(
        "Start from a preset",
        names,
        index=names.index(spec.name) if spec.name in names else 0,
        key="arch_preset",
        help="\n".join(f"- **{p.name}**: {p.description}" for p in PRESETS.values()),
    )
    cols[0].button("Load preset", key="arch_load_preset", on_click=_load_preset, icon=":material/restart_alt:")
    cols[1].file_uploader("Upload a spec (JSON)", type=["json"], key="arch_upload", on_change=_load_upload)
    if st.session_state.get("arch_upload_error"):
        sh.show_error(st.session_state["arch_upload_error"], cols[1])
    cols[2].download_button(
        "Download spec",
        spec.to_json(),
        file_name=download_name(spec.name, ".json"),
        mime="application/json",
        icon=":material/download:",
    )
    cols[3].button(
        "Share as link", key="arch_share", on_click=_share, icon=":material/link:", help="Puts the network in the URL"
    )
    if "spec" in st.query_params or "preset" in st.query_params:
        link = "&".join(f"{k}={v}" for k, v in st.query_params.items())
        cols[3].caption(f"Copy the address bar, or `?{link[:60]}{'…' if len(link) > 60 else ''}`")


def _row_actions(n_rows: int) -> None:
    up, down = ":material/arrow_upward:", ":material/arrow_downward:"
    cols = st.columns([2, 3, 3, 3], vertical_alignment="bottom")
    cols[0].number_input("Row", min_value=0, max_value=max(n_rows - 1, 0), step=1, key="arch_row")
    cols[1].button("Move up", key="arch_move_up", on_click=_move, args=(-1,), icon=up, width="stretch")
    cols[2].button("Move down", key="arch_move_down", on_click=_move, args=(1,), icon=down, width="stretch")
    cols = st.columns([4, 2, 2, 3], vertical_alignment="bottom")
    cols[0].selectbox(
        "Insert a block",
        list(BLOCKS),
        key="arch_block",
        help="\n".join(f"- **{k}**: {v[0]}" for k, v in BLOCKS.items()),
    )
    cols[1].number_input("Channels", min_value=1, max_value=4096, value=64, step=8, key="arch_block_channels")
    cols[2].number_input("Before row", min_value=0, max_value=n_rows, value=n_rows, step=1, key="arch_block_at")
    cols[3].button("Insert", key="arch_insert", on_click=_insert_block, icon=":material/add_box:", width="stretch")


def _grid_height(rows: int) -> int:
    """Pixels for a table that shows `rows` rows and its header without scrolling, up to 720."""
    return min(3 + 35 * (rows + 1), 720)


def _editor() -> None:
    st.data_editor(
        _base_frame(),
        key=_editor_key(),
        num_rows="dynamic",
        column_config=_column_config(),
        on_change=_sync,
        hide_index=False,
        placeholder="–",
        width="stretch",
        height=_grid_height(len(st.session_state[BASE_KEY]) + 1),  # + the row that adds a layer
    )


def _edit_error() -> None:
    """The validator's message for the table, pointing at the row and column to fix."""
    error = sh.last_error()
    if error:
        where = ""
        if error.get("position") is not None:
            where = f"Row {error['position']}" + (f", column **{error['field']}**" if error.get("field") else "") + ": "
        sh.show_error(f"{where}{error['message']}")
        st.caption("Until it is fixed, the rules and tables below are those of the last valid network.")


# ---------------------------------------------------------------- results


def _rule_badges(spec) -> None:
    try:
        results = sh.rules(spec)
    except UserError as err:  # thresholds out of range
        sh.show_error(err)
        results = []
    for result in results:  # one a line: a badge's title is cut short in a narrow column
        color = "green" if result.passed else "red"
        icon = ":material/check_circle:" if result.passed else ":material/cancel:"
        st.badge(result.title, color=color, icon=icon)
        st.caption(result.reason)
    with st.expander("Assignment thresholds"):
        settings = sh.rule_settings_dict()
        if class_thresholds() is not None:
            st.caption("Set for the whole class by the teacher (on the Class page).")
        a, b = st.columns(2)
        a.number_input(
            "Parameters below", min_value=1, max_value=MAX_PARAMS_LIMIT, step=50_000, **_setting(settings, "max_params")
        )
        b.number_input("Global RF above", min_value=0, max_value=MAX_RF_LIMIT, step=1, **_setting(settings, "min_rf"))
        a.checkbox("Require a depthwise-separable conv", **_setting(settings, "require_separable"))
        b.checkbox("Require a dilated conv", **_setting(settings, "require_dilated"))


def _setting(settings: dict, name: str) -> dict:
    """Widget arguments that show `settings[name]` and write changes back before the rerun."""
    fixed = class_thresholds() is not None
    key = f"arch_rule_{name}" + (f"_class_{settings[name]}" if fixed else "")  # follows the teacher's changes

    def store() -> None:
        settings[name] = st.session_state[key]

    return dict(value=settings[name], key=key, on_change=store, disabled=fixed)


def _rf_chart(records, min_rf: int) -> go.Figure:
    labels = [f"{r.name} {r.layer}" if r.name != r.layer else r.name for r in records]
    fig = go.Figure()
    fig.add_scatter(x=labels, y=[r.rf for r in records], name="RF (input pixels)", mode="lines+markers")
    fig.add_scatter(
        x=labels, y=[r.size_out for r in records], name="output size", mode="lines+markers", yaxis="y2", line_dash="dot"
    )
    fig.add_hline(y=min_rf, line_dash="dash", line_color="gray", annotation_text=f"RF {min_rf}")
    first = next((label for label, r in zip(labels, records, strict=True) if r.rf > min_rf), None)
    if first is not None:
        fig.add_vline(x=labels.index(first), line_color="green", line_dash="dot")
        fig.add_annotation(x=first, y=min_rf, text=f"RF passes {min_rf}", showarrow=True, ax=-40, ay=-40)
    fig.update_layout(
        height=340,
        margin=dict(l=10, r=10, t=30, b=10),
        yaxis=dict(title="RF (pixels)", rangemode="tozero"),
        yaxis2=dict(title="output size", overlaying="y", side="right", rangemode="tozero", showgrid=False),
        legend=dict(orientation="h", y=1.12),
        xaxis=dict(tickangle=-45),
    )
    return fig


def _small(label: str, help: str, **kw) -> st.column_config.NumberColumn:
    return st.column_config.NumberColumn(label, width="small", help=help, **kw)


# The RF table in reading order: what each layer sees first, then how the layer is set.
_RF_COLUMNS = {
    "name": st.column_config.TextColumn("layer", help="The row in the layer table (sepconv: its two parts)"),
    "layer": st.column_config.TextColumn("type", width="small"),
    "rf": _small("RF", "Receptive field side after this layer, in input pixels"),
    "size_out": _small("out", "Output side, in units"),
    "jump_out": _small("jump", "Input pixels between neighbouring output units"),
    "kernel": _small("k", "Kernel side"),
    "dilation": _small("d", "Dilation"),
    "stride": _small("s", "Stride"),
    "padding": _small("p", "Padding"),
    "jump_in": _small("jump in", "Input pixels between neighbouring input units"),
    "size_in": _small("in", "Input side, in units"),
    "start": _small("start", "Centre of the first output unit, in input pixels", format="%.1f"),
}

_SUMMARY_COLUMNS = {
    "index": st.column_config.NumberColumn("#", width="small"),
    "position": st.column_config.NumberColumn("row", width="small", help="The layer's row in the table on the left"),
    "name": st.column_config.TextColumn("module"),
    "params": st.column_config.NumberColumn("params", format="localized"),
    "trainable": st.column_config.NumberColumn("trainable", format="localized"),
    "mult_adds": st.column_config.NumberColumn("mult-adds", format="localized"),
}


def _summary_frame(summ) -> pd.DataFrame:
    """The parameter table for display: shapes as text, columns in reading order."""
    frame = pd.DataFrame([asdict(row) for row in summ.rows])
    frame["output_shape"] = ["x".join(map(str, shape)) for shape in frame["output_shape"]]
    return frame[["index", "position", "name", "type", "output_shape", "params", "mult_adds", "trainable"]]


def _metrics(spec) -> None:
    """The three totals, across the page so they stay whole on a laptop screen."""
    summ = sh.summary(spec)
    cols = st.columns(3)
    cols[0].metric("Parameters", f"{summ.total_params:,}", help=f"{summ.trainable_params:,} trainable")
    cols[1].metric("Global RF", f"{sh.rf_records(spec)[-1].rf} px", help="Receptive field of the last layer")
    cols[2].metric("Mult-adds", f"{summ.mult_adds / 1e6:,.1f} M", help="Multiply-adds for one image")


def _tables(spec) -> None:
    records = sh.rf_records(spec)
    summ = sh.summary(spec)
    # Only the open tab is drawn: a hidden chart or table would still cost the browser its drawing on every
    # edit (and the chart library's loading on the first visit); switching tabs reruns the page.
    rf_tab, chart_tab, param_tab = st.tabs(["RF table", "RF chart", "Parameters"], key=TAB_KEY, on_change="rerun")
    if rf_tab.open is not False:
        with rf_tab:
            frame = pd.DataFrame(sh.records_dicts(records))[list(_RF_COLUMNS)]
            height = _grid_height(len(frame))
            st.dataframe(
                frame, hide_index=True, width="stretch", height=height, column_config=_RF_COLUMNS, placeholder="–"
            )
    if chart_tab.open is not False:
        with chart_tab:
            st.plotly_chart(_rf_chart(records, sh.rule_settings_dict()["min_rf"]), width="stretch")
    if param_tab.open is not False:
        with param_tab:
            frame = _summary_frame(summ)
            height = _grid_height(len(frame))
            st.dataframe(frame, hide_index=True, width="stretch", height=height, column_config=_SUMMARY_COLUMNS)
            st.caption(
                f"Total {summ.total_params:,} parameters ({summ.trainable_params:,} trainable) · "
                f"input {summ.input_mb:.2f} MB · forward/backward {summ.forward_backward_mb:.2f} MB · "
                f"params {summ.params_mb:.2f} MB · estimated total {summ.total_mb:.2f} MB"
            )


# ---------------------------------------------------------------- page

sh.ensure_shell()
_ensure_base()
_sync()
spec = sh.get_spec()

st.title("Architecture")
st.caption(
    "Edit the layers; the receptive field, the parameters and the rules follow every edit. "
    "Empty cells take the layer type's default; columns a type does not use are ignored."
)
_toolbar(spec)
_metrics(spec)
left, right = st.columns([3, 2], gap="medium")
with left:
    _editor()
    _row_actions(len(st.session_state[DRAFT_KEY]))
with right:
    _edit_error()
    _rule_badges(spec)
    _tables(spec)
