"""Comparing runs: one named accuracy, the settings that differ, seed groups and their band."""

from __future__ import annotations

import numpy as np

from s7core.compare import differing_settings, mean_band, named_accuracy, seed_groups
from s7core.config import TrainConfig, settings
from s7core.evaluate import Evaluation
from s7core.runs.status import RunInfo, RunState
from s7core.spec import get_preset


def _info(**kw) -> RunInfo:
    values = dict(state=RunState.FINISHED, epoch=5, epochs=5, best_accuracy=0.7532, best_epoch=4, name="r", path="/r")
    return RunInfo(**(values | kw))


def test_a_finished_run_quotes_its_saved_evaluation_and_says_which_it_is() -> None:
    labels = np.array([0, 1, 1, 0])
    ev = Evaluation(labels, np.array([0, 1, 0, 0]), np.full((4, 2), 0.5, np.float32), 0.5, ("a", "b"))
    named = named_accuracy(_info(), TrainConfig(tta_flip=True, val_split=5000), ev)
    assert named.value == 0.75
    assert named.label == "best checkpoint (epoch 4 of 5, by validation accuracy), flip test-time augmentation"


def test_a_running_run_quotes_its_best_so_far() -> None:
    named = named_accuracy(_info(state=RunState.RUNNING), TrainConfig(val_split=0))
    assert named.value == 0.7532
    assert named.label == "best checkpoint so far (epoch 4 of 5, by test accuracy), no test-time augmentation"
    assert named_accuracy(_info(best_accuracy=None, best_epoch=None), TrainConfig()).value is None


def test_only_the_settings_that_differ_are_listed_by_their_titles() -> None:
    titles = {s.path: s.title for s in settings()}
    a, b = TrainConfig(), TrainConfig(lr=0.2, batch_size=256)
    rows = differing_settings({"one": (get_preset("tiny"), a, "default"), "two": (get_preset("fast"), b, "default")})
    assert [r["setting"] for r in rows] == ["network", titles["lr"], titles["batch_size"]]  # declaration order
    assert rows[0] == {"setting": "network", "one": "tiny", "two": "fast"}
    assert rows[1]["two"] == 0.2 and differing_settings({"one": (get_preset("tiny"), a, None)}) == []


def test_runs_that_differ_only_by_seed_form_a_group() -> None:
    tiny = get_preset("tiny")
    runs = {
        "s0": (tiny, TrainConfig(seed=0)),
        "s1": (tiny, TrainConfig(seed=1)),
        "lr": (tiny, TrainConfig(seed=2, lr=0.3)),
        "s2": (tiny, TrainConfig(seed=2)),
    }
    assert seed_groups(runs) == [["s0", "s1", "s2"], ["lr"]]


def test_the_band_is_the_mean_and_range_over_common_epochs() -> None:
    band = mean_band([{1: 0.5, 2: 0.7}, {1: 0.7, 2: 0.9, 3: 1.0}])
    assert band.epochs == [1, 2] and band.mean == [0.6, 0.8] and band.low == [0.5, 0.7] and band.high == [0.7, 0.9]
