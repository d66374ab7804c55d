"""Receptive field: which input pixels one output unit sees, drawn on a real image, layer by layer.

The box of a unit comes from s7core.rf.table.unit_window; the effective RF (where
the gradient of one unit actually lands) from s7core.rf.effective.effective_rf.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import _display as dp
from pages import _shared as sh
from s7core.data import CIFAR10_CLASSES
from s7core.errors import UserError
from s7core.features import feature_maps, tile
from s7core.images import UPLOAD_EXTENSIONS, load_upload
from s7core.names import module_name, position_of
from s7core.rf.effective import effective_rf
from s7core.rf.reach import HOLE, PADDING, REACHED, gridding_example, reachable_pixels
from s7core.rf.table import centre_unit, centre_window, unit_window
from s7core.spec import spec_from_dict

CIFAR, SYNTHETIC, UPLOAD = "CIFAR-10 test set", "Synthetic", "Upload"
WINDOW_COLOUR = "#ffd60a"  # the part of the window on the image
PADDING_COLOUR = "rgba(230, 57, 70, 0.45)"  # the part that falls on zero padding
_JUMP = dict(mode="immediate", frame=dict(duration=0, redraw=True))  # go to a frame at once, axes too


# ---------------------------------------------------------------- images


def _hwc(image_chw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_chw.transpose(1, 2, 0))


def _pick_from(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], what: str) -> tuple[np.ndarray, str]:
    index = st.number_input("Image number", min_value=0, max_value=len(images) - 1, value=0, step=1, key="rf_image")
    return _hwc(images[index]), f"{what} {index}: {classes[labels[index]]}"


def _uploaded(size: int) -> tuple[np.ndarray, str] | None:
    upload = st.file_uploader("A small PNG or JPEG", type=list(UPLOAD_EXTENSIONS), key="rf_upload")
    if upload is None:
        return None
    from PIL import Image

    try:
        original = Image.fromarray(load_upload(upload.getvalue(), upload.name))
    except UserError as err:
        sh.show_error(err)
        return None
    resized = original.resize((size, size), Image.Resampling.LANCZOS)
    cols = st.columns(2)
    cols[0].image(original, caption=f"uploaded, {original.width}x{original.height}", width=120)
    cols[1].image(resized.resize((120, 120), Image.Resampling.NEAREST), caption=f"resized to {size}x{size}")
    return np.asarray(resized), f"{upload.name}, resized from {original.width}x{original.height} to {size}x{size}"


def _fit(image: np.ndarray, caption: str, size: int) -> tuple[np.ndarray, str]:
    """The image at the network's input size (a spec may ask for other than 32x32)."""
    if image.shape[0] == size:
        return image, caption
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST))
    return resized, f"{caption}, scaled from {image.shape[0]}x{image.shape[1]} to the network's {size}x{size} input"


def _pick_image(size: int) -> tuple[np.ndarray, str]:
    """The image to draw on, at the network's input size."""
    return _fit(*_pick_source(size), size)


def _pick_source(size: int) -> tuple[np.ndarray, str]:
    """A CIFAR-10 test image when the data is there, else a synthetic or an uploaded one."""
    status = sh.data_status()
    sources = [CIFAR, SYNTHETIC, UPLOAD] if status.found else [SYNTHETIC, UPLOAD]
    if not status.found:
        st.warning(status.message, icon=":material/folder_off:")
    source = st.radio("Image", sources, key="rf_source", horizontal=True)
    if source == CIFAR:
        try:
            return _pick_from(*sh.cifar_test_set(str(status.path)), "test image")
        except UserError as err:
            sh.show_error(err)
    elif source == UPLOAD:
        picked = _uploaded(size)
        if picked is not None:
            return picked
        st.caption("Until an image is uploaded, a synthetic one is shown.")
    images, labels = sh.synthetic_images()
    if source != SYNTHETIC:
        return _hwc(images[0]), "synthetic image 0"
    return _pick_from(images, labels, tuple(f"the stripes of class '{c}'" for c in CIFAR10_CLASSES), "synthetic image")


# ---------------------------------------------------------------- layer and unit


def _label(record) -> str:
    return f"{record.name} · {record.layer} · {record.size_out}x{record.size_out} · RF {record.rf}"


def _pick_layer(records) -> int:
    """The studied layer: Previous / Next (shared with the Architecture page's RF table) and a slider."""
    sh.layer_buttons(records, "rf")
    st.session_state["rf_layer"] = sh.selected_layer(records)  # the slider shows the shared choice
    return st.select_slider(
        "Layer", options=list(range(1, len(records))), format_func=lambda i: _label(records[i]), key="rf_layer",
        on_change=lambda: sh.set_layer(st.session_state["rf_layer"], len(records) - 1),
    )  # fmt: skip


def _unit_slider(name: str, key: str, size: int) -> int:
    if size == 1:
        return 0
    if not 0 <= st.session_state.get(key, centre_unit(size)) < size:
        st.session_state[key] = centre_unit(size)
    return st.slider(name, 0, size - 1, value=centre_unit(size), key=key)


def _pick_unit(record) -> tuple[int, int]:
    if record.size_out == 1:
        st.caption("This layer's output is 1x1: a single unit, which sees the whole RF.")
    return _unit_slider("Output row", "rf_row", record.size_out), _unit_slider(
        "Output column", "rf_col", record.size_out
    )


# ---------------------------------------------------------------- drawing


def _pixel_box(left: int, right: int, top: int, bottom: int, **style) -> dict:
    """A plotly rectangle around whole pixels, from inclusive pixel bounds."""
    return dict(type="rect", x0=left - 0.5, x1=right + 0.5, y0=top - 0.5, y1=bottom + 0.5, **style)


def _window_shapes(window, fill: bool = True) -> list[dict]:
    """The full window (red where it falls on padding) and the part on the image (yellow); bounds are inclusive."""
    clear = "rgba(0,0,0,0)"
    shapes = [
        _pixel_box(
            window.left,
            window.right,
            window.top,
            window.bottom,
            fillcolor=PADDING_COLOUR if fill else clear,
            line=dict(color="#e63946", dash="dot"),
            layer="below" if fill else "above",
        )
    ]
    if window.clipped_bottom >= window.clipped_top:  # some of it is on the image
        shapes.append(
            _pixel_box(
                window.clipped_left,
                window.clipped_right,
                window.clipped_top,
                window.clipped_bottom,
                line=dict(color=WINDOW_COLOUR, width=3),
                fillcolor="rgba(255,214,10,0.12)" if fill else clear,
            )
        )
    return shapes


def _axes(fig: go.Figure, size: int, windows: list, height: int) -> None:
    low = min([0, *[w.left for w in windows], *[w.top for w in windows]]) - 1.5
    high = max([size - 1, *[w.right for w in windows], *[w.bottom for w in windows]]) + 1.5
    fig.update_xaxes(range=[low, high], showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(range=[high, low], showgrid=False, zeroline=False, scaleanchor="x")
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="#f3f3f3")


def _image_figure(image: np.ndarray, record, window, row: int, col: int) -> go.Figure:
    size = image.shape[0]
    fig = go.Figure(go.Image(z=image, zsmooth=False, hovertemplate="pixel (%{y}, %{x})<extra></extra>"))
    fig.update_layout(shapes=_window_shapes(window))
    title = f"unit ({row}, {col}) of {record.name} ({record.layer}): RF {record.rf}x{record.rf}"
    if window.padding_fraction > 0:
        title += f", {window.padding_fraction:.0%} on padding"
    fig.update_layout(title=dict(text=title))
    _axes(fig, size, [window], dp.display().tall_px)
    return dp.style(fig, height=dp.display().tall_px, legend_below=False)


def _frame_range(size: int, window) -> list[float]:
    """Axis bounds that hold the image and one window, with a pixel to spare."""
    return [min(0, window.left, window.top) - 1.5, max(size - 1, window.right, window.bottom) + 1.5]


def _animation(image: np.ndarray, records, start: int) -> go.Figure:
    """Frames over the layers, each the window of the layer's centre unit, opening at layer `start`.

    Each frame sets its own axes, so the image fills the plot until the window outgrows it.
    """
    size = image.shape[0]
    steps = [(r, centre_window(r, size)) for r in records[1:]]

    def frame_layout(r, w) -> dict:
        low, high = _frame_range(size, w)
        return dict(
            shapes=_window_shapes(w), title_text=f"{_label(r)} (centre unit)",
            xaxis=dict(range=[low, high]), yaxis=dict(range=[high, low]),
        )  # fmt: skip

    fig = go.Figure(go.Image(z=image, zsmooth=False))
    fig.frames = [go.Frame(name=r.name, layout=frame_layout(r, w)) for r, w in steps]
    first = steps[start - 1]
    _axes(fig, size, [first[1]], dp.display().tall_px)
    fig.update_layout(**{k: v for k, v in frame_layout(*first).items() if k not in ("xaxis", "yaxis")})
    fig.update_layout(
        updatemenus=[
            dict(
                type="buttons",
                direction="left",
                showactive=False,
                x=0,
                y=-0.02,
                xanchor="left",
                yanchor="top",
                buttons=[
                    dict(
                        label="▶ Play", method="animate",
                        args=[None, dict(frame=dict(duration=700, redraw=True), fromcurrent=True)],
                    ),
                    dict(label="❚❚", method="animate", args=[[None], dict(mode="immediate", frame=dict(duration=0))]),
                ],
            )
        ],
        sliders=[
            dict(
                active=start - 1,
                steps=[
                    dict(label=r.name, method="animate", args=[[r.name], _JUMP]) for r, _ in steps
                ],
                y=-0.08,
                currentvalue=dict(prefix="layer "),
            )
        ],
    )  # fmt: skip
    return dp.style(fig, height=dp.display().tall_px, legend_below=False)


# ---------------------------------------------------------------- effective RF


def _module_name(record) -> str:
    """The model's module for an RF record, whose name labels a spec layer or part ('7', '7.depthwise')."""
    return module_name(*position_of(record.name))


def _batch(image: np.ndarray):
    import torch

    from s7core.data import normalize

    return normalize(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))[None]))  # (1, 3, H, W)


@st.cache_resource(show_spinner=False, max_entries=4)
def _untrained_model(key: str):
    from s7core.features import untrained_model

    return untrained_model(spec_from_dict(json.loads(key)))  # seeded, the process's random state left alone


@st.cache_resource(show_spinner="Loading the trained network…", max_entries=2)
def _trained_model(run_path: str, updated: str):
    from s7core.runs import load_run_model

    return load_run_model(run_path)


def _erf_figure(erf: np.ndarray, window, title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=erf, colorscale="Viridis", zmin=0, zmax=1, zsmooth=False, colorbar_thickness=12))
    fig.update_layout(shapes=_window_shapes(window, fill=False), title=dict(text=title))
    _axes(fig, erf.shape[0], [window], dp.display().chart_px)
    return dp.style(fig, height=dp.display().chart_px, legend_below=False)


def _unit_arg(record, row: int, col: int) -> tuple[int, int] | None:
    """The unit to measure: (row, col) on a map, None for a layer whose output is one vector."""
    return (row, col) if record.layer != "linear" else None


@st.cache_data(show_spinner="Computing the effective RF…", max_entries=64)
def _untrained_erf_at(key: str, module: str, image: np.ndarray, unit: tuple[int, int] | None) -> np.ndarray:
    return effective_rf(_untrained_model(key), _batch(image), module, unit)


@st.cache_data(show_spinner="Computing the effective RF…", max_entries=64)
def _trained_erf_at(
    run_path: str, updated: str, module: str, image: np.ndarray, unit: tuple[int, int] | None
) -> np.ndarray:
    return effective_rf(_trained_model(run_path, updated), _batch(image), module, unit)


def _same_network_runs(spec) -> tuple[list, list]:
    """Finished runs of this very network, and finished runs of other networks."""
    from pages._classroom import user_runs
    from s7core.runs import read_run_config

    same, other = [], []
    for run in (r for r in user_runs().list() if r.state == "finished"):  # a student's own; a teacher's all
        try:
            run_spec = read_run_config(run.path)[0]
        except UserError:
            continue
        (same if sh.spec_key(run_spec) == sh.spec_key(spec) else other).append((run, run_spec))
    return same, other


def _choose_run(spec):
    """The trained run to compare with: one of this network by default; others only when asked, and said so."""
    try:
        same, other = _same_network_runs(spec)
    except UserError as err:
        sh.show_error(err)
        return None
    show_other = bool(other) and st.toggle(
        "Also runs of other networks", key="rf_other_networks",
        help="A run of another network has other layers: its panel then shows that network's layer of the same "
        "name, and says so.",
    )  # fmt: skip
    choices = same + (other if show_other else [])
    if not choices:
        what = f"of `{spec.name}`" + (f" ({len(other)} of other networks)" if other else "")
        st.info(f"No finished run {what} yet: train this network on the Train page, then compare here.",
                icon=":material/info:")  # fmt: skip
        return None
    labels = {run.name: f"{run.name} ({run_spec.name}, {run.epoch} epochs)" for run, run_spec in choices}
    from pages._classroom import refuse_foreign_runs

    refuse_foreign_runs("rf_run", list(labels))
    if st.session_state.get("rf_run") not in labels:
        st.session_state["rf_run"] = next(iter(labels))
    chosen = st.selectbox("Trained run", list(labels), key="rf_run", format_func=labels.get)
    return next((run, run_spec) for run, run_spec in choices if run.name == chosen)


def _matching_record(run_spec, record):
    """The run's RF record of the same name (its last one when it has none), and whether it is the same layer."""
    run_records = sh.rf_records(run_spec)
    match = next((r for r in run_records if r.name == record.name), None)
    return (match or run_records[-1]), match is not None


def _trained_panel(spec, record, image: np.ndarray, row: int, col: int, picked) -> None:
    if picked is None:
        return
    run, run_spec = picked
    run_record, same_layer = _matching_record(run_spec, record)
    if sh.spec_key(run_spec) != sh.spec_key(spec):
        st.warning(
            f"Run {run.name} trained another network (`{run_spec.name}`, not `{spec.name}`): this panel shows "
            f"its layer {run_record.name}" + ("" if same_layer else f" (it has no layer {record.name})") + ".",
            icon=":material/compare_arrows:",
        )
    r, c = (row, col) if (same_layer and row < run_record.size_out and col < run_record.size_out) else (
        centre_unit(run_record.size_out), centre_unit(run_record.size_out))  # fmt: skip
    try:
        erf = _trained_erf_at(run.path, run.updated, _module_name(run_record), image, _unit_arg(run_record, r, c))
    except UserError as err:
        sh.show_error(err)
        return
    window = unit_window(run_record, r, c, image.shape[0])
    title = f"trained ({run.name}), {run_record.name}, unit ({r}, {c}): RF {run_record.rf}"
    st.plotly_chart(_erf_figure(erf, window, title), width="stretch", key="rf_erf_trained")


def _effective_section(spec, record, image: np.ndarray, row: int, col: int, picked) -> None:
    st.subheader("Theoretical and effective RF")
    if spec.input_shape[0] != 3:
        st.info(f"The effective RF is measured on colour images; this network takes {spec.input_shape[0]} channels.")
        return
    st.caption(
        f"Heat: how strongly each input pixel moves unit ({row}, {col}) of {record.name} (mean |gradient| over its "
        "channels, scaled to a maximum of 1). Box: the theoretical RF of that unit. The effective RF is usually "
        "a smaller, roughly Gaussian blob in the middle of the box; training tends to widen it."
    )
    left, right = st.columns(2, gap="large")
    with left:
        erf = _untrained_erf_at(sh.spec_key(spec), _module_name(record), image, _unit_arg(record, row, col))
        title = f"untrained (seeded), {record.name}, unit ({row}, {col}): RF {record.rf}"
        st.plotly_chart(_erf_figure(erf, unit_window(record, row, col, image.shape[0]), title), width="stretch")
    with right:
        _trained_panel(spec, record, image, row, col, picked)


# ---------------------------------------------------------------- which pixels can reach the unit

HOLE_RGB, PADDING_RGB = np.array([40, 40, 40]), np.array([230, 57, 70])


def _reach_picture(image: np.ndarray, reach) -> np.ndarray:
    """The RF box as an RGB picture: reached pixels as they are, holes dark, padding red."""
    size = image.shape[0]
    h, w = reach.codes.shape
    picture = np.zeros((h, w, 3), dtype=np.uint8)
    rows, cols = np.mgrid[0:h, 0:w]
    inside = (rows + reach.top >= 0) & (rows + reach.top < size) & (cols + reach.left >= 0) & (cols + reach.left < size)
    source = image[np.clip(rows + reach.top, 0, size - 1), np.clip(cols + reach.left, 0, size - 1)]
    picture[:] = HOLE_RGB
    hole_on_image = inside & (reach.codes == HOLE)
    picture[hole_on_image] = (source[hole_on_image] * 0.25 + HOLE_RGB * 0.75).astype(np.uint8)  # a hint of the image
    picture[reach.codes == REACHED] = source[reach.codes == REACHED]
    picture[reach.codes == PADDING] = PADDING_RGB
    return picture


def _reach_figure(image: np.ndarray, reach, record) -> go.Figure:
    """The whole image faded, the unit's RF box over it: reached pixels bright, holes dark, padding red."""
    size = image.shape[0]
    faded = (image * 0.35 + 255 * 0.65).astype(np.uint8)  # the rest of the image, for where the box sits
    fig = go.Figure(go.Image(z=faded, zsmooth=False, hoverinfo="skip"))
    fig.add_trace(go.Image(z=_reach_picture(image, reach), x0=reach.left, y0=reach.top, zsmooth=False,
                           hovertemplate="pixel (%{y}, %{x})<extra></extra>"))  # fmt: skip
    rows, cols = reach.codes.shape
    box = unit_window(record, reach.row, reach.col, size)
    box = dataclasses.replace(box, top=reach.top, left=reach.left, bottom=reach.top + rows - 1,
                              right=reach.left + cols - 1)  # fmt: skip  # a merge may widen a module's box
    fig.add_shape(type="rect", x0=box.left - 0.5, x1=box.right + 0.5, y0=box.top - 0.5, y1=box.bottom + 0.5,
                  line=dict(color=WINDOW_COLOUR, width=3))  # fmt: skip
    fig.update_layout(title=dict(text=f"{record.name}, unit ({reach.row}, {reach.col}): which pixels reach it"))
    _axes(fig, size, [box], dp.display().chart_px)
    return dp.style(fig, height=dp.display().chart_px, legend_below=False)


def _reach_section(records, index: int, image: np.ndarray, row: int, col: int) -> None:
    st.subheader("Which pixels can reach this unit")
    reach = reachable_pixels(records, index, row, col)
    record = records[index]
    total = reach.codes.size
    left, right = st.columns([3, 2], gap="large")
    with left:
        st.plotly_chart(_reach_figure(image, reach, record), width="stretch", key="rf_reach")
    with right:
        st.markdown(
            f"Of the {total:,} positions in the {record.rf}x{record.rf} box of unit ({row}, {col}):\n\n"
            f"- **{reach.reached:,}** image pixels have a path to it (shown as they are)\n"
            f"- **{reach.holes:,}** have none: holes, dark (the taps of dilated layers skip them)\n"
            f"- **{reach.padding:,}** lie on zero padding, outside the image (red)"
        )
        if reach.holes:
            st.warning(
                "This unit never sees the dark pixels, however it is trained: stacked dilated convolutions "
                "leave a grid of holes (gridding). A dense layer before them fills the gaps.",
                icon=":material/grid_4x4:",
            )
        else:
            st.caption("No holes: every pixel of the box inside the image can reach the unit.")
        st.caption(
            "Exact, from the layers' kernels, dilations, strides and paddings (s7core.rf.reach); the tests check it "
            "against the pixels with a non-zero gradient."
        )
        st.button("Show gridding: three dilated convs", key="rf_gridding", on_click=_load_gridding,
                  icon=":material/grid_on:", help="Loads a small network of three 3x3 convs with dilation 2 "
                  "straight on the image (you can go back to a preset on the Architecture page).")  # fmt: skip


def _load_gridding() -> None:
    sh.set_spec(gridding_example())
    sh.set_error(None)
    sh.forget_link()
    st.session_state[sh.LAYER_KEY] = 3  # the third dilated conv, whose units show the holes


# ---------------------------------------------------------------- what each layer sees


@st.cache_data(show_spinner="Computing the feature maps…", max_entries=32)
def _untrained_maps(key: str, module: str, image: np.ndarray):
    return feature_maps(_untrained_model(key), _batch(image), module)


@st.cache_data(show_spinner="Computing the feature maps…", max_entries=32)
def _trained_maps(run_path: str, updated: str, module: str, image: np.ndarray):
    return feature_maps(_trained_model(run_path, updated), _batch(image), module)


def _maps_figure(maps, shown: int, title: str) -> go.Figure:
    d = dp.display()
    columns = max(d.panels_per_row + 2, 4)
    grid = tile(maps.maps[:shown], columns)
    fig = go.Figure(go.Heatmap(z=grid, colorscale="Gray", zmin=0, zmax=1, showscale=False, hoverinfo="skip"))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(title=dict(text=title), margin=dict(l=5, r=5, t=50, b=5), plot_bgcolor="white")
    return dp.style(fig, height=d.chart_px, legend_below=False)


def _maps_caption(maps, shown: int) -> str:
    channels = ", ".join(str(c) for c in maps.channels[:shown])
    return f"Channels {channels}, each scaled to its own range (white = its strongest response)."


def _features_section(spec, record, image: np.ndarray, picked) -> None:
    st.subheader("What each layer sees")
    if record.layer == "linear":
        st.info("This layer gives a vector, not maps: pick an earlier layer to see its feature maps.")
        return
    module = _module_name(record)
    maps = _untrained_maps(sh.spec_key(spec), module, image)
    channels, height, width = maps.shape
    shown = min(channels, 4 * max(dp.display().panels_per_row + 2, 4))
    st.caption(
        f"The output of {record.name} ({record.layer}) for this image: {channels} channels of {height}x{width} "
        f"units, the {shown} strongest first (by mean |activation|)."
    )
    left, right = st.columns(2, gap="large")
    with left:
        st.plotly_chart(_maps_figure(maps, shown, f"feature maps, untrained (seeded): {channels} x {height}x{width}"),
                        width="stretch", key="rf_maps_untrained")  # fmt: skip
        st.caption(_maps_caption(maps, shown))
    with right:
        if picked is None:
            st.info("A finished run of this network shows its trained feature maps here.", icon=":material/info:")
            return
        run, run_spec = picked
        run_record, _ = _matching_record(run_spec, record)
        if run_record.layer == "linear":
            st.info(f"Run {run.name}'s layer {run_record.name} gives a vector, not maps.")
            return
        try:
            trained = _trained_maps(run.path, run.updated, _module_name(run_record), image)
        except UserError as err:
            sh.show_error(err)
            return
        c, h, w = trained.shape
        n = min(c, shown)
        title = f"feature maps, trained ({run.name}), {run_record.name}: {c} x {h}x{w}"
        st.plotly_chart(_maps_figure(trained, n, title), width="stretch", key="rf_maps_trained")
        st.caption(_maps_caption(trained, n))


# ---------------------------------------------------------------- a torchvision classifier

TV_WEIGHTS_KEY, TV_WEIGHTS_ERROR = "rf_tv_weights", "rf_tv_weights_error"


def _weights_label(info, weights: str) -> str:
    from s7core.rf.zoo import UNTRAINED

    if weights == UNTRAINED:
        return "untrained (random weights)"
    if info.cached:
        return "pretrained on ImageNet (in this machine's cache)"
    return f"pretrained on ImageNet (downloads from PyTorch's servers once, {info.weights_mb:,.0f} MB)"


def _fetch_weights(name: str) -> None:
    """A callback: download the pretrained weights once; when that fails, say why and go back to untrained."""
    from s7core.rf.zoo import PRETRAINED, UNTRAINED, pretrained_weights_file

    st.session_state.pop(TV_WEIGHTS_ERROR, None)
    if st.session_state.get(TV_WEIGHTS_KEY) != PRETRAINED:
        return
    try:
        with st.spinner(f"Downloading the pretrained weights of {name}…"):
            pretrained_weights_file(name)
    except UserError as err:
        st.session_state[TV_WEIGHTS_ERROR] = str(err)
        st.session_state[TV_WEIGHTS_KEY] = UNTRAINED


def _pick_weights(name: str, info) -> str:
    """Untrained always; pretrained where torchvision has weights (fetched when picked, else untrained)."""
    from s7core.rf.zoo import PRETRAINED, UNTRAINED

    options = [UNTRAINED] + ([PRETRAINED] if info.weights_url else [])
    if st.session_state.get(TV_WEIGHTS_KEY) not in options:
        st.session_state[TV_WEIGHTS_KEY] = UNTRAINED
    weights = st.radio("Weights", options, key=TV_WEIGHTS_KEY, horizontal=True, on_change=_fetch_weights,
                       args=(name,), format_func=lambda w: _weights_label(info, w))  # fmt: skip
    failed = st.session_state.get(TV_WEIGHTS_ERROR)
    if failed:
        st.warning(f"{failed}. Showing the untrained network.", icon=":material/cloud_off:")
    return weights


@st.cache_resource(show_spinner="Building the classifier…", max_entries=2)
def _tv_model(name: str, weights: str):
    """One model per classifier and weights for every session; each view works on its own private copy."""
    from s7core.rf.zoo import build_classifier

    return build_classifier(name, weights)


@st.cache_data(show_spinner="Finding the pixels that can reach the unit…", max_entries=16)
def _tv_reach(name: str, size: int, index: int, row: int, col: int):
    from s7core.rf.reach import measured_reach
    from s7core.rf.zoo import meta_classifier, torchvision_rf

    table = torchvision_rf(name, (3, size, size))
    records = (table.records[index], table.width_records[index])
    return measured_reach(meta_classifier(name), (3, size, size), records[0].name, records, row, col)


@st.cache_data(show_spinner="Computing the effective RF…", max_entries=16)
def _tv_erf(name: str, weights: str, module: str, image: np.ndarray, unit: tuple[int, int] | None) -> np.ndarray:
    from s7core.rf.zoo import imagenet_batch

    return effective_rf(_tv_model(name, weights), imagenet_batch(image), module, unit)


@st.cache_data(show_spinner="Computing the feature maps…", max_entries=16)
def _tv_maps(name: str, weights: str, module: str, image: np.ndarray):
    from s7core.rf.zoo import imagenet_batch

    return feature_maps(_tv_model(name, weights), imagenet_batch(image), module)


def _tv_image(size: int) -> tuple[np.ndarray, str]:
    """The picked image at the classifier's input side, smoothly resized (a 32x32 CIFAR image grows 7-fold)."""
    from PIL import Image

    image, caption = _pick_source(size)
    if image.shape[0] == size and image.shape[1] == size:
        return image, caption
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized), f"{caption}, resized from {image.shape[0]}x{image.shape[1]} to {size}x{size}"


def _tv_views(name: str, size: int, table, index: int, row: int, col: int) -> None:
    """Reachable pixels, effective RF and feature maps of the chosen unit and layer, with the weights picked."""
    from s7core.rf.zoo import UNTRAINED, classifier_info

    info = classifier_info(name, (3, size, size))
    problem = info.budget_problem()
    if problem:
        st.warning(f"The views that run the network are off for this choice: {problem}.", icon=":material/speed:")
        return
    record = table.records[index]
    st.caption(
        f"{name}: {info.parameters / 1e6:,.1f} M parameters, {info.mult_adds / 1e9:,.2f} G mult-adds an image at "
        f"{size}x{size}. Each view is computed once per layer, unit and image, then kept."
    )
    weights = _pick_weights(name, info)
    image, caption = _tv_image(size)
    st.caption(caption)
    try:
        _tv_model(name, weights)
    except UserError as err:  # a cached weights file that cannot be read: say so, show the untrained network
        st.warning(f"{err}. Showing the untrained network.", icon=":material/cloud_off:")
        weights = UNTRAINED
    shown = "untrained: random weights (seed 0)" if weights == UNTRAINED else "pretrained on ImageNet (torchvision)"
    st.info(f"Weights shown: **{shown}**.", icon=":material/memory:")
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Which pixels can reach this unit")
        _tv_reach_view(name, size, index, image, row, col, record)
    with right:
        st.subheader("Effective RF")
        _tv_erf_view(name, weights, record, image, row, col, size)
    st.subheader("What this layer sees")
    _tv_maps_view(name, weights, record, image)


def _tv_reach_view(name: str, size: int, index: int, image: np.ndarray, row: int, col: int, record) -> None:
    try:
        reach = _tv_reach(name, size, index, row, col)
    except UserError as err:
        sh.show_error(err)
        return
    st.plotly_chart(_reach_figure(image, reach, record), width="stretch", key="rf_tv_reach")
    st.caption(
        f"{reach.reached:,} image pixels have a path to unit ({row}, {col}) of {record.name}; {reach.holes:,} in its "
        f"box have none (dark); {reach.padding:,} positions lie on padding (red). Measured by back-propagation "
        "through a copy of the network whose every path adds a positive amount."
    )


def _tv_erf_view(name: str, weights: str, record, image: np.ndarray, row: int, col: int, size: int) -> None:
    try:
        erf = _tv_erf(name, weights, record.name, image, (row, col) if record.layer != "linear" else None)
    except UserError as err:
        sh.show_error(err)
        return
    title = f"{weights}, {record.name}, unit ({row}, {col}): RF {record.rf}"
    st.plotly_chart(_erf_figure(erf, unit_window(record, row, col, size), title), width="stretch", key="rf_tv_erf")
    st.caption("Heat: how strongly each input pixel moves the unit (mean |gradient|, scaled to a maximum of 1).")


def _tv_maps_view(name: str, weights: str, record, image: np.ndarray) -> None:
    if record.layer == "linear":
        st.info("This layer gives a vector, not maps: pick an earlier layer to see its feature maps.")
        return
    try:
        maps = _tv_maps(name, weights, record.name, image)
    except UserError as err:
        sh.show_error(err)
        return
    channels, height, width = maps.shape
    count = min(channels, 4 * max(dp.display().panels_per_row + 2, 4))
    title = f"feature maps, {weights}, {record.name}: {channels} x {height}x{width}"
    st.plotly_chart(_maps_figure(maps, count, title), width="stretch", key="rf_tv_maps")
    st.caption(f"The {count} strongest of {channels} channels (by mean |activation|). " + _maps_caption(maps, count))


def _torchvision_section() -> None:
    """Any torchvision classifier by name: its RF table, the box of a unit, and the views that run the network."""
    from s7core.rf.zoo import default_input, module_names, torchvision_classifiers, torchvision_rf

    names = torchvision_classifiers()
    cols = st.columns([2, 1, 3], vertical_alignment="bottom")
    name = cols[0].selectbox(
        "torchvision classifier",
        names,
        index=names.index("resnet18"),
        key="rf_tv_name",
        help="Its RF table needs only the layers' geometry (built without weights); the views below run it.",
    )
    size = int(cols[1].number_input("Input side (pixels)", 16, 1024, default_input(name)[1], 1, key=f"rf_tv_{name}"))
    try:
        table = torchvision_rf(name, (3, size, size))
        hookable = module_names(name)
    except UserError as err:
        sh.show_error(err)
        return
    cols[2].metric("Global RF", f"{table.global_rf:,} px", help="RF of the output units (the larger axis)")
    for warning in table.warnings[:5]:
        st.caption(f":material/warning: {warning}")
    records = table.records
    layers = [i for i in range(1, len(records)) if records[i].name in hookable]
    left, right = st.columns([3, 2], gap="large")
    with left:
        columns = ["name", "layer", "kernel", "dilation", "stride", "padding", "rf", "jump_out", "size_out"]
        frame = pd.DataFrame([r.to_dict() for r in records])[columns]
        st.dataframe(frame, hide_index=True, width="stretch", height=420, key="rf_tv_table", column_config={
            "name": st.column_config.TextColumn("layer", width=170), "layer": st.column_config.TextColumn("type"),
            "kernel": "k", "dilation": "d", "stride": "s", "padding": "p", "rf": "RF", "jump_out": "jump",
            "size_out": "out"})  # fmt: skip
    with right:
        index = st.select_slider(
            "Layer",
            options=layers,
            value=layers[len(layers) // 2],
            format_func=lambda i: _label(records[i]),
            key=f"rf_tv_layer_{name}_{size}",
            help="The table's module layers (a graph operation such as an add has no module to look into).",
        )
        record, width_record = records[index], table.width_records[index]
        row = _unit_slider("Output row", "rf_tv_row", record.size_out)
        col = _unit_slider("Output column", "rf_tv_col", width_record.size_out)
        picture = np.asarray(_upscale(sh.sample_image(), size))
        st.plotly_chart(_image_figure(picture, record, unit_window(record, row, col, size), row, col), width="stretch",
                        key="rf_tv_picture")  # fmt: skip
    _tv_views(name, size, table, index, row, col)


def _upscale(image: np.ndarray, size: int):
    from PIL import Image

    return Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)


# ---------------------------------------------------------------- page

sh.ensure_shell()
st.title("Receptive field")
NETWORKS = ("The network being edited", "A torchvision classifier")
which = st.radio("Network", NETWORKS, horizontal=True, key="rf_network", label_visibility="collapsed")
if which == NETWORKS[1]:
    st.caption("Any torchvision image classifier, by name: its RF table through the module tracer (torch.fx).")
    _torchvision_section()
    st.stop()

spec = sh.get_spec()
records = sh.rf_records(spec)
size = spec.input_shape[1]
st.caption(
    f"Network `{spec.name}`: global RF {records[-1].rf} pixels on a {size}x{size} input. "
    "The yellow box is what one output unit sees; red is the part of its window on zero padding."
)
controls, picture = st.columns([2, 3], gap="large")
with controls:
    image, image_caption = _pick_image(size)
    index = _pick_layer(records)
    record = records[index]
    row, col = _pick_unit(record)
    st.caption(
        f"Kernel {record.kernel}, dilation {record.dilation}, stride {record.stride}, padding {record.padding}; "
        f"jump {record.jump_in} → {record.jump_out} pixels between neighbouring units."
    )
window = unit_window(record, row, col, size)
with picture:
    step_tab, animate_tab = st.tabs(["Step through", "Animate"])
    with step_tab:
        st.plotly_chart(_image_figure(image, record, window, row, col), width="stretch", key="rf_image_figure")
        st.caption(image_caption)
    with animate_tab:
        st.plotly_chart(_animation(image, records, index), width="stretch", key="rf_animation")
_reach_section(records, index, image, row, col)
picked = _choose_run(spec) if spec.input_shape[0] == 3 else None
_effective_section(spec, record, image, row, col, picked)
_features_section(spec, record, image, picked)
