"""Misclassified: the test images a run got wrong, with what it believed, and where it looked (Grad-CAM).

Click a cell of the confusion matrix (or pick the two classes below it) to see the images of one true class
taken for one predicted class. Images are enlarged by repeating pixels, so what the network saw stays sharp.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from pages import _display as dp
from pages._classroom import refuse_foreign_runs, user_runs
from pages._shared import ensure_shell, has_predictions, predictions, show_error
from s7core import runs
from s7core.errors import UserError
from s7core.evaluate import Evaluation, cell_images, misclassified
from s7core.gradcam import overlay

PER_PAGE = 24
COLUMNS = 6
ZOOM = 4  # 32x32 images shown at 128x128
ANY = "any"
TRUE_KEY, PRED_KEY, CHART_KEY = "mis_true", "mis_pred", "mis_confusion"
SORTS = {"confidence-desc": "most confident first", "confidence-asc": "least confident first", "index": "test index"}


@st.cache_resource(max_entries=4, show_spinner="Reading the test images…")
def test_images(data_dir: str) -> np.ndarray:
    """The test images (N, 3, 32, 32) uint8 of a data folder, read once per folder."""
    from s7core.data import load_cifar10

    return load_cifar10(data_dir).test_images.numpy()


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def run_model(run_dir: str, mtime: float):
    """The run's best model on the CPU, in eval mode."""
    return runs.load_run_model(run_dir, "best")


def choose_run() -> runs.RunInfo | None:
    """A run that has saved test predictions (i.e. finished)."""
    done = [i for i in user_runs().list() if has_predictions(i.path)]  # a student's own; a teacher's all
    if not done:
        st.info("No finished run yet: launch one on the Train page; its mistakes show up here when it ends.")
        return None
    by_name = {i.name: i for i in done}
    refuse_foreign_runs("mis_run", list(by_name))
    return by_name[st.selectbox("Run", list(by_name), key="mis_run")]


def _select_cell(classes: tuple[str, ...]) -> None:
    """A click on the confusion matrix sets both class filters (runs before the page reruns)."""
    points = st.session_state[CHART_KEY].selection.points
    if points and points[0].get("x") in classes and points[0].get("y") in classes:
        st.session_state[PRED_KEY], st.session_state[TRUE_KEY] = points[0]["x"], points[0]["y"]


def confusion_picker(ev: Evaluation) -> None:
    """The confusion matrix; clicking a cell filters the gallery to it.

    Plotly reports clicks on scatter points, not on heatmap cells, so an invisible square marker sits on
    every cell to catch the click.
    """
    classes = list(ev.classes)
    cells_x = [pred for _ in classes for pred in classes]
    cells_y = [true for true in classes for _ in classes]
    # The mistakes take the colour scale on their own: with the diagonal in it, they would all look pale.
    mistakes = ev.confusion.astype(float)
    np.fill_diagonal(mistakes, np.nan)
    right = np.full_like(mistakes, np.nan)
    np.fill_diagonal(right, np.diag(ev.confusion))
    fig = go.Figure(
        go.Heatmap(
            z=mistakes, x=classes, y=classes, colorscale="Reds", texttemplate="%{z}", showscale=True,
            hoverinfo="skip", colorbar=dict(title="wrong", thickness=12),
        )
    )  # fmt: skip
    fig.add_trace(
        go.Heatmap(
            z=right, x=classes, y=classes, colorscale=[[0, "#d8f3dc"], [1, "#d8f3dc"]], texttemplate="%{z}",
            showscale=False, hoverinfo="skip",
        )
    )  # fmt: skip
    true, pred = st.session_state.get(TRUE_KEY), st.session_state.get(PRED_KEY)
    if true in classes and pred in classes:  # the chosen cell, outlined
        x, y = classes.index(pred), classes.index(true)
        fig.add_shape(type="rect", x0=x - 0.5, x1=x + 0.5, y0=y - 0.5, y1=y + 0.5, line=dict(color="black", width=4))
    fig.add_scatter(
        x=cells_x, y=cells_y, mode="markers", marker=dict(symbol="square", size=28, opacity=0), showlegend=False,
        customdata=ev.confusion.reshape(-1),
        hovertemplate="true %{y}, predicted %{x}: %{customdata} images: click to show them<extra></extra>",
    )  # fmt: skip
    fig.update_layout(
        margin=dict(l=10, r=10, t=50, b=10), xaxis_title="predicted class", yaxis_title="true class",
        title="Click a cell to show its images (green: right, red: wrong)",
    )  # fmt: skip
    dp.style(fig, height=dp.display().tall_px, legend_below=False)
    # Fixed ranges: the markers would otherwise widen the autorange and shift the cells off the plot's edges.
    fig.update_xaxes(range=[-0.5, len(classes) - 0.5])
    fig.update_yaxes(range=[len(classes) - 0.5, -0.5])  # first class at the top
    st.plotly_chart(
        fig, key=CHART_KEY, on_select=lambda: _select_cell(ev.classes), selection_mode="points",
        config={"displayModeBar": False},
    )  # fmt: skip


def filters(ev: Evaluation) -> tuple[str | None, str | None, str]:
    """True class, predicted class (None = any) and sort order."""
    options = [ANY, *ev.classes]
    for key in (TRUE_KEY, PRED_KEY):
        if st.session_state.get(key) not in options:
            st.session_state[key] = ANY
    true = st.selectbox("True class", options, key=TRUE_KEY)
    pred = st.selectbox("Predicted class", options, key=PRED_KEY)
    sort = st.radio("Order", list(SORTS), format_func=SORTS.get, key="mis_sort")
    return (None if true == ANY else true), (None if pred == ANY else pred), sort


def enlarge(image_chw: np.ndarray) -> np.ndarray:
    """A (3, H, W) uint8 image as (H*ZOOM, W*ZOOM, 3), each pixel a ZOOM x ZOOM block (no blur)."""
    return image_chw.transpose(1, 2, 0).repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


def _layer_label(model, name: str) -> str:
    """'layers.6.depthwise' as 'layer 6: sepconv 48 3x3 d2 p2 (depthwise part)'."""
    if name == "off":
        return name
    try:
        index, part = model.layer_of(name)
    except UserError:  # a module not built from a spec layer keeps its own name
        return name
    text = f"layer {index}: {model.spec.layers[index].label()}"
    return f"{text} ({part} part)" if part else text


def gradcam_controls(run: runs.RunInfo):
    """The Grad-CAM layer the user picks (None = off) and the run's model."""
    from s7core.gradcam import gradcam_layers

    ckpt = runs.checkpoint_path(run.path)
    model = run_model(run.path, ckpt.stat().st_mtime if ckpt else 0.0)
    layer = st.selectbox(
        "Grad-CAM layer", ["off", *gradcam_layers(model)], key="mis_gradcam",
        format_func=lambda name: _layer_label(model, name),
        help="Where the model looked for the class it predicted: the gradient-weighted activations of this layer. "
        "Late layers give coarse, class-specific maps; early layers fine but generic ones.",
    )  # fmt: skip
    return (None if layer == "off" else layer), model


@st.cache_data(max_entries=64, show_spinner="Computing Grad-CAM…")
def _cams(run_dir: str, mtime: float, data_dir: str, layer: str, indices: tuple[int, ...]) -> np.ndarray:
    """Grad-CAM maps (N, 32, 32) of some test images for the class the model predicted."""
    import torch

    from s7core import gradcam
    from s7core.data import normalize

    images = torch.as_tensor(test_images(data_dir)[list(indices)])
    return gradcam.grad_cam(run_model(run_dir, mtime), normalize(images), layer)


def _beside(original: np.ndarray, tinted: np.ndarray) -> np.ndarray:
    """The original and its Grad-CAM overlay side by side, (3, H, 2W + 2), a white gap between."""
    gap = np.full((3, original.shape[1], 2), 255, dtype=np.uint8)
    return np.concatenate([original, gap, tinted], axis=2)


def gradcam_legend() -> None:
    """What the Grad-CAM colours mean: the overlay of a ramp from no evidence to the most, on grey."""
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (6, 1))  # (6, 64)
    grey = np.full((3, 6, 64), 128, dtype=np.uint8)
    legend = overlay(grey, ramp).transpose(1, 2, 0).repeat(3, axis=0).repeat(3, axis=1)
    st.image(legend, caption="Grad-CAM: none ← evidence for the predicted class → most", output_format="PNG")


def gallery(ev: Evaluation, images: np.ndarray, indices: np.ndarray, cams: np.ndarray | None) -> None:
    """A grid of enlarged images with the true class, the prediction, its confidence and the top 3; with
    Grad-CAM on, each image beside its overlay."""
    columns = COLUMNS if cams is None else COLUMNS // 2
    for row in range(0, len(indices), columns):
        cols = st.columns(columns)
        for col, k in zip(cols, range(row, min(row + columns, len(indices))), strict=False):
            i = int(indices[k])
            pixels = enlarge(images[i] if cams is None else _beside(images[i], overlay(images[i], cams[k])))
            true, pred = ev.classes[ev.labels[i]], ev.classes[ev.predictions[i]]
            with col:
                st.image(
                    pixels, caption=f"#{i}: {true} → {pred} ({ev.confidence[i]:.0%})", width=pixels.shape[1],
                    output_format="PNG",
                )  # fmt: skip  # shown at its own size: one screen pixel per enlarged pixel, never resampled
                st.caption(" · ".join(f"{name} {p:.0%}" for name, p in ev.top_k(i, 3)))


def page() -> None:
    run = choose_run()
    if run is None:
        return
    st.caption(
        f"Run **{run.name}**: network `{run.preset}`, recipe {run.recipe or 'custom'}. (The sidebar shows the "
        "network being edited, which may be another one.)"
    )
    ev = predictions(run.path)
    if ev is None:  # the run folder was deleted after the menu was drawn
        st.info("This run's test predictions are gone; pick another run.")
        return
    data_dir = str(runs.run_data_dir(run.path))
    left, right = st.columns([3, 2])
    with left:
        confusion_picker(ev)
    with right:
        true, pred, sort = filters(ev)
        layer, _ = gradcam_controls(run)
        if layer is not None:
            gradcam_legend()
    total = int((ev.predictions != ev.labels).sum())
    if true is not None and true == pred:  # a diagonal cell: the images it got right
        wrong = cell_images(ev, true, pred, sort)
        st.markdown(f"**{len(wrong):,}** correctly classified images of class {true} (a diagonal cell), "
                    f"of {ev.count:,}.")  # fmt: skip
    else:
        wrong = misclassified(ev, true, pred, sort)
        st.markdown(f"**{len(wrong):,}** misclassified images shown by this filter, of {total:,} wrong in "
                    f"{ev.count:,}.")  # fmt: skip
    if len(wrong) == 0:
        st.info("Nothing to show: no test image falls under this filter.")
        return
    pages = (len(wrong) + PER_PAGE - 1) // PER_PAGE
    number = st.pagination(pages, key=f"mis_page_{true}_{pred}_{sort}") if pages > 1 else 1
    shown = wrong[(number - 1) * PER_PAGE : number * PER_PAGE]
    cams = None
    if layer is not None:
        ckpt = runs.checkpoint_path(run.path)
        cams = _cams(run.path, ckpt.stat().st_mtime if ckpt else 0.0, data_dir, layer, tuple(shown))
    gallery(ev, test_images(data_dir), shown, cams)


ensure_shell()  # a first request for this page's own address still gets app.py's shell
st.title("Misclassified images")
st.caption(
    "The test images the run's best checkpoint got wrong. Pick a cell of the confusion matrix to see one kind "
    "of mistake; the confidence is the probability the network gave its (wrong) answer."
)
try:
    page()
except UserError as err:
    show_error(err)
