"""The assignment's rules: verdicts, boundaries, reasons with numbers, and teachers' settings."""

from __future__ import annotations

import json

import pytest

from s7core.errors import UserError
from s7core.rules import (
    RuleResult,
    RuleSettings,
    RuleSettingsError,
    check_rules,
    dilated_positions,
    rules_passed,
    separable_positions,
)
from s7core.spec import BLOCKS, NetworkSpec, SpecError, conv, conv_bn_relu, get_preset, layer, sepconv

CLASSIFIER = tuple(BLOCKS["classifier"][1](0))


def net(*layers) -> NetworkSpec:
    """A spec of `layers` followed by the classifier block."""
    return NetworkSpec((*layers, *CLASSIFIER))


def by_key(results: list[RuleResult]) -> dict[str, RuleResult]:
    return {r.key: r for r in results}


def test_seed_passes_all_four_with_its_numbers() -> None:
    results = by_key(check_rules(get_preset("seed")))
    assert list(results) == ["params", "rf", "separable", "dilated"]
    assert all(r.passed for r in results.values())
    assert results["params"].reason == "925,706 parameters, under the limit of 1,000,000 by 74,294"
    assert (results["params"].value, results["params"].threshold) == (925_706, 1_000_000)
    assert results["rf"].reason == "global receptive field 64, above 44 by 20"
    assert results["separable"].value == [7, 10, 14, 17]
    assert results["dilated"].value == [7, 10]
    assert "layers 7, 10" in results["dilated"].reason


def test_tiny_passes_all_four() -> None:
    assert rules_passed(check_rules(get_preset("tiny"))) == "4/4"


def test_parameter_limit_is_strict() -> None:
    seed = get_preset("seed")
    at_limit = by_key(check_rules(seed, RuleSettings(max_params=925_706)))["params"]
    assert not at_limit.passed
    assert at_limit.reason.startswith("925,706 parameters, 1 too many for fewer than 925,706")
    assert by_key(check_rules(seed, RuleSettings(max_params=925_707)))["params"].passed
    over = by_key(check_rules(seed, RuleSettings(max_params=500_000)))["params"]
    assert not over.passed and "425,707 too many" in over.reason and "fewer channels" in over.reason


def test_receptive_field_must_be_strictly_above() -> None:
    seed = get_preset("seed")
    at = by_key(check_rules(seed, RuleSettings(min_rf=64)))["rf"]
    assert not at.passed
    assert at.reason.startswith("global receptive field 64, needs at least 65 (1 more)")
    assert by_key(check_rules(seed, RuleSettings(min_rf=63)))["rf"].passed


def test_small_rf_network_fails_with_the_gap() -> None:
    spec = net(*conv_bn_relu(16), *conv_bn_relu(16))  # two 3x3 convs: RF 5; a 32x32 global pool adds 31
    rf = by_key(check_rules(spec))["rf"]
    assert (rf.passed, rf.value) == (False, 36)
    assert "needs at least 45 (9 more)" in rf.reason


def test_no_dilated_convolution_fails_with_a_fix() -> None:
    layers = [lay if lay.type != "sepconv" else sepconv(lay.channels, 3, 1) for lay in get_preset("seed").layers]
    spec = NetworkSpec(tuple(layers))
    results = by_key(check_rules(spec))
    assert not results["dilated"].passed and results["dilated"].value == []
    assert results["dilated"].reason.startswith("no dilated convolution — set dilation 2")
    assert results["separable"].passed and results["params"].passed
    assert rules_passed(list(results.values())) in ("3/4", "2/4")


def test_dilated_maxpool_does_not_count_as_a_dilated_convolution() -> None:
    spec = net(sepconv(16, 3, 1), layer("maxpool", kernel=2, dilation=2))
    assert dilated_positions(spec) == []
    assert dilated_positions(net(conv(16, 3, 2, dilation=2))) == [0]


def test_no_separable_convolution_fails() -> None:
    spec = net(conv(16, 3, 2, dilation=2))
    separable = by_key(check_rules(spec))["separable"]
    assert not separable.passed
    assert "no depthwise-separable convolution — add a sepconv layer" in separable.reason


def test_depthwise_then_pointwise_counts_as_separable() -> None:
    spec = net(conv(16, 3, 1), conv(16, 3, 1, groups=16), layer("bn"), layer("relu"), conv(32, 1))
    assert separable_positions(spec) == [1]
    assert by_key(check_rules(spec))["separable"].reason == "depthwise-separable convolution at layer 1"


@pytest.mark.parametrize(
    ("after", "why"),
    [
        ([layer("maxpool"), conv(32, 1)], "a pool comes between"),
        ([conv(32, 3, 1)], "followed by a 3x3, not a 1x1"),
        ([conv(32, 1, groups=16)], "the 1x1 is grouped, so it mixes no channels"),
        ([], "nothing follows but the classifier's pool"),
    ],
)
def test_depthwise_without_a_pointwise_is_not_separable(after: list, why: str) -> None:
    spec = net(conv(16, 3, 1), conv(16, 3, 1, groups=16), *after)
    assert separable_positions(spec) == [], why


def test_grouped_but_not_depthwise_is_not_separable() -> None:
    spec = net(conv(16, 3, 1), conv(16, 3, 1, groups=4), conv(32, 1))
    assert separable_positions(spec) == []


def test_rules_can_be_waived() -> None:
    spec = net(*conv_bn_relu(16))
    settings = RuleSettings(require_separable=False, require_dilated=False, min_rf=10)
    results = by_key(check_rules(spec, settings))
    assert all(r.passed for r in results.values())
    assert results["dilated"].reason == "no dilated convolution, and none is required"
    assert results["separable"].threshold is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_params": 0},
        {"max_params": -5},
        {"max_params": 1.5},
        {"max_params": "1000"},
        {"max_params": True},
        {"max_params": 10**13},
        {"min_rf": -1},
        {"min_rf": None},
        {"require_dilated": "yes"},
        {"require_separable": 1},
    ],
)
def test_nonsense_settings_are_user_errors(kwargs: dict) -> None:
    with pytest.raises(RuleSettingsError) as caught:
        RuleSettings(**kwargs)
    assert isinstance(caught.value, UserError)
    assert next(iter(kwargs)) in str(caught.value)


def test_invalid_spec_is_a_spec_error_not_a_verdict() -> None:
    with pytest.raises(SpecError):
        check_rules(NetworkSpec((conv(16, 40),)))


def test_results_are_plain_json() -> None:
    data = json.loads(json.dumps([r.to_dict() for r in check_rules(get_preset("seed"))]))
    assert data[0] == {
        "key": "params",
        "title": "Fewer than 1,000,000 parameters",
        "passed": True,
        "reason": "925,706 parameters, under the limit of 1,000,000 by 74,294",
        "value": 925706,
        "threshold": 1000000,
    }
