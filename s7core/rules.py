"""The assignment's rules, each a pass/fail with a reason that gives the numbers.

1. fewer than `max_params` parameters (1,000,000);
2. a global receptive field strictly above `min_rf` (44);
3. at least one depthwise-separable convolution;
4. at least one dilated convolution.

Thresholds live in `RuleSettings`, so a teacher can set their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from s7core.errors import UserError
from s7core.rf.table import global_rf
from s7core.spec import SPATIAL_TYPES, Layer, NetworkSpec, infer_shapes
from s7core.summary import summarize

MAX_PARAMS_LIMIT = 10**12  # a sanity bound on a teacher's setting, far beyond any network here
MAX_RF_LIMIT = 100_000


class RuleSettingsError(UserError, ValueError):
    """A rule threshold that makes no sense (negative, not a whole number, ...)."""


@dataclass(frozen=True)
class RuleSettings:
    """The thresholds of the rules; the defaults are the assignment's."""

    max_params: int = 1_000_000  # the network must have fewer than this many parameters
    min_rf: int = 44  # the global receptive field must be strictly above this, in input pixels
    require_separable: bool = True  # needs a depthwise-separable convolution
    require_dilated: bool = True  # needs a convolution with dilation > 1

    def __post_init__(self) -> None:
        _check_whole("max_params", self.max_params, 1, MAX_PARAMS_LIMIT)
        _check_whole("min_rf", self.min_rf, 0, MAX_RF_LIMIT)
        for name in ("require_separable", "require_dilated"):
            if not isinstance(getattr(self, name), bool):
                raise RuleSettingsError(f"{name} must be true or false, got {getattr(self, name)!r}")


def _check_whole(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleSettingsError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise RuleSettingsError(f"{name} is {value:,}; it must be from {low:,} to {high:,}")


@dataclass(frozen=True)
class RuleResult:
    """One rule's verdict on a spec."""

    key: str  # "params", "rf", "separable", "dilated"
    title: str  # the rule in words
    passed: bool
    reason: str  # why, with the numbers
    value: Any  # what the spec has: a count, an RF, or the positions of matching layers
    threshold: Any  # what the rule asks for

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- finding layers


def separable_positions(spec: NetworkSpec) -> list[int]:
    """Positions of depthwise-separable convolutions: sepconv layers, and depthwise convs completed by a 1x1."""
    shapes = infer_shapes(spec)
    found = []
    for i, lay in enumerate(spec.layers):
        if lay.type == "sepconv":
            found.append(i)
        elif _is_depthwise(lay, shapes[i].channels) and _pointwise_follows(spec.layers, i):
            found.append(i)
    return found


def _is_depthwise(lay: Layer, in_channels: int) -> bool:
    return lay.type == "conv" and in_channels > 1 and lay.groups == in_channels


def _pointwise_follows(layers: tuple[Layer, ...], depthwise_at: int) -> bool:
    """Whether the next spatial layer after `depthwise_at` is a dense 1x1 conv (BN, activations may sit between)."""
    for lay in layers[depthwise_at + 1 :]:
        if lay.type in SPATIAL_TYPES or lay.type in ("flatten", "linear"):
            return lay.type == "conv" and lay.kernel == 1 and lay.groups == 1
    return False


def dilated_positions(spec: NetworkSpec) -> list[int]:
    """Positions of convolutions (conv or sepconv) with dilation above 1."""
    return [i for i, lay in enumerate(spec.layers) if lay.type in ("conv", "sepconv") and lay.dilation > 1]


# ---------------------------------------------------------------- the rules


def check_rules(spec: NetworkSpec, settings: RuleSettings = RuleSettings()) -> list[RuleResult]:
    """The four rules' verdicts on `spec` (raises SpecError if the spec itself is invalid)."""
    return [
        _params_rule(summarize(spec).total_params, settings.max_params),
        _rf_rule(global_rf(spec), settings.min_rf),
        _presence_rule(
            "separable",
            "Uses a depthwise-separable convolution",
            separable_positions(spec),
            settings.require_separable,
            "add a sepconv layer, or a depthwise conv (groups = input channels) followed by a 1x1 conv",
        ),
        _presence_rule(
            "dilated",
            "Uses a dilated convolution",
            dilated_positions(spec),
            settings.require_dilated,
            "set dilation 2 on a conv or sepconv (with padding 2 a 3x3 keeps the size)",
        ),
    ]


def _params_rule(count: int, limit: int) -> RuleResult:
    title = f"Fewer than {limit:,} parameters"
    if count < limit:
        reason = f"{count:,} parameters, under the limit of {limit:,} by {limit - count:,}"
        return RuleResult("params", title, True, reason, count, limit)
    reason = (
        f"{count:,} parameters, {count - limit + 1:,} too many for fewer than {limit:,} — "
        f"use fewer channels, or swap dense convs for sepconvs"
    )
    return RuleResult("params", title, False, reason, count, limit)


def _rf_rule(rf: int, minimum: int) -> RuleResult:
    title = f"Global receptive field above {minimum}"
    if rf > minimum:
        reason = f"global receptive field {rf}, above {minimum} by {rf - minimum}"
        return RuleResult("rf", title, True, reason, rf, minimum)
    reason = (
        f"global receptive field {rf}, needs at least {minimum + 1} ({minimum + 1 - rf} more) — "
        f"add a dilated or larger kernel, or a pool earlier so later kernels see more"
    )
    return RuleResult("rf", title, False, reason, rf, minimum)


def _presence_rule(key: str, title: str, positions: list[int], required: bool, fix: str) -> RuleResult:
    where = ", ".join(str(p) for p in positions)
    kind = "dilated" if key == "dilated" else "depthwise-separable"
    if positions:
        reason = f"{kind} convolution at layer{'s' if len(positions) > 1 else ''} {where}"
        return RuleResult(key, title, True, reason, positions, required)
    if not required:
        return RuleResult(key, title, True, f"no {kind} convolution, and none is required", positions, required)
    return RuleResult(key, title, False, f"no {kind} convolution — {fix}", positions, required)


def rules_passed(results: list[RuleResult]) -> str:
    """'3/4': how many rules passed out of how many."""
    return f"{sum(r.passed for r in results)}/{len(results)}"
