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

from pages import _display as dp
from pages._classroom import class_mode, class_settings, data_problem, refuse_foreign_runs, user_runs
from pages._shared import data_dir, data_status, device_name, ensure_shell, get_spec, show_error, summary
from s7core import runs
from s7core.classroom import Action
from s7core.config import Resources, Setting, TrainConfig, resource_settings, settings
from s7core.errors import UserError
from s7core.recipes import RECIPES, default_recipe
from s7core.runs.executor import LOCAL
from s7core.runs.live import step_points, time_left
from s7core.spec import PRESETS, get_preset

ACTIVE = ("queued", "running")
RESOURCES = resource_settings()
WATCH_KEY = "train_watch_run"
FLASH_KEY = "train_flash"  # what the last launch said, shown above the live panel after the page reruns
EDITED = "The network being edited"
DEMO = "fast"  # the first choice: a network that trains to 80% in about a minute on a laptop CPU
SPEED_KEY = "train_speeds"  # measured speeds of this session, by network and settings


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
    choices = [DEMO, EDITED, *(name for name in PRESETS if name != DEMO)]
    pick = st.selectbox(
        "Network",
        choices,
        key="train_network",
        format_func=lambda c: (
            f"{EDITED} ({edited.name})"
            if c == EDITED
            else f"preset: {c}" + (" (quick: a minute or two on a CPU)" if c == DEMO else "")
        ),
        help="Edit a network on the Architecture page; it is trained exactly as shown there. The `fast` preset "
        "with its own recipe is the quick one for a live demonstration.",
    )
    spec = edited if pick == EDITED else get_preset(pick)
    st.caption(f"`{spec.name}`: {len(spec.layers)} layers, {summary(spec).total_params:,} parameters")
    return spec


def _launch(spec, base: TrainConfig, recipe: str, default_slots: int) -> None:
    """Create the run folder and start (or queue) it through the executor in use; the Launch button's callback.

    A callback, so that the launch happens once, before the page's script runs (a rerun of the script would
    otherwise lose the form's one-run submit), with the form's values from the session state.
    """
    name = (st.session_state.get("train_run_name") or "").strip()
    max_concurrent = int(st.session_state.get("train_max_concurrent", default_slots))
    asked = {
        s.path: st.session_state[f"train_res_{s.path}"] for s in RESOURCES if f"train_res_{s.path}" in st.session_state
    }
    try:
        config = TrainConfig.from_dict(_form_values(base, f"train_{recipe}"))
        resources = Resources.from_dict(asked)
        where = None if class_mode() else data_dir()  # in class mode the class's folder, chosen in s7core
        access = user_runs()  # checks who may launch, and the class's limits, in s7core
        run_dir, status = access.launch(spec, config, name or None, recipe, where, max_concurrent, resources)
    except UserError as err:
        st.session_state[FLASH_KEY] = ("error", str(err))
        return
    watched = st.session_state.get(WATCH_KEY)
    busy = watched is not None and any(i.name == watched and i.state == "running" for i in access.list())
    if status.state != "queued" or not busy:  # a queued launch leaves the view on the run that is training
        st.session_state[WATCH_KEY] = run_dir.name
    if status.state == "queued":
        st.session_state[FLASH_KEY] = ("info", f"Run **{run_dir.name}** is queued: {status.message}")
    else:
        st.session_state[FLASH_KEY] = ("success", f"Run **{run_dir.name}** started in the background.")


def _form_values(base: TrainConfig, prefix: str) -> dict[str, Any]:
    """The recipe's settings with the form's values as last submitted, as TrainConfig.from_dict takes them."""
    values = base.to_dict()
    for s in settings():
        section, _, name = s.path.rpartition(".")
        key = f"{prefix}_{s.path.replace('.', '_')}"
        if key in st.session_state:
            (values[section] if section else values)[name] = st.session_state[key]
    return values


def _submitted_config(base: TrainConfig, prefix: str) -> TrainConfig:
    """The recipe's config with the form's values as last submitted (the form sends them only on Launch)."""
    try:
        return TrainConfig.from_dict(_form_values(base, prefix))
    except UserError:
        return base


def _estimate(spec, config: TrainConfig) -> None:
    """How long the run will take here, from a short measured speed of this network (kept per network)."""
    from s7core.data import count_train_images
    from s7core.speed import TRAIN_IMAGES, describe_estimate, estimate_planned, measure_speed, speed_key

    speeds = st.session_state.setdefault(SPEED_KEY, {})
    key = speed_key(spec, config)

    def measure() -> None:  # a callback: it runs once, before the script, whatever reruns follow
        try:
            with st.spinner("Timing a few training steps of this network on this machine…"):
                speeds[key] = measure_speed(spec, config, remember=config.time_budget > 0)
        except UserError as err:
            st.session_state[FLASH_KEY] = ("error", str(err))

    st.button(
        "Estimate the time", icon=":material/timer:", key="train_measure", on_click=measure,
        help="Times a few training steps of this network here (a few seconds), then works out the run.",
    )  # fmt: skip
    speed = speeds.get(key)
    if speed is None:
        st.caption("Press the button for a time estimate from this network's measured speed on this machine.")
        return
    try:
        images = count_train_images(data_dir()) or TRAIN_IMAGES
    except UserError:
        images = TRAIN_IMAGES
    planned, estimate, plan = estimate_planned(config, speed, images)
    headline, detail = describe_estimate(planned, speed, estimate, plan)
    st.markdown(f"**{headline[0].upper()}{headline[1:]}**")
    st.caption(detail)


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
        _estimate(spec, _submitted_config(recipe.config, f"train_{recipe_name}"))
        default_slots = 1 if device_name() == "CPU" else 2
        if class_mode():  # the class's limits, set by the teacher
            limits = class_settings()
            st.caption(f"The class trains {limits.max_concurrent} run(s) at once; each student may have "
                       f"{limits.max_active_per_student} queued or running, each asking for at most "
                       f"{limits.max_cpus_per_run} CPU cores and {limits.max_gpus_per_run:g} GPUs.")  # fmt: skip
        elif runs.executor_name() == LOCAL:  # on a cluster, Ray queues runs by the resources they ask for
            st.number_input(
                "Runs at once", 1, 8, default_slots, key="train_max_concurrent",
                help="At most this many runs train together; a further launch waits in the queue.",
            )  # fmt: skip
        _resources_form()
    with right, st.form("train_form", border=False):
        _config_form(recipe.config, f"train_{recipe_name}")
        st.text_input("Run name (optional)", key="train_run_name", placeholder="spec-recipe-date-time")
        st.form_submit_button(
            "Launch training", type="primary", icon=":material/play_arrow:", disabled=not status.found,
            on_click=_launch, args=(spec, recipe.config, recipe_name, default_slots),
        )  # fmt: skip


# ---------------------------------------------------------------- the live panel


def _curve(rows: list[dict], series: dict[str, str], title: str, y_title: str, epochs: int, y_range=None) -> go.Figure:
    """Lines of `series` (metrics key -> legend name) over the run's epochs, the x axis the whole run."""
    fig = go.Figure()
    for key, legend in series.items():
        x, y = step_points(rows, key)
        if x:
            fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=legend, marker_size=6))
    fig.update_layout(
        title=title, margin=dict(l=10, r=10, t=50, b=10), xaxis_title="epoch", yaxis_title=y_title, uirevision=title,
    )  # fmt: skip
    fig.update_xaxes(range=[0, max(epochs, 1)], dtick=1 if epochs <= 20 else None, tick0=0)
    if y_range is not None:
        fig.update_yaxes(range=y_range)
    return dp.style(fig, height=dp.display().small_px)


def _state_text(info: runs.RunInfo) -> str:
    """'running: epoch 3', or the message alone when it already starts with the state ('queued: waiting ...')."""
    if info.message in ("", info.state) or info.message.startswith(f"{info.state}:"):
        return info.message or str(info.state)
    return f"{info.state}: {info.message}"


def _progress(info: runs.RunInfo, last_step: dict | None) -> None:
    """Progress bar with the run's state."""
    st.progress(runs.progress_fraction(info, last_step), text=_state_text(info))


def _figures(info: runs.RunInfo, rows: list[dict], steps: list[dict]) -> None:
    """Epoch, images/s, time left and best accuracy, as metric tiles."""
    from s7core.speed import format_duration

    last_step = steps[-1] if steps else None
    running = info.state == "running"
    cols = st.columns(4)
    cols[0].metric("Epoch", f"{info.epoch} / {info.epochs}")
    rate = last_step.get("images_per_s") if last_step and running else None  # a stopped run has no speed
    cols[1].metric("Images/s", f"{rate:,.0f}" if rate else "—")
    left = time_left(info, rows)
    cols[2].metric(
        "Time left", format_duration(left) if left is not None else "—",
        help="From the pace of the steps so far (evaluations included), counting down between updates",
    )  # fmt: skip
    best = info.best_accuracy
    cols[3].metric("Best test accuracy", f"{best:.2%}" if best is not None else "—")


def _stop(name: str) -> None:
    try:
        st.toast(user_runs().stop(name).message)
    except UserError as err:
        st.toast(str(err), icon=":material/error:")


def _resume(name: str) -> None:
    try:
        slots = st.session_state.get("train_max_concurrent", 1)
        st.toast(f"{name}: {user_runs().resume(name, slots).state}")
    except UserError as err:
        st.toast(str(err), icon=":material/error:")


def _buttons(info: runs.RunInfo) -> None:
    """Stop an active run, resume a stopped or failed one (callbacks: each acts once, before the script)."""
    access = user_runs()  # a button only where s7core would allow it (and it checks again when clicked)
    if info.state in ACTIVE and access.may(Action.STOP, info):
        st.button("Stop", icon=":material/stop:", key=f"stop_{info.name}", on_click=_stop, args=(info.name,))
    if info.state in ("stopped", "failed") and info.epoch < info.epochs and access.may(Action.RESUME, info):
        st.button(
            "Resume", icon=":material/replay:", key=f"resume_{info.name}", on_click=_resume, args=(info.name,),
        )  # fmt: skip


def watch_run(run_dir: Path) -> None:
    """Everything about one run, live: progress, figures, curves, stop."""
    info = runs.run_info(run_dir)
    rows = runs.read_metrics(run_dir)
    steps = [r for r in rows if r.get("kind") == "step"]
    st.markdown(f"#### {info.name} · `{info.preset}` · {info.recipe or 'custom'}")
    _progress(info, steps[-1] if steps else None)
    _figures(info, rows, steps)
    _buttons(info)
    cols = st.columns(3)
    loss = {"loss": "train (running mean)", "train_loss": "train", "val_loss": "validation", "test_loss": "test"}
    acc = {"accuracy": "train (running mean)", "train_acc": "train", "val_acc": "validation", "test_acc": "test"}
    if any(r.get("test_subset") for r in rows):  # curve-only points on part of the test set (see 'test images between')
        loss["test_loss"] = acc["test_acc"] = "test (part of it before the last epoch)"
    n = info.epochs
    cols[0].plotly_chart(_curve(rows, loss, "Loss", "nats", n), key="train_loss_chart")
    cols[1].plotly_chart(_curve(rows, acc, "Accuracy", "fraction correct", n, [0, 1]), key="train_acc_chart")
    lr_rows = steps or [r for r in rows if r.get("kind") == "epoch"]  # one kind: both would draw the lr twice
    cols[2].plotly_chart(_curve(lr_rows, {"lr": "learning rate"}, "Learning rate", "lr", n), key="train_lr_chart")
    if info.state == "failed":
        show_error(f"Run {info.name} failed: {info.message}")


def _local_time(stamp: str) -> str:
    """An ISO time from a run folder (UTC) as this machine's local time, to the minute."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp or "—"


def runs_table(infos: list[runs.RunInfo]) -> None:
    """Every run with its state, newest first."""
    table = pd.DataFrame(
        [
            dict(run=i.name, owner=i.owner or "—", state=str(i.state), epoch=f"{i.epoch}/{i.epochs}",
                 best=i.best_accuracy, network=i.preset, recipe=i.recipe or "custom", created=_local_time(i.created),
                 message=i.message)
            for i in infos
        ]
    )  # fmt: skip
    st.dataframe(
        table,
        hide_index=True,
        placeholder="—",
        column_config={
            "best": st.column_config.NumberColumn(
                "best test accuracy", format="percent", help="Of the best checkpoint; the Results page says which"
            ),
            "created": st.column_config.TextColumn("created (local time)"),
        },
        key="train_runs_table",
    )


def _default_watch(infos: list[runs.RunInfo]) -> str:
    """The run to watch when none is chosen: the one training, else the newest."""
    running = [i.name for i in infos if i.state == "running"]
    return (running or [infos[0].name])[0]


def live_section() -> None:
    """The watched run and the run list; refreshed every second while any run is queued or running."""
    access = user_runs()
    infos = access.list()  # a student's own runs; every run for a teacher
    if not infos:
        st.info("No runs yet: launch one below. It trains in the background and appears here.")
        return
    names = [i.name for i in infos]
    refuse_foreign_runs(WATCH_KEY, names)
    if st.session_state.get(WATCH_KEY) not in names:
        st.session_state[WATCH_KEY] = _default_watch(infos)
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


def _flash() -> None:
    kind, text = st.session_state.pop(FLASH_KEY, (None, None))
    if kind == "error":
        show_error(text)
    elif kind == "info":
        st.info(text, icon=":material/schedule:")
    elif kind == "success":
        st.success(text, icon=":material/rocket_launch:")


ensure_shell()  # a first request for this page's own address still gets app.py's shell
st.title("Train")
st.caption(
    "Pick a network and a recipe, then launch: the run trains in a background process, so it goes on when "
    "this tab closes and every tab sees it."
)
try:
    busy = any(i.state in ACTIVE for i in user_runs().list())
except UserError as err:
    show_error(err)
    busy = False
_flash()
if busy:  # the live run first, where the teacher is looking; the form stays one click away
    st.subheader("Runs")
    live_section()
    with st.expander("Launch another run", expanded=False):
        launch_section()
else:
    launch_section()
    st.divider()
    st.subheader("Runs")
    live_section()
