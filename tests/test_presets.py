"""Every registered preset meets the assignment's four rules and builds a working model."""

from __future__ import annotations

import pytest
import torch

from s7core.model import build_model, count_parameters
from s7core.receptive_field import global_rf
from s7core.rules import check_rules
from s7core.spec import PRESETS, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_meets_the_four_rules(name: str) -> None:
    spec = get_preset(name)
    assert count_parameters(build_model(spec)) < 1_000_000
    assert any(lay.type == "sepconv" for lay in spec.layers), "needs a depthwise-separable conv"
    assert any(lay.type in ("conv", "sepconv") and lay.dilation > 1 for lay in spec.layers), "needs a dilated conv"
    assert global_rf(spec) > 44
    assert all(result.passed for result in check_rules(spec)), [r.reason for r in check_rules(spec)]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_maps_two_images_to_ten_scores(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(get_preset(name)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_fast_and_best_are_registered() -> None:
    assert {"fast", "best"} <= set(PRESETS)
