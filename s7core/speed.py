"""How long a run will take on this machine: a short measured speed of the network, and the estimate from it.

`measure_speed` times a few real training steps (random images through the run's own augmentation,
optimizer, precision and memory layout) and a test-set style evaluation batch, on the device the config
names. It takes a few seconds, so results are kept per network and setting for the life of the process; the
speed a time budget is planned from (`plan_budget`) is also kept on disk, per machine. A few steps read the
machine at one moment, and a shared machine's speed drifts by a fifth from minute to minute, so every run a
budget planned that finishes corrects the kept speed with the rates it sustained (`remember_run_speed`): later
plans take the slowest of the latest few runs, so that a run as slow as that one still keeps to its budget.
`estimate_run` turns a speed into the time of a whole run: every epoch's training images (the early epochs at
the smaller size, when the config has them), the validation and test evaluations the config asks for, and the
final evaluation of the best checkpoint when that is not the last epoch's.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from s7core.config import TrainConfig, settings
from s7core.data import augment_batch, scale_to
from s7core.device import (
    autocast,
    choose_precision,
    measurement_key,
    read_measurements,
    remember_measurement,
    resolve_device,
)
from s7core.evaluate import predict_logits
from s7core.files import cache_root
from s7core.model import build_model
from s7core.spec import NetworkSpec
from s7core.train import freeze_stem, make_optimizer

MEASURE_STEPS = 3  # timed training steps, after one warm-up step
# images a step at most: the presets' own batches (best: 512 trains 7% slower per image than 256 on the AMD host)
MEASURE_BATCH_CAP = 512
# A whole run trains at about this share of the few measured steps' speed (best on the AMD host, batch 512: 560
# against 625 images/s at full size, 1,140 against 1,240 at 24 pixels); estimates allow for it.
SUSTAINED_SHARE = 0.9
# Rates a finished run sustained (`remember_run_speed`): the latest this many runs of one network and setting are
# kept, and a plan takes the slowest of them at each image size. Runs on one machine differ by a tenth (best on
# the AMD host, five runs: 874 to 1,053 images/s at full size, the median 971; 19 epochs in 641 to 757 s), and
# a plan's whole run must still keep to its budget when it is the slow one; a little more is kept in hand.
RUN_SPEEDS_KEPT = 5
RUN_SHARE = 0.97
# After every epoch a budgeted run compares its own rates so far with its plan (`replan_budget`), and cuts the
# epochs still to come when at those rates it would end more than this share of its budget late. The margin
# keeps a run on its plan through the small wobbles of a machine's speed (so that a killed and resumed run
# still trains the schedule of the run left alone); a cut plan then fits the budget itself.
OVERRUN_ALLOWED = 0.02
EVAL_BATCH = 256
TEST_IMAGES = 10_000  # the CIFAR-10 test set, evaluated after the run and whenever the config asks
TRAIN_IMAGES = 50_000  # the CIFAR-10 training set, assumed when the data folder cannot say
SPEED_CACHE_FILE = "speed.json"  # under the cache root: the speeds budgets were planned from, by machine
_cache: dict[str, Speed] = {}
_lock = threading.Lock()  # one measurement at a time: two at once would each time the other's load


@dataclass(frozen=True)
class Speed:
    """Measured training and evaluation throughput of one network and config on this machine."""

    train_images_per_s: float
    eval_images_per_s: float  # test-time augmentation views counted as one image
    batch: int  # the batch the steps were timed at
    device: str
    precision: str
    small_train_images_per_s: float | None = None  # at the config's smaller image size, when it has small epochs
    runs: int = 0  # finished runs whose slowest sustained rates the training rates are; 0: a few steps'
    this_run: bool = False  # the rates the running run has sustained so far (`replan_budget`)

    @property
    def share(self) -> float:
        """The share of these training rates a whole run is expected to sustain."""
        if self.this_run:
            return 1.0
        return RUN_SHARE if self.runs else SUSTAINED_SHARE

    def rates_text(self) -> str:
        """The training rates and where they come from: 'the measured 612 training images/s (1,240 at the smaller
        size)', or 'the 874 training images/s ..., the slowest of the last 3 runs here'."""
        rates = f"{self.train_images_per_s:,.0f} training images/s"
        if self.small_train_images_per_s:
            rates += f" ({self.small_train_images_per_s:,.0f} at the smaller size)"
        if not self.runs:
            return f"the measured {rates}"
        if self.runs == 1:
            return f"the {rates} that the last run here sustained"
        return f"the {rates}, the slowest of the last {self.runs} runs here"


@dataclass(frozen=True)
class RunEstimate:
    """The expected time of a run, and where it goes."""

    total_s: float
    epoch_s: float  # training plus the evaluations of an average epoch
    train_images: int  # images trained on per epoch
    evaluations: int  # test-set evaluations over the run, the final one included


def speed_key(spec: NetworkSpec, config: TrainConfig) -> str:
    """What the speed depends on: the network and the settings that change the work per image."""
    return json.dumps([spec.to_dict(), _settings_key(config)], sort_keys=True)


def _settings_key(config: TrainConfig) -> list:
    """The settings that change the work per image."""
    c = config
    parts = [c.batch_size, c.precision, c.channels_last, c.device, c.optimizer, c.ema > 0]
    parts.append(c.small_size if c.small_epochs else None)
    parts.append([c.whiten_stem, c.freeze_stem_bn])  # frozen layers skip their share of the backward pass
    return [*parts, c.tta_flip, c.tta_shift, dataclasses.asdict(c.augment)]


def measure_speed(spec: NetworkSpec, config: TrainConfig, remember: bool = False) -> Speed:
    """Training and evaluation images per second of `spec` with `config` here (kept per network and setting).

    With `remember`, the measurement is kept on disk for this machine and read back from there, with the rates
    of the finished runs that corrected it (`remember_run_speed`), as they are on disk at each call."""
    if remember:
        with _lock:
            config = _as_trained(spec, config)  # an estimate reads the speed the trainer will plan from
            path, key = speed_cache_path(), _disk_key(spec, config)
            kept = _speed_from(read_measurements(path).get(key))
            if kept is None:
                kept = _measure(spec, config)
                remember_measurement(path, key, _entry(kept))
            return kept
    key = speed_key(spec, config)
    with _lock:
        if key not in _cache:
            _cache[key] = _measure(spec, config)
        return _cache[key]


def remember_run_speed(spec: NetworkSpec, config: TrainConfig, train_rate: float, small_rate: float | None) -> bool:
    """Correct the speed kept for `spec` and `config` (`measure_speed(remember=True)`) with the training images per
    second a finished run sustained, at full size and at the smaller size (None when it trained no epoch at that
    size). False, and nothing kept, when no speed is kept for them here or the rates do not fit it."""
    with _lock:
        path, key = speed_cache_path(), _disk_key(spec, config)
        entry = read_measurements(path).get(key)
        if _speed_from(entry) is None or not _run_rates_fit([train_rate, small_rate], entry):
            return False
        runs = [*_valid_runs(entry), [train_rate, small_rate]][-RUN_SPEEDS_KEPT:]
        remember_measurement(path, key, {**entry, "runs": runs})
        return True


def _as_trained(spec: NetworkSpec, config: TrainConfig) -> TrainConfig:
    """`config` at the precision the trainer takes for it: for 'auto' on the CPU, the one its measurement picks
    (kept per machine, so measured once)."""
    if config.precision != "auto":
        return config
    device = resolve_device(config.device)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        model = build_model(spec).to(device)
    batch = min(config.batch_size, MEASURE_BATCH_CAP)
    choice = choose_precision(config.precision, device, model, spec.input_shape, batch, config.channels_last)
    return config.replace(precision=choice.precision)


def _disk_key(spec: NetworkSpec, config: TrainConfig) -> str:
    """The key of the speed kept on disk for `spec` and `config`: this machine, the network as built, and what the
    steps are timed with."""
    batch = min(config.batch_size, MEASURE_BATCH_CAP)  # what the steps are timed at, part of the key
    detail = json.dumps([batch, spec.input_shape, _settings_key(config)], sort_keys=True)
    with torch.random.fork_rng(devices=[]):  # building the net for its key leaves the caller's stream alone
        net = build_model(spec)
    return measurement_key(resolve_device(config.device), net, f"speed {detail}")


def speed_cache_path() -> Path:
    """Where the speeds that time budgets were planned from are kept (see `measure_speed`)."""
    return cache_root() / SPEED_CACHE_FILE


# what a measurement holds, as the disk cache keeps it: neither the runs that correct it nor a running run's flag
_MEASURED = tuple(f.name for f in dataclasses.fields(Speed) if f.name not in ("runs", "this_run"))


def _entry(measured: Speed) -> dict:
    """A measurement as the disk cache keeps it (runs that correct it are added under "runs")."""
    return {name: getattr(measured, name) for name in _MEASURED}


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _speed_from(value: object) -> Speed | None:
    """A Speed from a cache entry, or None when the entry is missing or not a sound measurement. Finished runs
    kept in it replace the measured training rates with the slowest of theirs; unsound ones are passed over."""
    if not isinstance(value, dict) or set(value) - {"runs"} != set(_MEASURED):
        return None
    rates = [value["train_images_per_s"], value["eval_images_per_s"], value["batch"]]
    rates += [value["small_train_images_per_s"]] if value["small_train_images_per_s"] is not None else []
    if not all(_positive(r) for r in rates):
        return None
    if not isinstance(value["device"], str) or not isinstance(value["precision"], str):
        return None
    measured = Speed(**{name: value[name] for name in _MEASURED})
    runs = _valid_runs(value)
    if not runs:
        return measured
    small = measured.small_train_images_per_s
    if small is not None:  # a plan with time to spare may train no epoch at the smaller size
        smalls = [r[1] for r in runs if r[1] is not None]
        small = min(smalls) if smalls else small * SUSTAINED_SHARE / RUN_SHARE
    return dataclasses.replace(
        measured, train_images_per_s=min(r[0] for r in runs), small_train_images_per_s=small,
        runs=len(runs),
    )  # fmt: skip


def _run_rates_fit(rates: object, entry: dict) -> bool:
    """Whether `rates` is a run's [full size, smaller size] for the measurement `entry`: None for the smaller size
    when the run trained none of it, and always when the measurement timed none."""
    if not isinstance(rates, list) or len(rates) != 2 or not _positive(rates[0]):
        return False
    return rates[1] is None or (_positive(rates[1]) and entry["small_train_images_per_s"] is not None)


def _valid_runs(entry: dict) -> list[list]:
    """The sound run rates kept in a measurement's cache entry, the latest RUN_SPEEDS_KEPT."""
    runs = entry.get("runs")
    if not isinstance(runs, list):
        return []
    return [r for r in runs if _run_rates_fit(r, entry)][-RUN_SPEEDS_KEPT:]


def _measure(spec: NetworkSpec, config: TrainConfig) -> Speed:
    device = resolve_device(config.device)
    batch = min(config.batch_size, MEASURE_BATCH_CAP)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(0)
        model = build_model(spec).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        freeze_stem(model, config)  # a frozen layer needs no gradient: less work per step
        # the precision the trainer will take: for 'auto' on the CPU, the one its own measurement picks
        choice = choose_precision(config.precision, device, model, spec.input_shape, batch, config.channels_last)
        precision = choice.precision
        optimizer = make_optimizer(model, config)
        c, h, w = spec.input_shape
        images = torch.randint(0, 256, (batch, c, h, w), dtype=torch.uint8, device=device)
        labels = torch.randint(0, spec.num_classes, (batch,), device=device)
        generator = torch.Generator(device).manual_seed(0)
        model.train()

        def train_rate(size: int | None) -> float:
            for i in range(MEASURE_STEPS + 1):
                if i == 1:  # the first step pays for one-off set-up (allocations, kernel choice)
                    start = time.perf_counter()
                x = augment_batch(images, config.augment, generator)
                if size:
                    x = scale_to(x, size)
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with autocast(device, precision):
                    loss = F.cross_entropy(model(x).float(), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            _sync(device)
            return MEASURE_STEPS * batch / (time.perf_counter() - start)

        full_rate = train_rate(None)
        small_rate = train_rate(config.small_size) if config.small_epochs else None
        eval_images = torch.randint(0, 256, (EVAL_BATCH, c, h, w), dtype=torch.uint8, device=device)
        start = time.perf_counter()
        predict_logits(
            model, eval_images, batch_size=EVAL_BATCH, precision=precision, tta_flip=config.tta_flip,
            tta_shift=config.tta_shift, channels_last=config.channels_last,
        )  # fmt: skip
        _sync(device)
        eval_rate = EVAL_BATCH / (time.perf_counter() - start)
    return Speed(full_rate, eval_rate, batch, str(device), precision, small_rate)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def estimate_run(
    config: TrainConfig, speed: Speed, train_images: int, test_images: int = TEST_IMAGES, done_epochs: int = 0
) -> RunEstimate:
    """The time a run of `config` takes at `speed` on a data set of `train_images` training and `test_images`
    test images; with `done_epochs`, the time still to go after that many epochs and their evaluations (the
    average epoch stays the whole run's)."""
    c = config
    fit = max(train_images - c.val_split, 0)
    batch = min(c.batch_size, fit) or 1
    steps_per_epoch = max(fit // batch, 1)
    total_steps = c.epochs * steps_per_epoch
    if c.max_steps:
        total_steps = min(total_steps, c.max_steps)
    epochs = math.ceil(total_steps / steps_per_epoch)
    small_steps = min(c.small_epochs * steps_per_epoch, total_steps) if speed.small_train_images_per_s else 0

    def train_s(start_step: int) -> float:
        """Training seconds of the steps from `start_step` to the run's end."""
        small = max(small_steps - start_step, 0)
        full = max(total_steps - max(start_step, small_steps), 0)
        seconds = small * batch / (speed.small_train_images_per_s or 1.0) + full * batch / speed.train_images_per_s
        return seconds / speed.share

    # A test evaluation runs every eval_every epochs and after the last one; with a validation split, also after
    # every epoch that improves on it (most of them early on), and every epoch when the schedule watches it. A
    # curve-only subset is scored without test-time augmentation, so its images cost a fraction of a view each.
    every = c.plateau_on_test or c.val_split > 0
    due = [e for e in range(1, epochs) if every or (c.eval_every and e % c.eval_every == 0)]
    views = (2 if c.tta_flip else 1) * (3 if c.tta_shift else 1)
    subset = c.eval_subset if c.eval_subset and not every else 0
    # the last epoch's scoring is the run's saved one, unless an earlier epoch may be the best checkpoint
    again = 1 if c.val_split > 0 or (due and not subset) else 0
    evaluations = 1 + len(due) + again
    subset = min(subset, test_images)

    def eval_s(done: int) -> float:
        """Evaluation seconds after the epochs that follow the first `done`."""
        if done >= epochs:
            return 0.0
        later = sum(1 for e in due if e > done)
        images = (epochs - done) * c.val_split + (1 + again) * test_images + later * (subset / views or test_images)
        return images / speed.eval_images_per_s

    whole = train_s(0) + eval_s(0)
    to_go = train_s(done_epochs * steps_per_epoch) + eval_s(done_epochs) if done_epochs else whole
    return RunEstimate(to_go, whole / epochs, steps_per_epoch * batch, evaluations)


@dataclass(frozen=True)
class BudgetPlan:
    """The epochs a time budget buys at a measured speed, and the estimate they were chosen by."""

    epochs: int
    small_epochs: int
    estimate_s: float  # the estimated time of the planned run, training and test scorings
    budget_s: float  # the config's time budget in seconds
    fits: bool  # False when even one epoch is estimated to take longer than the budget

    def describe(self, config: TrainConfig, speed: Speed) -> str:
        """'14 epochs (9 at 24x24 pixels) fit in 12 min 00 s: about 11 min 40 s at the measured 612 training ...'."""
        small = f" ({self.small_epochs} at {config.small_size}x{config.small_size} pixels)" if self.small_epochs else ""
        over = "" if self.fits else "; even one epoch takes longer than the budget, so it trains one"
        return (
            f"{self.epochs} epochs{small} fit in {format_duration(self.budget_s)}: about "
            f"{format_duration(self.estimate_s)} at {speed.rates_text()} and {speed.eval_images_per_s:,.0f} "
            f"evaluation images/s ({speed.precision}){over}"
        )

    def describe_cut(self, config: TrainConfig, done_epochs: int, pace: str) -> str:
        """'after 2 epochs this run trains 1,650 training images/s at 24x24 pixels (planned: 2,006), slower than
        planned: 19 epochs (13 at 24x24 pixels) fit in 11 min 30 s, about 11 min 28 s in all' (a plan that
        `replan_budget` cut, `pace` the run's own rates in words)."""
        small = f" ({self.small_epochs} at {config.small_size}x{config.small_size} pixels)" if self.small_epochs else ""
        over = "; even one more epoch ends past the budget, so it trains one" if not self.fits else ""
        return (
            f"after {done_epochs} epoch{'s' if done_epochs != 1 else ''} this run trains {pace}, slower than "
            f"planned: {self.epochs} epochs{small} fit in {format_duration(self.budget_s)}, about "
            f"{format_duration(self.estimate_s)} in all{over}"
        )


def budget_config(config: TrainConfig, epochs: int) -> TrainConfig:
    """`config` stretched or shrunk to `epochs`: the epochs at the smaller size keep their share of the run."""
    small = min(round(config.small_epochs * epochs / config.epochs), epochs)
    return config.replace(epochs=epochs, small_epochs=small)


def plan_budget(config: TrainConfig, speed: Speed, train_images: int, test_images: int = TEST_IMAGES) -> BudgetPlan:
    """The most epochs of `config` whose estimated time (`estimate_run`) fits in its time budget, one at least;
    then, with the time left short of one more epoch, as few of them at the smaller size as still fit.

    The smaller size saves time at a cost in accuracy at equal epochs (held out, in README.md), so time that
    would be left over goes to full-size epochs instead. The budget is for
    training and its test scorings; the process's start and the measurements before training (a few seconds)
    come on top. The plan depends on nothing but its arguments."""
    budget_s = config.time_budget * 60
    high = next(s.high for s in settings() if s.path == "epochs")  # the most epochs a config may have

    def total(planned: TrainConfig) -> float:
        return estimate_run(planned, speed, train_images, test_images).total_s

    chosen = budget_config(config, 1)
    for epochs in range(2, int(high) + 1):
        more = budget_config(config, epochs)
        if total(more) > budget_s:
            break
        chosen = more
    while chosen.small_epochs and total(chosen.replace(small_epochs=chosen.small_epochs - 1)) <= budget_s:
        chosen = chosen.replace(small_epochs=chosen.small_epochs - 1)
    estimate = total(chosen)
    return BudgetPlan(chosen.epochs, chosen.small_epochs, estimate, budget_s, estimate <= budget_s)


def replan_budget(
    config: TrainConfig,
    speed: Speed,
    train_images: int,
    test_images: int,
    done_epochs: int,
    elapsed_s: float,
) -> BudgetPlan | None:
    """A shorter plan for a budgeted run after `done_epochs` epochs and `elapsed_s` seconds of it, when at
    `speed` (its own rates so far) the planned run `config` would end more than OVERRUN_ALLOWED of its budget
    late; None while it keeps to its plan.

    The epochs done stay as they were trained, and no more of them are at the smaller size than planned (that
    size costs accuracy at equal epochs): while the run is still in its smaller-size epochs, some of those to
    come may turn full-size; after them, only full-size epochs are left to cut. As `plan_budget` does, it keeps
    the most epochs that still fit, then as few of them at the smaller size as fit. One epoch more than those done
    is the least it plans, even when that does not fit."""
    budget_s, planned_small = config.time_budget * 60, config.small_epochs

    def total(epochs: int, small: int) -> float:
        planned = config.replace(epochs=epochs, small_epochs=small)
        return elapsed_s + estimate_run(planned, speed, train_images, test_images, done_epochs).total_s

    if done_epochs >= config.epochs or total(config.epochs, config.small_epochs) <= budget_s * (1 + OVERRUN_ALLOWED):
        return None
    fewest_small = min(done_epochs, planned_small)  # the smaller-size epochs already trained stay so
    for epochs in range(config.epochs, done_epochs, -1):
        most_small = min(planned_small, epochs)
        if total(epochs, most_small) <= budget_s or epochs == done_epochs + 1:
            small = most_small
            while small > fewest_small and total(epochs, small - 1) <= budget_s:
                small -= 1
            estimate = total(epochs, small)
            return BudgetPlan(epochs, small, estimate, budget_s, estimate <= budget_s)
    return None  # not reached: the loop always returns at done_epochs + 1


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def estimate_planned(
    config: TrainConfig, speed: Speed, train_images: int
) -> tuple[TrainConfig, RunEstimate, BudgetPlan | None]:
    """The run `config` will train (with a time budget: the epochs it buys at `speed`), and its estimate."""
    plan = plan_budget(config, speed, train_images) if config.time_budget > 0 else None
    planned = config.replace(epochs=plan.epochs, small_epochs=plan.small_epochs) if plan else config
    return planned, estimate_run(planned, speed, train_images), plan


def describe_estimate(
    config: TrainConfig, speed: Speed, estimate: RunEstimate, plan: BudgetPlan | None = None
) -> tuple[str, str]:
    """(headline, detail) of an estimate in words, as the Train page and `python -m s7core estimate` show it;
    `config` is the planned one when a time budget chose its epochs (`estimate_planned`)."""
    bought = f", the most that fit in the {format_duration(plan.budget_s)} time budget" if plan else ""
    size = config.small_size
    small = f" ({min(config.small_epochs, config.epochs)} at {size}x{size} pixels)" if config.small_epochs else ""
    headline = (
        f"about {format_duration(estimate.total_s)} for {config.epochs} epochs{small}{bought} "
        f"({format_duration(estimate.epoch_s)} an epoch, {estimate.evaluations} test evaluations)"
    )
    detail = (
        f"{'Measured here' if not speed.runs else f'The slowest of the last {speed.runs} runs here'}: "
        f"{speed.train_images_per_s:,.0f} training images/s at batch {speed.batch} "
        f"({speed.precision} on {speed.device}), {speed.eval_images_per_s:,.0f} evaluation images/s; "
        f"{estimate.train_images:,} training images an epoch. Other work on this machine slows it down."
    )
    if plan and config.keep_to_budget:
        detail += " A run that falls behind this pace trains fewer of its epochs, so that it ends within its budget."
    elif plan:
        detail += " It trains these epochs however long they take ('keep to the budget' is off)."
    return headline, detail
