"""What a recipe's time goes to: the test evaluations it asks for, and early epochs at a smaller image size."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from s7core import speed
from s7core.config import ConfigError, TrainConfig
from s7core.data import load_cifar10, make_tiny_cifar10
from s7core.model import build_model
from s7core.spec import get_preset
from s7core.train import planned_epochs, score_test_set, train
from tests.test_train import micro_spec, quick_config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return load_cifar10(make_tiny_cifar10(tmp_path_factory.mktemp("tiny"), n_train=320, n_test=200))


def test_test_every_0_scores_only_the_last_epoch_and_that_is_the_best_checkpoint(tiny_data):
    result = train(micro_spec(), quick_config(epochs=3, eval_every=0), tiny_data)
    assert [h["test_acc"] is not None for h in result.history] == [False, False, True]
    assert result.best_epoch == 3 and result.best_accuracy == result.history[-1]["test_acc"]


def test_a_subset_gives_the_curve_a_point_but_never_picks_the_checkpoint(tiny_data):
    result = train(micro_spec(), quick_config(epochs=3, eval_subset=50), tiny_data)
    first, _, last = result.history
    assert first["test_subset"] == 50 and first["test_acc"] is not None and not first["best"]
    assert last["test_subset"] == 0 and last["best"] and result.best_epoch == 3


def test_the_last_epochs_score_is_the_whole_test_set_with_the_recipes_tta(tiny_data):
    config = quick_config(epochs=2, precision="bf16", tta_flip=True, tta_shift=True, eval_every=0)
    result = train(micro_spec(), config, tiny_data)
    again = score_test_set(result.model, tiny_data, config, "bf16")
    assert result.final_evaluation is not None and result.final_evaluation.count == 200
    assert result.history[-1]["test_acc"] == result.final_evaluation.accuracy == again.accuracy
    assert (result.final_evaluation.predictions == again.predictions).all()


def test_small_epochs_train_on_scaled_down_images_then_full_size(tiny_data, monkeypatch):
    sizes: list[int] = []  # the side of every training batch the net sees

    def with_a_probe(spec):
        model = build_model(spec)
        model.register_forward_pre_hook(
            lambda module, args: sizes.append(args[0].shape[-1]) if module.training else None
        )
        return model

    monkeypatch.setattr("s7core.train.build_model", with_a_probe)
    config = quick_config(epochs=3, small_epochs=2, small_size=16, eval_every=0)
    result = train(micro_spec(), config, tiny_data)
    steps = result.global_step // 3
    assert sizes == [16] * (2 * steps) + [32] * steps
    plain = train(micro_spec(), config.replace(small_epochs=0), tiny_data)
    assert result.history[-1]["train_loss"] != plain.history[-1]["train_loss"]


def test_small_epochs_resume_to_the_same_weights(tiny_data):
    config = quick_config(epochs=3, small_epochs=1, small_size=20, eval_every=0)
    whole = train(micro_spec(), config, tiny_data)
    saved = []
    train(
        micro_spec(), config, tiny_data, should_stop=lambda: len(saved) >= 1, on_checkpoint=lambda s, b: saved.append(s)
    )
    resumed = train(micro_spec(), config, tiny_data, state=saved[-1])
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


@pytest.mark.parametrize("changes", [{"small_size": 6}, {"small_size": 80}, {"eval_every": -1}, {"eval_subset": -5}])
def test_out_of_range_budget_settings_are_refused(changes):
    with pytest.raises(ConfigError):
        TrainConfig(**changes)


def test_the_estimate_counts_small_epochs_at_their_own_speed_and_subsets_as_cheap_views():
    rate = speed.Speed(100.0, 1000.0, 100, "cpu", "fp32", small_train_images_per_s=200.0)
    config = TrainConfig(epochs=4, batch_size=100, val_split=0, eval_every=0, small_epochs=2, tta_flip=True)
    estimate = speed.estimate_run(config, rate, 1000)
    assert estimate.evaluations == 1
    train_s = (2 * 1000 / 200 + 2 * 1000 / 100) / speed.SUSTAINED_SHARE
    assert estimate.total_s == pytest.approx(train_s + speed.TEST_IMAGES / 1000)
    subset = speed.estimate_run(config.replace(eval_every=1, eval_subset=2000), rate, 1000)
    assert subset.evaluations == 4  # three curve points and the last epoch's whole test set
    assert subset.total_s == pytest.approx(estimate.total_s + 3 * (2000 / 2) / 1000)


def test_a_measured_speed_times_the_smaller_size_when_the_config_has_small_epochs():
    config = TrainConfig(batch_size=32, device="cpu", precision="fp32", small_epochs=1, small_size=16)
    measured = speed.measure_speed(get_preset("tiny"), config)
    assert measured.small_train_images_per_s and measured.small_train_images_per_s > 0
    assert speed.measure_speed(get_preset("tiny"), config.replace(small_epochs=0)).small_train_images_per_s is None


def test_step_events_count_work_in_full_size_epochs(tiny_data):
    events = []
    config = quick_config(epochs=3, small_epochs=2, small_size=16, eval_every=0)
    train(micro_spec(), config, tiny_data, callback=events.append)
    assert config.epoch_work(32) == (0.25, 0.25, 1.0)
    steps = [e for e in events if e.kind == "step"]
    assert all(e.work_total == 1.5 for e in steps)
    ends = [e.work_done for e in steps if e.step == e.steps_per_epoch]
    assert ends == pytest.approx([0.25, 0.5, 1.5])
    epochs = [e for e in events if e.kind == "epoch"]
    assert epochs[-1].eta_s == 0.0 and epochs[0].eta_s == pytest.approx(epochs[0].elapsed_s / 0.25 * 1.25, rel=0.2)


def test_a_checkpoint_picked_on_validation_is_scored_on_the_whole_test_set(tiny_data):
    result = train(micro_spec(), quick_config(epochs=2, val_split=64, eval_subset=50), tiny_data)
    for h in result.history:
        assert h["test_subset"] == (0 if h["best"] or h["epoch"] == 2 else 50)
    assert result.best_accuracy == next(h["test_acc"] for h in result.history if h["epoch"] == result.best_epoch)


# ---------------------------------------------------------------- a time budget buys epochs


def a_speed(**changes) -> speed.Speed:
    values = dict(train_images_per_s=100.0, eval_images_per_s=400.0, batch=32, device="cpu", precision="fp32")
    return speed.Speed(**{**values, "small_train_images_per_s": 200.0, **changes})


@pytest.mark.parametrize("minutes", [0.5, 3.0, 12.0, 40.0])
def test_a_budget_buys_the_most_epochs_whose_estimate_fits(minutes):
    config = TrainConfig(epochs=10, small_epochs=7, eval_every=0, val_split=0, time_budget=minutes)
    rate = a_speed()
    plan = speed.plan_budget(config, rate, 50_000)
    estimate = lambda epochs: speed.estimate_run(speed.budget_config(config, epochs), rate, 50_000).total_s  # noqa: E731
    planned = lambda small: config.replace(epochs=plan.epochs, small_epochs=small)  # noqa: E731
    assert plan.budget_s == minutes * 60
    assert speed.estimate_run(planned(plan.small_epochs), rate, 50_000).total_s == plan.estimate_s
    if plan.fits:
        assert estimate(plan.epochs) <= plan.estimate_s <= minutes * 60 < estimate(plan.epochs + 1)
        # the smaller-size epochs keep their share at most: the time left short of one more epoch goes to
        # full-size ones, as many as fit
        assert plan.small_epochs <= round(7 * plan.epochs / 10)
        if plan.small_epochs:
            assert speed.estimate_run(planned(plan.small_epochs - 1), rate, 50_000).total_s > minutes * 60
    else:
        assert plan.epochs == 1 and estimate(1) > minutes * 60 and plan.small_epochs == 1
    assert f"{plan.epochs} epochs" in plan.describe(config, rate)


def test_time_short_of_one_more_epoch_turns_smaller_size_epochs_into_full_size_ones():
    config = TrainConfig(epochs=10, small_epochs=7, eval_every=0, val_split=0)
    plans = [speed.plan_budget(config.replace(time_budget=m / 4), a_speed(), 50_000) for m in range(40, 240)]
    assert all(p.estimate_s <= p.budget_s for p in plans)
    fewer = [p for p in plans if p.small_epochs < round(7 * p.epochs / 10)]
    assert fewer and any(p.small_epochs > 0 for p in fewer)  # some budgets keep a few small epochs, fewer
    assert any(p.small_epochs == round(7 * p.epochs / 10) for p in plans)  # others have no time to spare


def test_a_faster_machine_buys_more_epochs_and_the_plan_is_a_function_of_its_arguments():
    config = TrainConfig(epochs=10, small_epochs=7, eval_every=0, val_split=0, time_budget=12)
    slow, fast = (
        speed.plan_budget(config, a_speed(), 50_000),
        speed.plan_budget(config, a_speed(train_images_per_s=300.0, small_train_images_per_s=600.0), 50_000),
    )
    assert fast.epochs > slow.epochs and speed.plan_budget(config, a_speed(), 50_000) == slow
    assert speed.budget_config(config, 3).small_epochs == 2 and speed.budget_config(config, 1).small_epochs == 1
    assert speed.budget_config(config.replace(small_epochs=10), 4).small_epochs == 4  # never more than epochs


def test_a_budget_too_small_for_one_epoch_still_trains_one_and_says_so():
    config = TrainConfig(epochs=10, eval_every=0, val_split=0, time_budget=0.5)
    plan = speed.plan_budget(config, a_speed(train_images_per_s=10.0), 50_000)
    assert (plan.epochs, plan.fits) == (1, False)
    assert "even one epoch takes longer than the budget" in plan.describe(config, a_speed(train_images_per_s=10.0))


def test_the_speed_a_budget_is_planned_from_is_kept_on_disk(monkeypatch):
    measured = []
    monkeypatch.setattr(speed, "_measure", lambda spec, config: measured.append(1) or a_speed())
    monkeypatch.setattr(speed, "_cache", {})
    config = quick_config(time_budget=1)
    assert speed.measure_speed(micro_spec(), config, remember=True) == a_speed()
    monkeypatch.setattr(speed, "_cache", {})  # a new process: read back from the disk, not measured again
    assert speed.measure_speed(micro_spec(), config, remember=True) == a_speed() and len(measured) == 1
    monkeypatch.setattr(speed, "_cache", {})
    assert speed.measure_speed(micro_spec(), config) == a_speed() and len(measured) == 2  # only when asked to
    entries = speed.read_measurements(speed.speed_cache_path())
    key = next(iter(entries))
    speed.remember_measurement(speed.speed_cache_path(), key, {**entries[key], "train_images_per_s": -1})
    monkeypatch.setattr(speed, "_cache", {})
    assert speed.measure_speed(micro_spec(), config, remember=True) == a_speed() and len(measured) == 3
    speed.speed_cache_path().write_text("[1, 2")  # a damaged cache is only a cache
    monkeypatch.setattr(speed, "_cache", {})
    assert speed.measure_speed(micro_spec(), config, remember=True) == a_speed() and len(measured) == 4


def test_both_caches_of_speeds_key_a_network_as_it_is_built_so_a_change_in_the_code_measures_again(monkeypatch):
    from torch import nn

    from s7core import device

    measured = []
    monkeypatch.setattr(speed, "_measure", lambda spec, config: measured.append(1) or a_speed())
    monkeypatch.setattr(speed, "_cache", {})
    config = quick_config(time_budget=1)
    rng = torch.get_rng_state()
    speed.measure_speed(micro_spec(), config, remember=True)
    assert torch.equal(torch.get_rng_state(), rng)  # the net built for the key leaves the caller's stream alone
    built = device.network_key(build_model(micro_spec()))
    monkeypatch.setattr(device, "_training_rates", lambda model, names, *rest: dict.fromkeys(names, 100.0))
    device.choose_precision("auto", torch.device("cpu"), build_model(micro_spec()), (3, 32, 32), 64, True)
    for path in (speed.speed_cache_path(), device.precision_cache_path()):
        (key,) = speed.read_measurements(path)
        assert key.startswith(f"{device.machine_key(torch.device('cpu'))} | {built} | "), key
    # the same spec built into another module tree (as after a change to a layer's class) is another network
    monkeypatch.setattr(speed, "build_model", lambda spec: nn.Sequential(build_model(spec), nn.Identity()))
    monkeypatch.setattr(speed, "_cache", {})
    speed.measure_speed(micro_spec(), config, remember=True)
    assert len(measured) == 2 and len(speed.read_measurements(speed.speed_cache_path())) == 2


def _the_entry_without_runs() -> tuple[str, dict]:
    ((key, entry),) = speed.read_measurements(speed.speed_cache_path()).items()
    return key, {k: v for k, v in entry.items() if k != "runs"}


def test_finished_runs_correct_the_kept_speed_and_plans_take_the_slowest_of_the_latest(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(speed, "_measure", lambda spec, config: a_speed())
    config = quick_config(epochs=10, small_epochs=7, small_size=16, eval_every=0, time_budget=12)
    assert not speed.remember_run_speed(micro_spec(), config, 150.0, 300.0)  # nothing kept yet: nothing to correct
    measured = speed.measure_speed(micro_spec(), config, remember=True)
    assert measured == a_speed() and measured.share == speed.SUSTAINED_SHARE and "the measured 100" in (
        speed.plan_budget(config, measured, 50_000).describe(config, measured)
    )  # fmt: skip
    assert not speed.remember_run_speed(micro_spec(), config, float("nan"), 300.0)
    assert not speed.remember_run_speed(micro_spec(), config.replace(small_epochs=0), 150.0, 300.0)  # not timed
    assert speed.remember_run_speed(micro_spec(), config, 160.0, None)  # a run with no epoch at the smaller size
    only_full = speed.measure_speed(micro_spec(), config, remember=True)
    assert (only_full.train_images_per_s, only_full.runs) == (160.0, 1)  # the smaller size's rate: the measured
    assert only_full.small_train_images_per_s * only_full.share == pytest.approx(200.0 * speed.SUSTAINED_SHARE)
    speed.remember_measurement(speed.speed_cache_path(), *_the_entry_without_runs())
    assert speed.remember_run_speed(micro_spec(), config, 150.0, 300.0)
    once = speed.measure_speed(micro_spec(), config, remember=True)  # read from the disk at every call
    assert (once.train_images_per_s, once.small_train_images_per_s, once.runs) == (150.0, 300.0, 1)
    assert once.eval_images_per_s == measured.eval_images_per_s and once.share == speed.RUN_SHARE
    assert "the 150 training images/s (300 at the smaller size) that the last run here sustained" in (
        speed.plan_budget(config, once, 50_000).describe(config, once)
    )  # fmt: skip
    # sustained rates, planned without the short measurement's allowance, buy more than the same rates measured
    same = dataclasses.replace(once, runs=0)
    assert speed.plan_budget(config, once, 50_000).epochs > speed.plan_budget(config, same, 50_000).epochs
    for rates in ([900.0, 1800.0], [120.0, 270.0], [130.0, 260.0], [140.0, 280.0], [125.0, 290.0]):
        assert speed.remember_run_speed(micro_spec(), config, *rates)
    latest = speed.measure_speed(micro_spec(), config, remember=True)  # the first run has fallen out of the five
    assert (latest.train_images_per_s, latest.small_train_images_per_s, latest.runs) == (120.0, 260.0, 5)
    text = speed.plan_budget(config, latest, 50_000).describe(config, latest)
    assert "120 training images/s (260 at the smaller size), the slowest of the last 5 runs here" in text
    path = speed.speed_cache_path()
    (key,) = speed.read_measurements(path)
    entry = speed.read_measurements(path)[key]
    speed.remember_measurement(path, key, {**entry, "runs": [[-1, 2], "x", [500.0, 1000.0]]})  # damaged runs
    assert speed.measure_speed(micro_spec(), config, remember=True).runs == 1
    speed.remember_measurement(path, key, {**entry, "runs": {"a": 1}})
    assert speed.measure_speed(micro_spec(), config, remember=True) == measured  # only the measurement is sound


def test_a_budgeted_run_that_finishes_keeps_its_rates_and_one_stopped_keeps_none(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(speed, "_measure", lambda spec, config: a_speed(train_images_per_s=2000.0,
                                                                        eval_images_per_s=4000.0,
                                                                        small_train_images_per_s=4000.0))  # fmt: skip
    config = quick_config(epochs=4, small_epochs=2, small_size=16, eval_every=0, time_budget=0.02)
    train(micro_spec(), config, tiny_data, should_stop=lambda: True)
    kept = lambda: speed.measure_speed(micro_spec(), config, remember=True)  # noqa: E731
    assert kept().runs == 0  # stopped after one step: no whole epoch, nothing kept
    events: list = []
    train(micro_spec(), config, tiny_data, callback=events.append)
    assert "the measured 2,000 training images/s" in events[1].text
    (entry,) = speed.read_measurements(speed.speed_cache_path()).values()
    ((full, small),) = entry["runs"]
    assert full > 0 and small > 0 and (full, small) != (2000.0, 4000.0)  # its own rates, not the measured ones
    events.clear()
    train(micro_spec(), config, tiny_data, callback=events.append)
    assert "that the last run here sustained" in events[1].text and kept().runs == 2
    unbudgeted = config.replace(time_budget=0.0)
    train(micro_spec(), unbudgeted, tiny_data)
    assert kept().runs == 2  # only runs a budget planned correct the speed it plans from


def fixed_speed(monkeypatch, rate: speed.Speed) -> list[int]:
    """measure_speed returns `rate`; the list counts its calls."""
    calls: list[int] = []
    monkeypatch.setattr(speed, "measure_speed", lambda spec, config, remember=False: calls.append(1) or rate)
    return calls


def test_the_trainer_trains_the_epochs_the_budget_bought_and_a_resumed_run_keeps_them(tiny_data, monkeypatch):
    rate = a_speed(train_images_per_s=2000.0, eval_images_per_s=4000.0, small_train_images_per_s=4000.0)
    config = quick_config(
        epochs=4, small_epochs=2, small_size=16, eval_every=0, time_budget=0.02, keep_to_budget=False
    )  # the plan as made, however fast this machine is
    plan = speed.plan_budget(config, rate, 320, 200)
    assert 3 <= plan.epochs < 1000, plan  # the budget buys a handful of epochs of the tiny set
    calls = fixed_speed(monkeypatch, rate)
    events, saved = [], []
    keep = lambda state, best: saved.append(copy.deepcopy(state))  # noqa: E731 (the live tensors train on)
    alone = train(micro_spec(), config, tiny_data, callback=events.append, on_checkpoint=keep)
    kinds = [e.kind for e in events]
    assert kinds[:2] == ["precision", "plan"] and kinds.count("plan") == 1 and calls == [1]
    assert (events[1].epochs, events[1].small_epochs) == (plan.epochs, plan.small_epochs)
    assert events[1].text == plan.describe(config, rate)
    assert alone.epochs_done == plan.epochs and [h["epochs"] for h in alone.history] == [plan.epochs] * plan.epochs
    assert saved[-1]["plan"]["epochs"] == plan.epochs

    fixed_speed(monkeypatch, a_speed(train_images_per_s=1.0))  # slower since: a resumed run keeps its plan
    resumed = train(micro_spec(), config, tiny_data, state=saved[1])
    assert resumed.epochs_done == plan.epochs
    assert all(torch.equal(a, b) for a, b in zip(alone.model.state_dict().values(),
                                                  resumed.model.state_dict().values(), strict=True))  # fmt: skip


def test_epochs_given_after_the_plan_turn_the_budget_off_and_keep_its_smaller_epochs(tiny_data, monkeypatch):
    config = quick_config(epochs=10, small_epochs=5, small_size=16, eval_every=0, time_budget=0.02)
    fixed_speed(monkeypatch, a_speed(train_images_per_s=1500.0, eval_images_per_s=4000.0))
    saved = []
    train(micro_spec(), config, tiny_data, on_checkpoint=lambda s, b: saved.append(s))
    plan = saved[-1]["plan"]
    more = config.replace(epochs=plan["epochs"] + 2, time_budget=0.0)
    events = []
    resumed = train(micro_spec(), more, tiny_data, callback=events.append, state=saved[-1])
    assert resumed.epochs_done == plan["epochs"] + 2 and not any(e.kind == "plan" for e in events)
    assert planned_epochs(more, saved[-1]) == plan["epochs"] + 2 and planned_epochs(config, saved[-1]) == plan["epochs"]


def test_the_speed_a_budget_plans_from_is_measured_at_the_precision_the_run_chose(tiny_data, monkeypatch):
    """A speed kept from another precision (or from before a new choice) never plans this run."""
    rates = {"fp32": 100.0, "bf16-dw32": 300.0, "bf16": 200.0}  # micro_spec has a depthwise conv
    monkeypatch.setattr("s7core.device._training_rates", lambda model, names, *rest: {p: rates[p] for p in names})
    asked: list[str] = []
    rate = a_speed(train_images_per_s=2000.0, eval_images_per_s=4000.0)
    monkeypatch.setattr(
        speed, "measure_speed", lambda spec, config, remember=False: asked.append(config.precision) or rate
    )  # fmt: skip
    config = quick_config(epochs=2, precision="auto", eval_every=0, time_budget=0.02)
    events = []
    result = train(micro_spec(), config.replace(max_steps=1), tiny_data, callback=events.append)
    assert result.precision == "bf16-dw32" and asked == ["bf16-dw32"]
    assert [e.kind for e in events[:2]] == ["precision", "plan"]


# ---------------------------------------------------------------- a run slower than its plan cuts its epochs


BUDGETED = TrainConfig(epochs=24, small_epochs=16, eval_every=0, val_split=0, time_budget=10)  # 600 s


def planned_rates(**changes) -> speed.Speed:
    """Rates at which BUDGETED fits its budget: 25 s an epoch at full size, 12.5 s at the smaller one."""
    return a_speed(**{"train_images_per_s": 2000.0, "small_train_images_per_s": 4000.0, "eval_images_per_s": 8000.0,
                      **changes})  # fmt: skip


def at_half_speed() -> speed.Speed:
    """The rates BUDGETED's plan expects, halved, as a run's own: it would take 800 s."""
    return planned_rates(train_images_per_s=1000.0, small_train_images_per_s=2000.0, eval_images_per_s=4000.0,
                         this_run=True)  # fmt: skip


def elapsed_at(config: TrainConfig, rate: speed.Speed, done: int) -> float:
    """The seconds `done` epochs of `config` and their evaluations take at `rate`."""
    whole = speed.estimate_run(config, rate, 50_000).total_s
    return whole - speed.estimate_run(config, rate, 50_000, done_epochs=done).total_s


def test_the_estimate_from_an_epoch_on_is_what_is_left_of_the_whole_run():
    config = BUDGETED.replace(val_split=500, eval_every=3)
    rate = planned_rates()
    whole = speed.estimate_run(config, rate, 50_000)
    assert speed.estimate_run(config, rate, 50_000, done_epochs=0) == whole
    rest = [speed.estimate_run(config, rate, 50_000, done_epochs=d).total_s for d in range(25)]
    assert rest[24] == 0.0 and all(a > b for a, b in zip(rest, rest[1:], strict=False))
    # an epoch at the smaller size costs half of one at full size; the last one has the test scoring on top
    small, full = rest[0] - rest[1], rest[20] - rest[21]
    assert small < full and rest[23] > full
    assert speed.estimate_run(config, rate, 50_000, done_epochs=5).epoch_s == whole.epoch_s


def test_a_run_on_its_plan_keeps_it_and_a_little_late_is_still_on_it():
    plan = speed.plan_budget(BUDGETED, planned_rates(), 50_000)
    config = BUDGETED.replace(epochs=plan.epochs, small_epochs=plan.small_epochs)
    assert plan.fits and plan.epochs > 20
    share = speed.SUSTAINED_SHARE  # just the rates the plan allowed for, sustained
    own = planned_rates(train_images_per_s=2000.0 * share, small_train_images_per_s=4000.0 * share, this_run=True)
    on_time = elapsed_at(config, planned_rates(), 3)
    assert speed.replan_budget(config, own, 50_000, speed.TEST_IMAGES, 3, on_time) is None
    late = plan.budget_s * (1 + speed.OVERRUN_ALLOWED) - speed.estimate_run(config, own, 50_000, done_epochs=3).total_s
    assert speed.replan_budget(config, own, 50_000, speed.TEST_IMAGES, 3, late - 0.5) is None
    assert speed.replan_budget(config, own, 50_000, speed.TEST_IMAGES, 3, late + 0.5) is not None


@pytest.mark.parametrize("done", [1, 2, 8, 15, 16, 17, 18])
def test_a_run_slower_than_its_plan_keeps_the_most_epochs_that_still_fit(done):
    config, slow = BUDGETED, at_half_speed()
    elapsed = elapsed_at(config, slow, done)
    cut = speed.replan_budget(config, slow, 50_000, speed.TEST_IMAGES, done, elapsed)
    assert cut is not None and cut.fits and done < cut.epochs < config.epochs, cut
    assert elapsed + speed.estimate_run(config.replace(epochs=cut.epochs, small_epochs=cut.small_epochs), slow,
                                        50_000, done_epochs=done).total_s == pytest.approx(cut.estimate_s)  # fmt: skip
    assert cut.estimate_s <= cut.budget_s
    assert cut.small_epochs <= config.small_epochs  # never more at the smaller size than planned
    if done <= config.small_epochs:  # the epochs to come may be of either size, the ones done stay small
        assert cut.small_epochs >= done
        sizes = range(done, config.small_epochs + 1)
    else:  # past the smaller-size epochs, only full-size ones are left to cut
        assert cut.small_epochs == config.small_epochs
        sizes = [config.small_epochs]
    # one epoch more fits at no size; and with as few smaller-size epochs as fit
    more = [config.replace(epochs=cut.epochs + 1, small_epochs=min(s, cut.epochs + 1)) for s in sizes]
    assert all(elapsed + speed.estimate_run(m, slow, 50_000, done_epochs=done).total_s > cut.budget_s for m in more)
    if cut.small_epochs > max(done, 0) and done <= config.small_epochs:
        fewer = config.replace(epochs=cut.epochs, small_epochs=cut.small_epochs - 1)
        assert elapsed + speed.estimate_run(fewer, slow, 50_000, done_epochs=done).total_s > cut.budget_s
    text = cut.describe_cut(config, done, "1,000 training images/s at full size (planned: 2,000)")
    assert text.startswith(f"after {done} epoch") and f"{cut.epochs} epochs" in text and "(planned: 2,000)" in text


def test_a_run_far_behind_its_plan_trains_one_more_epoch_and_says_it_is_over():
    config = BUDGETED
    cut = speed.replan_budget(config, at_half_speed(), 50_000, speed.TEST_IMAGES, 4, 590.0)
    assert (cut.epochs, cut.fits) == (5, False) and cut.small_epochs == 5
    assert "even one more epoch ends past the budget" in cut.describe_cut(config, 4, "")


def test_a_budgeted_run_slower_than_its_plan_cuts_its_epochs_and_a_resumed_run_keeps_the_cut(tiny_data, monkeypatch):
    # a plan that expects some twenty times what this machine trains: it buys hundreds of epochs, half small
    rate = a_speed(train_images_per_s=1.6e5, eval_images_per_s=3e6, small_train_images_per_s=3.2e5)
    fixed_speed(monkeypatch, rate)
    config = quick_config(epochs=10, small_epochs=5, small_size=16, eval_every=0, time_budget=0.02, lr=0.05)
    events, saved = [], []
    keep = lambda state, best: saved.append(copy.deepcopy(state))  # noqa: E731 (the live tensors train on)
    result = train(micro_spec(), config, tiny_data, callback=events.append, on_checkpoint=keep)
    plans = [e for e in events if e.kind == "plan"]
    first, cut = plans[0], plans[1]
    assert first.after_epoch == 0 and first.epochs > 100 and first.small_epochs > 10
    assert first.train_images_per_s == 1.6e5 * speed.SUSTAINED_SHARE
    assert cut.after_epoch == 2 and cut.epochs < first.epochs and "slower than planned" in cut.text
    assert "training images/s at 16x16 pixels (planned: 288,000)" in cut.text  # its own pace, beside the plan's
    last = plans[-1]
    assert result.epochs_done == last.epochs == saved[-1]["plan"]["epochs"] == len(result.history)
    assert [h["epochs"] for h in result.history][-1] == last.epochs
    # the run ends on its schedule: the last step's learning rate is the one-cycle's last
    steps = [e for e in events if e.kind == "step"]
    assert steps[-1].lr < 0.05 * 0.1
    # every plan keeps the epochs done as they were trained: the smaller ones first
    for before, plan in zip(plans, plans[1:], strict=False):
        assert min(plan.after_epoch, before.small_epochs) <= plan.small_epochs <= before.small_epochs
    # a run resumed after the cut keeps it, however fast the machine is said to be now
    after = next(s for s in saved if s["plan"]["after_epoch"] == cut.after_epoch)
    fixed_speed(monkeypatch, a_speed(train_images_per_s=1.0))
    again: list = []
    resumed = train(micro_spec(), config.replace(keep_to_budget=False), tiny_data, callback=again.append, state=after)
    assert resumed.epochs_done == cut.epochs and [e.kind for e in again].count("plan") == 1
    assert again[1].text == cut.text


def test_a_run_that_does_not_keep_to_its_budget_trains_the_epochs_planned(tiny_data, monkeypatch):
    fixed_speed(monkeypatch, a_speed(train_images_per_s=1.6e5, eval_images_per_s=3e6, small_train_images_per_s=3.2e5))
    config = quick_config(epochs=4, small_epochs=2, small_size=16, eval_every=0, time_budget=0.005)
    events: list = []
    result = train(micro_spec(), config.replace(keep_to_budget=False, max_steps=60), tiny_data, callback=events.append)
    assert [e.kind for e in events].count("plan") == 1 and result.history[-1]["epochs"] == events[1].epochs


def test_the_disk_cache_keeps_a_measurement_in_the_same_fields_as_before(tmp_path, monkeypatch):
    """A new field of Speed must not turn every speed kept on disk into an unreadable one (measured again)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(speed, "_measure", lambda spec, config: a_speed())
    config = quick_config(time_budget=1)
    speed.measure_speed(micro_spec(), config, remember=True)
    (entry,) = speed.read_measurements(speed.speed_cache_path()).values()
    fields = {"train_images_per_s", "eval_images_per_s", "batch", "device", "precision", "small_train_images_per_s"}
    assert set(entry) == fields
    monkeypatch.setattr(speed, "_measure", lambda spec, config: pytest.fail("measured again"))
    assert speed.measure_speed(micro_spec(), config, remember=True) == a_speed()


def test_the_estimate_of_a_budgeted_run_says_whether_it_keeps_to_its_budget():
    config = BUDGETED
    planned, estimate, plan = speed.estimate_planned(config, planned_rates(), 50_000)
    _, keeps = speed.describe_estimate(planned, planned_rates(), estimate, plan)
    _, strict = speed.describe_estimate(planned.replace(keep_to_budget=False), planned_rates(), estimate, plan)
    assert "trains fewer of its epochs, so that it ends within its budget" in keeps
    assert "however long they take" in strict and "fewer" not in strict
    _, unbudgeted = speed.describe_estimate(config.replace(time_budget=0), planned_rates(), estimate)
    assert "budget" not in unbudgeted
