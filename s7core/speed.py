"""How long a run will take on this machine: a short measured speed of the network, and the estimate from it.

`measure_speed` times a few real training steps (random images through the run's own augmentation,
optimizer, precision and memory layout) and a test-set style evaluation batch, on the device the config
names. It takes a few seconds, so results are kept per network and setting for the life of the process.
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

import torch
import torch.nn.functional as F

from s7core.config import TrainConfig
from s7core.data import augment_batch, scale_to
from s7core.device import autocast, choose_precision, resolve_device
from s7core.evaluate import predict_logits
from s7core.model import build_model
from s7core.spec import NetworkSpec
from s7core.train import make_optimizer

MEASURE_STEPS = 3  # timed training steps, after one warm-up step
MEASURE_BATCH_CAP = 256  # images a step at most: per-image cost levels off well below the larger batches
EVAL_BATCH = 256
TEST_IMAGES = 10_000  # the CIFAR-10 test set, evaluated after the run and whenever the config asks
TRAIN_IMAGES = 50_000  # the CIFAR-10 training set, assumed when the data folder cannot say
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


@dataclass(frozen=True)
class RunEstimate:
    """The expected time of a run, and where it goes."""

    total_s: float
    epoch_s: float  # training plus the evaluations of an average epoch
    train_images: int  # images trained on per epoch
    evaluations: int  # test-set evaluations over the run, the final one included


def _key(spec: NetworkSpec, config: TrainConfig) -> str:
    """What the speed depends on: the network and the settings that change the work per image."""
    c = config
    parts = [spec.to_dict(), c.batch_size, c.precision, c.channels_last, c.device, c.optimizer, c.ema > 0]
    parts.append(c.small_size if c.small_epochs else None)
    return json.dumps([*parts, c.tta_flip, c.tta_shift, dataclasses.asdict(c.augment)], sort_keys=True)


def measure_speed(spec: NetworkSpec, config: TrainConfig) -> Speed:
    """Training and evaluation images per second of `spec` with `config` here (kept per network and setting)."""
    key = _key(spec, config)
    with _lock:
        if key not in _cache:
            _cache[key] = _measure(spec, config)
        return _cache[key]


def _measure(spec: NetworkSpec, config: TrainConfig) -> Speed:
    device = resolve_device(config.device)
    batch = min(config.batch_size, MEASURE_BATCH_CAP)
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        torch.manual_seed(0)
        model = build_model(spec).to(device)
        if config.channels_last:
            model = model.to(memory_format=torch.channels_last)
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


def estimate_run(config: TrainConfig, speed: Speed, train_images: int) -> RunEstimate:
    """The time a run of `config` takes at `speed` on a data set of `train_images` training images."""
    c = config
    fit = max(train_images - c.val_split, 0)
    batch = min(c.batch_size, fit) or 1
    steps_per_epoch = max(fit // batch, 1)
    total_steps = c.epochs * steps_per_epoch
    if c.max_steps:
        total_steps = min(total_steps, c.max_steps)
    epochs = math.ceil(total_steps / steps_per_epoch)
    small_steps = min(c.small_epochs * steps_per_epoch, total_steps) if speed.small_train_images_per_s else 0
    train_s = small_steps * batch / (speed.small_train_images_per_s or 1.0)
    train_s += (total_steps - small_steps) * batch / speed.train_images_per_s
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
    eval_images = epochs * c.val_split + (1 + again) * TEST_IMAGES + len(due) * (subset / views or TEST_IMAGES)
    total = train_s + eval_images / speed.eval_images_per_s
    return RunEstimate(total, total / epochs, steps_per_epoch * batch, evaluations)


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def describe_estimate(config: TrainConfig, speed: Speed, estimate: RunEstimate) -> tuple[str, str]:
    """(headline, detail) of an estimate in words, as the Train page and `python -m s7core estimate` show it."""
    headline = (
        f"about {format_duration(estimate.total_s)} for {config.epochs} epochs "
        f"({format_duration(estimate.epoch_s)} an epoch, {estimate.evaluations} test evaluations)"
    )
    detail = (
        f"Measured here: {speed.train_images_per_s:,.0f} training images/s at batch {speed.batch} "
        f"({speed.precision} on {speed.device}), {speed.eval_images_per_s:,.0f} evaluation images/s; "
        f"{estimate.train_images:,} training images an epoch. Other work on this machine slows it down."
    )
    return headline, detail
