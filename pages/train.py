"""Train: pick a network and a recipe, launch a run in a background process, and watch it live.

A run trains in its own process (s7core.runs), so it goes on when the tab closes; any tab sees it
in the run list. The live panel is a fragment that reruns every second while a run is active.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pages._classroom import class_mode, class_settings, data_problem, guard_page, user_runs
from pages._shared import data_dir, data_status, device_name, get_spec, show_error, summary
from s7core import runs
from s7core.classroom import Action
from s7core.config import Resources, Setting, TrainConfig, resource_settings, settings
from s7core.errors import UserError
from s7core.recipes import RECIPES, default_recipe
from s7core.runs.executor import LOCAL
from s7core.spec import PRESETS, get_preset

ACTIVE = ("queued", "running")
RESOURCES = resource_settings()
WATCH_KEY = "train_watch_run"
EDITED = "The network being edited"


# ---------------------------------------------------------------- the form


def _widget(s: Setting, value: Any, key: str) -> Any:
    """One input for a setting, chosen by its type and bounded by its declared limits."""
    label, help_text = s.title, s.help if s.kind is bool else f"{s.help}. Allowed: {s.allowed()}."
    if s.choices:
        options = list(s.choices) if value in s.choices else [value, *s.choices]
        return st.selectbox(label, options, index=options.index(value), key=key, help=help_text)
    if s.kind is bool:
        return st.checkbox(label, value=bool(value), key=key, help=help_text)
    if s.kind is int:
        return int(st.number_input(label, s.low, s.high, int(value), s.step or 1, key=key, help=help_text))
    low, high = float(s.low), float(s.high)
    return float(st.number_input(label, low, high, float(value), s.step, format="%.6g", key=key, help=help_text))


def _groups() -> dict[str, list[Setting]]:
    """The declared settings under their group headings, in declaration order."""
    groups: dict[str, list[Setting]] = {}
    for s in settings():
        groups.setdefault(s.group, []).append(s)
    return groups


def _config_form(base: TrainConfig, prefix: str) -> dict[str, Any]:
    """The recipe's settings as inputs, one per declared setting; returns the values as TrainConfig.from_dict
    takes them."""
    values = base.to_dict()
    for i, (title, group) in enumerate(_groups().items()):
        with st.expander(title, expanded=i == 0):
            cols = st.columns(3)
            for j, s in enumerate(group):
                section, _, name = s.path.rpartition(".")
                holder = values[section] if section else values
                with cols[j % 3]:
                    holder[name] = _widget(s, holder[name], f"{prefix}_{s.path.replace('.', '_')}")
    return values


def _choose_network():
    """The network to train: the one being edited, or a preset."""
    edited = get_spec()
    choices = [EDITED, *PRESETS]
    pick = st.selectbox(
        "Network",
        choices,
        key="train_network",
        format_func=lambda c: f"{EDITED} ({edited.name})" if c == EDITED else f"preset: {c}",
        help="Edit a network on the Architecture page; it is trained exactly as shown there.",
    )
    spec = edited if pick == EDITED else get_preset(pick)
    st.caption(f"`{spec.name}`: {len(spec.layers)} layers, {summary(spec).total_params:,} parameters")
    return spec


def _launch(spec, values: dict[str, Any], recipe: str, name: str, max_concurrent: int, asked: dict) -> None:
    """Create the run folder and start (or queue) it through the executor in use."""
    try:
        config = TrainConfig.from_dict(values)
        resources = Resources.from_dict(asked)
        where = None if class_mode() else data_dir()  # in class mode the class's folder, chosen in s7core
        run_dir, status = user_runs().launch(
            spec, config, name.strip() or None, recipe, where, max_concurrent, resources
        )
    except UserError as err:
        show_error(err)
        return
    st.session_state[WATCH_KEY] = run_dir.name
    if status.state == "queued":
        st.info(f"Run **{run_dir.name}** is queued: {status.message}", icon=":material/schedule:")
    else:
        st.success(f"Run **{run_dir.name}** started in the background.", icon=":material/rocket_launch:")


def _resources_form() -> dict[str, Any]:
    """One input per declared resource setting (CPU cores, GPUs), at its declared default."""
    values = {}
    for s, col in zip(RESOURCES, st.columns(len(RESOURCES)), strict=True):
        with col:
            values[s.path] = _widget(s, s.default, f"train_res_{s.path}")
    return values


def launch_section() -> None:
    """Network, recipe and settings; the launch button."""
    status = data_status()
    if not status.found:
        show_error(data_problem(f"{status.message}. Set the data folder in the sidebar, then launch."))
    left, right = st.columns([2, 3])
    with left:
        spec = _choose_network()
        names = list(RECIPES)
        recipe_name = st.selectbox(  # keyed by network, so picking fast or best also picks its own recipe
            "Recipe", names, index=names.index(default_recipe(spec.name)), key=f"train_recipe_{spec.name}"
        )
        recipe = RECIPES[recipe_name]
        text = f"{recipe.description}\n\nFrom {recipe.base or 'the defaults'}: {recipe.changes_text()}."
        if recipe.config.plateau_on_test:
            st.warning(text, icon=":material/visibility:")
        else:
            st.info(text, icon=":material/menu_book:")
        default_slots = 1 if device_name() == "CPU" else 2
        if class_mode():  # the class's limits, set by the teacher
            limits = class_settings()
            st.caption(f"The class trains {limits.max_concurrent} run(s) at once; each student may have "
                       f"{limits.max_active_per_student} queued or running.")  # fmt: skip
            max_concurrent = limits.max_concurrent
        elif runs.executor_name() == LOCAL:  # on a cluster, Ray queues runs by the resources they ask for
            max_concurrent = int(
                st.number_input(
                    "Runs at once", 1, 8, default_slots, key="train_max_concurrent",
                    help="At most this many runs train together; a further launch waits in the queue.",
                )
            )  # fmt: skip
        else:
            max_concurrent = default_slots
        asked = _resources_form()
    with right, st.form("train_form", border=False):
        values = _config_form(recipe.config, f"train_{recipe_name}")
        name = st.text_input("Run name (optional)", key="train_run_name", placeholder="spec-recipe-date-time")
        launched = st.form_submit_button(
            "Launch training", type="primary", icon=":material/play_arrow:", disabled=not status.found
        )
    if launched:
        _launch(spec, values, recipe_name, name, max_concurrent, asked)


# ---------------------------------------------------------------- the live panel


def _curve(rows: list[dict], series: dict[str, str], title: str, y_title: str, log_y: bool = False) -> go.Figure:
    """Lines of `series` (metrics key -> legend name) over the global step."""
    fig = go.Figure()
    for key, legend in series.items():
        points = [(r["global_step"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            x, y = zip(*points, strict=True)
            mode = "lines" if len(points) > 30 else "lines+markers"
            fig.add_trace(go.Scatter(x=x, y=y, mode=mode, name=legend))
    fig.update_layout(
        title=title, height=280, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step", yaxis_title=y_title,
        legend=dict(orientation="h", y=-0.25), uirevision=title,
    )  # fmt: skip
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def _progress(info: runs.RunInfo, last_step: dict | None) -> None:
    """Progress bar, epoch, throughput and time left of one run."""
    text = info.state if info.message in ("", info.state) else f"{info.state}: {info.message}"
    st.progress(runs.progress_fraction(info, last_step), text=text)


def _figures(info: runs.RunInfo, epochs: list[dict], steps: list[dict]) -> None:
    """Epoch, images/s, ETA and best accuracy, as metric tiles."""
    last_step, last_epoch = (steps[-1] if steps else None), (epochs[-1] if epochs else None)
    cols = st.columns(4)
    cols[0].metric("Epoch", f"{info.epoch} / {info.epochs}")
    rate = last_step.get("images_per_s") if last_step else None
    cols[1].metric("Images/s", f"{rate:,.0f}" if rate else "—")
    eta = last_epoch.get("eta_s") if last_epoch and info.state == "running" else None
    cols[2].metric("Time left", f"{eta:.0f} s" if eta is not None else "—", help="estimated from finished epochs")
    best = info.best_accuracy
    cols[3].metric("Best test accuracy", f"{best:.2%}" if best is not None else "—")


def _buttons(info: runs.RunInfo) -> None:
    """Stop an active run, resume a stopped or failed one."""
    try:
        access = user_runs()
        if info.state in ACTIVE and access.may(Action.STOP, info):
            if st.button("Stop", icon=":material/stop:", key=f"stop_{info.name}"):
                st.toast(access.stop(info.name).message)
        if info.state in ("stopped", "failed") and info.epoch < info.epochs and access.may(Action.RESUME, info):
            if st.button("Resume", icon=":material/replay:", key=f"resume_{info.name}"):
                slots = st.session_state.get("train_max_concurrent", 1)
                st.toast(f"{info.name}: {access.resume(info.name, slots).state}")
    except UserError as err:
        show_error(err)


def watch_run(run_dir: Path) -> None:
    """Everything about one run, live: progress, figures, curves, stop."""
    info = runs.run_info(run_dir)
    rows = runs.read_metrics(run_dir)
    epochs = [r for r in rows if r.get("kind") == "epoch"]
    steps = [r for r in rows if r.get("kind") == "step"]
    _progress(info, steps[-1] if steps else None)
    _figures(info, epochs, steps)
    _buttons(info)
    cols = st.columns(3)
    loss = {"loss": "train (running)", "train_loss": "train", "val_loss": "validation", "test_loss": "test"}
    acc = {"accuracy": "train (running)", "train_acc": "train", "val_acc": "validation", "test_acc": "test"}
    cols[0].plotly_chart(_curve(steps + epochs, loss, "Loss", "nats"), key="train_loss_chart")
    cols[1].plotly_chart(_curve(steps + epochs, acc, "Accuracy", "fraction correct"), key="train_acc_chart")
    lr_rows = steps or epochs  # a step line's lr is the next step's; an epoch line's the last one's: keep one kind
    cols[2].plotly_chart(_curve(lr_rows, {"lr": "lr"}, "Learning rate", "lr"), key="train_lr_chart")
    if info.state == "failed":
        show_error(f"Run {info.name} failed: {info.message}")


def runs_table(infos: list[runs.RunInfo]) -> None:
    """Every run with its state, newest first."""
    table = pd.DataFrame(
        [
            dict(run=i.name, owner=i.owner or "—", state=i.state, epoch=f"{i.epoch}/{i.epochs}", best=i.best_accuracy,
                 final=i.final_accuracy, network=i.preset, recipe=i.recipe, created=i.created, message=i.message)
            for i in infos
        ]
    )  # fmt: skip
    st.dataframe(
        table,
        hide_index=True,
        column_config={
            "best": st.column_config.NumberColumn("best acc", format="percent"),
            "final": st.column_config.NumberColumn("final acc", format="percent"),
        },
        key="train_runs_table",
    )


def live_section() -> None:
    """The watched run and the run list; refreshed every second while any run is queued or running."""
    access = user_runs()
    infos = access.list()  # a student's own runs; every run for a teacher
    if not infos:
        st.info("No runs yet: launch one above. It trains in the background and appears here.")
        return
    names = [i.name for i in infos]
    if st.session_state.get(WATCH_KEY) not in names:
        st.session_state[WATCH_KEY] = names[0]
    name = st.selectbox("Watch run", names, key=WATCH_KEY)
    active = any(i.state in ACTIVE for i in infos)

    @st.fragment(run_every=1 if active else None)
    def live() -> None:
        access.refresh()  # start queued runs, fail those whose process or job has gone
        now = access.list()
        watched = [i for i in now if i.name == name]
        if watched:
            watch_run(Path(watched[0].path))
        runs_table(now)
        if active and not any(i.state in ACTIVE for i in now):
            st.rerun(scope="app")  # the last run ended: redraw the page once and stop refreshing

    live()


guard_page()  # a page asked for on a fresh server passes the sign-in gate too
st.title("Train")
st.caption(
    "Pick a network and a recipe, then launch: the run trains in a background process, so it goes on when "
    "this tab closes and every tab sees it below."
)
launch_section()
st.divider()
st.subheader("Runs")
live_section()
