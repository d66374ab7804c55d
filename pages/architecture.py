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
from plotly.subplots import make_subplots

from pages import _display as dp
from pages import _shared as sh
from pages._classroom import class_thresholds
from s7core.edits import blame_edit
from s7core.errors import UserError
from s7core.links import spec_to_link
from s7core.paths import download_name
from s7core.rf.arithmetic import layer_arithmetic
from s7core.rf.table import centre_window
from s7core.rules import MAX_PARAMS_LIMIT, MAX_RF_LIMIT
from s7core.spec import (
    BLOCKS,
    LAYER_DESCRIPTIONS,
    LAYER_FIELDS,
    PRESETS,
    NetworkSpec,
    SpecError,
    get_preset,
    make_block,
    spec_from_json,
)

BASE_KEY = "arch_base"  # rows given to the editor
BASE_VERSION_KEY = "arch_base_version"  # the spec version arch_base was made from
NONCE_KEY = "arch_nonce"  # bumped when the page itself replaces arch_base (insert, reorder)
DRAFT_KEY = "arch_draft"  # arch_base plus the editor's edits: what the student sees, valid or not
TAB_KEY = "arch_tab"  # the open tab below the editor (RF table, RF picture or Parameters)
PRESET_KEY = "arch_preset"  # the preset box: names the network's preset, or is empty for any other network
BLAME_KEY = "arch_blame"  # the sentence tying a failing row to the row that was edited, or None
RF_TABLE_KEY = "arch_rf_table"

# What the short column names mean, shown on the page (not only in tooltips) and in the tooltips.
TERMS = {
    "k": "kernel side, in units of the layer's input",
    "d": "dilation: the step between kernel taps (1 = dense, 2 = every second unit)",
    "s": "stride: the step between neighbouring windows",
    "p": "zero padding added on each side",
    "RF": "receptive field: how many input pixels across one unit of this layer sees",
    "jump": "input pixels between neighbouring units of this layer's output",
    "out": "output side, in units",
    "start": "input pixel on which the first (top-left) unit is centred; negative means on padding",
    "groups": "conv only: channels split into this many groups; groups = input channels makes it depthwise",
    "dropout p": "dropout only: the probability of zeroing a unit during training",
}


# ---------------------------------------------------------------- editor state


def _editor_key() -> str:
    return f"arch_layers_{sh.spec_version()}_{st.session_state.get(NONCE_KEY, 0)}"


def _ensure_base() -> None:
    """(Re)build the editor's input when the network was replaced, or restore a draft after a page switch."""
    if st.session_state.get(BASE_VERSION_KEY) != sh.spec_version() or BASE_KEY not in st.session_state:
        st.session_state[BASE_KEY] = sh.spec_to_rows(sh.get_spec())
        st.session_state[BASE_VERSION_KEY] = sh.spec_version()
        st.session_state[DRAFT_KEY] = st.session_state[BASE_KEY]
        name = sh.get_spec().name
        st.session_state[PRESET_KEY] = name if name in PRESETS else None  # a loaded link renames the box too
    elif _editor_key() not in st.session_state and st.session_state.get(DRAFT_KEY) != st.session_state[BASE_KEY]:
        # Streamlit drops a widget's state when another page runs; the draft keeps the edits.
        _replace_rows(st.session_state[DRAFT_KEY])


def _sync() -> None:
    """Recompute the draft from the base and the editor's edits; adopt it when it is valid."""
    rows = sh.apply_editor_delta(st.session_state[BASE_KEY], st.session_state.get(_editor_key()))
    st.session_state[DRAFT_KEY] = rows
    st.session_state[BLAME_KEY] = None
    if rows == sh.spec_to_rows(sh.get_spec()):
        sh.set_error(None)  # nothing edited: keep the network (and its name) as loaded
        return
    try:
        spec = sh.rows_to_spec(rows, sh.get_spec())
    except UserError as err:
        sh.set_error(err)
        st.session_state[BLAME_KEY] = _blame(rows, err)
        return
    sh.set_error(None)
    current = sh.get_spec().name
    if current in PRESETS and spec.name != current:
        st.session_state[PRESET_KEY] = None  # edited: no longer the preset the box names
    if sh.spec_key(spec) != sh.spec_key(sh.get_spec()):
        sh.set_spec(spec, from_editor=True)
        sh.forget_link()


def _blame(rows: list[dict], err: UserError) -> str | None:
    """When the failing row is not the one just edited, the sentence naming the edited row (s7core.edits)."""
    if not isinstance(err, SpecError):
        return None
    try:
        layers = tuple(sh.row_to_layer(row, i) for i, row in enumerate(rows))
    except UserError:
        return None  # a row that is not a layer yet: the message already points at it
    last = sh.get_spec()
    return blame_edit(last, NetworkSpec(layers, last.name, last.description, last.input_shape, last.num_classes), err)


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
    name = st.session_state.get(PRESET_KEY)
    if name is None:
        return
    sh.set_spec(get_preset(name))
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
    sh.forget_link()  # the other network parameter, if any; ?projector=1 stays
    sh.mark_link_loaded(params)
    st.query_params.update(params)


# ---------------------------------------------------------------- widgets


def _column_config() -> dict:
    # No min/max on the inputs: the grid would clamp a typed 99 to the limit without a word. The validator
    # refuses it instead, naming the row, the column and the limit.
    def number(name: str, help: str, width: int = 66, **kw) -> st.column_config.NumberColumn:
        return st.column_config.NumberColumn(name, width=width, help=help, **kw)

    return {
        "type": st.column_config.SelectboxColumn(
            "type",
            options=list(LAYER_FIELDS),
            required=True,
            width=110,
            help="; ".join(f"{k}: {v}" for k, v in LAYER_DESCRIPTIONS.items()),
        ),
        "channels": number("channels", "Output channels (linear: features)", width=78, step=1),
        "kernel": number("kernel", f"k, {TERMS['k']}", step=1),
        "stride": number("stride", f"s, {TERMS['s']}; empty on a pool = kernel", step=1),
        "padding": number("padding", f"p, {TERMS['p']}", width=74, step=1),
        "dilation": number("dilation", f"d, {TERMS['d']}", width=74, step=1),
        "groups": number("groups", TERMS["groups"], width=70, step=1),
        "bias": st.column_config.CheckboxColumn("bias", width=50, help="conv, sepconv and linear only"),
        "p": number("dropout p", TERMS["dropout p"], width=86, step=0.05, format="%.2f"),
    }


def _base_frame() -> pd.DataFrame:
    frame = pd.DataFrame(st.session_state[BASE_KEY], columns=list(sh.TABLE_COLUMNS))
    for name in ("channels", "kernel", "stride", "padding", "dilation", "groups"):
        frame[name] = frame[name].astype("Int64")
    frame["bias"] = frame["bias"].astype("boolean")
    frame["p"] = frame["p"].astype("float64")
    return frame


def _toolbar(spec) -> None:
    cols = st.columns([2, 3], vertical_alignment="bottom")
    names = list(PRESETS)
    with cols[0]:
        pick, reload = st.columns([3, 1], vertical_alignment="bottom")
        pick.selectbox(
            "Start from a preset",
            names,
            index=None,  # the box shows what the session state says: the loaded preset, or none
            key=PRESET_KEY,
            on_change=_load_preset,
            placeholder=f"{spec.name} (not a preset)",
            help="Picking a preset loads it.\n"
            + "\n".join(f"- **{p.name}**: {p.description}" for p in PRESETS.values()),
        )
        reload.button(
            "", key="arch_load_preset", on_click=_load_preset, icon=":material/restart_alt:",
            help="Load the preset again, dropping your edits", disabled=st.session_state.get(PRESET_KEY) is None,
        )  # fmt: skip
    # Buttons as wide as their labels, in a row that wraps: at 1280x720 in projector mode no label is cut short.
    with cols[1].container(horizontal=True, wrap=True, horizontal_alignment="right", vertical_alignment="bottom"):
        with st.popover("Upload a spec", icon=":material/upload:"):
            st.file_uploader("Upload a spec (JSON)", type=["json"], key="arch_upload", on_change=_load_upload)
        st.download_button(
            "Download spec", spec.to_json(), file_name=download_name(spec.name, ".json"), mime="application/json",
            icon=":material/download:",
        )  # fmt: skip
        st.button("Share as link", key="arch_share", on_click=_share, icon=":material/link:",
                  help="Puts the network in the URL")  # fmt: skip
    if st.session_state.get("arch_upload_error"):
        sh.show_error(st.session_state["arch_upload_error"], cols[1])
    if "spec" in st.query_params or "preset" in st.query_params:
        link = "&".join(f"{k}={v}" for k, v in st.query_params.items())
        cols[1].caption(f"Copy the address bar, or `?{link[:60]}{'…' if len(link) > 60 else ''}`")


def _row_actions(n_rows: int) -> None:
    up, down = ":material/arrow_upward:", ":material/arrow_downward:"
    move, insert = st.columns([2, 3], gap="large", vertical_alignment="bottom")
    with move.container(horizontal=True, wrap=True, vertical_alignment="bottom"):  # wraps rather than cut a label
        st.number_input("Row", min_value=0, max_value=max(n_rows - 1, 0), step=1, key="arch_row", width=140)
        st.button("Move up", key="arch_move_up", on_click=_move, args=(-1,), icon=up)
        st.button("Move down", key="arch_move_down", on_click=_move, args=(1,), icon=down)
    cols = insert.columns([4, 2, 2, 3], vertical_alignment="bottom")
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
        if st.session_state.get(BLAME_KEY):
            st.warning(st.session_state[BLAME_KEY], icon=":material/edit_note:")
        st.caption("Until it is fixed, the rules and tables below are those of the last valid network.")


# ---------------------------------------------------------------- results


def _rule_badges(spec) -> None:
    try:
        results = sh.rules(spec)
    except UserError as err:  # thresholds out of range
        sh.show_error(err)
        results = []
    for result in results:  # a badge and its reason on one line, so a narrow column wraps it instead of cutting it
        color, icon = ("green", ":material/check_circle:") if result.passed else ("red", ":material/cancel:")
        st.markdown(f":{color}-badge[{icon} {result.title}] :small[{result.reason}]")
    with st.expander("Assignment thresholds"):
        settings = sh.rule_settings_dict()
        if class_thresholds() is not None:
            st.caption("Set for the whole class by the teacher (on the Class page).")
        st.number_input(
            "Parameters below", min_value=1, max_value=MAX_PARAMS_LIMIT, step=50_000, **_setting(settings, "max_params")
        )
        st.number_input("Global RF above", min_value=0, max_value=MAX_RF_LIMIT, step=1, **_setting(settings, "min_rf"))
        st.checkbox("Require a depthwise-separable conv", **_setting(settings, "require_separable"))
        st.checkbox("Require a dilated conv", **_setting(settings, "require_dilated"))


def _setting(settings: dict, name: str) -> dict:
    """Widget arguments that show `settings[name]` and write changes back before the rerun."""
    fixed = class_thresholds() is not None
    key = f"arch_rule_{name}" + (f"_class_{settings[name]}" if fixed else "")  # follows the teacher's changes

    def store() -> None:
        settings[name] = st.session_state[key]

    return dict(value=settings[name], key=key, on_change=store, disabled=fixed)


# ---------------------------------------------------------------- the RF picture


def _picture_rows(records) -> list[int]:
    """The RF-table rows worth a panel: every spatial layer but a sepconv's pointwise part (it adds nothing)."""
    return [i for i, r in enumerate(records) if i > 0 and not (r.kernel == 1 and r.rf == records[i - 1].rf)]


def _rf_picture(records, image, selected: int, min_rf: int) -> go.Figure:
    """Small multiples: the image with the centre unit's RF box of each layer, on one scale, so it grows."""
    d = dp.display()
    size = image.shape[0]
    rows_shown = _picture_rows(records)
    windows = {i: centre_window(records[i], size) for i in rows_shown}
    low = min([0, *[w.top for w in windows.values()], *[w.left for w in windows.values()]]) - 1.5
    high = max([size - 1, *[w.bottom for w in windows.values()], *[w.right for w in windows.values()]]) + 1.5
    columns = min(d.panels_per_row, len(rows_shown))
    rows = -(-len(rows_shown) // columns)
    titles = [f"{records[i].name} {records[i].layer} · RF {records[i].rf}" for i in rows_shown]
    fig = make_subplots(rows, columns, subplot_titles=titles, horizontal_spacing=0.02, vertical_spacing=0.3 / rows)
    for n, i in enumerate(rows_shown):
        r, c = divmod(n, columns)
        fig.add_trace(go.Image(z=image, hoverinfo="skip"), r + 1, c + 1)
        w, ref = windows[i], "" if n == 0 else str(n + 1)
        passed = records[i].rf > min_rf
        colour = "#2a9d8f" if passed else "#e9c46a"
        fig.add_shape(
            type="rect", x0=w.left - 0.5, x1=w.right + 0.5, y0=w.top - 0.5, y1=w.bottom + 0.5, xref=f"x{ref}",
            yref=f"y{ref}", line=dict(color=colour, width=6 if i == selected else 3), fillcolor="rgba(0,0,0,0)",
        )  # fmt: skip
    fig.update_xaxes(range=[low, high], showticklabels=False, ticks="", showgrid=False, zeroline=False)
    fig.update_yaxes(range=[high, low], showticklabels=False, ticks="", showgrid=False, zeroline=False)
    for n in range(len(rows_shown)):  # square panels
        ref = "" if n == 0 else str(n + 1)
        fig.update_yaxes(scaleanchor=f"x{ref}", selector=dict(anchor=f"x{ref}"))
    fig.update_annotations(font_size=d.chart_font_px)
    dp.style(fig, height=int(rows * d.tall_px / 2.2), legend_below=False)
    fig.update_layout(margin=dict(l=5, r=5, t=40, b=5), plot_bgcolor="#eeeeee", showlegend=False)
    return fig


# ---------------------------------------------------------------- the RF table and its arithmetic


def _small(label: str, help: str, width: int = 46, **kw) -> st.column_config.NumberColumn:
    return st.column_config.NumberColumn(label, width=width, help=help, **kw)


# The RF table in the order a lesson reads it: the layer, how it is set, then what its units see.
_RF_COLUMNS = {
    "name": st.column_config.TextColumn("layer", width=94, help="The row in the layer table (sepconv: its two parts)"),
    "layer": st.column_config.TextColumn("type", width=66),
    "kernel": _small("k", TERMS["k"], width=36),
    "dilation": _small("d", TERMS["d"], width=36),
    "stride": _small("s", TERMS["s"], width=36),
    "padding": _small("p", TERMS["p"], width=36),
    "rf": _small("RF", TERMS["RF"]),
    "jump_out": _small("jump", TERMS["jump"], width=50),
    "size_out": _small("out", TERMS["out"]),
}

_SUMMARY_COLUMNS = {
    "position": st.column_config.NumberColumn("row", width=50, help="The layer's row in the layer table"),
    "name": st.column_config.TextColumn("module", width=150),
    "type": st.column_config.TextColumn("type", width=110),
    "output_shape": st.column_config.TextColumn("shape", width=110, help="Output channels x height x width"),
    "params": st.column_config.NumberColumn("params", format="localized", width=100),
    "mult_adds": st.column_config.NumberColumn("mult-adds", format="localized", width=120),
    "trainable": st.column_config.NumberColumn("trainable", format="localized", width=100),
}


def _summary_frame(summ) -> pd.DataFrame:
    """The parameter table for display: shapes as text, columns in reading order."""
    frame = pd.DataFrame([asdict(row) for row in summ.rows])
    frame["output_shape"] = ["x".join(map(str, shape)) for shape in frame["output_shape"]]
    return frame[list(_SUMMARY_COLUMNS)]


def _metrics(spec, cols) -> None:
    """The three totals, in three of the page's top columns."""
    summ = sh.summary(spec)
    cols[0].metric("Parameters", f"{summ.total_params:,}", help=f"{summ.trainable_params:,} trainable")
    cols[1].metric("Global RF", f"{sh.rf_records(spec)[-1].rf} px", help="Receptive field of the last layer")
    cols[2].metric("Mult-adds", f"{summ.mult_adds / 1e6:,.1f} M", help="Multiply-adds for one image")


def _pick_row(records) -> None:
    """A row clicked in the RF table becomes the layer studied (here and on the Receptive-field page)."""
    rows = st.session_state[RF_TABLE_KEY].selection.rows
    if rows:
        sh.set_layer(rows[0], len(records) - 1)


def _rf_table(records, selected: int) -> None:
    frame = pd.DataFrame(sh.records_dicts(records))[list(_RF_COLUMNS)]
    numbers = ["kernel", "dilation", "stride", "padding", "rf", "jump_out", "size_out"]
    shade = lambda row: ["background-color: #fff3b0" if row.name == selected else "" for _ in row]  # noqa: E731
    styled = frame.style.apply(shade, axis=1).format("{:.0f}", subset=numbers, na_rep="–")  # the studied row
    st.dataframe(
        styled, hide_index=True, width="stretch", height=_grid_height(len(frame)),
        column_config=_RF_COLUMNS, placeholder="–", key=RF_TABLE_KEY, on_select=lambda: _pick_row(records),
        selection_mode="single-row",
    )  # fmt: skip
    st.caption(" · ".join(f"**{k}** {TERMS[k]}" for k in ("k", "d", "s", "p", "RF", "jump", "out")))


def _arithmetic(records, selected: int) -> None:
    """The RF arithmetic of the studied layer, with its numbers; Previous / Next step through the layers."""
    sh.layer_buttons(records, "arch")
    maths = layer_arithmetic(records, selected)
    record = records[selected]
    st.markdown(f"#### Layer {maths.name} · {maths.layer} · k {record.kernel}, d {record.dilation}, "
                f"s {record.stride}, p {record.padding}")  # fmt: skip
    for step in maths.steps:
        formula, numbers = (text.replace(" x ", " × ") for text in (step.formula, step.numbers))
        st.markdown(f"**{step.what}** = {formula}  \n= {numbers} = **{step.result}**")
        st.caption(step.meaning)
    st.caption(f"**start** {TERMS['start']}. Click a row of the table to study that layer.")


def _tables(spec) -> None:
    records = sh.rf_records(spec)
    summ = sh.summary(spec)
    selected = sh.selected_layer(records)
    # Only the open tab is drawn: a hidden chart or table would still cost the browser its drawing on every
    # edit (and the chart library's loading on the first visit); switching tabs reruns the page.
    rf_tab, picture_tab, param_tab = st.tabs(
        ["RF table", "RF picture", "Parameters"], key=TAB_KEY, on_change="rerun"
    )  # fmt: skip
    if rf_tab.open is not False:
        with rf_tab:
            table, maths = st.columns([3, 2], gap="medium")
            with table:
                _rf_table(records, selected)
            with maths:
                _arithmetic(records, selected)
    if picture_tab.open is not False:
        with picture_tab:
            min_rf = sh.rule_settings_dict()["min_rf"]
            st.caption(
                f"The box each layer's centre unit sees, on one scale: it grows layer by layer. Green once the RF "
                f"passes {min_rf}; the thick box is the layer studied in the RF table."
            )
            figure = _rf_picture(records, sh.sample_image(), selected, min_rf)
            st.plotly_chart(figure, width="stretch", config={"displayModeBar": False})
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
if dp.projector_on():  # large figures need the whole width: the rules go below them
    _metrics(spec, st.columns(3, gap="medium"))
    _rule_badges(spec)
else:
    *totals, rules_column = st.columns([2, 2, 2, 5], gap="medium")
    _metrics(spec, totals)
    with rules_column:
        _rule_badges(spec)
_edit_error()
_editor()
st.caption(
    " · ".join(f"**{k}** {TERMS[k]}" for k in ("groups", "dropout p"))
    + " · kernel, stride, padding, dilation: as in the RF table below"
)
_row_actions(len(st.session_state[DRAFT_KEY]))
_tables(spec)
