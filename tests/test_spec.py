"""The spec validator: every kind of bad input is refused with an actionable SpecError, and what it accepts runs."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch

from s7core.errors import UserError
from s7core.model import build_model
from s7core.spec import (
    BLOCKS,
    LAYER_FIELDS,
    MAX_CHANNELS,
    MAX_LAYERS,
    PRESETS,
    Layer,
    NetworkSpec,
    Shape,
    SpecError,
    conv,
    get_preset,
    infer_shapes,
    layer,
    make_block,
    sepconv,
    spec_from_dict,
    spec_from_json,
    validate,
)
from s7core.summary import summarize


def tiny_doc() -> dict:
    """The tiny preset as parsed JSON, for mutating."""
    return json.loads(get_preset("tiny").to_json())


def refused(doc: object) -> SpecError:
    """The SpecError that spec_from_dict raises on `doc` (fails the test if it accepts it)."""
    with pytest.raises(SpecError) as caught:
        spec_from_dict(doc)
    assert "\n" not in str(caught.value), "messages must fit on one line"
    return caught.value


# ---------------------------------------------------------------- shapes and sizes


def test_kernel_larger_than_padded_input_names_layer_sizes_and_fix() -> None:
    doc = tiny_doc()
    doc["layers"][0]["kernel"] = 40  # tiny's first conv has padding 1: 32 + 2 = 34 < 40
    err = refused(doc)
    assert (err.position, err.field) == (0, "kernel")
    message = str(err)
    assert message.startswith("layer 0 (conv):")
    assert "32x32 (+1 padding = 34)" in message and "spans 40 pixels" in message
    assert "smaller kernel" in message and "add padding" in message


def test_dilation_counts_in_the_kernel_span() -> None:
    # 3x3 at dilation 20 spans 41 pixels; 32 + 2 * 1 padding = 34 is too small.
    doc = tiny_doc()
    doc["layers"][0]["dilation"] = 20
    err = refused(doc)
    assert (err.position, err.field) == (0, "kernel")
    assert "with dilation 20 spans 41 pixels" in str(err)


def test_output_size_below_one_after_downsampling_names_the_later_layer() -> None:
    # Four 2x2 pools take 32 -> 2; a valid-padding 3x3 conv cannot slide over 2x2.
    layers = [conv(8, 3, 1)] + [layer("maxpool")] * 4 + [conv(8, 3, 0), layer("gap"), conv(10, 1), layer("flatten")]
    err = refused({"layers": [lay.to_dict() for lay in layers]})
    assert (err.position, err.field) == (5, "kernel")
    assert str(err).startswith("layer 5 (conv): input is 2x2;")


@pytest.mark.parametrize("field", ["channels", "kernel", "stride", "dilation", "groups"])
@pytest.mark.parametrize("value", [0, -3])
def test_zero_or_negative_sizes_are_refused(field: str, value: int) -> None:
    doc = tiny_doc()
    doc["layers"][3][field] = value
    err = refused(doc)
    assert (err.position, err.field) == (3, field)
    assert str(err) == f"layer 3 (conv): {field} is {value}; it must be at least 1"


def test_negative_padding_is_refused() -> None:
    doc = tiny_doc()
    doc["layers"][0]["padding"] = -1
    err = refused(doc)
    assert (err.position, err.field) == (0, "padding")
    assert "padding is -1; it must be at least 0" in str(err)


def test_groups_that_do_not_divide_channels_say_how_to_make_a_depthwise_conv() -> None:
    doc = tiny_doc()
    doc["layers"][3]["groups"] = 3  # input 16, output 32
    err = refused(doc)
    assert (err.position, err.field) == (3, "groups")
    message = str(err)
    assert "layer 3 (conv): groups=3" in message
    assert "input channels (16)" in message and "output channels (32)" in message
    assert "set groups and channels to 16" in message


def test_pool_padding_over_half_the_window_is_refused() -> None:
    doc = tiny_doc()
    doc["layers"].insert(3, {"type": "maxpool", "kernel": 2, "padding": 2})
    err = refused(doc)
    assert (err.position, err.field) == (3, "padding")
    assert "use padding 1 or less" in str(err)


def test_output_must_be_the_class_scores() -> None:
    doc = tiny_doc()
    doc["layers"][-2]["channels"] = 9
    err = refused(doc)
    assert err.position == len(doc["layers"]) - 1
    assert "9 values" in str(err) and "must give 10 class scores" in str(err)
    assert "1x1 conv with 10 channels" in str(err)


def test_output_still_spatial_is_refused() -> None:
    doc = tiny_doc()
    doc["layers"] = doc["layers"][:-3] + [{"type": "conv", "channels": 10, "kernel": 1}]  # 10x4x4, no pool
    err = refused(doc)
    assert "10x4x4" in str(err) and "global average pool" in str(err)


def test_linear_needs_a_flat_input_and_conv_needs_an_image() -> None:
    doc = tiny_doc()
    doc["layers"].insert(2, {"type": "linear", "channels": 10})
    err = refused(doc)
    assert err.position == 2 and "add a flatten" in str(err) and str(err).startswith("layer 2 (linear)")
    doc = tiny_doc()
    doc["layers"].insert(2, {"type": "flatten"})
    err = refused(doc)
    assert err.position == 4 and "move it before the flatten" in str(err)  # the relu at 3 is fine on a vector


# ---------------------------------------------------------------- limits


def test_more_than_max_layers_is_refused() -> None:
    doc = tiny_doc()
    doc["layers"] = [{"type": "relu"}] * (MAX_LAYERS - 3) + doc["layers"][-3:]
    assert len(doc["layers"]) == MAX_LAYERS
    spec_from_dict(doc)  # exactly the limit is fine (gap, conv, flatten on a 3-channel image)
    doc["layers"].insert(0, {"type": "relu"})
    err = refused(doc)
    assert f"{MAX_LAYERS + 1} layers; at most {MAX_LAYERS}" in str(err)
    with pytest.raises(SpecError, match="at most 200"):  # the same limit when built in Python
        validate(NetworkSpec(tuple([layer("relu")] * (MAX_LAYERS + 1))))


def test_more_than_max_channels_is_refused() -> None:
    doc = tiny_doc()
    doc["layers"][0]["channels"] = MAX_CHANNELS + 1
    err = refused(doc)
    assert (err.position, err.field) == (0, "channels")
    assert f"channels is {MAX_CHANNELS + 1}; at most {MAX_CHANNELS}" in str(err)


def test_empty_network_is_refused() -> None:
    assert "no layers" in str(refused({"layers": []}))


# ---------------------------------------------------------------- unknown things


def test_unknown_layer_type_lists_the_known_ones() -> None:
    doc = tiny_doc()
    doc["layers"][4]["type"] = "conv3d"
    err = refused(doc)
    assert (err.position, err.field) == (4, "type")
    assert "layer 4: unknown layer type 'conv3d'" in str(err)
    assert all(name in str(err) for name in LAYER_FIELDS)


def test_unknown_field_names_layer_field_and_the_accepted_ones() -> None:
    doc = tiny_doc()
    doc["layers"][0]["size"] = 3
    err = refused(doc)
    assert (err.position, err.field) == (0, "size")
    assert "layer 0" in str(err) and "conv" in str(err) and "unknown field 'size'" in str(err)
    assert "channels, kernel, stride, padding, dilation, groups, bias" in str(err)


def test_field_on_a_type_that_takes_none() -> None:
    doc = tiny_doc()
    doc["layers"][1]["channels"] = 16  # a bn
    err = refused(doc)
    assert err.position == 1 and "bn" in str(err) and "takes no fields" in str(err)


def test_missing_type_or_required_field() -> None:
    doc = tiny_doc()
    del doc["layers"][2]["type"]
    err = refused(doc)
    assert (err.position, err.field) == (2, "type") and 'missing "type"' in str(err)
    doc = tiny_doc()
    del doc["layers"][0]["channels"]
    err = refused(doc)
    assert (err.position, err.field) == (0, "channels") and "'channels' is required" in str(err)


def test_unknown_spec_field() -> None:
    doc = tiny_doc()
    doc["optimizer"] = "sgd"
    assert "unknown spec field 'optimizer'" in str(refused(doc))


def test_unknown_preset_and_block() -> None:
    with pytest.raises(SpecError, match="unknown preset 'nope': use one of seed, tiny"):
        get_preset("nope")
    with pytest.raises(SpecError, match="unknown block 'nope'"):
        make_block("nope", 16)


# ---------------------------------------------------------------- JSON and its types


@pytest.mark.parametrize(
    "text",
    ["", "{", '{"layers": [}', '{"layers": [{"type": "conv",}]}', "nul", "[1, 2", b"\xff\xfe\x00", "{'a': 1}"],
)
def test_malformed_json_is_a_spec_error(text: str | bytes) -> None:
    with pytest.raises(SpecError, match="not valid JSON") as caught:
        spec_from_json(text)
    assert "export a preset" in str(caught.value)


def test_deeply_nested_arrays_are_refused_without_recursion_error() -> None:
    for depth in (50, 900, 100_000):
        with pytest.raises(SpecError):
            spec_from_json("[" * depth + "]" * depth)


@pytest.mark.parametrize("text", ["42", '"conv"', "null", "true", "3.5"])
def test_json_that_is_not_an_object_or_list(text: str) -> None:
    with pytest.raises(SpecError, match='a spec must be a JSON object with a "layers" list'):
        spec_from_json(text)


@pytest.mark.parametrize(
    ("value", "shown"),
    [("3", "'3'"), (True, "True"), (None, "None"), (3.0, "3.0"), ([3], "[3]"), ({"k": [1, {"a": 2}]}, "{'k'")],
)
def test_wrong_json_types_for_whole_numbers(value: object, shown: str) -> None:
    doc = tiny_doc()
    doc["layers"][0]["kernel"] = value
    err = refused(doc)
    assert (err.position, err.field) == (0, "kernel")
    assert str(err).startswith(f"layer 0 (conv): kernel must be a whole number, got {shown}")


def test_huge_numbers_are_refused_not_overflowed() -> None:
    doc = tiny_doc()
    doc["layers"][0]["channels"] = 10**400
    assert "at most 4096" in str(refused(doc))
    err = spec_error_from_text(get_preset("tiny").to_json().replace('"padding": 1', '"padding": 1e999', 1))
    assert err.position == 0 and err.field == "padding" and "whole number, got inf" in str(err)


def spec_error_from_text(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        spec_from_json(text)
    return caught.value


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_bias_must_be_a_boolean(value: object) -> None:
    doc = tiny_doc()
    doc["layers"][0]["bias"] = value
    err = refused(doc)
    assert (err.position, err.field) == (0, "bias") and "bias must be true or false" in str(err)


@pytest.mark.parametrize("value", [1.0, -0.1, "0.5", float("nan"), True])
def test_dropout_probability(value: object) -> None:
    doc = tiny_doc()
    doc["layers"].insert(2, {"type": "dropout", "p": value})
    err = refused(doc)
    assert (err.position, err.field) == (2, "p") and "probability in [0, 1)" in str(err)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("input_shape", [3, "32", 32], "input_shape must be"),
        ("input_shape", [3, 32], "input_shape must be"),
        ("input_shape", [3, 32, 30], "input must be square"),
        ("input_shape", [3, 0, 0], "input_shape must be"),
        ("num_classes", True, "num_classes must be"),
        ("num_classes", 1, "num_classes must be"),
        ("layers", None, '"layers" list'),
        ("layers", {"type": "conv"}, '"layers" list'),
        ("name", 7, "name must be a string"),
    ],
)
def test_wrong_top_level_values(key: str, value: object, needle: str) -> None:
    doc = tiny_doc()
    doc[key] = value
    assert needle in str(refused(doc))


@pytest.mark.parametrize("item", [None, "conv", 3, [{"type": "conv"}]])
def test_layer_that_is_not_an_object(item: object) -> None:
    doc = tiny_doc()
    doc["layers"][5] = item
    err = refused(doc)
    assert err.position == 5 and str(err).startswith('layer 5: expected an object like {"type": "conv", ...}')


# ---------------------------------------------------------------- what is accepted


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name: str) -> None:
    spec = get_preset(name)
    again = spec_from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert spec_from_json(spec.to_json(indent=None)) == spec


def test_a_bare_list_of_layers_is_a_spec() -> None:
    spec = spec_from_json(json.dumps(tiny_doc()["layers"]))
    assert spec.layers == get_preset("tiny").layers and spec.name == "custom"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_blocks_expand_to_their_layers(name: str) -> None:
    layers = make_block(name, 24)
    assert layers and all(isinstance(lay, Layer) and lay.type in LAYER_FIELDS for lay in layers)
    expected = {
        "conv-bn-relu": [conv(24, 3, 1), layer("bn"), layer("relu")],
        "sep-bn-relu": [sepconv(24, 3, 1), layer("bn"), layer("relu")],
        "dilated-sep-bn-relu": [sepconv(24, 3, 2, dilation=2), layer("bn"), layer("relu")],
        "maxpool": [layer("maxpool", kernel=2)],
        "classifier": [layer("gap"), conv(10, 1, bias=True), layer("flatten")],
    }
    if name in expected:
        assert layers == expected[name]


def test_a_network_made_of_blocks_validates_with_the_expected_shapes() -> None:
    names = ["conv-bn-relu", "dilated-sep-bn-relu", "maxpool", "sep-bn-relu", "classifier"]
    layers = [lay for name in names for lay in make_block(name, 16)]
    shapes = infer_shapes(NetworkSpec(tuple(layers)))
    assert len(layers) == 3 + 3 + 1 + 3 + 3
    assert shapes[3] == Shape(16, 32) and shapes[7] == Shape(16, 16) and shapes[-1] == Shape(10, None)


def test_errors_are_user_errors_and_value_errors() -> None:
    err = refused({"layers": []})
    assert isinstance(err, UserError) and isinstance(err, ValueError)


# ---------------------------------------------------------------- property-style: random documents

JUNK_VALUES = [
    0, 1, 2, 3, 5, 7, -1, -7, 64, 65, 4096, 4097, 10**12, 10**400, 0.5, 2.0, -0.0, float("inf"),
    "3", "", "conv", None, True, False, [], [3], {}, {"type": "conv"}, [[[[1]]]], {"a": {"b": [None]}},
]  # fmt: skip
SMALL_VALUES = [1, 1, 2, 2, 3, 3, 0, 4, 5, 8, 16, 24, 32]
FIELD_NAMES = ["channels", "kernel", "stride", "padding", "dilation", "groups", "bias", "p", "type", "size", "k"]
TYPE_NAMES = [*LAYER_FIELDS, "conv3d", "", "Conv", 3, None]


def random_layer(rng: random.Random) -> dict:
    kind = rng.choice(TYPE_NAMES)
    doc: dict = {"type": kind}
    for name in LAYER_FIELDS.get(kind, {}) if isinstance(kind, str) else ():
        if rng.random() < 0.6:
            doc[name] = rng.choice(SMALL_VALUES) if name != "bias" else rng.random() < 0.5
    if kind == "dropout" and rng.random() < 0.5:
        doc["p"] = rng.choice([0.0, 0.2, 0.5, 0.99])
    return doc


def mutate(doc: dict, rng: random.Random) -> dict:
    """One random edit: a field's value, a layer inserted, dropped, duplicated or swapped, or junk."""
    layers = doc.get("layers")
    if not isinstance(layers, list):
        return doc  # an earlier edit already replaced the layers with junk
    choice = rng.randrange(10)
    if choice <= 2 and layers:
        target = rng.choice(layers)
        if isinstance(target, dict):
            value = rng.choice(SMALL_VALUES) if rng.random() < 0.6 else rng.choice(JUNK_VALUES)
            target[rng.choice(FIELD_NAMES)] = copy.deepcopy(value)
    elif choice == 3:
        layers.insert(rng.randrange(len(layers) + 1), random_layer(rng))
    elif choice == 4 and layers:
        layers.pop(rng.randrange(len(layers)))
    elif choice == 5 and layers:
        i = rng.randrange(len(layers))
        layers.insert(i, copy.deepcopy(layers[i]))
    elif choice == 6 and len(layers) > 1:
        i, j = rng.randrange(len(layers)), rng.randrange(len(layers))
        layers[i], layers[j] = layers[j], layers[i]
    elif choice == 7:
        side = rng.choice([1, 4, 8, 16, 28, 32, 33, 40, 64])
        doc["input_shape"] = rng.choice([[rng.choice([1, 3, 4]), side, side], [3, side], "3x32x32", [3, side, 8]])
    elif choice == 8 and layers:
        layers[rng.randrange(len(layers))] = copy.deepcopy(rng.choice(JUNK_VALUES))
    elif choice == 9:
        doc[rng.choice(["num_classes", "name", "extra", "layers"])] = copy.deepcopy(rng.choice(JUNK_VALUES))
    return doc


def corrupt_text(text: str, rng: random.Random) -> str:
    """The JSON text with a few characters deleted, inserted or changed."""
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(chars))
        action = rng.randrange(3)
        if action == 0:
            del chars[i]
        elif action == 1:
            chars.insert(i, rng.choice('{}[],:"0-9e. aZ\\'))
        else:
            chars[i] = rng.choice('{}[],:"019 -')
    return "".join(chars)


def expected_shape(shape: Shape) -> tuple[int, ...]:
    return (shape.channels, shape.size, shape.size) if shape.spatial else (shape.channels,)


def assert_runs_as_predicted(spec: NetworkSpec) -> None:
    """Build the model and check every layer's output shape against infer_shapes."""
    shapes = infer_shapes(spec)
    small = summarize(spec).mult_adds < 5_000_000  # a real CPU forward where it is cheap, meta otherwise
    if small:
        model = build_model(spec)
    else:
        with torch.device("meta"):
            model = build_model(spec)
    seen: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[1:]))) for m in model.layers]
    x = torch.randn(2, *spec.input_shape, device="cpu" if small else "meta")
    with torch.no_grad():
        out = model.eval()(x)
    for hook in hooks:
        hook.remove()
    assert seen == [expected_shape(s) for s in shapes[1:]], spec.to_json(indent=None)
    assert tuple(out.shape) == (2, spec.num_classes)
    # A padded max pool can put a window wholly on padding (-inf) on a tiny map; PyTorch allows it.
    padded_max = any(lay.type == "maxpool" and lay.padding for lay in spec.layers)
    if small and not padded_max:
        assert torch.isfinite(out).all()


def test_random_documents_only_ever_raise_spec_errors_and_valid_ones_run() -> None:
    rng = random.Random(20240607)
    bases = [json.loads(get_preset(name).to_json()) for name in ("tiny", "seed")]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny forwards: thread hand-offs cost more than they save on a busy machine
    try:
        valid, invalid = run_random_documents(rng, bases)
    finally:
        torch.set_num_threads(threads)
    # The generator must exercise both sides, or the test proves nothing.
    assert valid >= 80 and invalid >= 300, (valid, invalid)


def run_random_documents(rng: random.Random, bases: list[dict]) -> tuple[int, int]:
    """Parse 800 mutated documents; check what is accepted; return (valid, invalid) counts."""
    valid = invalid = 0
    for trial in range(800):
        doc = copy.deepcopy(bases[trial % 7 == 0])  # mostly tiny: cheap to run for real
        for _ in range(rng.randint(1, 4)):
            doc = mutate(doc, rng)
        text = json.dumps(doc)
        if trial % 5 == 4:
            text = corrupt_text(text, rng)
        try:
            spec = spec_from_json(text)
        except SpecError as err:
            assert str(err) and "\n" not in str(err)
            invalid += 1
            continue
        valid += 1
        assert_runs_as_predicted(spec)
    return valid, invalid


SPATIAL_CHOICES = [0, 1, 1, 2, 2, 3, 4, 5, 7, 9]


def random_network(rng: random.Random) -> dict:
    """A short random stack of layers with random window settings, then a classifier."""
    layers = []
    for _ in range(rng.randint(1, 8)):
        kind = rng.choice(["conv", "sepconv", "maxpool", "avgpool", "bn", "relu", "dropout", "gap", "flatten"])
        doc: dict = {"type": kind}
        for name in LAYER_FIELDS[kind]:
            if rng.random() < 0.7:
                doc[name] = {"bias": rng.random() < 0.5, "p": 0.3}.get(name, rng.choice(SPATIAL_CHOICES))
        if kind in ("maxpool", "avgpool") and rng.random() < 0.3:
            doc["stride"] = None
        layers.append(doc)
    head = rng.choice([BLOCKS["classifier"][1](0), [layer("flatten"), layer("linear", channels=10)]])
    side = rng.choice([1, 2, 3, 5, 8, 13, 32])
    return {"layers": layers + [lay.to_dict() for lay in head], "input_shape": [rng.choice([1, 3]), side, side]}


def test_random_small_networks_run_exactly_as_validated() -> None:
    rng = random.Random(7)
    valid = invalid = 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(1500):
            try:
                spec = spec_from_dict(random_network(rng))
            except SpecError:
                invalid += 1
                continue
            valid += 1
            assert_runs_as_predicted(spec)
    finally:
        torch.set_num_threads(threads)
    assert valid >= 150 and invalid >= 300, (valid, invalid)


def test_pool_padding_limit_ignores_dilation_as_pytorch_does() -> None:
    # PyTorch allows padding up to kernel // 2 for a max pool even when dilation widens the window.
    doc = tiny_doc()
    doc["layers"].insert(3, {"type": "maxpool", "kernel": 2, "padding": 2, "dilation": 3})
    err = refused(doc)
    assert (err.position, err.field) == (3, "padding") and "use padding 1 or less" in str(err)
    doc["layers"][3]["padding"] = 1
    assert_runs_as_predicted(spec_from_dict(doc))
