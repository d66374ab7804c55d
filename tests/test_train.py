"""The trainer: schedules, learning, determinism, the test set kept out of decisions, stopping and resuming."""

from __future__ import annotations

import dataclasses
import math
import types

import pytest
import torch

from s7core.config import OPTIMIZERS, SCHEDULES, AugmentConfig, TrainConfig
from s7core.data import load_cifar10, make_tiny_cifar10, normalize
from s7core.device import precision_cache_path
from s7core.errors import UserError
from s7core.model import build_model
from s7core.recipes import get_recipe
from s7core.spec import NetworkSpec, bn, conv, get_preset, layer, relu, sepconv, validate
from s7core.train import EpochEvent, Plateau, PrecisionEvent, StepEvent, get_lr, train


def micro_spec() -> NetworkSpec:
    """A net small enough to train in well under a second an epoch on the tiny synthetic set."""
    return validate(
        NetworkSpec(
            (conv(16, 3, 1, stride=2), bn(), relu(), sepconv(32, 3, 1, stride=2), bn(), relu(), layer("gap"),
             conv(10, 1, bias=True), layer("flatten")),
            "micro",
        )
    )  # fmt: skip


def quick_config(**changes) -> TrainConfig:
    """A config that learns the tiny set in a few epochs, in fp32: runs that are compared must not measure."""
    base = {"epochs": 3, "batch_size": 32, "lr": 0.05, "val_split": 0, "label_smoothing": 0.0, "weight_decay": 5e-4}
    base["precision"] = "fp32"  # 'auto' would time fp32 against bf16, in each process on its own
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return load_cifar10(make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200))


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- schedules


def test_onecycle_rises_to_peak_then_falls_to_zero():
    c = TrainConfig(schedule="onecycle", lr=0.1, epochs=10, warmup=0.2)
    lrs = [get_lr(c, s, 100) for s in range(1000)]
    peak = max(range(1000), key=lambda s: lrs[s])
    assert 195 <= peak <= 205 and lrs[peak] == pytest.approx(0.1, rel=0.01)
    assert lrs[0] < 0.001 and lrs[-1] < 0.001
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1 : peak + 1], strict=True))


def test_step_cosine_and_constant_schedules():
    step = TrainConfig(schedule="step", lr=0.1, epochs=30, step_size=10, gamma=0.1)
    assert [get_lr(step, e * 10, 10) for e in (0, 9, 10, 25)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cos = TrainConfig(schedule="cosine", lr=0.1, epochs=10, warmup=0.0)
    assert get_lr(cos, 500, 100) == pytest.approx(0.05, rel=0.01) and get_lr(cos, 999, 100) < 1e-5
    assert get_lr(TrainConfig(schedule="constant", lr=0.3), 12345, 10) == 0.3


def test_plateau_matches_torch_reduce_lr_on_plateau():
    metrics = [1.0, 0.9, 0.95, 0.8, 0.8, 0.7, 0.71, 0.72, 0.5]
    ours = Plateau(factor=0.5, patience=0)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    for m in metrics:
        ours.step(m)
        theirs.step(m)
        assert ours.scale == pytest.approx(opt.param_groups[0]["lr"])


# ---------------------------------------------------------------- training


def test_training_lowers_the_loss_and_learns_the_synthetic_set(tiny_data):
    events = []
    result = train(micro_spec(), quick_config(epochs=4), tiny_data, callback=events.append)
    epochs = [e for e in events if isinstance(e, EpochEvent)]
    assert [e.epoch for e in epochs] == [1, 2, 3, 4]
    assert epochs[-1].train_loss < 0.5 * epochs[0].train_loss
    assert result.final_accuracy >= 0.9 and result.best_accuracy >= result.final_accuracy
    assert result.epochs_done == 4 and result.global_step == 4 * (320 // 32) and not result.stopped


def test_step_events_come_at_most_every_half_second_plus_each_epochs_last_step(tiny_data):
    events = []
    train(micro_spec(), quick_config(epochs=2), tiny_data, callback=events.append)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [(e.epoch, e.step) for e in steps if e.step == e.steps_per_epoch] == [(1, 10), (2, 10)]
    assert len(steps) < 20
    assert all(0 <= e.accuracy <= 1 and e.loss > 0 and e.images_per_s > 0 for e in steps)
    assert all(a.elapsed_s <= b.elapsed_s for a, b in zip(steps, steps[1:], strict=False))


def test_same_seed_gives_identical_numbers_on_the_cpu(tiny_data):
    def losses(seed):
        events = []
        config = quick_config(epochs=2, seed=seed, augment=AugmentConfig(crop_padding=4, flip=True, cutout=4))
        train(micro_spec(), config, tiny_data, callback=events.append)
        return [(e.train_loss, e.test_loss) for e in events if isinstance(e, EpochEvent)]

    first = losses(seed=3)
    assert losses(seed=3) == first
    assert losses(seed=4) != first


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_trains(tiny_data, optimizer):
    lr = 0.003 if optimizer.startswith("adam") else 0.05
    result = train(micro_spec(), quick_config(epochs=2, optimizer=optimizer, lr=lr), tiny_data)
    first, last = result.history[0]["train_loss"], result.history[-1]["train_loss"]
    assert math.isfinite(last) and last < first


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_runs_and_reports_its_lr(tiny_data, schedule):
    config = quick_config(epochs=2, schedule=schedule, step_size=1, gamma=0.5)
    result = train(micro_spec(), config, tiny_data)
    lrs = [h["lr"] for h in result.history]
    assert all(0 < lr <= 0.05 for lr in lrs)
    if schedule == "step":
        assert lrs == pytest.approx([0.05, 0.025])
    if schedule in ("onecycle", "cosine"):
        assert lrs[1] < lrs[0]


def test_bf16_channels_last_ema_and_tta_run_on_the_cpu(tiny_data):
    config = quick_config(
        epochs=1, precision="bf16", channels_last=True, ema=0.9, tta_flip=True, tta_shift=True, val_split=64
    )
    result = train(micro_spec(), config, tiny_data)
    h = result.history[0]
    assert result.precision == "bf16" and math.isfinite(h["train_loss"])
    assert 0 <= h["val_acc"] <= 1 and 0 <= h["test_acc"] <= 1


def test_max_steps_caps_the_run(tiny_data):
    result = train(micro_spec(), quick_config(epochs=5, max_steps=3), tiny_data)
    assert result.global_step == 3 and result.epochs_done == 1 and not result.stopped
    assert result.history[0]["test_acc"] is not None


def test_val_split_larger_than_the_set_is_a_user_error(tiny_data):
    with pytest.raises(UserError, match="val_split"):
        train(micro_spec(), quick_config(val_split=320), tiny_data)


# ---------------------------------------------------------------- the test set stays out of decisions


def _with_shuffled_test_labels(data):
    g = torch.Generator().manual_seed(1)
    labels = torch.as_tensor(data.test_labels)
    return dataclasses.replace(data, test_labels=labels[torch.randperm(len(labels), generator=g)])


def _trajectory(config, data):
    result = train(micro_spec(), config, data)
    return [(h["train_loss"], h["lr"], h["val_acc"], h["best"]) for h in result.history]


@pytest.mark.parametrize(
    "config",
    [
        get_recipe("default").config.replace(epochs=3, batch_size=32, val_split=64),
        quick_config(epochs=3, schedule="plateau", plateau_patience=0, val_split=64, lr=0.2),
    ],
    ids=["default-recipe", "plateau-on-validation"],
)
def test_training_without_plateau_on_test_never_depends_on_test_labels(tiny_data, config):
    """The schedule and the best checkpoint follow validation: changing the test labels changes nothing."""
    assert _trajectory(config, tiny_data) == _trajectory(config, _with_shuffled_test_labels(tiny_data))


def test_reference_recipe_steps_its_scheduler_on_the_test_loss(tiny_data):
    calls = []
    original = Plateau.step
    config = get_recipe("reference").config.replace(epochs=3, augment={"crop_padding": 0, "flip": True})
    try:
        Plateau.step = lambda self, metric: (calls.append(metric), original(self, metric))[1]
        result = train(micro_spec(), config, tiny_data)
    finally:
        Plateau.step = original
    assert calls == pytest.approx([h["test_loss"] for h in result.history])


# ---------------------------------------------------------------- stopping and resuming


def test_should_stop_finishes_the_step_and_hands_back_a_checkpoint(tiny_data):
    saved = []
    calls = iter(range(1000))
    result = train(
        micro_spec(), quick_config(), tiny_data, should_stop=lambda: next(calls) >= 4,
        on_checkpoint=lambda state, best: saved.append((state, best)),
    )  # fmt: skip
    assert result.stopped and result.global_step == 5 and result.epochs_done == 0
    state, best = saved[-1]
    assert not best and state["step"] == 5 and state["epoch"] == 0
    assert all(isinstance(v, torch.Tensor) for v in state["model"].values())


@pytest.mark.parametrize("stop_after", [10, 13])  # at an epoch end, and in the middle of an epoch
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tiny_data, tmp_path, stop_after):
    config = quick_config(epochs=3, augment=AugmentConfig(crop_padding=4, flip=True, cutout=6))
    whole = train(micro_spec(), config, tiny_data)

    saved = []
    steps = iter(range(1000))
    first = train(micro_spec(), config, tiny_data, should_stop=lambda: next(steps) + 1 >= stop_after,
                  on_checkpoint=lambda state, best: saved.append(state))  # fmt: skip
    assert first.stopped and first.global_step == stop_after
    path = tmp_path / "ckpt.pt"
    torch.save(saved[-1], path)
    state = torch.load(path, weights_only=True)
    resumed = train(micro_spec(), config, tiny_data, state=state)

    assert resumed.global_step == whole.global_step and not resumed.stopped
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    for name, value in weights(whole.model).items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert resumed.final_accuracy == whole.final_accuracy


def test_images_per_s_after_a_mid_epoch_resume_counts_only_the_resumed_steps(tiny_data, monkeypatch):
    """A clock that moves 1 s a reading: no step event can report more than one batch a second."""
    config = quick_config(epochs=1)
    saved = []
    steps = iter(range(1000))
    train(micro_spec(), config, tiny_data, should_stop=lambda: next(steps) + 1 >= 6,
          on_checkpoint=lambda state, best: saved.append(state))  # fmt: skip
    assert saved[-1]["step"] == 6
    clock = iter(range(10**6))
    monkeypatch.setattr("s7core.train.time", types.SimpleNamespace(perf_counter=lambda: float(next(clock))))
    events = []
    train(micro_spec(), config, tiny_data, callback=events.append, state=saved[-1])
    rates = [e.images_per_s for e in events if isinstance(e, StepEvent)]
    assert rates and max(rates) <= config.batch_size, rates


def test_auto_precision_is_measured_once_said_first_and_kept_on_resume(tiny_data, monkeypatch):
    """The choice comes first among the events, goes into the checkpoint, and a resumed session reuses it."""
    rates = {"fp32": 100.0, "bf16-dw32": 200.0, "bf16": 300.0}  # micro_spec has a depthwise conv
    measured = []

    def measure(model, names, *rest):
        measured.extend(names)
        return {p: rates[p] for p in names}

    monkeypatch.setattr("s7core.device._training_rates", measure)
    config = quick_config(epochs=2, precision="auto")
    events, saved = [], []
    steps = iter(range(1000))
    first = train(micro_spec(), config, tiny_data, callback=events.append, should_stop=lambda: next(steps) >= 12,
                  on_checkpoint=lambda state, best: saved.append(state))  # fmt: skip
    assert isinstance(events[0], PrecisionEvent) and not any(isinstance(e, PrecisionEvent) for e in events[1:])
    assert (events[0].precision, events[0].setting, events[0].measured) == ("bf16", "auto", rates)
    assert "bf16 (measured: fp32 100 img/s, bf16-dw32 200 img/s, bf16 300 img/s)" == events[0].text
    assert first.precision == "bf16" and saved[-1]["precision"] == "bf16" and measured == list(rates)

    rates.update(bf16=10.0)  # the machine got slower at bf16 since: a resumed run keeps its first choice
    precision_cache_path().unlink()  # from its checkpoint, not from the cache of measurements
    resumed_events = []
    resumed = train(micro_spec(), config, tiny_data, callback=resumed_events.append, state=saved[-1])
    assert resumed.precision == "bf16" and measured == ["fp32", "bf16-dw32", "bf16"]
    assert resumed_events[0].precision == "bf16"
    assert resumed_events[0].measured == {"fp32": 100.0, "bf16-dw32": 200.0, "bf16": 300.0}


def test_a_checkpoint_of_another_network_is_a_user_error(tiny_data):
    saved = []
    train(micro_spec(), quick_config(epochs=1), tiny_data, on_checkpoint=lambda s, b: saved.append(s))
    with pytest.raises(UserError, match="does not fit"):
        train(get_preset("tiny"), quick_config(epochs=2), tiny_data, state=saved[-1])


# ---------------------------------------------------------------- real data


@pytest.mark.realdata
def test_seed_learns_on_real_cifar10(real_data_dir):
    """30 steps of the reference recipe (batch 32) lower the loss on a fixed batch of training images (2.48 to
    2.12 when written)."""
    data = load_cifar10(real_data_dir)
    probe_x, probe_y = torch.as_tensor(data.train_images[:128]), torch.as_tensor(data.train_labels[:128])
    small = dataclasses.replace(data, test_images=data.test_images[:32], test_labels=data.test_labels[:32])
    config = get_recipe("reference").config.replace(max_steps=30, precision="fp32", channels_last=True)

    def probe_loss(model) -> float:  # batch statistics (train mode): 30 steps leave BN running stats unsettled
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model.train()(normalize(probe_x)), probe_y).item()

    torch.manual_seed(config.seed)
    before = probe_loss(build_model(get_preset("seed")))
    result = train(get_preset("seed"), config, small)
    assert result.global_step == 30
    after = probe_loss(result.model)
    assert after < before - 0.05, (before, after)
