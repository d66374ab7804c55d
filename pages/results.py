"""Results: one run or several side by side: accuracy, curves, per-class figures, the confusion matrix, downloads.

Per-class figures and the confusion matrix come from the run's saved test-set predictions (those of its best
checkpoint, written when it finished); the curves come from its metrics file.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages import _display as dp
from pages._classroom import refuse_foreign_runs, user_runs
from pages._shared import ensure_shell, predictions, show_error
from s7core import runs
from s7core.compare import differing_settings, mean_band, named_accuracy, seed_groups
from s7core.errors import UserError
from s7core.evaluate import Evaluation

SELECT_KEY = "results_runs"
GROUP_KEY = "results_group_seeds"
# Colours far apart for runs (Okabe-Ito, readable by colour-blind students); series told apart by dash.
RUN_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
SERIES_DASH = {"train": "dot", "validation": "dash", "test": "solid"}


def choose_runs(infos: list[runs.RunInfo]) -> list[runs.RunInfo]:
    """A multiselect of the runs that trained at least one epoch; the newest finished one by default."""
    usable = [i for i in infos if i.epoch > 0]
    if not usable:
        st.info("No run has finished an epoch yet: launch one on the Train page.", icon=":material/info:")
        return []
    names = [i.name for i in usable]
    refuse_foreign_runs(SELECT_KEY, names)
    if SELECT_KEY not in st.session_state or not set(st.session_state[SELECT_KEY]) <= set(names):
        finished = [i.name for i in usable if i.state == "finished"]
        st.session_state[SELECT_KEY] = (finished or names)[:1]
    picked = st.multiselect("Runs", names, key=SELECT_KEY, help="Choose several to compare them.")
    return [i for i in usable if i.name in picked]


def _configs(chosen: list[runs.RunInfo]) -> dict[str, tuple]:
    """Each chosen run's spec, training config and recipe, by run name."""
    out = {}
    for info in chosen:
        spec, config, meta = runs.read_run_config(info.path)
        out[info.name] = (spec, config, meta.get("recipe"))
    return out


MEASURED = {"precision": "Precision", "plan": "Time budget"}  # config.json's "measured" entries, as labelled here


def headline(chosen: list[runs.RunInfo], configs: dict[str, tuple]) -> None:
    """One named test accuracy for each chosen run: which checkpoint, how chosen, with or without TTA."""
    for info in chosen:
        named = named_accuracy(info, configs[info.name][1], predictions(info.path))
        cols = st.columns([3, 2, 4, 2])
        cols[0].markdown(f"**{info.name}**  \n`{info.preset}` · {info.recipe or 'custom'} · {info.state}")
        cols[1].metric("Test accuracy", f"{named.value:.2%}" if named.value is not None else "—", help=named.label)
        cols[2].caption(f"Test accuracy of the {named.label}.")
        cols[3].metric("Epochs", f"{info.epoch} / {info.epochs}")
        texts = runs.measured_texts(runs.read_run_config(info.path)[2])
        chosen = [f"{label}: {texts[kind]}" for kind, label in MEASURED.items() if kind in texts]
        if chosen:  # what the trainer measured on its machine and chose before the first step
            st.caption("  \n".join(chosen))


def settings_table(chosen: list[runs.RunInfo], configs: dict[str, tuple]) -> None:
    """What differs between the compared runs: one row per setting, one column per run."""
    rows = differing_settings(configs)
    if not rows:
        st.caption("These runs share every setting and the network (they may still differ by their data folder).")
        return
    st.markdown("**What differs between these runs**")
    frame = pd.DataFrame(rows).astype(str).set_index("setting")
    st.dataframe(frame, width="stretch", key="results_differences")


def _colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


def _epoch_axes(fig: go.Figure, last: int) -> None:
    """Whole-number epoch ticks, with room either side so a one-epoch run is not squeezed to the edge."""
    fig.update_xaxes(range=[0.5, max(last, 1) + 0.5], dtick=1 if last <= 20 else 2, tick0=1, tickformat="d")


def _epoch_figure(
    chosen: list[runs.RunInfo], keys: dict[str, str], title: str, y_title: str, groups: list[list[str]]
) -> go.Figure:
    """One colour per run (or per seed group: its mean, with a band from its lowest to its highest), one dash
    per series (train, validation, test)."""
    fig = go.Figure()
    by_name = {i.name: i for i in chosen}
    last = max(i.epoch for i in chosen)
    for g, members in enumerate(groups):
        colour = _colour(g)
        curves_of = {m: runs.read_metrics(by_name[m].path, kind="epoch") for m in members}
        for key, label in keys.items():
            curves = [{r["epoch"]: r[key] for r in rows if r.get(key) is not None} for rows in curves_of.values()]
            curves = [c for c in curves if c]
            if not curves:
                continue
            dash = SERIES_DASH.get(label, "solid")
            if len(curves) == 1:
                x, y = zip(*sorted(curves[0].items()), strict=True)
                name = f"{members[0]} · {label}" if len(chosen) > 1 else label
                fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name, marker_size=9,
                                         line=dict(color=colour, dash=dash)))  # fmt: skip
                continue
            band = mean_band(curves)
            fig.add_trace(go.Scatter(x=band.epochs + band.epochs[::-1], y=band.high + band.low[::-1], fill="toself",
                                     fillcolor=colour, opacity=0.2, line=dict(width=0), hoverinfo="skip",
                                     showlegend=False))  # fmt: skip
            name = f"{members[0]} and {len(members) - 1} more seeds · {label} (mean, band: min to max)"
            fig.add_trace(go.Scatter(x=band.epochs, y=band.mean, mode="lines+markers", name=name, marker_size=9,
                                     line=dict(color=colour, dash=dash)))  # fmt: skip
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=50, b=10), xaxis_title="epoch", yaxis_title=y_title)
    _epoch_axes(fig, last)
    return dp.style(fig)


def curves(chosen: list[runs.RunInfo], configs: dict[str, tuple]) -> None:
    """Accuracy and loss curves side by side, overlaid per run; runs that differ only by seed as one band."""
    groups = [[i.name] for i in chosen]
    seeds = seed_groups({n: c[:2] for n, c in configs.items()})
    if any(len(g) > 1 for g in seeds):
        if st.toggle("Runs that differ only by seed as one mean with a band", value=True, key=GROUP_KEY):
            groups = seeds
    left, right = st.columns(2)
    acc = {"train_acc": "train", "val_acc": "validation", "test_acc": "test"}
    loss = {"train_loss": "train", "val_loss": "validation", "test_loss": "test"}
    left.plotly_chart(_epoch_figure(chosen, acc, "Accuracy", "fraction correct", groups), key="results_acc")
    right.plotly_chart(_epoch_figure(chosen, loss, "Loss", "nats", groups), key="results_loss")


def per_class_chart(evaluations: dict[str, Evaluation]) -> None:
    """Test accuracy of each class, one bar group per class and one bar per run."""
    fig = go.Figure()
    for i, (name, ev) in enumerate(evaluations.items()):
        fig.add_trace(go.Bar(x=list(ev.classes), y=ev.per_class_accuracy, name=name, marker_color=_colour(i)))
    fig.update_layout(
        title="Per-class test accuracy (best checkpoint)", barmode="group", yaxis_tickformat=".0%",
        margin=dict(l=10, r=10, t=50, b=10), yaxis_range=[0, 1], showlegend=len(evaluations) > 1,
    )  # fmt: skip
    st.plotly_chart(dp.style(fig), key="results_per_class")


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
        title=title, margin=dict(l=10, r=10, t=50, b=10),
        xaxis_title="predicted class", yaxis_title="true class", yaxis_autorange="reversed",
    )  # fmt: skip
    return dp.style(fig, height=dp.display().tall_px, legend_below=False)


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
    metrics = pd.DataFrame(user_runs().metrics(info.name))  # checked: the run's owner or a teacher
    cols[0].download_button(
        "Metrics (CSV)", metrics.to_csv(index=False), f"{info.name}-metrics.csv", "text/csv",
        icon=":material/download:", on_click="ignore", key=f"dl_metrics_{info.name}",
    )  # fmt: skip
    ckpt = user_runs().checkpoint(info.name)
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
            named = named_accuracy(info, runs.read_run_config(info.path)[1], ev)
            st.markdown(f"**{info.name}**: test accuracy {ev.accuracy:.2%} on {ev.count:,} images, loss {ev.loss:.3f}")
            st.caption(f"Of the {named.label}: the figure quoted above.")
            class_table(ev)
    downloads(info)


ensure_shell()  # a first request for this page's own address still gets app.py's shell
st.title("Results")
st.caption("Compare runs: their accuracy, their curves, and which classes they get wrong.")
try:
    chosen = choose_runs(user_runs().list())  # a student's own runs; every run for a teacher
    if chosen:
        configs = _configs(chosen)
        headline(chosen, configs)
        if len(chosen) > 1:
            settings_table(chosen, configs)
        curves(chosen, configs)
        details(chosen)
except UserError as err:
    show_error(err)
