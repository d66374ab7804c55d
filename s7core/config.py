"""Every training setting, declared once: its type, limits, unit, words and group.

`TrainConfig` and its `augment` section (`AugmentConfig`) are frozen dataclasses that check every value when
built, so a config that exists is a valid one. Each field is declared with `setting(...)`; `settings()` lists
the declarations, and the command line's flags and the Train page's form are generated from that list, so a
new field shows up everywhere with nothing else to edit. Plain data in and out: `to_dict` / `from_dict`
round-trip through the JSON that run folders store.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from s7core.errors import UserError

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
SCHEDULES = ("onecycle", "cosine", "step", "plateau", "constant")
# bf16 autocast except the depthwise convs, which run in fp32: on some CPUs bf16 depthwise kernels are the slow ones
BF16_DEPTHWISE_FP32 = "bf16-dw32"
PRECISIONS = ("fp32", "bf16", BF16_DEPTHWISE_FP32, "fp16", "auto")
DEVICES = ("auto", "cpu", "cuda")

_DECLARATION = "s7core.setting"  # field metadata key of a setting's declaration
_SECTION = "s7core.section"  # field metadata key of a nested group of settings (its dataclass)
_KINDS: dict[str, type] = {"bool": bool, "int": int, "float": float, "str": str}


class ConfigError(UserError, ValueError):
    """A training setting out of range or of the wrong type; the message names it in words and what it allows.

    `setting` is the refused setting's declaration when one setting is to blame, so a caller can say where it was
    given (the command line adds its flag); None otherwise.
    """

    def __init__(self, message: str, setting: Setting | None = None):
        super().__init__(message)
        self.setting = setting


class AugmentError(ConfigError):
    """An augmentation setting out of range; the message says the allowed range."""


@dataclass(frozen=True)
class Setting:
    """One declared setting: where it lives, its type and limits, and the words that present it."""

    path: str  # "lr", or "augment.cutout" for a setting of a section
    kind: type  # bool, int, float or str
    default: Any
    label: str  # in words, e.g. "weight decay"
    help: str
    group: str  # the heading it is shown under
    unit: str = ""  # e.g. "pixels", "images per step"; "" for a plain number or a fraction
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself is refused (a learning rate must be above 0)
    choices: tuple[str, ...] = ()
    pattern: str = ""  # a regular expression for further accepted text, e.g. cuda:\d+
    step: float | None = None  # a sensible increment for a number input
    zero: str = ""  # what the value 0 means, in words ("off", "only after the last epoch"); "" for a plain 0

    @property
    def name(self) -> str:
        """The field name, the last part of the path."""
        return self.path.rpartition(".")[2]

    @property
    def title(self) -> str:
        """The label with its unit, e.g. "batch size (images per step)"."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def shown(self, value: Any) -> str:
        """A value in words: "on", "512 images", "only after the last epoch", "0.4"."""
        if isinstance(value, bool):
            return "on" if value else "off"
        if value == 0 and self.zero:
            return self.zero
        number = f"{value:,}" if isinstance(value, int) else str(value)
        return f"{number} {self.unit}" if self.unit else number

    def allowed(self) -> str:
        """The values this setting takes, in words: "whole pixels from 0 to 16", "one of sgd, adam"."""
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            extra = [self.pattern.replace(r"\d+", "N")] if self.pattern else []
            return f"one of {', '.join([*self.choices, *extra])}"
        if self.kind is int:
            whole = f"whole {self.unit}" if self.unit else "a whole number"
            return f"{whole} from {self.low} to {self.high}"
        span = f"above {self.low} and at most {self.high}" if self.low_open else f"between {self.low} and {self.high}"
        return f"{span} ({self.unit})" if self.unit else span

    def accepts(self, value: Any) -> bool:
        """Whether `value` has this setting's type and lies within its limits."""
        if self.kind is bool:
            return type(value) is bool
        if self.kind is str:
            listed = not self.choices or value in self.choices
            return type(value) is str and (listed or bool(self.pattern and re.fullmatch(self.pattern, value)))
        if not (type(value) is int or (self.kind is float and type(value) is float and not math.isnan(value))):
            return False
        return self.low <= value <= self.high and not (self.low_open and value == self.low)

    def check(self, value: Any, error: type[ConfigError] = ConfigError) -> Any:
        """`value`, a float where a float is asked for; raise `error` naming the setting when it is refused."""
        if not self.accepts(value):
            raise error(f"{self.label} must be {self.allowed()}, got {value!r}", self)
        return float(value) if self.kind is float else value


def setting(
    default: Any,
    *,
    label: str,
    help: str,
    group: str,
    unit: str = "",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] = (),
    pattern: str = "",
    step: float | None = None,
    zero: str = "",
) -> Any:
    """A dataclass field with its default and its whole declaration (see `Setting`)."""
    declaration = dict(label=label, help=help, group=group, unit=unit, low=low, high=high, low_open=low_open)
    declaration.update(choices=choices, pattern=pattern, step=step, zero=zero)
    return field(default=default, metadata={_DECLARATION: declaration})


def _section(cls: type) -> Any:
    """A dataclass field holding a nested group of settings."""
    return field(default_factory=cls, metadata={_SECTION: cls})


def _setting(f: dataclasses.Field, prefix: str) -> Setting:
    return Setting(f"{prefix}{f.name}", _KINDS[str(f.type)], f.default, **f.metadata[_DECLARATION])


def _declared(cls: type, prefix: str) -> list[Setting]:
    """The settings of a dataclass's fields, sections expanded, with paths under `prefix`."""
    found = []
    for f in dataclasses.fields(cls):
        if _SECTION in f.metadata:
            found += _declared(f.metadata[_SECTION], f"{prefix}{f.name}.")
        else:
            found.append(_setting(f, prefix))
    return found


@functools.cache
def _own_settings(cls: type) -> tuple[Setting, ...]:
    """The settings `cls` declares itself (not its sections'), with their paths inside TrainConfig."""
    sections = {f.metadata[_SECTION]: f.name for f in dataclasses.fields(TrainConfig) if _SECTION in f.metadata}
    prefix = f"{sections[cls]}." if cls in sections else ""
    return tuple(_setting(f, prefix) for f in dataclasses.fields(cls) if _DECLARATION in f.metadata)


def _declaration(cls: type, name: str) -> Setting:
    """The declaration of field `name` of `cls`, for a message about a check that spans several fields."""
    return next(s for s in _own_settings(cls) if s.name == name)


def _check_fields(config: Any, error: type[ConfigError]) -> None:
    """Check every declared field of a frozen config, storing ints given for floats as floats."""
    for s in _own_settings(type(config)):
        object.__setattr__(config, s.name, s.check(getattr(config, s.name), error))


def _known_keys(data: Any, cls: type, what: str, not_a_dict: str) -> dict[str, Any]:
    """`data` as a dict whose keys are all fields of `cls`; else a ConfigError saying what is wrong."""
    if not isinstance(data, dict):
        raise ConfigError(not_a_dict)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown {what} setting '{unknown[0]}': use one of {', '.join(names)}")
    return dict(data)


# ---------------------------------------------------------------- the settings

_AUGMENT = "Augmentation"
_OPTIMIZER = "Optimizer"
_SCHEDULE = "Learning-rate schedule"
_REGULARISE = "Regularisation and evaluation"
_DEVICE = "Device and reproducibility"


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation; every switch off gives plain normalisation."""

    crop_padding: int = setting(
        4, label="random-crop padding", unit="pixels", low=0, high=16, step=1, group=_AUGMENT,
        zero="off",
        help="pad each side by this many reflected pixels, then crop back to size at a random offset (0 = off)",
    )  # fmt: skip
    flip: bool = setting(True, label="horizontal flip", group=_AUGMENT, help="mirror each image with probability 0.5")
    cutout: int = setting(
        0, label="cutout square", unit="pixels", low=0, high=32, step=1, group=_AUGMENT,
        zero="off", help="side of one square per image set to the mean colour (0 after normalising); 0 = off",
    )  # fmt: skip
    affine: bool = setting(
        False, label="random affine", group=_AUGMENT,
        help="the reference recipe's RandomAffine: a small random rotation, shift, scale and shear",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _check_fields(self, AugmentError)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> AugmentConfig:
        """A checked AugmentConfig from plain data; missing fields take their defaults."""
        if isinstance(data, AugmentConfig):
            return data
        return cls(
            **_known_keys(data, cls, "augment", 'augment must be an object such as {"crop_padding": 4, "flip": true}')
        )


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run, with its unit; checked when built, plain data that round-trips JSON."""

    optimizer: str = setting(
        "nesterov", label="optimizer", choices=OPTIMIZERS, group=_OPTIMIZER,
        help="sgd; nesterov (SGD with Nesterov momentum); adam; adamw (Adam with decoupled weight decay)",
    )  # fmt: skip
    lr: float = setting(
        0.05, label="peak learning rate", low=0, high=10, low_open=True, group=_OPTIMIZER,
        help="the highest learning rate of the schedule, per step, for the mean loss of a batch",
    )  # fmt: skip
    momentum: float = setting(
        0.9, label="momentum", low=0, high=0.9999, step=0.05, group=_OPTIMIZER, help="SGD momentum; Adam's beta1"
    )
    weight_decay: float = setting(
        5e-4, label="weight decay", low=0, high=1, group=_OPTIMIZER,
        help="L2 penalty (sgd, nesterov, adam) or decoupled decay (adamw)",
    )  # fmt: skip
    batch_size: int = setting(
        128, label="batch size", unit="images per step", low=1, high=4096, step=16, group=_OPTIMIZER,
        help="images per optimizer step; the last partial batch of an epoch is dropped",
    )  # fmt: skip
    epochs: int = setting(
        20, label="epochs", low=1, high=1000, step=1, group=_OPTIMIZER,
        help="passes over the training images; with a time budget, the count its smaller-size epochs are a share "
        "of (giving epochs without a time budget turns a recipe's budget off)",
    )  # fmt: skip
    time_budget: float = setting(
        0.0, label="time budget", unit="min", low=0, high=10_000, step=0.5, group=_OPTIMIZER, zero="off",
        help="when set, the trainer measures this machine's speed before it starts and trains as many epochs as "
        "fit in this many minutes, test scorings included; the epochs at a smaller size keep their share of the "
        "epochs set above (0 = off: train the epochs set)",
    )  # fmt: skip
    keep_to_budget: bool = setting(
        True, label="keep to the budget", group=_OPTIMIZER,
        help="with a time budget: after every epoch the run compares its own speed with the one it was planned "
        "at, and when it has fallen behind (the machine slowed down) it trains fewer of the epochs still to come, "
        "so that it still ends within the budget. Off: it trains the epochs planned before the first step, "
        "however long they take, so that a stopped and resumed run always ends as one left alone",
    )  # fmt: skip
    schedule: str = setting(
        "onecycle", label="schedule", choices=SCHEDULES, group=_SCHEDULE,
        help="how the learning rate moves: onecycle (rise, then fall to 0), cosine, step (drops every few "
        "epochs), plateau (drops when the watched loss stops falling) or constant",
    )  # fmt: skip
    warmup: float = setting(
        0.2, label="warm-up", unit="fraction of all steps", low=0, high=0.99, step=0.05, group=_SCHEDULE,
        help="onecycle and cosine: the share of the run spent rising linearly to the peak learning rate",
    )  # fmt: skip
    step_size: int = setting(
        10, label="drop every", unit="epochs", low=1, high=1000, step=1, group=_SCHEDULE,
        help="step: epochs between learning-rate drops",
    )  # fmt: skip
    gamma: float = setting(
        0.1, label="drop factor", low=0, high=1, low_open=True, step=0.05, group=_SCHEDULE,
        help="step: the factor applied to the learning rate at each drop",
    )  # fmt: skip
    plateau_factor: float = setting(
        0.5, label="plateau drop factor", low=0, high=0.99, low_open=True, step=0.05, group=_SCHEDULE,
        help="plateau: the factor applied when the watched loss stops falling",
    )  # fmt: skip
    plateau_patience: int = setting(
        0, label="plateau patience", unit="epochs", low=0, high=1000, step=1, group=_SCHEDULE,
        help="plateau: epochs without improvement tolerated before a drop",
    )  # fmt: skip
    plateau_on_test: bool = setting(
        False, label="plateau watches the test loss", group=_SCHEDULE,
        help="plateau steps on the TEST loss, as the reference did: the test set then steers training",
    )  # fmt: skip
    label_smoothing: float = setting(
        0.0, label="label smoothing", low=0, high=0.99, step=0.05, group=_REGULARISE,
        help="cross-entropy target smoothing (0 = one-hot targets)",
    )  # fmt: skip
    augment: AugmentConfig = _section(AugmentConfig)  # training-batch augmentation
    val_split: int = setting(
        0, label="held out for validation", unit="images", low=0, high=49_000, step=1000, group=_REGULARISE,
        zero="none",
        help="training images held out to pick the best checkpoint and to steer the plateau schedule (0 = none)",
    )  # fmt: skip
    ema: float = setting(
        0.0, label="weight-average decay", low=0, high=0.99999, group=_REGULARISE,
        zero="off", help="decay of an exponential moving average of the weights, which is then evaluated (0 = off)",
    )  # fmt: skip
    tta_flip: bool = setting(
        False, label="test-time mirror", group=_REGULARISE,
        help="evaluate on each image and its mirror image, averaging the logits",
    )  # fmt: skip
    tta_shift: bool = setting(
        False, label="test-time shifts", group=_REGULARISE,
        help="also evaluate on each image moved 1 pixel up-left and down-right (weights 1/2, 1/4, 1/4)",
    )  # fmt: skip
    whiten_stem: bool = setting(
        False, label="whitened first conv", group=_REGULARISE,
        help="set the first conv from whitened patches of training images, then freeze it",
    )  # fmt: skip
    freeze_stem_bn: bool = setting(
        False, label="frozen BN after the stem", group=_REGULARISE,
        help="with a whitened first conv, also keep the BN right after it at scale 1 and shift 0: then nothing "
        "below the second conv needs a gradient, and the backward pass stops at that conv's weights",
    )  # fmt: skip
    seed: int = setting(
        0, label="random seed", low=0, high=2**31 - 1, step=1, group=_DEVICE,
        help="seeds the weights, the validation split, batch order and augmentation",
    )  # fmt: skip
    device: str = setting(
        "auto", label="device", choices=DEVICES, pattern=r"cuda:\d+", group=_DEVICE,
        help="auto (CUDA when available, else the CPU), cpu, cuda, or cuda:N for one GPU of several",
    )  # fmt: skip
    channels_last: bool = setting(
        True, label="channels-last layout", group=_DEVICE,
        help="NHWC memory layout for model and batches (faster on the CPU for every net measured)",
    )  # fmt: skip
    precision: str = setting(
        "auto", label="precision", choices=PRECISIONS, group=_DEVICE,
        help="fp32; bf16 or fp16 autocast; bf16-dw32 is bf16 with the depthwise convs in fp32. auto is bf16 on a GPU "
        "that has it and, on the CPU, the fastest of fp32, bf16 and bf16-dw32 as measured before training",
    )  # fmt: skip
    max_steps: int = setting(
        0, label="stop after", unit="steps", low=0, high=10**9, step=10, group=_DEVICE,
        zero="no cap", help="stop after this many optimizer steps in all (0 = no cap); for smoke tests",
    )  # fmt: skip
    eval_every: int = setting(
        1, label="test every", unit="epochs", low=0, high=1000, step=1, group=_REGULARISE,
        zero="only after the last epoch",
        help="epochs between test-set evaluations (0 = only after the last epoch, which is always scored)",
    )  # fmt: skip
    eval_subset: int = setting(
        0, label="test images between", unit="images", low=0, high=10_000, step=500, group=_REGULARISE,
        zero="all of them",
        help="score the test evaluations before the last epoch on this many test images, without test-time "
        "augmentation, for the curve only (0 = all of them); the last epoch is scored on the whole test set",
    )  # fmt: skip
    small_epochs: int = setting(
        0, label="epochs at a smaller size", unit="epochs", low=0, high=1000, step=1, group=_AUGMENT,
        zero="off", help="train the first epochs on images scaled down to the smaller size below, which costs less per "
        "image; the later epochs and every evaluation use full-size images (0 = off)",
    )  # fmt: skip
    small_size: int = setting(
        24, label="smaller image size", unit="pixels", low=8, high=64, step=2, group=_AUGMENT,
        help="side of the scaled-down images of the first epochs (see 'epochs at a smaller size')",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(f"augment must be an AugmentConfig, got {self.augment!r} — use TrainConfig.from_dict")
        _check_fields(self, ConfigError)
        if self.freeze_stem_bn and not self.whiten_stem:
            raise ConfigError(
                "freeze_stem_bn freezes the BN after a frozen, whitened first conv: turn whiten_stem on as well, "
                "or turn freeze_stem_bn off",
                _declaration(TrainConfig, "freeze_stem_bn"),
            )
        if self.optimizer == "nesterov" and self.momentum == 0:
            raise ConfigError(
                "the nesterov optimizer needs a momentum above 0: set the momentum (e.g. 0.9) or pick sgd",
                _declaration(TrainConfig, "momentum"),
            )

    def epoch_work(self, image_size: int) -> tuple[float, ...]:
        """Each planned epoch's work relative to an epoch at full size: pixels per image, so an early epoch at
        the smaller size costs (small / full)^2 of one. Time-left estimates weigh the epochs by it."""
        small = min(1.0, (self.small_size / image_size) ** 2)
        return tuple(small if e < self.small_epochs else 1.0 for e in range(self.epochs))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """A checked config from plain data (a run's config.json); missing fields take their defaults."""
        values = _known_keys(data, cls, "training", "a training config must be a JSON object of settings")
        if "augment" in values:
            values["augment"] = AugmentConfig.from_dict(values["augment"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        """A checked copy with some settings changed; None values are ignored, `augment` may be plain data."""
        return TrainConfig.from_dict({**self.to_dict(), **{k: v for k, v in changes.items() if v is not None}})


def time_to_go(elapsed_s: float, work_done: float, work_total: float) -> float | None:
    """Seconds still needed at the pace so far (seconds per unit of work, see TrainConfig.epoch_work); None
    before any work is done."""
    if work_done <= 0:
        return None
    return elapsed_s / work_done * max(work_total - work_done, 0.0)


def settings() -> list[Setting]:
    """Every training setting in declaration order, the augmentation settings under "augment."."""
    return _declared(TrainConfig, "")


def with_settings(config: TrainConfig, values: Mapping[str, Any]) -> TrainConfig:
    """A checked copy of `config` with settings changed, keyed by path ("lr", "augment.cutout").

    Epochs given without a time budget are the epochs to train: they turn off a time budget `config` has."""
    paths = {s.path for s in settings()}
    unknown = sorted(set(values) - paths)
    if unknown:
        raise ConfigError(f"unknown training setting '{unknown[0]}': use one of {', '.join(sorted(paths))}")
    top = {path: value for path, value in values.items() if "." not in path}
    if "epochs" in values and "time_budget" not in values and config.time_budget > 0:
        top["time_budget"] = 0.0
    sections: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        if "." in path:
            section, _, name = path.partition(".")
            sections.setdefault(section, {})[name] = value
    nested = {section: dataclasses.replace(getattr(config, section), **v) for section, v in sections.items()}
    return dataclasses.replace(config, **top, **nested)


# ---------------------------------------------------------------- what a run asks of the machine that trains it

_RESOURCES = "Resources"


@dataclass(frozen=True)
class Resources:
    """The CPUs and GPUs one run asks for; not part of its training config, so a resumed run may ask anew."""

    cpus: int = setting(
        0, label="CPU cores", unit="cores", low=0, high=1024, step=1, group=_RESOURCES,
        help="cores the run reserves; its trainer runs this many torch threads. 0 = automatic: every core "
        "of this machine on the local executor, one core on a Ray cluster",
    )  # fmt: skip
    gpus: float = setting(
        0.0, label="GPUs", unit="GPUs", low=0, high=64, step=0.25, group=_RESOURCES,
        help="GPUs the run reserves on a Ray cluster, where 0 trains on a CPU and a fraction (0.25) shares one "
        "GPU between runs; on the local executor only checked against this machine's GPUs (the device setting decides)",
    )  # fmt: skip

    def __post_init__(self) -> None:
        _check_fields(self, ConfigError)
        if self.gpus > 1 and not float(self.gpus).is_integer():
            raise ConfigError(
                f"GPUs {self.gpus:g}: above one GPU, ask for whole GPUs (2, 3, ...); a share is below 1",
                _declaration(Resources, "gpus"),
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Resources:
        """Checked resources from plain data (a run's status); missing fields take their defaults."""
        return cls(**_known_keys(data or {}, cls, "resource", 'resources must be an object such as {"cpus": 2}'))


def resource_settings() -> list[Setting]:
    """The declared resource settings (cpus, gpus), for the command line's flags and the Train page's form."""
    return _declared(Resources, "")
