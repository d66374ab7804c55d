"""build_model: the torch network a spec describes, checked against PyTorch itself."""

import pytest
import torch
from torch import nn

from s7core.errors import UserError
from s7core.model import SeparableConv2d, build_model, count_parameters
from s7core.names import ModuleNameError, layer_of, module_name, position_name, position_of
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


# ---------------------------------------------------------------- module names


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_layer_modules_are_the_models_own_modules(name: str) -> None:
    spec = get_preset(name)
    model = build_model(spec)
    modules = dict(model.named_modules())
    built = {path for path in modules if path.startswith("layers.")}
    assert set(model.layer_modules()) == built  # every module under `layers`, and nothing else
    for index, lay in enumerate(spec.layers):
        assert modules[model.module_name(index)] is model.layers[index]
        if lay.type == "sepconv":
            assert modules[model.module_name(index, "depthwise")] is model.layers[index].depthwise
            assert modules[model.module_name(index, "pointwise")] is model.layers[index].pointwise
    for path, (index, part) in model.layer_modules().items():
        assert model.layer_of(path) == (index, part)
        assert model.module_name(index, part) == path


def test_names_and_table_labels_read_back() -> None:
    assert module_name(7) == "layers.7" and module_name(7, "depthwise") == "layers.7.depthwise"
    assert position_name(7) == "7" and position_name(12, "pointwise") == "12.pointwise"
    assert layer_of("layers.7.depthwise") == (7, "depthwise") and layer_of("layers.26") == (26, None)
    assert position_of("7.pointwise") == (7, "pointwise") and position_of("0") == (0, None)


@pytest.mark.parametrize(
    "name", ["", "layers", "layers.", "layers.x", "layers.-1", "layers.7.bn", "layers.7.depthwise.0", "head.7", "7"]
)
def test_a_name_that_is_no_spec_layer_is_refused(name: str) -> None:
    with pytest.raises(ModuleNameError, match=f"'{name}' is not the module of a spec layer: such names read like"):
        layer_of(name)


@pytest.mark.parametrize("label", ["input", "7.", "7.bn", "x.depthwise", "7.depthwise.0"])
def test_a_table_label_that_is_no_spec_layer_is_refused(label: str) -> None:
    with pytest.raises(ModuleNameError, match="names no spec layer"):
        position_of(label)


def test_the_model_refuses_names_of_layers_it_does_not_have() -> None:
    model = build_model(get_preset("tiny"))  # 21 layers; 6 is a sepconv, 7 a batch norm
    assert issubclass(ModuleNameError, UserError)
    with pytest.raises(ModuleNameError, match="network 'tiny' has layers 0 to 20; pick one of those"):
        model.layer_of("layers.21")
    with pytest.raises(ModuleNameError, match="layer 7 is a bn, which has no depthwise part; only a sepconv has one"):
        model.layer_of("layers.7.depthwise")
    with pytest.raises(ModuleNameError, match="layer 30: network 'tiny' has layers 0 to 20"):
        model.module_name(30)
    with pytest.raises(ModuleNameError, match="'middle' is not a part of a sepconv layer: use depthwise or pointwise"):
        model.module_name(6, "middle")
    with pytest.raises(ModuleNameError, match="spec layer -1 is not a layer number"):
        model.module_name(-1)
