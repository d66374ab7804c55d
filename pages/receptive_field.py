"""Receptive field: which input pixels one output unit sees, drawn on a real image, layer by layer.

The box of a unit comes from s7core.rf.table.unit_window; the effective RF (where
the gradient of one unit actually lands) from s7core.rf.effective.effective_rf.
"""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from pages import _shared as sh
from s7core.data import CIFAR10_CLASSES, load_cifar10, synthetic_cifar10
from s7core.errors import UserError
from s7core.images import UPLOAD_EXTENSIONS, load_upload
from s7core.names import module_name, position_of
from s7core.rf.effective import effective_rf
from s7core.rf.table import centre_unit, centre_window, unit_window
from s7core.spec import spec_from_dict

CIFAR, SYNTHETIC, UPLOAD = "CIFAR-10 test set", "Synthetic", "Upload"
WINDOW_COLOUR = "#ffd60a"  # the part of the window on the image
PADDING_COLOUR = "rgba(230, 57, 70, 0.45)"  # the part that falls on zero padding
_JUMP = dict(mode="immediate", frame=dict(duration=0))  # animation settings: go to a frame at once


# ---------------------------------------------------------------- images


@st.cache_resource(show_spinner="Reading CIFAR-10…", max_entries=2)
def _cifar_test(path: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    data = load_cifar10(path)
    return data.test_images.numpy(), data.test_labels.numpy(), data.classes


@st.cache_data(show_spinner=False)
def _synthetic() -> tuple[np.ndarray, np.ndarray]:
    return synthetic_cifar10(0, 10, seed=0)[1]


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
            return _pick_from(*_cifar_test(str(status.path)), "test image")
        except UserError as err:
            sh.show_error(err)
    elif source == UPLOAD:
        picked = _uploaded(size)
        if picked is not None:
            return picked
        st.caption("Until an image is uploaded, a synthetic one is shown.")
    images, labels = _synthetic()
    if source != SYNTHETIC:
        return _hwc(images[0]), "synthetic image 0"
    return _pick_from(images, labels, tuple(f"the stripes of class '{c}'" for c in CIFAR10_CLASSES), "synthetic image")


# ---------------------------------------------------------------- layer and unit


def _label(record) -> str:
    return f"{record.name} · {record.layer} · {record.size_out}x{record.size_out} · RF {record.rf}"


def _step_layer(step: int, last: int) -> None:
    st.session_state["rf_layer"] = min(max(st.session_state.get("rf_layer", 1) + step, 1), last)


def _pick_layer(records) -> int:
    last = len(records) - 1
    if not 1 <= st.session_state.get("rf_layer", 0) <= last:
        st.session_state["rf_layer"] = (last + 1) // 2  # start half way, where the window is already sizeable
    cols = st.columns([1, 1])
    cols[0].button(
        "Previous layer", key="rf_previous", on_click=_step_layer, args=(-1, last), icon=":material/skip_previous:"
    )
    cols[1].button("Next layer", key="rf_next", on_click=_step_layer, args=(1, last), icon=":material/skip_next:")
    return st.select_slider(
        "Layer", options=list(range(1, last + 1)), format_func=lambda i: _label(records[i]), key="rf_layer"
    )


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
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="#f3f3f3")


def _image_figure(image: np.ndarray, record, window, row: int, col: int) -> go.Figure:
    size = image.shape[0]
    fig = go.Figure(go.Image(z=image, zsmooth=False, hovertemplate="pixel (%{y}, %{x})<extra></extra>"))
    fig.update_layout(shapes=_window_shapes(window))
    title = f"unit ({row}, {col}) of {record.name} ({record.layer}): RF {record.rf}x{record.rf}"
    if window.padding_fraction > 0:
        title += f", {window.padding_fraction:.0%} on padding"
    fig.update_layout(title=dict(text=title, font_size=14))
    _axes(fig, size, [window], 560)
    return fig


def _animation(image: np.ndarray, records) -> go.Figure:
    """Frames over the layers, each showing the window of the layer's centre unit."""
    size = image.shape[0]
    steps = [(r, centre_window(r, size)) for r in records[1:]]
    fig = go.Figure(go.Image(z=image, zsmooth=False))
    frames = [
        go.Frame(name=r.name, layout=dict(shapes=_window_shapes(w), title_text=f"{_label(r)} (centre unit)"))
        for r, w in steps
    ]
    fig.frames = frames
    fig.update_layout(shapes=frames[0].layout.shapes, title_text=frames[0].layout.title.text)
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
                        label="▶ Play", method="animate", args=[None, dict(frame=dict(duration=700), fromcurrent=True)]
                    ),
                    dict(label="❚❚", method="animate", args=[[None], dict(mode="immediate", frame=dict(duration=0))]),
                ],
            )
        ],
        sliders=[
            dict(
                steps=[
                    dict(
                        label=r.name, method="animate", args=[[r.name], dict(mode="immediate", frame=dict(duration=0))]
                    )
                    for r, _ in steps
                ],
                y=-0.08,
                currentvalue=dict(prefix="layer "),
            )
        ],
    )
    _axes(fig, size, [w for _, w in steps], 620)
    return fig


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
    import torch

    from s7core.model import build_model

    with torch.random.fork_rng(devices=[]):  # seeded, without touching the process's random state
        torch.manual_seed(0)
        return build_model(spec_from_dict(json.loads(key))).eval()


@st.cache_data(show_spinner="Computing the effective RF…", max_entries=32)
def _untrained_erf(key: str, module: str, image: np.ndarray) -> np.ndarray:
    return effective_rf(_untrained_model(key), _batch(image), module)


@st.cache_resource(show_spinner="Loading the trained network…", max_entries=2)
def _trained_model(run_path: str, updated: str):
    from s7core.runs import load_run_model

    return load_run_model(run_path)


@st.cache_data(show_spinner="Computing the effective RF…", max_entries=32)
def _trained_erf(run_path: str, updated: str, module: str, image: np.ndarray) -> np.ndarray:
    return effective_rf(_trained_model(run_path, updated), _batch(image), module)


def _erf_figure(erf: np.ndarray, window, title: str) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=erf, colorscale="Viridis", zmin=0, zmax=1, zsmooth=False, colorbar_thickness=10))
    fig.update_layout(shapes=_window_shapes(window, fill=False), title=dict(text=title, font_size=13))
    _axes(fig, erf.shape[0], [window], 400)
    return fig


def _trained_panel(record, image: np.ndarray) -> None:
    from pages._classroom import user_runs
    from s7core.runs import read_run_config

    try:
        runs = [r for r in user_runs().list() if r.state == "finished"]
    except UserError as err:
        sh.show_error(err)
        return
    if not runs:
        st.info("No finished run yet: train this network on the Train page, then compare here.", icon=":material/info:")
        return
    names = [r.name for r in runs]
    chosen = st.selectbox(
        "Trained run",
        names,
        key="rf_run",
        format_func=lambda n: next(f"{r.name} ({r.preset}, {r.epoch} epochs)" for r in runs if r.name == n),
    )
    run = next(r for r in runs if r.name == chosen)
    try:
        run_spec = read_run_config(run.path)[0]
        run_records = sh.rf_records(run_spec)
        # the same layer when the run's network has it, else its last one
        run_record = next((r for r in run_records if r.name == record.name), run_records[-1])
        erf = _trained_erf(run.path, run.updated, _module_name(run_record), image)
    except UserError as err:
        sh.show_error(err)
        return
    window = centre_window(run_record, image.shape[0])
    title = f"trained ({run.name}), {run_record.name}: RF {run_record.rf}"
    st.plotly_chart(_erf_figure(erf, window, title), width="stretch", key="rf_erf_trained")


def _effective_section(spec, record, image: np.ndarray) -> None:
    st.subheader("Theoretical and effective RF")
    if spec.input_shape[0] != 3:
        st.info(f"The effective RF is measured on colour images; this network takes {spec.input_shape[0]} channels.")
        return
    st.caption(
        f"Heat: how strongly each input pixel moves the central unit of {record.name} (mean |gradient| over its "
        "channels, scaled to a maximum of 1). Box: the theoretical RF of that unit. The effective RF is usually "
        "a smaller, roughly Gaussian blob in the middle of the box; training tends to widen it."
    )
    left, right = st.columns(2, gap="large")
    with left:
        erf = _untrained_erf(sh.spec_key(spec), _module_name(record), image)
        title = f"untrained (seeded), {record.name}: RF {record.rf}"
        st.plotly_chart(_erf_figure(erf, centre_window(record, image.shape[0]), title), width="stretch")
    with right:
        _trained_panel(record, image)


# ---------------------------------------------------------------- page

sh.ensure_shell()
spec = sh.get_spec()
records = sh.rf_records(spec)
size = spec.input_shape[1]

st.title("Receptive field")
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
        st.plotly_chart(_animation(image, records), width="stretch", key="rf_animation")
_effective_section(spec, record, image)
