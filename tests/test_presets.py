"""Every registered preset meets the assignment's four rules and builds a working model; the fast and best
recipes and the whitened first conv they use."""

from __future__ import annotations

import json
import re

import pytest
import torch

from s7core.config import ConfigError, TrainConfig
from s7core.data import load_cifar10, make_tiny_cifar10, normalize, synthetic_cifar10
from s7core.model import build_model, count_parameters
from s7core.recipes import get_recipe
from s7core.rf.table import global_rf
from s7core.rules import check_rules
from s7core.spec import PRESETS, NetworkSpec, get_preset, layer
from s7core.summary import summarize
from s7core.train import freeze_stem, train, whiten_first_conv


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


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_description_states_the_nets_own_figures(name: str) -> None:
    """Parameters, multiply-adds and RF quoted in a description are those of the net, to the digits given."""
    spec = get_preset(name)
    text = PRESETS[name].description
    summary = summarize(spec)
    quoted = 0
    for number, unit in re.findall(r"(\d[\d,.]*)(k|M)? parameters", text):
        scale = {"k": 1e3, "M": 1e6}.get(unit, 1)
        digits = len(number.partition(".")[2])
        assert float(number.replace(",", "")) == round(summary.total_params / scale, digits), text
        quoted += 1
    for number in re.findall(r"(\d[\d.]*)M multiply-adds", text):
        assert float(number) == round(summary.mult_adds / 1e6, len(number.partition(".")[2])), text
        quoted += 1
    for number in re.findall(r"RF (\d+)", text):
        assert int(number) == global_rf(spec), text
        quoted += 1
    assert quoted, f"{name}: the description quotes no parameter count"


def test_fast_and_best_are_registered() -> None:
    assert {"fast", "best"} <= set(PRESETS)


# ---------------------------------------------------------------- the fast and best recipes


def test_fast_and_best_recipes_keep_the_test_set_out_of_their_decisions() -> None:
    for name in ("fast", "best"):
        config = get_recipe(name).config
        assert config.schedule != "plateau" and not config.plateau_on_test
        assert config.whiten_stem and config.tta_flip
        assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_whitened_stem_decorrelates_patches_and_stays_frozen() -> None:
    (images, labels), _ = synthetic_cifar10(200, 10)
    images = torch.from_numpy(images)
    spec = get_preset("fast")  # layer 0: a 2x2 stride-2 conv, 24 channels = 2 x 12 patch values
    model = build_model(spec)
    whiten_first_conv(model, images)
    stem = model.layers[0]
    assert not stem.weight.requires_grad
    with torch.no_grad():
        out = stem(normalize(images))  # (N, 24, 16, 16)
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    cov = half.T @ half / half.shape[0]
    # unit variance along each principal direction, no correlation between them (eps keeps it just under 1)
    assert torch.allclose(cov, torch.eye(12), atol=0.02), cov.diagonal()
    assert torch.equal(out[:, 12:], -out[:, :12])


def test_whiten_stem_refuses_a_net_that_does_not_start_with_a_colour_conv() -> None:
    spec = NetworkSpec((layer("bn"), *get_preset("tiny").layers))
    with pytest.raises(ConfigError, match="layer 0"):
        whiten_first_conv(build_model(spec), torch.zeros(4, 3, 32, 32, dtype=torch.uint8))


def test_training_with_a_whitened_stem_leaves_it_untouched(tmp_path) -> None:
    data = load_cifar10(make_tiny_cifar10(tmp_path, n_train=256, n_test=64))
    config = get_recipe("fast").config.replace(epochs=1, batch_size=64, precision="fp32", tta_flip=False)
    result = train(get_preset("fast"), config, data)
    reference = build_model(get_preset("fast"))
    whiten_first_conv(reference, torch.as_tensor(data.train_images))
    assert torch.equal(result.model.layers[0].weight, reference.layers[0].weight)
    assert result.history[-1]["test_acc"] is not None


def test_a_frozen_stem_bn_stays_at_scale_1_and_shift_0_while_the_next_bn_learns(tmp_path) -> None:
    data = load_cifar10(make_tiny_cifar10(tmp_path, n_train=256, n_test=64))
    config = get_recipe("fast").config.replace(
        epochs=1, batch_size=64, precision="fp32", tta_flip=False, freeze_stem_bn=True
    )
    model = train(get_preset("fast"), config, data).model
    stem_bn, next_bn = model.layers[1], model.layers[5]  # fast: conv, bn, relu, conv, maxpool, bn
    assert isinstance(next_bn, torch.nn.BatchNorm2d)
    assert torch.equal(stem_bn.weight, torch.ones_like(stem_bn.weight))
    assert torch.equal(stem_bn.bias, torch.zeros_like(stem_bn.bias))
    assert not stem_bn.weight.requires_grad and not stem_bn.bias.requires_grad
    assert not torch.equal(next_bn.weight, torch.ones_like(next_bn.weight))  # trained
    assert stem_bn.running_mean.abs().sum() > 0  # it still normalises with the batch statistics


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")  # what this test looks for
def test_with_a_frozen_stem_nothing_below_the_second_conv_gets_a_gradient() -> None:
    config = get_recipe("fast").config.replace(freeze_stem_bn=True)
    model = build_model(get_preset("fast"))
    freeze_stem(model, config)
    seen = []
    model.layers[3].register_full_backward_hook(lambda module, grad_in, grad_out: seen.append(grad_in[0]))
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert seen == [None]  # the second conv's input gradient is never computed
    assert model.layers[3].weight.grad is not None
    assert all(p.grad is None for p in [*model.layers[0].parameters(), *model.layers[1].parameters()])


def test_freeze_stem_bn_says_what_it_needs() -> None:
    with pytest.raises(ConfigError, match="turn whiten_stem on"):
        TrainConfig(freeze_stem_bn=True)
    spec = NetworkSpec((get_preset("tiny").layers[0], layer("relu"), *get_preset("tiny").layers[1:]))
    with pytest.raises(ConfigError, match="layer 1 a bn layer"):
        freeze_stem(build_model(spec), TrainConfig(whiten_stem=True, freeze_stem_bn=True))
