"""Training settings: declared once, checked when a config is built, JSON round trips, old run configs."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from s7core.config import (
    AugmentConfig,
    AugmentError,
    ConfigError,
    Setting,
    TrainConfig,
    settings,
    with_settings,
)
from s7core.errors import UserError


def declared(path: str) -> Setting:
    (found,) = [s for s in settings() if s.path == path]
    return found


def test_config_round_trips_through_json():
    config = TrainConfig(optimizer="adamw", lr=0.003, augment=AugmentConfig(crop_padding=2, flip=False, cutout=8))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.augment == AugmentConfig(crop_padding=2, flip=False, cutout=8, affine=False)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"lr": 0}, "peak learning rate"),
        ({"lr": -0.1}, "peak learning rate"),
        ({"batch_size": 0}, "batch size"),
        ({"batch_size": 5000}, "batch size"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1001}, "epochs"),
        ({"optimizer": "rmsprop"}, "optimizer"),
        ({"schedule": "linear"}, "schedule"),
        ({"precision": "fp8"}, "precision"),
        ({"device": "tpu"}, "device"),
        ({"lr": "0.1"}, "peak learning rate"),
        ({"batch_size": 32.0}, "batch size"),
        ({"optimizer": "nesterov", "momentum": 0.0}, "momentum"),
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"augment": {"crop": 4}}, "crop"),
        ({"augment": {"flip": 1}}, "flip"),
        ({"label_smoothing": 1.5}, "label smoothing"),
    ],
)
def test_config_rejects_bad_values_naming_the_setting(change, named):
    with pytest.raises(ConfigError, match=named) as info:
        TrainConfig.from_dict({**TrainConfig().to_dict(), **change})
    assert isinstance(info.value, UserError)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: TrainConfig(batch_size=5000), "batch size must be whole images per step from 1 to 4096, got 5000"),
        (lambda: TrainConfig(lr=0), "peak learning rate must be above 0 and at most 10, got 0"),
        (lambda: TrainConfig(warmup=1.0), "warm-up must be between 0 and 0.99 (fraction of all steps), got 1.0"),
        (lambda: TrainConfig(precision="fp8"), "precision must be one of fp32, bf16, bf16-dw32, fp16, auto, got 'fp8'"),
        (lambda: TrainConfig(device="cuda:x"), "device must be one of auto, cpu, cuda, cuda:N, got 'cuda:x'"),
        (lambda: TrainConfig(tta_flip=1), "test-time mirror must be true or false, got 1"),
        (
            lambda: TrainConfig(augment={"flip": True}),
            "augment must be an AugmentConfig, got {'flip': True} — use TrainConfig.from_dict",
        ),
        (lambda: AugmentConfig(cutout=33), "cutout square must be whole pixels from 0 to 32, got 33"),
        (lambda: dataclasses.replace(TrainConfig(), epochs=0), "epochs must be a whole number from 1 to 1000, got 0"),
    ],
)
def test_a_config_is_checked_when_built_naming_setting_value_and_range(make, message):
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value) == message


def test_configs_are_frozen_and_a_change_is_a_checked_copy():
    config = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.augment.cutout = 8  # type: ignore[misc]
    assert dataclasses.replace(config, lr=0.2).lr == 0.2 and config.lr == 0.05
    assert TrainConfig(device="cuda:1").device == "cuda:1"


def test_augment_errors_are_config_errors_with_the_pixel_range():
    with pytest.raises(AugmentError, match="random-crop padding must be whole pixels from 0 to 16, got 17"):
        AugmentConfig(crop_padding=17)
    assert issubclass(AugmentError, ConfigError) and issubclass(ConfigError, UserError)
    assert AugmentConfig(cutout=32).cutout == 32  # the one cutout limit, the same on the page and the CLI


def test_a_whole_number_given_for_a_fraction_is_stored_as_a_float():
    config = TrainConfig.from_dict({"weight_decay": 0, "lr": 1})
    assert type(config.weight_decay) is float and type(config.lr) is float
    assert json.dumps(config.to_dict()["weight_decay"]) == "0.0"


def test_replace_ignores_none_and_validates():
    config = TrainConfig().replace(lr=None, batch_size=64)
    assert (config.lr, config.batch_size) == (TrainConfig().lr, 64)
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig().replace(epochs=-3)


def test_an_older_run_config_without_the_newer_settings_still_loads():
    """A config.json written before tta_shift, whiten_stem and eval_every existed."""
    old = {
        "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0, "batch_size": 32, "epochs": 20,
        "schedule": "plateau", "warmup": 0.2, "step_size": 10, "gamma": 0.1, "plateau_factor": 0.5,
        "plateau_patience": 0, "plateau_on_test": True, "label_smoothing": 0, "val_split": 0, "ema": 0,
        "tta_flip": False, "seed": 0, "device": "auto", "channels_last": True, "precision": "auto", "max_steps": 0,
        "augment": {"crop_padding": 0, "flip": True, "cutout": 0, "affine": True},
    }  # fmt: skip
    config = TrainConfig.from_dict(old)
    assert (config.tta_shift, config.whiten_stem, config.eval_every) == (False, False, 1)
    assert config.augment == AugmentConfig(crop_padding=0, flip=True, cutout=0, affine=True)
    assert TrainConfig.from_dict({"augment": {"cutout": 4}}).augment == AugmentConfig(cutout=4)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "a training config must be a JSON object of settings"),
        ({"augment": 4}, 'augment must be an object such as {"crop_padding": 4, "flip": true}'),
        ({"learning_rate": 0.1}, "unknown training setting 'learning_rate': use one of optimizer, lr, "),
        ({"augment": {"crop": 4}}, "unknown augment setting 'crop': use one of crop_padding, flip, cutout, affine"),
    ],
)
def test_from_dict_refuses_what_is_not_a_config_with_a_clear_message(data, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------- the declarations


def test_every_field_is_declared_once_with_words_and_limits():
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "augment"]
    fields += [f"augment.{f.name}" for f in dataclasses.fields(AugmentConfig)]
    assert sorted(s.path for s in settings()) == sorted(fields)
    assert len({s.name for s in settings()}) == len(fields)  # names are unique: flags are made from them
    for s in settings():
        assert s.label and s.help and s.group, s.path
        assert s.kind in (bool, int, float, str), s.path
        assert s.accepts(s.default), s.path
        if s.kind in (int, float):
            assert s.low is not None and s.high is not None and s.low < s.high, s.path
        if s.kind is str:
            assert s.choices, s.path


def test_defaults_come_from_the_declarations():
    config = TrainConfig()
    for s in settings():
        section, _, name = s.path.rpartition(".")
        assert getattr(getattr(config, section) if section else config, name) == s.default


@pytest.mark.parametrize(
    ("path", "title", "allowed"),
    [
        ("batch_size", "batch size (images per step)", "whole images per step from 1 to 4096"),
        ("weight_decay", "weight decay", "between 0 and 1"),
        ("augment.cutout", "cutout square (pixels)", "whole pixels from 0 to 32"),
        ("optimizer", "optimizer", "one of sgd, nesterov, adam, adamw"),
        ("augment.flip", "horizontal flip", "true or false"),
    ],
)
def test_a_setting_says_what_it_is_in_words(path, title, allowed):
    s = declared(path)
    assert (s.title, s.allowed(), s.name) == (title, allowed, path.rpartition(".")[2])


def _refused(s: Setting):
    """A value `s` refuses: one past its top for a number, a wrong type otherwise."""
    if s.kind in (int, float):
        return s.high + 1
    return 1 if s.kind is bool else "no-such-choice"


def test_every_refused_setting_is_named_by_its_label_and_unit_never_its_code_name():
    for s in settings():
        with pytest.raises(ConfigError) as info:
            s.check(_refused(s))
        message = str(info.value)
        assert message == f"{s.label} must be {s.allowed()}, got {_refused(s)!r}", s.path
        assert info.value.setting == s
        if s.unit:
            assert s.unit in message, s.path
        if "_" in s.name:
            assert s.name not in message and s.path not in message, s.path


def test_a_config_json_is_refused_in_the_same_words():
    with pytest.raises(ConfigError, match=r"^weight decay must be between 0 and 1, got 5$"):
        TrainConfig.from_dict({"weight_decay": 5})
    with pytest.raises(ConfigError, match=r"^batch size must be whole images per step from 1 to 4096, got 0$"):
        TrainConfig.from_dict({"batch_size": 0})
    with pytest.raises(ConfigError, match=r"^the nesterov optimizer needs a momentum above 0: set the momentum"):
        TrainConfig.from_dict({"optimizer": "nesterov", "momentum": 0})


def test_each_limit_is_enforced_at_its_edge():
    for s in settings():
        if s.kind not in (int, float):
            continue
        assert s.accepts(s.high) and not s.accepts(s.high + 1), s.path
        assert s.accepts(s.low) != s.low_open, s.path
        assert not s.accepts(s.low - 1), s.path


def test_with_settings_changes_settings_by_path():
    config = with_settings(TrainConfig(), {"lr": 0.2, "augment.cutout": 8})
    assert (config.lr, config.augment.cutout, config.augment.crop_padding) == (0.2, 8, 4)
    with pytest.raises(ConfigError, match="cutout square must be whole pixels from 0 to 32, got 40"):
        with_settings(TrainConfig(), {"augment.cutout": 40})
    with pytest.raises(ConfigError, match="unknown training setting 'augment.crop'"):
        with_settings(TrainConfig(), {"augment.crop": 2})


def test_the_settings_and_recipes_load_without_torch_or_the_data_module():
    code = (
        "import sys, s7core.config, s7core.recipes; "
        "print(sorted(m for m in ('torch', 's7core.data', 'streamlit') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_epochs_given_without_a_time_budget_turn_a_recipes_budget_off():
    budgeted = TrainConfig(epochs=10, small_epochs=7, time_budget=11.5)
    assert with_settings(budgeted, {"epochs": 14}).time_budget == 0  # the epochs to train, as asked
    assert with_settings(budgeted, {"epochs": 14, "time_budget": 5}).time_budget == 5  # the shape of a budget
    assert with_settings(budgeted, {"lr": 0.1}).time_budget == 11.5  # other settings leave it alone
    assert with_settings(TrainConfig(), {"epochs": 3}).time_budget == 0
