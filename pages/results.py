"""Results: one run or several side by side: accuracy, curves, per-class figures, the confusion matrix, downloads.

Per-class figures and the confusion matrix come from the run's saved test-set predictions (those of its best
checkpoint, written when it finished); the curves come from its metrics file.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages._classroom import guard_page, user_runs
from pages._shared import predictions, show_error
from s7core import runs
from s7core.errors import UserError
from s7core.evaluate import Evaluation

SELECT_KEY = "results_runs"


def choose_runs(infos: list[runs.RunInfo]) -> list[runs.RunInfo]:
    """A multiselect of the runs that trained at least one epoch; the newest finished one by default."""
    usable = [i for i in infos if i.epoch > 0]
    if not usable:
        st.info("No run has finished an epoch yet: launch one on the Train page.", icon=":material/info:")
        return []
    names = [i.name for i in usable]
    if SELECT_KEY not in st.session_state or not set(st.session_state[SELECT_KEY]) <= set(names):
        finished = [i.name for i in usable if i.state == "finished"]
        st.session_state[SELECT_KEY] = (finished or names)[:1]
    picked = st.multiselect("Runs", names, key=SELECT_KEY, help="Choose several to compare them.")
    return [i for i in usable if i.name in picked]


def headline(chosen: list[runs.RunInfo]) -> None:
    """Best and final test accuracy of each chosen run."""
    for info in chosen:
        cols = st.columns([3, 2, 2, 2])
        cols[0].markdown(f"**{info.name}**  \n`{info.preset}` · {info.recipe or 'custom'} · {info.state}")
        best = f"{info.best_accuracy:.2%}" if info.best_accuracy is not None else "—"
        final = f"{info.final_accuracy:.2%}" if info.final_accuracy is not None else "—"
        cols[1].metric("Best test accuracy", best)
        cols[2].metric("Final test accuracy", final)
        cols[3].metric("Epochs", f"{info.epoch} / {info.epochs}")


def _epoch_figure(chosen: list[runs.RunInfo], keys: dict[str, str], title: str, y_title: str) -> go.Figure:
    """One line per run and series (metrics key -> name) over the epochs."""
    fig = go.Figure()
    for info in chosen:
        rows = runs.read_metrics(info.path, kind="epoch")
        for key, label in keys.items():
            points = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
            if points:
                x, y = zip(*points, strict=True)
                name = f"{info.name} · {label}" if len(chosen) > 1 else label
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name))
    fig.update_layout(
        title=title, height=340, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="epoch", yaxis_title=y_title,
        legend=dict(orientation="h", y=-0.2),
    )  # fmt: skip
    return fig


def curves(chosen: list[runs.RunInfo]) -> None:
    """Accuracy and loss curves side by side, overlaid per run."""
    left, right = st.columns(2)
    acc = {"train_acc": "train", "val_acc": "validation", "test_acc": "test"}
    loss = {"train_loss": "train", "val_loss": "validation", "test_loss": "test"}
    left.plotly_chart(_epoch_figure(chosen, acc, "Accuracy", "fraction correct"), key="results_acc")
    right.plotly_chart(_epoch_figure(chosen, loss, "Loss", "nats"), key="results_loss")


def per_class_chart(evaluations: dict[str, Evaluation]) -> None:
    """Test accuracy of each class, one bar group per class and one bar per run."""
    fig = go.Figure()
    for name, ev in evaluations.items():
        fig.add_trace(go.Bar(x=list(ev.classes), y=ev.per_class_accuracy, name=name))
    fig.update_layout(
        title="Per-class test accuracy (best checkpoint)", height=360, barmode="group", yaxis_tickformat=".0%",
        margin=dict(l=10, r=10, t=40, b=10), yaxis_range=[0, 1], showlegend=len(evaluations) > 1,
    )  # fmt: skip
    st.plotly_chart(fig, key="results_per_class")


def confusion_figure(ev: Evaluation, title: str) -> go.Figure:
    """The confusion matrix as a heatmap: rows are true classes, columns predicted, counts in the cells."""
    classes = list(ev.classes)
    fig = go.Figure(
        go.Heatmap(
            z=ev.confusion, x=classes, y=classes, colorscale="Blues", texttemplate="%{z}",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        title=title, height=480, margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="predicted class", yaxis_title="true class", yaxis_autorange="reversed",
    )  # fmt: skip
    return fig


def class_table(ev: Evaluation) -> None:
    """Per-class precision and recall (= per-class accuracy)."""
    table = pd.DataFrame({"class": list(ev.classes), "precision": ev.precision, "recall": ev.recall})
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "precision": st.column_config.ProgressColumn("precision", format="percent", min_value=0, max_value=1),
            "recall": st.column_config.ProgressColumn("recall (accuracy)", format="percent", min_value=0, max_value=1),
        },
        key="results_class_table",
    )


def downloads(info: runs.RunInfo) -> None:
    """The metrics as CSV and the trained weights (checkpoint file) of one run."""
    cols = st.columns(2)
    metrics = pd.DataFrame(user_runs().metrics(info.name))
    cols[0].download_button(
        "Metrics (CSV)", metrics.to_csv(index=False), f"{info.name}-metrics.csv", "text/csv",
        icon=":material/download:", on_click="ignore", key=f"dl_metrics_{info.name}",
    )  # fmt: skip
    ckpt = user_runs().checkpoint(info.name)  # checked: the run's owner or a teacher
    if ckpt is not None:
        cols[1].download_button(
            f"Weights ({ckpt.name}, {ckpt.stat().st_size / 1e6:.1f} MB)", ckpt.read_bytes, f"{info.name}-{ckpt.name}",
            "application/octet-stream", icon=":material/download:", on_click="ignore", key=f"dl_ckpt_{info.name}",
        )  # fmt: skip


def details(chosen: list[runs.RunInfo]) -> None:
    """Per-class chart for every chosen run; confusion matrix, table and downloads for one of them."""
    evaluations = {i.name: ev for i in chosen if (ev := predictions(i.path)) is not None}
    if not evaluations:
        st.info("Per-class figures appear once a run has finished (its test predictions are saved then).")
    else:
        per_class_chart(evaluations)
    name = st.selectbox("Details of run", [i.name for i in chosen], key="results_detail") if len(chosen) > 1 else None
    info = next(i for i in chosen if i.name == (name or chosen[0].name))
    if info.name in evaluations:
        ev = evaluations[info.name]
        left, right = st.columns([3, 2])
        left.plotly_chart(confusion_figure(ev, f"Confusion matrix: {info.name}"), key="results_confusion")
        with right:
            st.markdown(f"**{info.name}**: test accuracy {ev.accuracy:.2%} on {ev.count:,} images, loss {ev.loss:.3f}")
            class_table(ev)
    downloads(info)


guard_page()  # a page asked for on a fresh server passes the sign-in gate too
st.title("Results")
st.caption("Compare runs: their accuracy, their curves, and which classes they get wrong.")
try:
    chosen = choose_runs(user_runs().list())
    if chosen:
        headline(chosen)
        curves(chosen)
        details(chosen)
except UserError as err:
    show_error(err)
