"""Comparing runs: one named accuracy per run, the settings that differ, and runs that differ only by seed.

Plain data in, plain data out; the Results page draws what these return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from s7core.config import TrainConfig, settings
from s7core.evaluate import Evaluation
from s7core.runs.status import RunInfo, RunState
from s7core.spec import NetworkSpec

SEED = "seed"  # the setting whose value alone may differ inside a seed group


@dataclass(frozen=True)
class NamedAccuracy:
    """A run's one test accuracy, with what it is the accuracy of."""

    value: float | None  # 0..1
    label: str  # "best checkpoint (epoch 4 of 5, by validation accuracy), flip TTA"


def named_accuracy(info: RunInfo, config: TrainConfig, evaluation: Evaluation | None = None) -> NamedAccuracy:
    """The accuracy to quote for a run, and which one it is: best or final, chosen how, with or without TTA.

    A finished run quotes its saved evaluation of the best checkpoint; a run still training quotes the best
    test accuracy measured so far.
    """
    tta = [name for name, on in (("flip", config.tta_flip), ("shift", config.tta_shift)) if on]
    views = f", {' + '.join(tta)} test-time augmentation" if tta else ", no test-time augmentation"
    chosen = "by validation accuracy" if config.val_split else "by test accuracy"
    epoch = f"epoch {info.best_epoch} of {info.epochs}, " if info.best_epoch else ""
    if evaluation is not None:
        return NamedAccuracy(evaluation.accuracy, f"best checkpoint ({epoch}{chosen}){views}")
    if info.best_accuracy is None:
        return NamedAccuracy(None, "no test accuracy measured yet")
    when = "so far" if info.state is RunState.RUNNING else f"({info.state})"
    return NamedAccuracy(info.best_accuracy, f"best checkpoint {when} ({epoch}{chosen}){views}")


def _flat(config: TrainConfig) -> dict[str, Any]:
    """Every declared setting of a config by path ("lr", "augment.cutout")."""
    data = config.to_dict()
    values = {}
    for s in settings():
        section, _, name = s.path.rpartition(".")
        values[s.path] = (data[section] if section else data)[name]
    return values


def differing_settings(runs: dict[str, tuple[NetworkSpec, TrainConfig, str | None]]) -> list[dict[str, Any]]:
    """One row per setting whose value differs between the runs: {"setting": title, run name: value, ...}.

    The network (by name, and by its layers when two networks share a name) and the recipe come first.
    """
    if len(runs) < 2:
        return []
    names = list(runs)
    rows = []
    specs = {n: runs[n][0] for n in names}
    if len({s.to_json() for s in specs.values()}) > 1:
        same_name = len({s.name for s in specs.values()}) == 1
        rows.append({"setting": "network", **{n: specs[n].name + (" (edited)" if same_name else "") for n in names}})
    recipes = {n: runs[n][2] or "custom" for n in names}
    if len(set(recipes.values())) > 1:
        rows.append({"setting": "recipe", **recipes})
    flat = {n: _flat(runs[n][1]) for n in names}
    for s in settings():
        values = {n: flat[n][s.path] for n in names}
        if len({repr(v) for v in values.values()}) > 1:
            rows.append({"setting": s.title, **values})
    return rows


def seed_groups(runs: dict[str, tuple[NetworkSpec, TrainConfig]]) -> list[list[str]]:
    """The runs grouped so that runs in a group differ only by their seed; groups in first-seen order."""
    groups: dict[str, list[str]] = {}
    for name, (spec, config) in runs.items():
        key = repr((spec.to_json(), sorted((k, repr(v)) for k, v in _flat(config).items() if k != SEED)))
        groups.setdefault(key, []).append(name)
    return list(groups.values())


@dataclass(frozen=True)
class Band:
    """The mean of a metric over several runs, and its lowest and highest value, epoch by epoch."""

    epochs: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    runs: int


def mean_band(curves: list[dict[int, float]]) -> Band:
    """Mean, min and max of several {epoch: value} curves, over the epochs every curve has."""
    common = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    values = np.array([[c[e] for e in common] for c in curves], dtype=float).reshape(len(curves), len(common))
    return Band(common, values.mean(0).tolist(), values.min(0).tolist(), values.max(0).tolist(), len(curves))
