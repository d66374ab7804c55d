"""How well a trained model does on a labelled image set: accuracy, loss, per-class figures, confusion, mistakes.

`evaluate(model, images, labels)` runs the model once over the images (under inference mode, in eval mode,
in batches) and keeps every per-image prediction and class probability; everything else (accuracy,
confusion matrix, precision, recall) is derived from those arrays, so a saved `Evaluation` holds only them.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from s7core.data import CIFAR10_CLASSES, normalize
from s7core.device import autocast
from s7core.errors import UserError
from s7core.files import atomic_write
from s7core.model import eval_mode

SORTS = ("confidence-desc", "confidence-asc", "index")


class EvaluationFileError(UserError):
    """A predictions file that cannot be read."""


@dataclass
class Evaluation:
    """Per-image results of one pass over a labelled set; the summary figures are derived properties."""

    labels: np.ndarray  # (N,) int64, true class of each image
    predictions: np.ndarray  # (N,) int64, predicted class (argmax of probabilities)
    probabilities: np.ndarray  # (N, C) float32, softmax class probabilities
    loss: float  # mean cross-entropy over the set, in nats
    classes: tuple[str, ...] = tuple(CIFAR10_CLASSES)

    @property
    def count(self) -> int:
        return int(self.labels.shape[0])

    @property
    def accuracy(self) -> float:
        """Fraction of images classified correctly (0..1)."""
        return float((self.predictions == self.labels).mean()) if self.count else 0.0

    @property
    def confusion(self) -> np.ndarray:
        """(C, C) int64 counts; row = true class, column = predicted class."""
        c = len(self.classes)
        return np.bincount(self.labels * c + self.predictions, minlength=c * c).reshape(c, c).astype(np.int64)

    @property
    def per_class_accuracy(self) -> np.ndarray:
        """(C,) float64: recall of each class, i.e. the fraction of its images classified as it; nan if absent."""
        return self.recall

    @property
    def recall(self) -> np.ndarray:
        """(C,) float64: of the images of each class, the fraction predicted as that class (nan if none)."""
        conf = self.confusion
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(conf) / conf.sum(axis=1)

    @property
    def precision(self) -> np.ndarray:
        """(C,) float64: of the images predicted as each class, the fraction truly of it (nan if none)."""
        conf = self.confusion
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(conf) / conf.sum(axis=0)

    def top_k(self, index: int, k: int = 3) -> list[tuple[str, float]]:
        """The k most probable classes of image `index`, with their probabilities, most probable first."""
        probs = self.probabilities[index]
        return [(self.classes[c], float(probs[c])) for c in np.argsort(-probs, kind="stable")[:k]]

    @property
    def confidence(self) -> np.ndarray:
        """(N,) float32: the probability the model gave its own prediction."""
        return self.probabilities[np.arange(self.count), self.predictions]

    def summary(self) -> dict:
        """The headline figures as plain JSON-ready data."""
        return {
            "count": self.count,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "classes": list(self.classes),
            "per_class_accuracy": _floats(self.per_class_accuracy),
            "precision": _floats(self.precision),
            "recall": _floats(self.recall),
            "confusion": self.confusion.tolist(),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the arrays to an .npz file atomically (temp file in the same folder, then rename)."""
        path = Path(path)
        with atomic_write(path) as f:
            np.savez(
                f,
                labels=self.labels.astype(np.int64),
                predictions=self.predictions.astype(np.int64),
                probabilities=self.probabilities.astype(np.float32),
                loss=np.float64(self.loss),
                classes=np.array(self.classes, dtype=np.str_),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Evaluation:
        """Read an .npz written by `save`; a missing or damaged file is an EvaluationFileError."""
        path = Path(path)
        if not path.is_file():
            raise EvaluationFileError(f"{path}: no predictions file here — evaluate the run to create it")
        try:
            with np.load(path, allow_pickle=False) as z:
                ev = cls(
                    labels=z["labels"].astype(np.int64),
                    predictions=z["predictions"].astype(np.int64),
                    probabilities=z["probabilities"].astype(np.float32),
                    loss=float(z["loss"]),
                    classes=tuple(str(c) for c in z["classes"]),
                )
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise EvaluationFileError(
                f"{path}: the predictions file is damaged ({err}) — delete it and evaluate the run again"
            ) from None
        if ev.probabilities.shape != (ev.count, len(ev.classes)) or ev.predictions.shape != ev.labels.shape:
            raise EvaluationFileError(f"{path}: array shapes disagree — delete it and evaluate the run again")
        return ev


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Images (..., H, W) moved down `dy` and right `dx` pixels (negative: up, left), the uncovered border
    filled by reflection, as the training crops pad."""
    if not dy and not dx:
        return x
    p = max(abs(dy), abs(dx))
    h, w = x.shape[-2:]
    return F.pad(x, (p, p, p, p), mode="reflect")[..., p - dy : p - dy + h, p - dx : p - dx + w]


# Translation test-time augmentation: the image itself, and moved one pixel up-left and down-right,
# each weighted as here.
SHIFT_VIEWS = ((0.5, 0, 0), (0.25, -1, -1), (0.25, 1, 1))  # (weight, dy, dx)


def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 500,
    tta_flip: bool = False,
    precision: str = "fp32",
    channels_last: bool = False,
    tta_shift: bool = False,
) -> torch.Tensor:
    """(N, C) float32 logits of uint8 (N, 3, H, W) images, on the images' device.

    With tta_flip, the mean of the logits of each image and its mirror image; with tta_shift, the weighted
    mean over SHIFT_VIEWS (each one mirrored too when tta_flip)."""
    device = images.device
    views = SHIFT_VIEWS if tta_shift else ((1.0, 0, 0),)
    out = []
    with eval_mode(model), torch.inference_mode(), autocast(device, precision):
        for i in range(0, images.shape[0], batch_size):
            x = normalize(images[i : i + batch_size])  # (B, 3, H, W) float
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = 0
            for weight, dy, dx in views:
                v = shifted(x, dy, dx)
                view_logits = model(v).float()  # (B, C)
                if tta_flip:
                    view_logits = 0.5 * (view_logits + model(v.flip(3)).float())
                logits = logits + weight * view_logits
            out.append(logits)
    return torch.cat(out) if out else torch.empty(0, 0, device=device)


def loss_and_accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500, **kw
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (0..1) of the model on uint8 images with int64 labels."""
    if images.shape[0] == 0:
        return float("nan"), float("nan")
    logits = predict_logits(model, images, batch_size, **kw)
    labels = labels.to(logits.device)
    loss = F.cross_entropy(logits, labels).item()
    acc = (logits.argmax(1) == labels).float().mean().item()
    return loss, acc


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 500,
    device: str | torch.device | None = None,
    tta_flip: bool = False,
    classes: Sequence[str] = CIFAR10_CLASSES,
    precision: str = "fp32",
    channels_last: bool = False,
    tta_shift: bool = False,
) -> Evaluation:
    """Run the model over uint8 (N, 3, H, W) images and keep every prediction; the model's mode is restored."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    images = torch.as_tensor(images).to(device)
    labels = torch.as_tensor(labels, dtype=torch.int64).to(device)
    if images.shape[0] != labels.shape[0]:
        raise UserError(f"{images.shape[0]} images but {labels.shape[0]} labels: give one label per image")
    logits = predict_logits(model, images, batch_size, tta_flip, precision, channels_last, tta_shift)
    if logits.shape[0] and logits.shape[1] != len(classes):
        raise UserError(f"the model predicts {logits.shape[1]} classes but {len(classes)} class names were given")
    loss = F.cross_entropy(logits, labels).item() if logits.shape[0] else float("nan")
    probs = logits.softmax(1)
    return Evaluation(
        labels=labels.cpu().numpy().astype(np.int64),
        predictions=probs.argmax(1).cpu().numpy().astype(np.int64),
        probabilities=probs.cpu().numpy().astype(np.float32),
        loss=float(loss),
        classes=tuple(classes),
    )


def _class_index(evaluation: Evaluation, cls: int | str | None, what: str) -> int | None:
    if cls is None or (isinstance(cls, int) and 0 <= cls < len(evaluation.classes)):
        return cls
    if isinstance(cls, str) and cls in evaluation.classes:
        return evaluation.classes.index(cls)
    raise UserError(f"{what} {cls!r} is not a class: use a name from {', '.join(evaluation.classes)} or its number")


def cell_images(
    evaluation: Evaluation, true_class: int | str, predicted_class: int | str, sort: str = "confidence-desc"
) -> np.ndarray:
    """Indices of the images in one confusion-matrix cell: of `true_class`, predicted as `predicted_class`.

    A diagonal cell holds the images classified correctly; any other cell holds one kind of mistake.
    """
    if sort not in SORTS:
        raise UserError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    t = _class_index(evaluation, true_class, "true class")
    p = _class_index(evaluation, predicted_class, "predicted class")
    idx = np.flatnonzero((evaluation.labels == t) & (evaluation.predictions == p))
    if sort == "index":
        return idx
    conf = evaluation.confidence[idx]
    return idx[np.argsort(-conf if sort == "confidence-desc" else conf, kind="stable")]


def misclassified(
    evaluation: Evaluation,
    true_class: int | str | None = None,
    predicted_class: int | str | None = None,
    sort: str = "confidence-desc",
) -> np.ndarray:
    """Indices of the wrongly classified images, optionally of one true and/or predicted class.

    sort: "confidence-desc" (most confident mistakes first), "confidence-asc", or "index".
    """
    if sort not in SORTS:
        raise UserError(f"unknown sort {sort!r}: use one of {', '.join(SORTS)}")
    t = _class_index(evaluation, true_class, "true class")
    p = _class_index(evaluation, predicted_class, "predicted class")
    wrong = evaluation.predictions != evaluation.labels
    if t is not None:
        wrong &= evaluation.labels == t
    if p is not None:
        wrong &= evaluation.predictions == p
    idx = np.flatnonzero(wrong)
    if sort == "index":
        return idx
    conf = evaluation.confidence[idx]
    order = np.argsort(-conf if sort == "confidence-desc" else conf, kind="stable")
    return idx[order]
