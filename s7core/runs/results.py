"""Using a trained run: its model from a checkpoint, its saved predictions, a fresh evaluation."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from s7core.data import load_cifar10
from s7core.evaluate import Evaluation, evaluate
from s7core.model import build_model
from s7core.runs.status import RunError
from s7core.runs.store import LATEST_CHECKPOINT, RunFolder, load_checkpoint
from s7core.spec import NetworkSpec


def trained_model(folder: RunFolder, spec: NetworkSpec, which: str = "best") -> nn.Module:
    """The run's model of `spec` on the CPU in eval mode, from its `which` checkpoint (see `load_run_model`)."""
    path = folder.checkpoint_path(which) or folder.path / LATEST_CHECKPOINT  # checks `which`
    state = load_checkpoint(path)
    model = build_model(spec)
    try:
        model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
    except RuntimeError as err:
        raise RunError(f"{path}: the weights do not fit the run's network ({err}) — start a new run") from None
    return model.eval()


def load_run_model(run_dir: str | os.PathLike, which: str = "best") -> nn.Module:
    """The run's model on the CPU in eval mode, from checkpoint_best.pt (falling back to the latest) or
    checkpoint_latest.pt; the averaged weights when the run used ema."""
    folder = RunFolder(Path(run_dir))
    return trained_model(folder, folder.read_config()[0], which)


def load_predictions(run_dir: str | os.PathLike) -> Evaluation:
    """The run's saved test-set evaluation (written when it finished)."""
    return RunFolder(Path(run_dir)).load_predictions()


def evaluate_run(
    run_dir: str | os.PathLike, which: str = "best", tta_flip: bool = False, tta_shift: bool = False
) -> Evaluation:
    """A fresh evaluation of the run's model on the test set of its data folder."""
    model = load_run_model(run_dir, which)
    data = load_cifar10(RunFolder(Path(run_dir)).data_dir())
    return evaluate(
        model, data.test_images, data.test_labels, tta_flip=tta_flip, tta_shift=tta_shift, classes=data.classes
    )
