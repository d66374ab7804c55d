"""The time estimate before a launch: a short measured speed, and the run's time from it."""

from __future__ import annotations

import pytest

from s7core import speed
from s7core.config import TrainConfig
from s7core.spec import get_preset


def test_a_measured_speed_is_positive_and_kept_per_network() -> None:
    config = TrainConfig(batch_size=32, device="cpu", precision="fp32")
    first = speed.measure_speed(get_preset("tiny"), config)
    assert first.train_images_per_s > 0 and first.eval_images_per_s > 0 and first.batch == 32
    assert speed.measure_speed(get_preset("tiny"), config) is first
    assert speed.measure_speed(get_preset("tiny"), config.replace(batch_size=16)) is not first


def test_the_estimate_counts_training_and_every_evaluation() -> None:
    rate = speed.Speed(100.0, 1000.0, 100, "cpu", "fp32")
    config = TrainConfig(epochs=3, batch_size=100, val_split=0, eval_every=1)
    estimate = speed.estimate_run(config, rate, 1050)  # 10 steps of 100 an epoch; 50 images dropped
    assert estimate.train_images == 1000 and estimate.evaluations == 4
    assert estimate.total_s == pytest.approx(3 * 1000 / 100 / speed.SUSTAINED_SHARE + 4 * speed.TEST_IMAGES / 1000)
    capped = speed.estimate_run(config.replace(max_steps=5), rate, 1050)
    # the last epoch is the best checkpoint: one scoring
    assert capped.total_s == pytest.approx(5 * 100 / 100 / speed.SUSTAINED_SHARE + 1 * speed.TEST_IMAGES / 1000)


def test_a_validation_split_is_evaluated_every_epoch() -> None:
    rate = speed.Speed(100.0, 1000.0, 100, "cpu", "fp32")
    config = TrainConfig(epochs=2, batch_size=100, val_split=500, eval_every=5)
    estimate = speed.estimate_run(config, rate, 1500)
    train_s = 2 * 1000 / 100 / speed.SUSTAINED_SHARE
    assert estimate.total_s == pytest.approx(train_s + (2 * 500 + 3 * speed.TEST_IMAGES) / 1000)
