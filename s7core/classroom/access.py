"""Who may do what with runs, checked here and not only in the page: `authorize`, and `ClassRuns`, the way every
page and the command line reach runs.

A student launches runs (while submissions are open, within the per-student limit of queued + running runs, and
asking for no more CPUs and GPUs than the class allows a run), and sees, stops, resumes and downloads only their
own. A teacher sees, stops and removes every run and sets the class's settings. In solo mode (class mode off) the
one user acts as a teacher, as the command line always does. `ClassRuns` wraps whichever executor trains the runs
(the Executor interface of s7core.runs): it checks the caller, then asks the executor.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s7core.classroom.settings import ClassSettings, change_settings, load_settings, private_folder
from s7core.classroom.users import COMMAND_LINE, ClassError, User
from s7core.config import Resources, TrainConfig
from s7core.paths import PathError, resolve_inside
from s7core.runs.executor import executor_for, get_executor, refresh_runs
from s7core.runs.status import RunError, RunInfo, RunStatus
from s7core.runs.store import (
    CONFIG_FILE,
    checkpoint_path,
    create_run,
    list_runs,
    read_metrics,
    read_status,
    run_info,
    runs_root,
)
from s7core.spec import NetworkSpec

LAUNCH_LOCK = ".launch.lock"  # in the class folder: counting a student's runs and starting one is one step


def checked_data_dir(path: str | os.PathLike) -> str:
    """The absolute path of a folder that holds CIFAR-10; a ClassError saying what is there otherwise."""
    from s7core.data import find_cifar10

    found = find_cifar10(str(path).strip())
    if not found.found:
        raise ClassError(f"{found.message} — give the folder that holds CIFAR-10")
    return str(Path(found.path).resolve())


class PermissionDenied(ClassError):
    """The signed-in user may not do this; the message says what they may do instead."""


class Action(str, enum.Enum):
    """What a user asks to do; `authorize` decides."""

    VIEW = "view"  # a run's status, curves, predictions
    LAUNCH = "launch"  # make and start a new run
    RESUME = "resume"  # start a stopped or failed run again
    STOP = "stop"
    DOWNLOAD = "download"  # a run's weights or metrics
    REMOVE = "remove"  # delete a run folder
    MANAGE = "manage"  # the class's settings: thresholds, limits, submissions, data folder, teachers

    def __str__(self) -> str:
        return self.value


_OWN_ONLY = {
    Action.VIEW: "see",
    Action.RESUME: "resume",
    Action.STOP: "stop",
    Action.DOWNLOAD: "download",
}
_TEACHER_ONLY = {Action.REMOVE: "remove runs", Action.MANAGE: "change the class's settings"}


def authorize(user: User, action: Action, run: RunInfo | None = None, settings: ClassSettings | None = None) -> None:
    """Return if `user` may do `action` (on `run`); raise PermissionDenied saying why not otherwise."""
    if user.is_teacher:
        return
    if action in _TEACHER_ONLY:
        raise PermissionDenied(f"only a teacher can {_TEACHER_ONLY[action]} — ask your teacher")
    if action in (Action.LAUNCH, Action.RESUME) and settings is not None and not settings.submissions_open:
        raise PermissionDenied(
            "submissions are closed: your teacher has closed the class, so no run can be launched or resumed "
            "(you can still watch and stop your own runs)"
        )
    if action in _OWN_ONLY:
        if run is None:
            raise PermissionDenied(f"say which run to {_OWN_ONLY[action]}")
        if run.owner != user.name:
            raise PermissionDenied(
                f"run {run.name} is not yours: you can only {_OWN_ONLY[action]} your own runs "
                "(everyone's results are on the Leaderboard)"
            )


class ClassRuns:
    """The runs as one user may reach them: listing, launching, stopping, resuming, downloading, removing."""

    def __init__(
        self,
        user: User,
        runs_dir: str | os.PathLike | None = None,
        executor: str | None = None,
        **executor_options: Any,
    ):
        self.user = user
        self.runs_dir = runs_dir
        self.root = runs_root(runs_dir)
        self.settings = load_settings(runs_dir)
        self.executor_name, self.executor_options = executor, executor_options

    # ------------------------------------------------------------ seeing

    def may(self, action: Action, run: RunInfo | None = None) -> bool:
        """Whether the user may do `action` (on `run`): what a page asks before it draws a button."""
        try:
            authorize(self.user, action, run, self.settings)
        except PermissionDenied:
            return False
        return True

    def list(self) -> list[RunInfo]:
        """The runs the user may see, newest first: a student's own, or all of them for a teacher."""
        return [info for info in list_runs(self.root) if self.may(Action.VIEW, info)]

    def info(self, name: str, action: Action = Action.VIEW) -> RunInfo:
        """One run by name (a name under the runs root, never a path), checked for `action`."""
        try:
            path = resolve_inside(self.root, name)  # a name under the root: no path, no link leading out
        except PathError as err:
            raise RunError(f"no run {name!r}: {err}") from None
        if not (path / CONFIG_FILE).is_file():
            raise RunError(f"no run {name!r}: pick one of the runs listed")
        info = run_info(path)
        authorize(self.user, action, info, self.settings)
        return info

    def metrics(self, name: str, kind: str | None = None) -> list[dict[str, Any]]:
        """A run's metrics lines (see s7core.runs.read_metrics), for its owner or a teacher."""
        return read_metrics(self.info(name, Action.DOWNLOAD).path, kind)

    def checkpoint(self, name: str, which: str = "best") -> Path | None:
        """The file of a run's weights to download (see s7core.runs.checkpoint_path), for its owner or a teacher."""
        return checkpoint_path(self.info(name, Action.DOWNLOAD).path, which)

    def active_runs(self, owner: str | None) -> list[RunInfo]:
        """The queued or running runs of one owner."""
        return [i for i in list_runs(self.root) if i.owner == owner and i.state in ("queued", "running")]

    # ------------------------------------------------------------ doing

    def launch(
        self,
        spec: NetworkSpec,
        config: TrainConfig,
        name: str | None = None,
        recipe: str | None = None,
        data_dir: str | os.PathLike | None = None,
        max_concurrent: int | None = None,
        resources: Resources | None = None,
    ) -> tuple[Path, RunStatus]:
        """Make a run owned by the user and start it (or queue it) with `resources` (CPUs, GPUs); the run folder
        and its status."""
        authorize(self.user, Action.LAUNCH, None, self.settings)
        if self.settings.enabled and data_dir is not None and not self.user.is_teacher:
            raise PermissionDenied("the data folder is the class's, set by your teacher: launch without one")
        executor = self._executor(max_concurrent)
        self._check_resources(resources)
        if resources is not None:
            executor.check_launch(resources)  # before a run folder is made for a request that can never run
        with self._launch_lock():
            self._check_limit(exclude=None)
            run_dir = create_run(
                spec, config, self.root, name, data_dir or self._class_data_dir(), recipe, owner=self.user.owner
            )
            return run_dir, executor.start(run_dir, resources)

    def resume(self, name: str, max_concurrent: int | None = None, resources: Resources | None = None) -> RunStatus:
        """Start a stopped or failed run again from its last checkpoint (or queue it)."""
        info = self.info(name, Action.RESUME)
        self._check_resources(resources or Resources.from_dict(read_status(info.path).resources))  # caps may be new
        with self._launch_lock():
            self._check_limit(exclude=info.name, owner=info.owner)
            return self._executor(max_concurrent).start(info.path, resources)

    def stop(self, name: str) -> RunStatus:
        """Ask a run to stop after saving, or take it off the queue (through the executor that launched it)."""
        info = self.info(name, Action.STOP)
        return executor_for(info.path).stop(info.path)

    def remove(self, name: str) -> None:
        """Delete a run folder and everything in it (a teacher's action; an active run must be stopped first)."""
        info = self.info(name, Action.REMOVE)
        if executor_for(info.path).state(info.path).state.active:
            raise RunError(f"run {name} is {info.state}: stop it first, then remove it")
        shutil.rmtree(info.path)

    def change_settings(self, **changes: Any) -> ClassSettings:
        """Change the class's settings (a teacher's action); a data folder must hold CIFAR-10."""
        authorize(self.user, Action.MANAGE, None, self.settings)
        if changes.get("data_dir") is not None:
            changes["data_dir"] = checked_data_dir(changes["data_dir"])
        self.settings = change_settings(self.runs_dir, **changes)
        return self.settings

    def refresh(self) -> None:
        """Let the executor correct vanished runs and start queued ones (any user's poll keeps the queue moving)."""
        refresh_runs(self.root)

    # ------------------------------------------------------------ helpers

    def _executor(self, max_concurrent: int | None):
        """The executor that starts runs; in class mode the class's own limit of runs at once, not the caller's."""
        slots = self.settings.max_concurrent if self.settings.enabled else (max_concurrent or 1)
        return get_executor(self.executor_name, runs_dir=self.root, max_concurrent=slots, **self.executor_options)

    def _class_data_dir(self) -> str | None:
        return self.settings.data_dir if self.settings.enabled else None

    def _check_resources(self, resources: Resources | None) -> None:
        """Refuse a student's request for more CPUs or GPUs than the class allows one run (automatic, 0, fits)."""
        if not self.settings.enabled or self.user.is_teacher or resources is None:
            return
        cpus, gpus = self.settings.max_cpus_per_run, self.settings.max_gpus_per_run
        if resources.cpus > cpus:
            raise PermissionDenied(
                f"the run asks for {resources.cpus} CPU cores; the class allows at most {cpus} per run (your "
                f"teacher's setting) — ask for {cpus} or fewer, or 0 for the automatic choice"
            )
        if resources.gpus > gpus:
            if gpus:
                allowed, fewer = f"at most {gpus:g} GPUs per run (your teacher's setting)", f"ask for {gpus:g} or fewer"
            else:
                allowed, fewer = "no GPUs: its runs train on CPUs", "ask for 0 GPUs"
            raise PermissionDenied(f"the run asks for {resources.gpus:g} GPUs; the class allows {allowed} — {fewer}")

    def _check_limit(self, exclude: str | None, owner: str | None = None) -> None:
        """Refuse a student's launch beyond the per-student limit of queued + running runs."""
        if not self.settings.enabled or self.user.is_teacher:
            return
        limit = self.settings.max_active_per_student
        active = [i for i in self.active_runs(owner or self.user.owner) if i.name != exclude]
        if len(active) >= limit:
            names = ", ".join(sorted(i.name for i in active))
            raise PermissionDenied(
                f"you already have {len(active)} run{'s' if len(active) > 1 else ''} queued or running ({names}); "
                f"the class allows {limit} — stop one, or wait until one ends"
            )

    @contextlib.contextmanager
    def _launch_lock(self) -> Iterator[None]:
        if not self.settings.enabled:
            yield
            return
        with open(private_folder(self.runs_dir) / LAUNCH_LOCK, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def runs_for(user: User, runs_dir: str | os.PathLike | None = None, **executor_options: Any) -> ClassRuns:
    """The runs as `user` may reach them (see ClassRuns)."""
    return ClassRuns(user, runs_dir, **executor_options)


def command_line_runs(runs_dir: str | os.PathLike | None = None, **executor_options: Any) -> ClassRuns:
    """The runs as the command line reaches them: with a teacher's rights."""
    return ClassRuns(COMMAND_LINE, runs_dir, **executor_options)
