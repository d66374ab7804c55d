"""Hostile spec input, generated: every text the CLI, the upload or a link can be handed is refused with a
SpecError (naming the layer and field where there is one) or builds a model with its tables. Nothing else.

The generators write JSON text by hand, so that they can hold what json.dumps never writes: numbers of any
length, NaN and Infinity, keys given twice, and nesting of any depth.
"""

from __future__ import annotations

import base64
import json
import math
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s7core.__main__ import main
from s7core.links import spec_from_link
from s7core.model import build_model
from s7core.rf.table import rf_table
from s7core.rules import check_rules
from s7core.spec import (
    LAYER_FIELDS,
    MAX_ACTIVATIONS,
    MAX_MULT_ADDS,
    MAX_NUMBER_DIGITS,
    MAX_PARAMS,
    MAX_SPEC_BYTES,
    MAX_SPEC_DEPTH,
    PRESETS,
    SpecError,
    get_preset,
    network_cost,
    spec_from_json,
)
from s7core.summary import summarize

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Raw(str):
    """A JSON token written as it is (a number too long for json.dumps, NaN, Infinity)."""


class Pairs(list):
    """A JSON object as (key, value) pairs, so one key may come twice."""


def to_text(value: object) -> str:
    """JSON text of a value built from Raw, Pairs, lists, strings, numbers, bools and None."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{to_text(v)}" for k, v in value) + "}"
    if isinstance(value, dict):
        return to_text(Pairs(value.items()))
    if isinstance(value, list):
        return "[" + ",".join(to_text(v) for v in value) + "]"
    return json.dumps(value)


huge_numbers = st.builds(
    lambda sign, digits, tail: Raw(sign + "9" * digits + tail),
    st.sampled_from(["", "-"]),
    st.integers(1, 6000),
    st.sampled_from(["", ".5", "e5", "e-400", "e400"]),
)
odd_numbers = st.sampled_from([Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), Raw("1e400"), Raw("-0"), Raw("1E2")])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**60), 10**60),
    st.floats(allow_nan=False, allow_infinity=False),
    huge_numbers,
    odd_numbers,
    st.text(max_size=20),
)
any_json = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.builds(
            Pairs,
            st.lists(
                st.tuples(st.sampled_from(["layers", "type", "channels", "name"]) | st.text(max_size=8), inner),
                max_size=5,
            ),
        ),
    ),
    max_leaves=30,
)

field_values = {
    "channels": st.one_of(st.integers(1, 48), scalars),
    "kernel": st.one_of(st.integers(1, 5), scalars),
    "stride": st.one_of(st.integers(1, 3), scalars),
    "padding": st.one_of(st.integers(0, 3), scalars),
    "dilation": st.one_of(st.integers(1, 3), scalars),
    "groups": st.one_of(st.just(1), st.integers(1, 8), scalars),
    "bias": st.one_of(st.booleans(), scalars),
    "p": st.one_of(st.floats(0, 0.9), scalars),
}
LAYER_TYPES = sorted(LAYER_FIELDS)


@st.composite
def layer_objects(draw: st.DrawFn) -> Pairs:
    """A layer object: mostly right, with wrong types, unknown fields, missing or repeated keys mixed in."""
    kind = draw(st.sampled_from(LAYER_TYPES) | st.sampled_from(["", "Conv", "pool"]) | scalars)
    names = sorted(LAYER_FIELDS.get(kind, {})) if isinstance(kind, str) else []
    chosen = draw(st.lists(st.sampled_from(names), unique=True)) if names else []
    pairs = Pairs([("type", kind)] if draw(st.integers(0, 19)) else [])
    pairs += [(name, draw(field_values[name])) for name in chosen]
    if draw(st.integers(0, 9)) == 0:
        pairs.append(draw(st.sampled_from([("type", "bn"), ("channels", 8), ("colour", 1)])))
    return pairs


@st.composite
def layer_specs(draw: st.DrawFn) -> Pairs:
    """A spec text's object: a few generated layers, usually closed by a classifier so that some build."""
    side = draw(st.sampled_from([8, 16, 32]))
    layers = draw(st.lists(layer_objects(), max_size=8))
    if draw(st.booleans()):
        layers += [{"type": "gap"}, {"type": "flatten"}, {"type": "linear", "channels": 10}]
    spec = Pairs([("layers", layers), ("input_shape", [3, side, side])])
    if draw(st.integers(0, 9)) == 0:
        spec.append(draw(st.sampled_from([("num_classes", Raw("9" * 5000)), ("name", "\ud800"), ("layers", [])])))
    return spec


def check_refusal(err: SpecError) -> None:
    """A refusal names its layer (and the field, where the error points at one) in the message."""
    message = str(err)
    assert message and "Traceback" not in message and len(message) < 2000
    if err.position is not None:
        assert f"layer {err.position}" in message
    if err.field is not None and err.position is not None:
        assert err.field in message or repr(err.field)[:30] in message


def outcome(text: str | bytes) -> str:
    """'built' when the text is a network (its model, RF table, parameter table and rules computed), else 'refused'."""
    try:
        spec = spec_from_json(text)
    except SpecError as err:
        check_refusal(err)
        return "refused"
    model = build_model(spec).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, *spec.input_shape))
    assert out.shape == (2, spec.num_classes)
    table = rf_table(spec)
    assert table[0].layer == "input" and table[-1].rf >= 1
    assert summarize(spec).total_params == sum(p.numel() for p in model.parameters()) == network_cost(spec).params
    assert len(check_rules(spec)) == 4
    return "built"


@settings(max_examples=600, **SETTINGS)
@given(layer_specs())
def test_generated_layer_specs_build_or_are_refused_by_layer_and_field(spec: Pairs) -> None:
    outcome(to_text(spec))


def test_the_layer_generator_reaches_both_outcomes() -> None:
    """The property above is only worth something if some generated specs build and some are refused."""
    seen: set[str] = set()

    @settings(max_examples=150, database=None, **SETTINGS)
    @given(layer_specs())
    def record(spec: Pairs) -> None:
        seen.add(outcome(to_text(spec)))

    record()
    assert seen == {"built", "refused"}


@settings(max_examples=800, **SETTINGS)
@given(any_json)
def test_arbitrary_json_is_only_ever_refused_or_built(value: object) -> None:
    outcome(to_text(value))


@settings(max_examples=800, **SETTINGS)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_arbitrary_bytes_and_text_are_refused_cleanly(text: bytes | str) -> None:
    for load in (spec_from_json, spec_from_link):
        try:
            load(text) if load is spec_from_json or isinstance(text, str) else load(text.decode("latin-1"))
        except SpecError as err:
            check_refusal(err)


@settings(max_examples=400, **SETTINGS)
@given(any_json | layer_specs() | st.deferred(lambda: wide_specs()))
def test_links_of_any_json_are_refused_or_built(value: object) -> None:
    packed = base64.urlsafe_b64encode(zlib.compress(to_text(value).encode("utf-8", "surrogatepass"))).decode()
    try:
        spec_from_link(packed.rstrip("="))
    except SpecError as err:
        check_refusal(err)


def test_a_5000_digit_channel_count_is_refused_naming_layer_and_field() -> None:
    text = '{"layers": [{"type": "conv", "channels": ' + "1" * 5000 + "}]}"
    with pytest.raises(SpecError) as caught:
        spec_from_json(text)
    assert (caught.value.position, caught.value.field) == (0, "channels")
    assert "layer 0 (conv): channels is a number 5,000 characters long" in str(caught.value)
    assert str(MAX_NUMBER_DIGITS) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "needle", "field"),
    [
        ('[{"type": "dropout", "p": NaN}]', "p must be a probability", "p"),
        ('[{"type": "conv", "channels": Infinity}]', "channels must be a whole number, got inf", "channels"),
        ('[{"type": "conv", "channels": 8, "channels": 16}]', "field 'channels' is given twice", "channels"),
        ('{"layers": [], "layers": []}', "spec field 'layers' is given twice", "layers"),
        ('[{"type": "conv", "channels": [[[[[[8]]]]]]}]', f"nested over {MAX_SPEC_DEPTH} deep", "channels"),
        ('{"name": "a\\u0000b", "layers": []}', "control character", "name"),
    ],
)
def test_each_kind_of_hostile_value_gets_its_own_message(text: str, needle: str, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        spec_from_json(text)
    assert needle in str(caught.value) and caught.value.field == field


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000, " " * (MAX_SPEC_BYTES + 1)],
    ids=["lists", "objects", "oversized"],
)
def test_deep_or_huge_text_is_refused_before_it_costs_anything(text: str) -> None:
    with pytest.raises(SpecError, match="nested over|bytes long"):
        spec_from_json(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"layers": [{"type": "conv", "channels": ' + "5" * 5000 + "}]}",
        '{"layers": [{"type": "dropout", "p": NaN}, {"type": "dropout", "p": NaN}]}',
        "[" * 10_000,
        '{"layers": [], "layers": []}',
    ],
    ids=["5000-digits", "nan", "deep", "duplicate"],
)
def test_the_cli_refuses_hostile_specs_in_one_line_with_status_2(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "spec.json"
    path.write_text(text)
    for command in ("check", "rf", "summary"):
        assert main([command, "--spec", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_the_cli_reads_no_more_of_a_huge_spec_file_than_its_cap(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.truncate(50 * MAX_SPEC_BYTES)  # sparse: 50 MB that take no room on the disk
    assert main(["check", "--spec", str(path)]) == 2
    assert f"no network needs over {MAX_SPEC_BYTES:,}" in capsys.readouterr().err


# ---------------------------------------------------------------- the size cap: valid, but too big to build

LIMIT_WORDS = ("parameters", "multiply-adds", "activation values")


@st.composite
def wide_specs(draw: st.DrawFn) -> dict:
    """A well-formed spec of wide convs with large kernels (padded to keep the size), some far over a size cap."""
    side = draw(st.sampled_from([32, 64, 128]))
    layers: list[dict] = []
    for _ in range(draw(st.integers(1, 4))):
        kernel = draw(st.sampled_from([1, 3, 7, 15, 31, 63]))  # odd, so padding kernel // 2 keeps the size
        kind = draw(st.sampled_from(["conv", "sepconv"]))
        layers.append({"type": kind, "channels": draw(st.integers(8, 4096)), "kernel": kernel, "padding": kernel // 2})
        if draw(st.booleans()):
            layers += [{"type": "bn"}, {"type": "relu"}]
    # a flatten straight into the classifier is the other way to cross the parameter cap: one huge linear layer
    ending = [{"type": "gap"}] if draw(st.booleans()) else []
    classifier = [*ending, {"type": "flatten"}, {"type": "linear", "channels": 10}]
    return {"input_shape": [3, side, side], "layers": layers + classifier}


def size_outcome(text: str) -> str:
    """'capped' when refused by a size limit (naming layer, field and limit), else 'built' with PyTorch's own counts
    (on the meta device: no memory, no arithmetic) equal to the spec's."""
    try:
        spec = spec_from_json(text)
    except SpecError as err:
        check_refusal(err)
        message = str(err)
        assert any(word in message for word in LIMIT_WORDS) and "the limit is" in message, message
        return "capped"
    cost, summary = network_cost(spec), summarize(spec)
    assert (cost.params, cost.mult_adds) == (summary.total_params, summary.mult_adds)
    assert cost.params <= MAX_PARAMS and cost.mult_adds <= MAX_MULT_ADDS and cost.activations <= MAX_ACTIVATIONS
    return "built"


@settings(max_examples=150, **SETTINGS)
@given(wide_specs())
def test_wide_specs_are_capped_by_layer_and_field_or_counted_as_pytorch_counts(spec: dict) -> None:
    size_outcome(json.dumps(spec))


def test_the_wide_generator_reaches_the_cap_and_builds() -> None:
    seen: set[str] = set()

    @settings(max_examples=60, database=None, **SETTINGS)
    @given(wide_specs())
    def record(spec: dict) -> None:
        seen.add(size_outcome(json.dumps(spec)))

    record()
    assert seen == {"built", "capped"}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_presets_cost_is_what_pytorch_counts_and_far_under_every_cap(name: str) -> None:
    spec = get_preset(name)
    cost, summary = network_cost(spec), summarize(spec)
    assert (cost.params, cost.mult_adds) == (summary.total_params, summary.mult_adds)
    assert cost.activations == sum(math.prod(row.output_shape) for row in summary.rows)
    assert 20 * cost.params < MAX_PARAMS and 20 * cost.mult_adds < MAX_MULT_ADDS
    assert 20 * cost.activations < MAX_ACTIVATIONS


def _conv(channels: int, kernel: int, **more) -> dict:
    return {"type": "conv", "channels": channels, "kernel": kernel, "padding": kernel // 2, **more}


HEAD = [{"type": "gap"}, {"type": "flatten"}, {"type": "linear", "channels": 10}]
TOO_BIG = {
    "params": (
        [_conv(64, 3), _conv(128, 3), _conv(256, 3), _conv(512, 3), _conv(4096, 63), *HEAD],
        4,
        "layer 4 (conv): 4,096 channels with a 63x63 kernel on 512 input channels bring this network to 8.33 billion "
        "parameters; the limit is 50 million — use fewer channels or a smaller kernel",
    ),
    "mult_adds": (
        [_conv(1024, 3), _conv(1024, 3), _conv(1024, 3), _conv(1024, 3), *HEAD],
        3,
        "layer 3 (conv): 1,024 channels with a 3x3 kernel on 1,024 input channels at 32x32 pixels bring this network "
        "to 29 billion multiply-adds for one image; the limit is 20 billion — use fewer channels or a smaller kernel, "
        "or downsample (a stride or a pool) earlier",
    ),
    "activations": (
        [_conv(4096, 1), {"type": "bn"}, {"type": "relu"}, {"type": "bn"}, {"type": "relu"}, {"type": "bn"},
         {"type": "relu"}, {"type": "bn"}, *HEAD],
        7,
        "layer 7 (bn): its output of 4096x32x32 brings this network to 33.6 million activation values for one "
        "image; the limit is 32 million — use fewer channels in the layers before it, or downsample",
    ),
}  # fmt: skip


@pytest.mark.parametrize("limit", sorted(TOO_BIG))
def test_each_size_limit_refuses_naming_the_layer_that_crosses_it(limit: str) -> None:
    layers, position, needle = TOO_BIG[limit]
    with pytest.raises(SpecError) as caught:
        spec_from_json(json.dumps(layers))
    assert caught.value.position == position and needle in str(caught.value)
    assert caught.value.field == ("channels" if layers[position]["type"] == "conv" else None)


def test_each_limit_is_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """The multiply-adds case is under the other two caps: only its multiply-adds make it too big."""
    monkeypatch.setattr("s7core.spec.MAX_MULT_ADDS", 10**12)
    cost = network_cost(spec_from_json(json.dumps(TOO_BIG["mult_adds"][0])))
    assert MAX_MULT_ADDS < cost.mult_adds and cost.params < MAX_PARAMS and cost.activations < MAX_ACTIVATIONS


def test_a_billion_parameter_spec_is_refused_without_importing_torch() -> None:
    """The cap is arithmetic on the spec: the refusal comes before any torch module could be built."""
    text = json.dumps(TOO_BIG["params"][0])
    code = (
        "import sys\nfrom s7core.spec import SpecError, spec_from_json\n"
        f"try:\n    spec_from_json({text!r})\nexcept SpecError as err:\n    print(err)\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "False" and "8.33 billion parameters" in done.stdout


def test_the_cli_refuses_a_spec_over_the_cap_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "big.json"
    path.write_text(json.dumps(TOO_BIG["params"][0]))
    for command in ("check", "rf", "summary"):
        assert main([command, "--spec", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "error: layer 4 (conv): 4,096 channels" in err and "50 million" in err
