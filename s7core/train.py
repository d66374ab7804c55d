"""The training loop (its settings are s7core.config's TrainConfig; named recipes are in s7core.recipes).

The whole data set lives on the device as uint8 tensors; each epoch draws a permutation, slices batches
from it and augments them on the device (`data.augment_batch`) — no DataLoader workers and no per-image
Python in the hot loop. `train` emits events (StepEvent, EpochEvent) through a callback and never prints;
it hands plain checkpoint dicts (tensors and plain types only, safe for `torch.load(weights_only=True)`)
to `on_checkpoint` at every epoch end and when stopped, and continues from one when given `state`.

On the CPU the same seed gives the same numbers, and a run resumed from a checkpoint ends with the same
weights as one never interrupted: the permutation and augmentation generators are re-seeded from
(seed, epoch) at each epoch start, and their state inside an epoch travels in the checkpoint. On a GPU some
cuDNN kernels are not deterministic, so there the two agree closely but not bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from s7core.config import ConfigError, TrainConfig, time_to_go
from s7core.data import CifarData, augment_batch, normalize, scale_to
from s7core.device import PrecisionChoice, autocast, choose_precision, resolve_device, resolve_precision
from s7core.errors import UserError
from s7core.evaluate import Evaluation, evaluate, loss_and_accuracy
from s7core.model import S7Net, build_model
from s7core.optim import SGD
from s7core.spec import NetworkSpec

if TYPE_CHECKING:
    from s7core.speed import Speed

CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------- events and result


@dataclass
class StepEvent:
    """Progress inside an epoch; loss and accuracy are running means over the epoch so far."""

    kind: ClassVar[str] = "step"
    epoch: int  # 1-based
    step: int  # steps done in this epoch (1-based)
    steps_per_epoch: int
    global_step: int  # steps done since the run began
    loss: float  # mean training loss this epoch so far (nats)
    accuracy: float  # training accuracy this epoch so far (0..1)
    lr: float  # learning rate of the step just taken
    images_per_s: float  # training throughput since the previous step event
    elapsed_s: float  # training time since the run began, all sessions together
    # Work done and planned, in full-size epochs (TrainConfig.epoch_work): what the time left is paced on.
    work_done: float = 0.0
    work_total: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass
class EpochEvent:
    """The figures of one finished epoch; a value is None where it was not measured."""

    kind: ClassVar[str] = "epoch"
    epoch: int  # 1-based
    epochs: int
    global_step: int
    train_loss: float
    train_acc: float
    val_loss: float | None
    val_acc: float | None
    test_loss: float | None
    test_acc: float | None
    lr: float  # learning rate of the epoch's last step
    epoch_s: float  # wall time of the epoch, evaluations included
    elapsed_s: float
    eta_s: float  # estimated time to the last epoch
    best: bool = False  # this epoch gave the best checkpoint so far
    test_subset: int = 0  # test images scored when only a curve-only subset was, 0 for the whole test set

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass
class PrecisionEvent:
    """The precision the session trains in; for 'auto' on the CPU, the speeds measured to choose it."""

    kind: ClassVar[str] = "precision"
    precision: str  # fp32, bf16 or fp16
    setting: str  # the config's precision setting ('auto' or the precision itself)
    measured: dict[str, float]  # candidate -> training images per second; empty when nothing was measured
    text: str  # one line for the log

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass
class PlanEvent:
    """The epochs a time budget bought: measured at the start of a run, kept in its checkpoints after."""

    kind: ClassVar[str] = "plan"
    epochs: int
    small_epochs: int
    time_budget: float  # minutes, the config's setting
    estimate_s: float  # the planned run's estimated training and scoring time
    text: str  # one line for the log
    # the training rates (images/s, full and smaller size) and evaluation rate the plan expects a whole run to
    # sustain; after every epoch the run compares its own with them (0: not known, as in older checkpoints)
    train_images_per_s: float = 0.0
    small_train_images_per_s: float = 0.0
    eval_images_per_s: float = 0.0
    after_epoch: int = 0  # 0: planned before the first step; N: cut after epoch N, the run being slower

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}


@dataclass
class TrainResult:
    model: nn.Module  # the weights used to evaluate (the EMA weights when ema > 0), final epoch
    epochs_done: int
    global_step: int
    stopped: bool  # should_stop() ended it early
    history: list[dict[str, Any]]  # EpochEvent.to_dict() of every epoch, earlier sessions included
    best_epoch: int | None
    best_accuracy: float | None  # test accuracy of the best checkpoint
    final_accuracy: float | None  # test accuracy after the last epoch
    elapsed_s: float
    device: str
    precision: str
    # The whole test set scored after the last epoch (score_test_set), kept so the run's saved predictions need
    # no second pass; None when the last epoch was not scored in this session.
    final_evaluation: Evaluation | None = None


# ---------------------------------------------------------------- helpers


def score_test_set(model: nn.Module, data: CifarData, config: TrainConfig, precision: str) -> Evaluation:
    """The run's one test figure: every test image, in the precision it trained in, with the recipe's test-time
    augmentation.

    The trainer scores its last epoch with it, and a finished run's saved predictions are this evaluation, so
    the accuracy of the last epoch line and the run's saved accuracy are one number."""
    c = config
    return evaluate(
        model, data.test_images, data.test_labels, device=next(model.parameters()).device, tta_flip=c.tta_flip,
        classes=data.classes, precision=precision, channels_last=c.channels_last, tta_shift=c.tta_shift,
    )  # fmt: skip


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer | SGD:
    """The optimizer a config names, over all the model's parameters. SGD on the CPU is s7core.optim's, which
    spares the process torch.optim's start-up; on a GPU torch's, which updates all parameters in a few
    kernels. Both do the same sums and save the same state."""
    params, c = list(model.parameters()), config
    if c.optimizer in ("sgd", "nesterov"):
        nesterov = c.optimizer == "nesterov"
        cpu = all(p.device.type == "cpu" for p in params)
        sgd = SGD if cpu else torch.optim.SGD
        return sgd(params, c.lr, momentum=c.momentum, weight_decay=c.weight_decay, nesterov=nesterov)
    opt = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
    return opt(params, c.lr, betas=(c.momentum, 0.999), weight_decay=c.weight_decay)


def get_lr(config: TrainConfig, step: int, steps_per_epoch: int, plateau_scale: float = 1.0) -> float:
    """Learning rate of optimizer step `step` (0-based, counted over the whole run)."""
    c = config
    if c.schedule in ("onecycle", "cosine"):
        t = (step + 0.5) / (c.epochs * steps_per_epoch)  # fraction of the run at the middle of this step
        if t < c.warmup:
            return c.lr * t / c.warmup
        u = min((t - c.warmup) / (1 - c.warmup), 1.0)  # 0..1 through the decay; past the run's end it stays 0
        return c.lr * (1 - u) if c.schedule == "onecycle" else c.lr * 0.5 * (1 + math.cos(math.pi * u))
    if c.schedule == "step":
        return c.lr * c.gamma ** ((step // steps_per_epoch) // c.step_size)
    if c.schedule == "plateau":
        return c.lr * plateau_scale
    return c.lr


@dataclass
class Plateau:
    """ReduceLROnPlateau (mode min, relative threshold 1e-4, no cooldown) as plain data."""

    factor: float
    patience: int
    scale: float = 1.0  # current learning-rate multiplier
    best: float = math.inf
    bad_epochs: int = 0

    def step(self, metric: float) -> None:
        if metric < self.best * (1 - 1e-4):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0


class WeightAverage:
    """An exponential moving average of a model's weights (buffers are copied, not averaged)."""

    def __init__(self, model: nn.Module, decay: float):
        import copy

        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for avg, cur in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur, 1 - self.decay)
            else:
                avg.copy_(cur)


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, eps: float = 5e-4, max_images: int = 2000) -> None:
    """Set the first layer, a conv on the colour channels, to +/- the top principal directions of the
    images' patches, each scaled to unit variance, and freeze it.

    The rest of the net then starts from decorrelated inputs, which speeds up early training markedly
    (the whitening layer of airbench). Uses the first `max_images` uint8 images; output channels beyond
    twice the patch size keep their initial weights.
    """
    stem = _stem(model)
    k, stride = stem.kernel_size[0], stem.stride[0]
    x = normalize(images[:max_images].cpu())  # (N, 3, H, W) float
    patches = x.unfold(2, k, stride).unfold(3, k, stride)  # (N, 3, H', W', k, k)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3 * k * k)  # rows ordered like a filter
    values, vectors = torch.linalg.eigh((patches.T @ patches / patches.shape[0]).double())  # ascending
    half = min(stem.out_channels // 2, 3 * k * k)
    top = vectors[:, -half:].flip(1) / (values[-half:].flip(0).clamp_min(0) + eps).sqrt()  # (3kk, half)
    filters = torch.cat([top, -top], dim=1).T.reshape(2 * half, 3, k, k)
    stem.weight[: 2 * half] = filters.to(stem.weight.dtype)
    stem.weight.requires_grad_(False)


def freeze_stem(model: nn.Module, config: TrainConfig) -> None:
    """Freeze what `config` keeps fixed at the bottom of the net: the whitened first conv (whiten_stem) and,
    with freeze_stem_bn, the affine of the BN right after it, so that the backward pass ends at the second
    conv's weights (its input gradient, and the stem BN's and ReLU's backward passes, are never computed).
    Both the trainer and the speed measurement call it, so the work they time is the same."""
    if not config.whiten_stem:
        return
    stem = _stem(model)
    stem.weight.requires_grad_(False)
    if config.freeze_stem_bn:
        after = model.get_submodule(model.module_name(1)) if len(model.spec.layers) > 1 else None
        if not isinstance(after, nn.BatchNorm2d):
            raise ConfigError(
                "freeze_stem_bn needs a BN layer right after the first conv — make layer 1 a bn layer or turn "
                "freeze_stem_bn off"
            )
        for p in after.parameters():
            p.requires_grad_(False)


def _stem(model: nn.Module) -> nn.Conv2d:
    """The first layer, checked to be what whiten_stem needs: a dense, undilated conv on the colour channels."""
    stem = model.get_submodule(model.module_name(0)) if isinstance(model, S7Net) else None
    if not isinstance(stem, nn.Conv2d) or stem.in_channels != 3 or stem.groups != 1 or stem.dilation != (1, 1):
        raise ConfigError(
            "whiten_stem needs a network whose first layer is a dense, undilated conv on the 3 colour channels "
            "— make layer 0 such a conv or turn whiten_stem off"
        )
    return stem


def _epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + stream) % (2**63)


def split_data(
    data: CifarData, val_split: int, seed: int, device: torch.device
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(train, val, test) pairs of uint8 images and int64 labels on the device; val is a seeded random
    `val_split` of the training images."""
    images, labels = torch.as_tensor(data.train_images), torch.as_tensor(data.train_labels, dtype=torch.int64)
    n = images.shape[0]
    if val_split >= n:
        raise ConfigError(f"val_split {val_split} leaves no training images (the set has {n}) — lower it")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    train_idx, val_idx = order[: n - val_split].sort().values, order[n - val_split :].sort().values
    test = (torch.as_tensor(data.test_images), torch.as_tensor(data.test_labels, dtype=torch.int64))
    on = lambda x, y: (x.to(device), y.to(device))  # noqa: E731
    return on(images[train_idx], labels[train_idx]), on(images[val_idx], labels[val_idx]), on(*test)


# ---------------------------------------------------------------- the loop

EventCallback = Callable[[StepEvent | EpochEvent], None]
CheckpointCallback = Callable[[dict[str, Any], bool], None]
STEP_EVENT_EVERY_S = 0.5


class _Loop:
    """The state of one training session; `train` is the public entry."""

    def __init__(self, spec: NetworkSpec, config: TrainConfig, data: CifarData, callback, should_stop, on_checkpoint):
        self.config = c = config
        self.spec = spec
        self.plan: PlanEvent | None = None  # what the time budget bought, when the config has one
        self.device = resolve_device(c.device)
        self.precision = resolve_precision(c.precision, self.device)  # until choose_precision has measured
        self.precision_choice = PrecisionChoice(self.precision)
        self.emit = callback or (lambda event: None)
        self.should_stop = should_stop or (lambda: False)
        self.on_checkpoint = on_checkpoint or (lambda state, best: None)
        torch.manual_seed(c.seed)
        self.model = build_model(spec).to(self.device)
        if c.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.data = data
        self.final_evaluation: Evaluation | None = None
        self.train_set, self.val_set, self.test_set = split_data(data, c.val_split, c.seed, self.device)
        if c.whiten_stem:  # before the optimizer and the weight average see the model
            whiten_first_conv(self.model, self.train_set[0])
        freeze_stem(self.model, c)
        n = self.train_set[0].shape[0]
        self.batch = min(c.batch_size, n)
        self.steps_per_epoch = n // self.batch  # the last partial batch is dropped
        self.optimizer = make_optimizer(self.model, c)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.plateau = Plateau(c.plateau_factor, c.plateau_patience)
        self.ema = WeightAverage(self.model, c.ema) if c.ema > 0 else None
        self.aug_gen = torch.Generator(self.device)
        self.epoch, self.step, self.global_step = 0, 0, 0  # completed epochs; steps done in the current one
        self.sums = torch.zeros(3, device=self.device, dtype=torch.float64)  # loss*n, correct, n this epoch
        self.history: list[dict[str, Any]] = []
        self.best_metric, self.best_epoch, self.best_accuracy = -math.inf, None, None
        self.elapsed_before = 0.0  # training seconds of earlier sessions
        self.start = time.perf_counter()
        # whole epochs trained in this session, by image size (True: the smaller one): [images, seconds]
        self.trained: dict[bool, list[float]] = {}
        # the same without the session's first epoch, whose first steps warm up: the pace a budget checks
        self.paced: dict[bool, list[float]] = {}
        self.speed_config: TrainConfig | None = None  # what a time budget's speed was kept under, when it has one

    @property
    def work(self) -> tuple[float, ...]:
        """Each planned epoch's work in full-size epochs (TrainConfig.epoch_work), from the config in force."""
        return self.config.epoch_work(self.spec.input_shape[-1])

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.model if self.ema else self.model

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.start

    def lr(self) -> float:
        return get_lr(self.config, self.global_step, self.steps_per_epoch, self.plateau.scale)

    def train_step(self, x_uint8: torch.Tensor, y: torch.Tensor) -> None:
        x = augment_batch(x_uint8, self.config.augment, self.aug_gen)  # (B, 3, 32, 32) float, normalised
        if self.epoch < self.config.small_epochs:  # early epochs at a smaller size: fewer pixels, the same images
            x = scale_to(x, self.config.small_size)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr()
        with autocast(self.device, self.precision):
            logits = self.model(x)  # (B, classes)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.config.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema:
            self.ema.update(self.model)
        with torch.no_grad():
            correct = (logits.argmax(1) == y).sum()
            self.sums += torch.stack(
                [loss.detach().double() * y.shape[0], correct.double(), self.sums.new_tensor(y.shape[0])]
            )
        self.step += 1
        self.global_step += 1

    def run_epoch(self) -> str:
        """Train the rest of the current epoch; 'done', 'stopped' or 'capped' (max_steps reached)."""
        c, images, labels = self.config, *self.train_set
        perm = torch.randperm(
            images.shape[0], generator=torch.Generator().manual_seed(_epoch_seed(c.seed, self.epoch, 0))
        )
        perm = perm.to(self.device)
        if self.step == 0:
            self.aug_gen.manual_seed(_epoch_seed(c.seed, self.epoch, 1))
        # A resumed epoch restores the counts of the steps done before the stop: rates count from here.
        last_emit, last_images = time.perf_counter(), int(self.sums[2].item())
        while self.step < self.steps_per_epoch:
            idx = perm[self.step * self.batch : (self.step + 1) * self.batch]
            self.train_step(images[idx], labels[idx])
            now, done = time.perf_counter(), self.step == self.steps_per_epoch
            if now - last_emit >= STEP_EVENT_EVERY_S or done:
                seen = int(self.sums[2].item())
                rate = (seen - last_images) / max(now - last_emit, 1e-9)
                self.emit_step(rate)
                last_emit, last_images = now, seen
            if self.should_stop():
                return "stopped"
            if c.max_steps and self.global_step >= c.max_steps:
                return "capped"
        return "done"

    def emit_step(self, images_per_s: float) -> None:
        loss_sum, correct, n = self.sums.tolist()
        self.emit(
            StepEvent(
                self.epoch + 1,
                self.step,
                self.steps_per_epoch,
                self.global_step,
                loss_sum / n,
                correct / n,
                get_lr(self.config, self.global_step - 1, self.steps_per_epoch, self.plateau.scale),  # the step taken
                images_per_s,
                self.elapsed(),
                self.work_done(),
                sum(self.work),
            )
        )

    def work_done(self) -> float:
        """Full-size epochs' worth of training done: the finished epochs and the running one's share."""
        running = self.work[self.epoch] * self.step / self.steps_per_epoch if self.epoch < len(self.work) else 0.0
        return sum(self.work[: self.epoch]) + running

    def evaluate_on(
        self, pair: tuple[torch.Tensor, torch.Tensor], subset: int = 0
    ) -> tuple[float | None, float | None]:
        """Loss and accuracy on `pair` with the recipe's test-time augmentation; on its first `subset` images
        without it, when `subset` is given (a cheap point for the curve)."""
        if pair[0].shape[0] == 0:
            return None, None
        c = self.config
        kw = {"tta_flip": c.tta_flip, "tta_shift": c.tta_shift, "channels_last": c.channels_last}
        if subset:
            pair, kw = (pair[0][:subset], pair[1][:subset]), {"channels_last": c.channels_last}
        return loss_and_accuracy(self.eval_model, *pair, precision=self.precision, **kw)

    def end_epoch(self, epoch_start: float, last: bool) -> None:
        """Evaluate, step the plateau schedule, pick the best checkpoint, emit the epoch and checkpoint it."""
        c = self.config
        loss_sum, correct, n = self.sums.tolist()
        val_loss, val_acc = self.evaluate_on(self.val_set)
        due = c.eval_every > 0 and (self.epoch + 1) % c.eval_every == 0
        # A subset score is for the curve only: it never picks a checkpoint or steers a schedule.
        subset = 0 if last or c.plateau_on_test or c.eval_subset >= self.test_set[0].shape[0] else c.eval_subset
        want_test = last or due or c.plateau_on_test
        if last and self.test_set[0].shape[0]:
            self.final_evaluation = score_test_set(self.eval_model, self.data, c, self.precision)
            test_loss, test_acc = self.final_evaluation.loss, self.final_evaluation.accuracy
        else:
            test_loss, test_acc = self.evaluate_on(self.test_set, subset) if want_test else (None, None)
        full_test_acc = test_acc if not subset else None
        lr = get_lr(c, self.global_step - 1, self.steps_per_epoch, self.plateau.scale)  # before a plateau drop
        if c.schedule == "plateau":  # the reference watched the test loss; otherwise validation, else training
            self.plateau.step(test_loss if c.plateau_on_test else val_loss if val_loss is not None else loss_sum / n)
        monitor = val_acc if c.val_split else full_test_acc  # validation picks the best checkpoint if there is one
        best = monitor is not None and monitor > self.best_metric
        if best:
            if full_test_acc is None:  # the checkpoint's test accuracy is always on the whole test set
                (test_loss, test_acc), subset = self.evaluate_on(self.test_set), 0
            self.best_metric, self.best_epoch, self.best_accuracy = monitor, self.epoch + 1, test_acc
        self.epoch, self.step = self.epoch + 1, 0
        self.sums.zero_()
        now = time.perf_counter()
        eta = time_to_go(self.elapsed(), self.work_done(), sum(self.work)) or 0.0
        event = EpochEvent(
            self.epoch,
            c.epochs,
            self.global_step,
            loss_sum / n,
            correct / n,
            val_loss,
            val_acc,
            test_loss,
            test_acc,
            lr,
            now - epoch_start,
            self.elapsed(),
            eta,
            best,
            subset if test_acc is not None else 0,
        )
        self.history.append(event.to_dict())
        self.emit(event)
        if not last:
            self.check_budget()
        self.on_checkpoint(self.state(), best)  # with the plan as it now stands

    def run(self) -> TrainResult:
        stopped = False
        self.model.train()
        # the config in force, read at every epoch: a time budget's check may have cut the epochs still to come
        while self.epoch < self.config.epochs and not (
            self.config.max_steps and self.global_step >= self.config.max_steps
        ):
            c = self.config
            epoch_start, whole, small = time.perf_counter(), self.step == 0, self.epoch < c.small_epochs
            outcome = self.run_epoch()
            if outcome == "stopped":
                stopped = True
                self.on_checkpoint(self.state(), False)
                break
            if outcome == "done" and whole:  # a whole epoch of this session: its training rate is a sound one
                seconds, first = time.perf_counter() - epoch_start, not self.trained
                for kept in (self.trained,) if first else (self.trained, self.paced):
                    done = kept.setdefault(small, [0.0, 0.0])
                    done[0] += self.steps_per_epoch * self.batch
                    done[1] += seconds
            last = outcome == "capped" or self.epoch + 1 == c.epochs
            self.end_epoch(epoch_start, last)
        if not stopped and self.epoch == self.config.epochs:
            self.correct_kept_speed()
        final = self.history[-1]["test_acc"] if self.history else None
        return TrainResult(
            self.eval_model,
            self.epoch,
            self.global_step,
            stopped,
            self.history,
            self.best_epoch,
            self.best_accuracy,
            final,
            self.elapsed(),
            str(self.device),
            self.precision,
            self.final_evaluation,
        )

    def correct_kept_speed(self) -> None:
        """After a run its time budget planned: keep the training rates it sustained for the plans after it."""
        if self.speed_config is None:
            return
        rates = {small: images / seconds for small, (images, seconds) in self.trained.items() if seconds > 0}
        if False in rates:  # a whole epoch at full size at least; the smaller size only when it had one
            from s7core.speed import remember_run_speed  # speed builds on this module

            remember_run_speed(self.spec, self.speed_config, rates[False], rates.get(True))

    # -------------------------------------------------------- checkpoints

    def state(self) -> dict[str, Any]:
        """Everything needed to continue: tensors and plain types only (loads with weights_only=True)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "model": self.model.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "plateau": dataclasses.asdict(self.plateau),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "epoch": self.epoch,  # completed epochs
            "step": self.step,  # steps done in the epoch in progress (0 at an epoch end)
            "global_step": self.global_step,
            "sums": self.sums.cpu().clone(),
            "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "rng_aug": self.aug_gen.get_state(),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "best_accuracy": self.best_accuracy,
            "history": list(self.history),
            "elapsed_s": self.elapsed(),
            "precision": self.precision,  # a resumed 'auto' run keeps the choice it made when it started
            "precision_measured": dict(self.precision_choice.measured),
            "plan": self.plan.to_dict() if self.plan else None,  # a resumed run keeps the epochs it planned
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a `state()` dict."""
        self.model.load_state_dict(state["model"])
        if self.ema and state.get("ema") is not None:
            self.ema.model.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.plateau = Plateau(**state["plateau"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.global_step = state["epoch"], state["step"], state["global_step"]
        self.sums = state["sums"].to(self.device, torch.float64)
        torch.set_rng_state(state["rng_torch"])
        if self.device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        self.aug_gen.set_state(state["rng_aug"])
        self.best_metric, self.best_epoch = state["best_metric"], state["best_epoch"]
        self.best_accuracy, self.history = state["best_accuracy"], list(state["history"])
        self.elapsed_before = state["elapsed_s"]
        if self.config.precision == "auto" and state.get("precision") is not None:
            self.precision_choice = PrecisionChoice(state["precision"], dict(state.get("precision_measured") or {}))
        plan = state.get("plan")
        if plan and self.config.time_budget > 0:
            fields = {f.name for f in dataclasses.fields(PlanEvent)}
            self.plan = PlanEvent(**{k: v for k, v in plan.items() if k in fields})
        elif plan:  # epochs given since the budget planned them: the epochs at the smaller size stay as planned
            self.config = self.config.replace(small_epochs=min(int(plan["small_epochs"]), self.config.epochs))

    def choose_precision(self, restored: bool) -> None:
        """Settle the precision of this session (measured for 'auto' on the CPU, unless resumed) and say which."""
        c = self.config
        if not restored:
            shape = tuple(self.train_set[0].shape[1:])
            self.precision_choice = choose_precision(
                c.precision, self.device, self.model, shape, self.batch, c.channels_last
            )
        self.precision = self.precision_choice.precision  # never fp16 for 'auto', so the scaler stays as built
        choice = self.precision_choice
        self.emit(PrecisionEvent(self.precision, c.precision, dict(choice.measured), choice.describe()))

    def plan_budget(self) -> None:
        """With a time budget, settle the epochs it buys (measured here, unless resumed) and say how many."""
        c = self.config
        if c.time_budget <= 0:
            return
        # at the precision this run trains in (chosen above), so a kept speed is never another precision's
        self.speed_config = c.replace(precision=self.precision)
        if self.plan is None:
            from s7core.speed import measure_speed, plan_budget  # speed builds on this module

            speed = measure_speed(self.spec, self.speed_config, remember=True)
            plan = plan_budget(c, speed, *self.budget_images())
            text = plan.describe(c, speed)
            share = speed.share
            self.plan = PlanEvent(
                plan.epochs,
                plan.small_epochs,
                c.time_budget,
                round(plan.estimate_s, 1),
                text,
                speed.train_images_per_s * share,
                (speed.small_train_images_per_s or 0.0) * share,
                speed.eval_images_per_s,
            )
        self.config = c.replace(epochs=self.plan.epochs, small_epochs=self.plan.small_epochs)
        self.emit(self.plan)

    def budget_images(self) -> tuple[int, int]:
        """The training images (the validation split included) and test images a budget's estimates count."""
        return self.train_set[0].shape[0] + self.config.val_split, self.test_set[0].shape[0]

    def sustained_speed(self) -> tuple[Speed, str] | None:
        """This session's own training rates, from its whole epochs after its first, as a Speed, and in words;
        None before the session's second whole epoch. A size it has not trained yet stays at the plan's rate,
        and so does the evaluation until a full-size epoch has set its pace: in the runs of `best` so far the
        full-size epochs kept closer to their plan than the smaller ones (AMX Xeon, a slow spell: 83% of the
        plan's pace at 24 pixels, then 100-106% at full size), so the one size's pace says little about the
        other's."""
        from s7core import speed as measured  # speed builds on this module

        plan, size = self.plan, self.config.small_size
        rates = {small: images / seconds for small, (images, seconds) in self.paced.items() if seconds > 0}
        if not rates:
            return None
        full = rates.get(False, plan.train_images_per_s)
        small = rates.get(True, plan.small_train_images_per_s) or None
        eval_rate = plan.eval_images_per_s * (full / plan.train_images_per_s)
        speed = measured.Speed(full, eval_rate, self.batch, str(self.device), self.precision, small, this_run=True)
        sizes = {
            True: (f"{size}x{size} pixels", plan.small_train_images_per_s),
            False: ("full size", plan.train_images_per_s),
        }
        words = " and ".join(
            f"{rates[s]:,.0f} training images/s at {sizes[s][0]} (planned: {sizes[s][1]:,.0f})"
            for s in (True, False)
            if s in rates
        )
        return speed, words

    def check_budget(self) -> None:
        """After an epoch of a budgeted run: when at its own rates it would end late, fewer epochs to come
        (`s7core.speed.replan_budget`), emitted as a new plan that its checkpoints keep from now on."""
        c, plan = self.config, self.plan
        if c.time_budget <= 0 or not c.keep_to_budget or plan is None or plan.train_images_per_s <= 0:
            return
        sustained = self.sustained_speed()
        if sustained is None:
            return
        from s7core.speed import replan_budget  # speed builds on this module

        speed, pace = sustained
        cut = replan_budget(c, speed, *self.budget_images(), self.epoch, self.elapsed())
        if cut is None:
            return
        self.plan = dataclasses.replace(
            plan,
            epochs=cut.epochs,
            small_epochs=cut.small_epochs,
            estimate_s=round(cut.estimate_s, 1),
            text=cut.describe_cut(c, self.epoch, pace),
            after_epoch=self.epoch,
        )
        self.config = c.replace(epochs=cut.epochs, small_epochs=cut.small_epochs)
        self.emit(self.plan)


def planned_epochs(config: TrainConfig, state: dict[str, Any] | None) -> int:
    """The epochs a run trains: the ones its time budget bought, when a checkpoint has them, else the config's."""
    plan = (state or {}).get("plan")
    return int(plan["epochs"]) if config.time_budget > 0 and plan else config.epochs


def train(
    spec: NetworkSpec,
    config: TrainConfig,
    data: CifarData,
    callback: EventCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    state: dict[str, Any] | None = None,
    on_checkpoint: CheckpointCallback | None = None,
) -> TrainResult:
    """Train a model of `spec` on `data` with `config`, from scratch or from a checkpoint `state`.

    callback(event) receives a PrecisionEvent first, a PlanEvent next when the config has a time budget, then
    a StepEvent at most every STEP_EVENT_EVERY_S and at each epoch's last step, and an EpochEvent after each
    epoch, followed by a new PlanEvent when a run that keeps to its budget has fallen behind and cut its epochs
    to come. should_stop() is asked after every step: when
    it says True the step is finished, on_checkpoint(state, False) is called and the result has stopped=True.
    on_checkpoint(state, is_best) is called at every epoch end with a dict of tensors and plain types to save.
    """
    loop = _Loop(spec, config, data, callback, should_stop, on_checkpoint)
    if state is not None:
        try:
            loop.restore(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise UserError(f"the checkpoint does not fit this network and config ({err}) — start a new run") from None
    loop.choose_precision(restored=state is not None and state.get("precision") is not None)
    loop.plan_budget()
    return loop.run()
