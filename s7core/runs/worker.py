"""What the process training a run does: train inside the run folder from its last checkpoint, keeping it current.

`python -m s7core train --run-dir RUN --resume` calls `execute_run`, whichever executor launched it. The folder is
opened once; the run's config and last checkpoint are read from it, this process is recorded as the run's trainer,
and the training loop's callbacks (a `_Recorder`) append metrics, save checkpoints and update the status through
it. A finished run's best checkpoint is evaluated on the test set into predictions.npz. `should_stop` (SIGTERM, in
the command line) ends the run after the step in progress, with a checkpoint and the status 'stopped'.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from s7core.config import TrainConfig
from s7core.data import CifarData, load_cifar10
from s7core.device import resolve_device
from s7core.errors import UserError
from s7core.files import disk_error
from s7core.priority import as_trainer
from s7core.runs.executor import DEFAULT_EXECUTOR, get_executor
from s7core.runs.local import claim_for_this_process
from s7core.runs.results import trained_model
from s7core.runs.status import RunError, RunState, now
from s7core.runs.store import PREDICTIONS_FILE, MetricsWriter, RunFolder
from s7core.spec import NetworkSpec
from s7core.train import (
    EpochEvent,
    PlanEvent,
    PrecisionEvent,
    StepEvent,
    TrainResult,
    planned_epochs,
    score_test_set,
    train,
)

STEP_LINE_EVERY_S = 1.0  # how often a step line goes into metrics.jsonl: a live curve gains a point a second
Event = StepEvent | EpochEvent | PrecisionEvent | PlanEvent


def execute_run(
    run_dir: str | os.PathLike,
    callback: Callable[[Event], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    epochs: int | None = None,
) -> TrainResult:
    """Train a run in this process, from its last checkpoint if it has one, keeping the folder up to date.

    `epochs` raises the planned number of epochs (to train a run further). Writes status 'running' with this
    process as the trainer, then 'finished' (with predictions.npz), 'stopped' or 'failed'.
    """
    as_trainer()  # first, so torch's threads start with the trainer's priority, not the page's that launched it
    folder = RunFolder(Path(run_dir))
    try:
        spec, config, data_dir, checkpoint = _begin(folder, epochs)
    except OSError as err:  # the status could not even be written: nothing was started
        raise RunError(f"{folder.path}: {disk_error(err) or err}") from None
    try:
        data = load_cifar10(data_dir)
        with folder.open_metrics(checkpoint) as metrics:
            recorder = _Recorder(folder, metrics, callback)
            folder.update_status(message="training")
            result = train(spec, config, data, recorder.event, should_stop, checkpoint, recorder.checkpoint)
        _finish(folder, spec, config, data, result)
    except BaseException as err:
        failure = _failure(err)
        with contextlib.suppress(OSError):  # on a full disk even status.json may not fit; the log keeps the message
            folder.update_status(**failure)
        if disk_error(err):
            raise RunError(failure["message"]) from None  # one line on the command line, not a traceback
        raise
    finally:
        with contextlib.suppress(OSError):
            _free_slot(folder)
    return result


def _begin(folder: RunFolder, epochs: int | None) -> tuple[NetworkSpec, TrainConfig, Path, dict[str, Any] | None]:
    """Record this process as the run's trainer; the run's spec, config, data folder and last checkpoint."""
    claim = claim_for_this_process(folder)
    if epochs is not None:
        folder.set_epochs(epochs)
    spec, config, meta = folder.read_config()
    _clear_half_written(folder)
    try:
        checkpoint = folder.latest_checkpoint()
    except RunError as err:  # a damaged checkpoint: the run list must say so, not keep its last state
        folder.update_status(state=RunState.FAILED, message=str(err))
        raise
    done, epochs = (checkpoint["epoch"] if checkpoint else 0), planned_epochs(config, checkpoint)
    if done >= epochs and (folder.path / PREDICTIONS_FILE).exists():
        raise RunError(f"run {folder.name} already trained all {epochs} epochs — raise --epochs to go on")
    # all epochs done but no predictions: the last session ended while evaluating; train() returns at once
    folder.update_status(
        state=RunState.RUNNING, epochs=epochs, epoch=done, message="loading data", started_at=now(), **claim
    )
    return spec, config, Path(meta["data_dir"]), checkpoint


class _Recorder:
    """The training loop's callbacks: metrics lines, checkpoints and status updates, into the run folder."""

    def __init__(self, folder: RunFolder, metrics: MetricsWriter, callback: Callable[[Event], None] | None):
        self.folder, self.metrics, self.callback = folder, metrics, callback
        self.last_step_line = 0.0  # time.monotonic() of the last step line written

    def event(self, event: Event) -> None:
        """An epoch line (and the status) after every epoch; a step line every few seconds and at an epoch's end."""
        if isinstance(event, PrecisionEvent | PlanEvent):  # chosen before training: in the log and the config
            self.metrics.write(event.to_dict())
            self.folder.record_measured(event.kind, {k: v for k, v in event.to_dict().items() if k != "kind"})
            if isinstance(event, PlanEvent):  # the epochs the time budget bought: what the run list counts to
                self.folder.update_status(epochs=event.epochs)
        elif isinstance(event, EpochEvent):
            self.metrics.write(event.to_dict())
            whole = event.test_acc is not None and not event.test_subset
            tested = {"final_accuracy": event.test_acc} if whole else {}
            self.folder.update_status(epoch=event.epoch, message=f"epoch {event.epoch}", **tested)
        elif time.monotonic() - self.last_step_line >= STEP_LINE_EVERY_S or event.step == event.steps_per_epoch:
            self.metrics.write({**event.to_dict(), "wall": time.time()})  # lets a reader count the time left down
            self.last_step_line = time.monotonic()
        if self.callback:
            self.callback(event)

    def checkpoint(self, state: dict[str, Any], best: bool) -> None:
        """Save the checkpoint (as the best one too, when it is), and the best accuracy in the status."""
        self.folder.save_checkpoint(state, best)
        if best:
            self.folder.update_status(best_accuracy=state["best_accuracy"], best_epoch=state["best_epoch"])


def _finish(folder: RunFolder, spec: NetworkSpec, config: TrainConfig, data: CifarData, result: TrainResult) -> None:
    """The last status of a run that ended by itself or was stopped; a finished run's predictions first."""
    if result.stopped:
        folder.update_status(state=RunState.STOPPED, message=f"stopped during epoch {result.epochs_done + 1}")
        return
    evaluation = result.final_evaluation
    if evaluation is None or result.best_epoch != result.epochs_done:  # the best checkpoint is an earlier one
        model = trained_model(folder, spec, "best").to(resolve_device(config.device))
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        evaluation = score_test_set(model, data, config, result.precision)
    folder.save_predictions(evaluation)
    # The saved evaluation is the run's one accuracy: the same scoring (precision, test-time augmentation) as
    # the epoch lines, and the very evaluation of the last one when that is the best checkpoint.
    folder.update_status(state=RunState.FINISHED, message="finished", best_accuracy=evaluation.accuracy)


def _failure(err: BaseException) -> dict[str, Any]:
    """The status of a run that an error (or a second Ctrl-C) ended."""
    if isinstance(err, KeyboardInterrupt):
        return {"state": RunState.STOPPED, "message": "interrupted; resume to continue"}
    message = str(err) if isinstance(err, UserError) else disk_error(err) or f"{type(err).__name__}: {err}"
    return {"state": RunState.FAILED, "message": message}


def _clear_half_written(folder: RunFolder) -> None:
    """Remove the temp files a killed session left mid-write (atomic_write's '.NAME.*.tmp'); they never count."""
    for path in folder.path.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()


def _free_slot(folder: RunFolder) -> None:
    """Tell the executor that launched the run that its slot is free (the local one starts the next queued run)."""
    executor = folder.read_status().executor or DEFAULT_EXECUTOR  # never $S7_BACKEND: the run's own executor
    get_executor(executor, runs_dir=folder.path.parent).run_ended(folder.path)
