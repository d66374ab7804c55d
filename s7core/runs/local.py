"""The local executor: each run trains in a background process on this machine, `max_concurrent` at once at most.

`start` launches `python -m s7core train --run-dir RUN --resume` in its own session, so that it outlives the page
or shell that started it, with its output going to train.log; the run's handle is the pid and the process's start
time. When `max_concurrent` runs already train here the run is queued instead, with that limit. The queue is the
run folders themselves (queued runs, oldest first), changed only under an flock on ROOT/.queue.lock so that two
callers never start the same run. `refresh` starts queued runs while slots are free: the trainer calls it as its
run ends, and the Train page and `python -m s7core runs` call it as they poll.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import s7core
from s7core.config import Resources
from s7core.runs.executor import LOCAL, Executor, check_can_start, launch_resources
from s7core.runs.status import RunError, RunState, RunStatus, now
from s7core.runs.store import LOG_FILE, RunFolder, run_folders, runs_root
from s7core.stopping import sigterm_held

QUEUE_LOCK = ".queue.lock"
FAILED_LOG_LINES = 3  # lines of train.log quoted in the message of a run whose process vanished


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks since boot) of a process, from /proc; None if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # fields from 3 on; the name in () may hold spaces
    return fields[0], int(fields[19])


def process_start(pid: int) -> int | None:
    """The start time of a process, to tell it from a later one that reuses its pid."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def process_alive(pid: int | None, start: int | None = None) -> bool:
    """Whether process `pid` (started at `start`, when given) still runs; a zombie counts as ended."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but belongs to someone else: the start time decides
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self/stat").exists()  # no /proc on this system: trust os.kill
    return stat[0] not in ("Z", "X") and (start is None or stat[1] == start)


def process_handle(pid: int) -> dict[str, Any]:
    """The handle of a local job: the pid of its process and that process's start time."""
    return {"pid": pid, "pid_start": process_start(pid)}


def _alive(status: RunStatus) -> bool:
    return process_alive(status.handle.get("pid"), status.handle.get("pid_start"))


def _is_local(status: RunStatus) -> bool:
    return status.executor in (None, LOCAL)  # no executor recorded: the default one, this


@contextlib.contextmanager
def _queue_lock(root: Path) -> Iterator[None]:
    """Hold the queue of the runs under `root` (not re-entrant: each flock is its own open file)."""
    with open(root / QUEUE_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def claim_for_this_process(folder: RunFolder) -> dict[str, Any]:
    """The status fields that make this process the run's trainer; refused while another live process trains it."""
    status = folder.read_status()
    if status.state.active and not _is_local(status):
        return {}  # launched by another executor, which keeps its own handle to the job
    pid = status.handle.get("pid")
    if status.state is RunState.RUNNING and pid != os.getpid() and _alive(status):
        raise RunError(f"{folder.path} is being trained by process {pid} — stop it first")
    return {"executor": LOCAL, "handle": process_handle(os.getpid())}


class LocalExecutor(Executor):
    """Background processes on this machine, with a queue beyond `max_concurrent` running runs."""

    name = LOCAL

    def __init__(self, runs_dir: str | os.PathLike | None = None, max_concurrent: int = 1):
        if max_concurrent < 1:
            raise RunError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.root = runs_root(runs_dir)
        self.max_concurrent = max_concurrent

    def start(self, run_dir: str | os.PathLike, resources: Resources | None = None) -> RunStatus:
        """Launch the run in the background, or queue it when `max_concurrent` runs under its root already run."""
        folder = RunFolder(Path(run_dir))
        folder.read_config()  # refuse a damaged config before launching anything
        status = self.state(folder.path)
        check_can_start(folder, status)
        resources = launch_resources(status, resources)
        self.check_launch(resources)
        with _queue_lock(folder.path.parent):
            statuses = self._statuses(folder.path.parent)
            running = [p.name for p, s in statuses.items() if s.state is RunState.RUNNING and _is_local(s)]
            if len(running) < self.max_concurrent:
                folder.update_status(resources=resources.to_dict())
                return self._launch(folder)
            return folder.update_status(
                state=RunState.QUEUED,
                executor=LOCAL,
                handle={"max_concurrent": self.max_concurrent},
                resources=resources.to_dict(),
                queued_at=now("microseconds"),  # runs queued within one second keep their order
                message=f"queued: waiting for {', '.join(sorted(running))} to finish",
            )

    def check_launch(self, resources: Resources) -> None:
        """Refuse GPUs this machine does not have (here they are only checked: the device setting picks one)."""
        if not resources.gpus:
            return
        have = self.capacity().gpus
        if resources.gpus > have:
            raise RunError(
                f"the run asks for {resources.gpus:g} GPUs but this machine has {have:g} — ask for at most "
                f"{have:g}, or train on a Ray cluster that has them (--backend ray)"
            )

    def stop(self, run_dir: str | os.PathLike) -> RunStatus:
        """SIGTERM a running run (it finishes the step, saves and exits 'stopped'); take a queued one off the queue."""
        folder = RunFolder(Path(run_dir))
        with _queue_lock(folder.path.parent):  # so that refresh cannot launch a run being taken off the queue
            status = self.state(folder.path)
            if status.state.active and not _is_local(status):
                raise RunError(f"run {folder.name} was launched by the {status.executor} executor — stop it there")
            if status.state is RunState.QUEUED:
                return folder.update_status(
                    state=RunState.STOPPED, handle={}, message="removed from the queue; start it again to train"
                )
            if status.state is not RunState.RUNNING:
                raise RunError(f"run {folder.name} is not running (it is {status.state})")
            # the message goes first, so that it cannot land after the run's own last status
            stopping = folder.update_status(message="stopping: finishing the step and saving")
            with contextlib.suppress(ProcessLookupError):  # it ended on its own in the meantime
                os.kill(status.handle["pid"], signal.SIGTERM)
            return stopping

    def state(self, run_dir: str | os.PathLike) -> RunStatus:
        """The run's status; a 'running' run whose process has gone becomes 'failed', quoting the end of its log."""
        folder = RunFolder(Path(run_dir))
        status = folder.read_status()
        if status.state is not RunState.RUNNING or not _is_local(status) or _alive(status):
            return status
        latest = folder.read_status()  # the process may have written its last status just before it ended
        if latest.state is not RunState.RUNNING or latest.handle != status.handle:
            return latest
        failed = dataclasses.replace(latest, state=RunState.FAILED, message=self._vanished(folder, latest))
        return folder.write_status(failed)

    def logs(self, run_dir: str | os.PathLike, lines: int = 50) -> str:
        """The last `lines` lines of train.log ('' before the first launch)."""
        try:  # train.log stays small (a plain progress line every few seconds), so reading it whole is fine
            text = (Path(run_dir) / LOG_FILE).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:]) if lines > 0 else ""

    def refresh(self) -> None:
        """Mark runs whose process has gone as failed, then start the oldest queued runs while slots are free."""
        if not self.root.is_dir():
            return
        with _queue_lock(self.root):
            statuses = self._statuses(self.root)
            running = sum(s.state is RunState.RUNNING and _is_local(s) for s in statuses.values())
            queued = [p for p, s in statuses.items() if s.state is RunState.QUEUED and _is_local(s)]
            for path in sorted(queued, key=lambda p: (statuses[p].queued_at or "", p.name)):
                if running >= int(statuses[path].handle.get("max_concurrent", 1)):
                    break
                self._launch(RunFolder(path))
                running += 1

    def _statuses(self, root: Path) -> dict[Path, RunStatus]:
        """The corrected status of every readable run under `root` (a damaged one shows as failed in the list)."""
        statuses = {}
        for path in run_folders(root):
            with contextlib.suppress(RunError):
                statuses[path] = self.state(path)
        return statuses

    def _vanished(self, folder: RunFolder, status: RunStatus) -> str:
        message = (
            f"the training process ended unexpectedly after epoch {status.epoch} (killed?) — "
            "resume the run to continue from its last checkpoint"
        )
        lines = [line.strip() for line in self.logs(folder.path, FAILED_LOG_LINES).splitlines() if line.strip()]
        return f"{message}; train.log ends: {' | '.join(lines)}" if lines else message

    def _launch(self, folder: RunFolder) -> RunStatus:
        """Start the run's trainer as a detached process writing to train.log."""
        package_root = str(Path(s7core.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "s7core", "train", "--run-dir", str(folder.path.resolve()), "--resume"]
        cpus = Resources.from_dict(folder.read_status().resources).cpus
        command += ["--cpus", str(cpus)] if cpus else []  # 0: torch's own choice, every core
        with open(folder.path / LOG_FILE, "ab") as log:
            log.write(f"\n--- {now()} start: {' '.join(command)}\n".encode())
            log.flush()
            with sigterm_held():  # a stop sent before the trainer's handler is up waits for it instead of killing it
                proc = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,
                )  # fmt: skip
        return folder.update_status(
            state=RunState.RUNNING, executor=LOCAL, handle=process_handle(proc.pid), message="starting"
        )
