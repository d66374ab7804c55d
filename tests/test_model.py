"""build_model: the torch network a spec describes, checked against PyTorch itself."""

import pytest
import torch
from torch import nn

from s7core.model import SeparableConv2d, build_model, count_parameters
from s7core.spec import PRESETS, NetworkSpec, conv, get_preset, infer_shapes, layer, sepconv


def test_seed_has_the_reference_parameter_count() -> None:
    assert count_parameters(build_model(get_preset("seed"))) == 925_706


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_layer_output_matches_the_inferred_shape(name: str) -> None:
    spec = get_preset(name)
    model = build_model(spec).eval()
    seen = []
    for module in model.layers:
        module.register_forward_hook(lambda m, i, out: seen.append(tuple(out.shape[1:])))
    with torch.no_grad():
        logits = model(torch.randn(2, *spec.input_shape))
    expected = [(s.channels, s.size, s.size) if s.spatial else (s.channels,) for s in infer_shapes(spec)[1:]]
    assert seen == expected
    assert logits.shape == (2, 10)


def test_sepconv_is_a_depthwise_then_a_pointwise_conv() -> None:
    spec = NetworkSpec(
        (conv(8, 3, 1), sepconv(16, 3, 2, dilation=2), layer("gap"), conv(10, 1, bias=True), layer("flatten"))
    )
    sep = build_model(spec).layers[1]
    assert isinstance(sep, SeparableConv2d)
    assert (sep.depthwise.groups, sep.depthwise.dilation, sep.depthwise.padding) == (8, (2, 2), (2, 2))
    assert sep.depthwise.weight.shape == (8, 1, 3, 3)
    assert sep.pointwise.weight.shape == (16, 8, 1, 1)
    assert sep.depthwise.bias is None and sep.pointwise.bias is None


def test_builds_on_the_meta_device_without_memory() -> None:
    with torch.device("meta"):
        model = build_model(get_preset("seed"))
    assert all(p.is_meta for p in model.parameters())
    assert count_parameters(model) == 925_706


def test_linear_head_after_flatten() -> None:
    spec = NetworkSpec((conv(4, 3, 1), layer("maxpool", kernel=4), layer("flatten"), layer("linear", channels=10)))
    model = build_model(spec)
    assert isinstance(model.layers[3], nn.Linear) and model.layers[3].in_features == 4 * 8 * 8
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
