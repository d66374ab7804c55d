"""The network as plain data: layer records, validation, JSON, blocks and presets.

A spec is an ordered list of `Layer` records plus the input shape and the number of
classes. It is the single truth for the model, the RF table, the parameter table and the
rule checks. Validation is plain arithmetic (no torch), so the editor can re-check a
spec on every keystroke.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from s7core.errors import UserError

MAX_LAYERS = 200
MAX_CHANNELS = 4096
MAX_KERNEL = 64
# Limits on spec text from outside (a file, an upload, a link), checked before and while it is parsed.
MAX_SPEC_BYTES = 1_000_000  # the JSON text of a spec; the largest preset is under 3,000
MAX_SPEC_DEPTH = 6  # objects and lists inside one another; a spec needs 3 (spec, layers list, layer)
MAX_NUMBER_DIGITS = 40  # characters of one number; longer ones are refused before Python converts them
MAX_NAME_CHARS = 200  # the spec's name; its description may be 50 times longer
# Limits on what a valid spec may cost, counted from the spec alone before any torch module is built, so that no
# page or command builds a model that exhausts the server. Each is far above every preset (the largest, `seed`:
# 0.93 million parameters, 159 million multiply-adds, 1.3 million activation values).
MAX_PARAMS = 50_000_000  # weights and biases
MAX_MULT_ADDS = 20_000_000_000  # for one image, forward pass
MAX_ACTIVATIONS = 32_000_000  # values every layer outputs for one image (256 MB to train on it: fp32, with gradients)

# What each layer type accepts, with its defaults. `REQUIRED` marks a field without one.
REQUIRED = object()
ACTIVATIONS = ("relu", "relu6", "leaky_relu", "gelu", "silu", "elu")
LAYER_FIELDS: dict[str, dict[str, Any]] = {
    "conv": dict(channels=REQUIRED, kernel=3, stride=1, padding=0, dilation=1, groups=1, bias=False),
    "sepconv": dict(channels=REQUIRED, kernel=3, stride=1, padding=0, dilation=1, bias=False),
    "bn": {},
    **{name: {} for name in ACTIVATIONS},
    "dropout": dict(p=0.1),
    "maxpool": dict(kernel=2, stride=None, padding=0, dilation=1),
    "avgpool": dict(kernel=2, stride=None, padding=0),
    "gap": {},
    "flatten": {},
    "linear": dict(channels=REQUIRED, bias=True),
}
LAYER_DESCRIPTIONS = {
    "conv": "convolution (groups=channels makes it depthwise)",
    "sepconv": "depthwise-separable convolution: a depthwise kxk conv, then a pointwise 1x1 conv",
    "bn": "batch normalisation",
    "relu": "ReLU activation",
    "relu6": "ReLU capped at 6",
    "leaky_relu": "leaky ReLU (slope 0.01)",
    "gelu": "GELU activation",
    "silu": "SiLU (swish) activation",
    "elu": "ELU activation",
    "dropout": "dropout with probability p",
    "maxpool": "max pooling (stride empty = kernel)",
    "avgpool": "average pooling (stride empty = kernel)",
    "gap": "global average pooling to 1x1",
    "flatten": "flatten CxHxW to a vector",
    "linear": "fully connected layer (needs a flat input)",
}
FIELD_ORDER = ("channels", "kernel", "stride", "padding", "dilation", "groups", "bias", "p")
INT_FIELDS = {"channels", "kernel", "stride", "padding", "dilation", "groups"}
SPATIAL_TYPES = {"conv", "sepconv", "maxpool", "avgpool", "gap"}


class SpecError(UserError, ValueError):
    """An invalid spec, with a message a person can act on.

    `position` is the 0-based index of the offending layer (None for the whole spec) and
    `field` the offending field, so an editor can point at the cell.
    """

    def __init__(self, message: str, position: int | None = None, field: str | None = None):
        super().__init__(message)
        self.position = position
        self.field = field


@dataclass(frozen=True)
class Layer:
    """One layer record. Fields a type does not use stay None; see LAYER_FIELDS."""

    type: str
    channels: int | None = None  # output channels (conv, sepconv) or features (linear)
    kernel: int | None = None  # square kernel side, in pixels
    stride: int | None = None  # None on a pool means stride = kernel
    padding: int | None = None  # zero padding on each side, in pixels
    dilation: int | None = None  # spacing between kernel taps (1 = dense)
    groups: int | None = None  # conv only; groups = in channels makes it depthwise
    bias: bool | None = None
    p: float | None = None  # dropout probability

    def fields(self) -> dict[str, Any]:
        """The fields this layer's type uses, with their values."""
        return {name: getattr(self, name) for name in LAYER_FIELDS.get(self.type, {})}

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.fields()}

    def label(self) -> str:
        """A short human label, e.g. 'sepconv 256 3x3 d2 p2'."""
        parts = [self.type]
        if self.channels is not None:
            parts.append(str(self.channels))
        if self.kernel is not None:
            parts.append(f"{self.kernel}x{self.kernel}")
        if self.stride not in (None, 1) and self.type in ("conv", "sepconv"):
            parts.append(f"s{self.stride}")
        if self.dilation not in (None, 1):
            parts.append(f"d{self.dilation}")
        if self.padding:
            parts.append(f"p{self.padding}")
        if self.groups not in (None, 1):
            parts.append(f"g{self.groups}")
        if self.type == "dropout":
            parts.append(f"{self.p:g}")
        return " ".join(parts)


@dataclass(frozen=True)
class NetworkSpec:
    """A network as data: layers applied in order to an input of `input_shape`."""

    layers: tuple[Layer, ...]
    name: str = "custom"
    description: str = ""
    input_shape: tuple[int, int, int] = (3, 32, 32)  # channels, height, width
    num_classes: int = 10

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": [layer.to_dict() for layer in self.layers],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def with_layers(self, layers: Iterable[Layer]) -> NetworkSpec:
        return replace(self, layers=tuple(layers))


@dataclass(frozen=True)
class Shape:
    """An activation shape: (channels, size, size) when spatial, (features,) when flat."""

    channels: int
    size: int | None  # square side in pixels; None once flattened

    @property
    def spatial(self) -> bool:
        return self.size is not None

    @property
    def numel(self) -> int:
        return self.channels * (self.size * self.size if self.size else 1)

    def __str__(self) -> str:
        return f"{self.channels}x{self.size}x{self.size}" if self.spatial else f"{self.channels}"


# ---------------------------------------------------------------- making layers


def layer(type: str, **values: Any) -> Layer:
    """A layer of `type` with the given fields and the type's defaults for the rest."""
    return _make_layer(type, values, where=type)


def _make_layer(type: str, values: dict[str, Any], where: str) -> Layer:
    if type not in LAYER_FIELDS:
        raise SpecError(f"unknown layer type {_show(type)}: use one of {', '.join(LAYER_FIELDS)}", field="type")
    allowed = LAYER_FIELDS[type]
    unknown = sorted(set(values) - set(allowed), key=str)
    if unknown:
        hint = f"a {type} layer takes {', '.join(allowed)}" if allowed else f"a {type} layer takes no fields"
        raise SpecError(f"{where}: unknown field {_show(unknown[0])} — {hint}", field=str(unknown[0]))
    filled = {}
    for name, default in allowed.items():
        value = values.get(name, default)
        if value is REQUIRED:
            raise SpecError(f"{where}: field '{name}' is required — add it", field=name)
        filled[name] = value
    return Layer(type=type, **filled)


class LongNumber:
    """A number in spec JSON written with more than MAX_NUMBER_DIGITS characters, kept unconverted.

    Python refuses to convert integers of over 4,300 digits (and converting long ones is slow), so the parser
    hands such a number on as this marker; validation then refuses it, naming its layer and field.
    """

    def __init__(self, text: str):
        self.length = len(text)

    def __repr__(self) -> str:
        return f"a number {self.length:,} characters long"


def _show(value: Any, limit: int = 40) -> str:
    """A value as it would be written, cut short so a huge one cannot flood the message."""
    if isinstance(value, int) and value.bit_length() > 4 * limit:  # repr() of a huge int is slow or refused
        return f"a whole number of about {int(value.bit_length() * 0.30103):,} digits"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def conv(channels: int, kernel: int = 3, padding: int = 0, **kw: Any) -> Layer:
    return layer("conv", channels=channels, kernel=kernel, padding=padding, **kw)


def sepconv(channels: int, kernel: int = 3, padding: int = 0, **kw: Any) -> Layer:
    return layer("sepconv", channels=channels, kernel=kernel, padding=padding, **kw)


def bn() -> Layer:
    return layer("bn")


def relu() -> Layer:
    return layer("relu")


def conv_bn_relu(channels: int, kernel: int = 3, padding: int = 1, dilation: int = 1, stride: int = 1) -> list[Layer]:
    """The common block: conv, batch norm, ReLU."""
    return [conv(channels, kernel, padding, dilation=dilation, stride=stride), bn(), relu()]


def sep_bn_relu(channels: int, kernel: int = 3, padding: int = 1, dilation: int = 1, stride: int = 1) -> list[Layer]:
    """The common block: depthwise-separable conv, batch norm, ReLU."""
    return [sepconv(channels, kernel, padding, dilation=dilation, stride=stride), bn(), relu()]


# Blocks a student can insert in one action: name -> (description, maker(channels)).
BLOCKS: dict[str, tuple[str, Callable[[int], list[Layer]]]] = {
    "conv-bn-relu": ("3x3 conv, batch norm, ReLU (padding 1 keeps the size)", lambda c: conv_bn_relu(c)),
    "sep-bn-relu": ("3x3 depthwise-separable conv, batch norm, ReLU", lambda c: sep_bn_relu(c)),
    "dilated-sep-bn-relu": (
        "3x3 depthwise-separable conv with dilation 2 (padding 2 keeps the size), batch norm, ReLU",
        lambda c: sep_bn_relu(c, padding=2, dilation=2),
    ),
    "maxpool": ("2x2 max pool, stride 2: halves the size, doubles the jump", lambda c: [layer("maxpool")]),
    "classifier": (
        "global average pool, 1x1 conv to 10 class scores, flatten",
        lambda c: [layer("gap"), conv(10, 1, bias=True), layer("flatten")],
    ),
}


def make_block(name: str, channels: int) -> list[Layer]:
    """The layers of block `name` with `channels` output channels."""
    if name not in BLOCKS:
        raise SpecError(f"unknown block '{name}': use one of {', '.join(BLOCKS)}")
    return BLOCKS[name][1](channels)


# ---------------------------------------------------------------- validation


def _where(position: int, lay: Layer) -> str:
    return f"layer {position} ({lay.type})"


def _check_values(position: int, lay: Layer) -> None:
    """Types and ranges of each field, before any shape arithmetic."""
    where = _where(position, lay)
    for name, value in lay.fields().items():
        if name == "stride" and value is None and lay.type in ("maxpool", "avgpool"):
            continue
        if isinstance(value, LongNumber):
            hint = f"write a number of at most {MAX_NUMBER_DIGITS} characters"
            raise SpecError(f"{where}: {name} is {value!r}, far beyond any limit — {hint}", position, name)
        if name in INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise SpecError(f"{where}: {name} must be a whole number, got {_show(value)}", position, name)
            low = 0 if name == "padding" else 1
            if value < low:
                raise SpecError(f"{where}: {name} is {_show(value)}; it must be at least {low}", position, name)
            high = {"channels": MAX_CHANNELS, "groups": MAX_CHANNELS, "kernel": MAX_KERNEL}.get(name)
            if high is not None and value > high:
                raise SpecError(f"{where}: {name} is {_show(value)}; at most {high} is allowed", position, name)
            if name in ("padding", "dilation", "stride") and value > MAX_KERNEL:
                raise SpecError(f"{where}: {name} is {_show(value)}; at most {MAX_KERNEL} is allowed", position, name)
        elif name == "bias":
            if not isinstance(value, bool):
                raise SpecError(f"{where}: bias must be true or false, got {_show(value)}", position, name)
        elif name == "p":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise SpecError(f"{where}: p must be a probability in [0, 1), got {_show(value)}", position, name)


def kernel_span(kernel: int, dilation: int = 1) -> int:
    """Pixels a kernel covers along one axis: its taps plus the gaps dilation puts between them."""
    return dilation * (kernel - 1) + 1


def _window_out(position: int, lay: Layer, size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Output side of a sliding window, or a SpecError that says how to fix it."""
    where = _where(position, lay)
    span = kernel_span(kernel, dilation)
    padded = size + 2 * padding
    if span > padded:
        dil = f" with dilation {dilation}" if dilation > 1 else ""
        raise SpecError(
            f"{where}: input is {size}x{size}{f' (+{padding} padding = {padded})' if padding else ''}; "
            f"a {kernel}x{kernel} kernel{dil} spans {span} pixels and has nothing to slide over — "
            f"use a smaller kernel or dilation, add padding, or remove a downsampling layer earlier",
            position,
            "kernel",
        )
    return (padded - span) // stride + 1


def _next_shape(position: int, lay: Layer, shape: Shape) -> Shape:
    where = _where(position, lay)
    t = lay.type
    if t in ("conv", "sepconv", "maxpool", "avgpool", "gap") and not shape.spatial:
        raise SpecError(
            f"{where}: its input is a flat vector of {shape.channels} values; it needs an image "
            f"(CxHxW) — move it before the flatten",
            position,
        )
    if t == "linear" and shape.spatial:
        raise SpecError(
            f"{where}: its input is {shape}; a linear layer needs a flat vector — add a "
            f"flatten (after a global average pool) before it",
            position,
        )
    if t == "conv":
        groups = lay.groups
        if shape.channels % groups or lay.channels % groups:
            raise SpecError(
                f"{where}: groups={groups} must divide both the input channels ({shape.channels}) "
                f"and the output channels ({lay.channels}) — for a depthwise conv set groups and "
                f"channels to {shape.channels}",
                position,
                "groups",
            )
    if t in ("maxpool", "avgpool"):
        half = lay.kernel // 2  # PyTorch's limit for both pools, whatever the dilation
        if lay.padding > half:
            raise SpecError(
                f"{where}: padding {lay.padding} is more than half the {lay.kernel}x{lay.kernel} "
                f"window; use padding {half} or less",
                position,
                "padding",
            )
    if t in ("conv", "sepconv", "maxpool", "avgpool"):
        stride = lay.stride if lay.stride is not None else lay.kernel
        dilation = lay.dilation if lay.dilation is not None else 1
        size = _window_out(position, lay, shape.size, lay.kernel, stride, lay.padding, dilation)
        channels = lay.channels if t in ("conv", "sepconv") else shape.channels
        return Shape(channels, size)
    if t == "gap":
        return Shape(shape.channels, 1)
    if t == "flatten":
        return Shape(shape.numel, None)
    if t == "linear":
        return Shape(lay.channels, None)
    return shape  # bn, activations, dropout keep the shape


@dataclass(frozen=True)
class Cost:
    """What a layer (or a whole network) costs, from its shapes alone: PyTorch's own counts, without building it."""

    params: int = 0  # weights and biases (BN's scale and shift; not its running statistics)
    mult_adds: int = 0  # multiply-adds of one image's forward pass (convolutions and linear layers)
    activations: int = 0  # values the layer's modules output for one image (a sepconv's depthwise part too)

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.mult_adds + other.mult_adds, self.activations + other.activations)


def layer_cost(lay: Layer, shape_in: Shape, shape_out: Shape) -> Cost:
    """The cost of one layer that takes `shape_in` to `shape_out` (both from infer_shapes)."""
    c_in, c_out, pixels = shape_in.channels, shape_out.channels, (shape_out.size or 1) ** 2
    bias = c_out if lay.bias else 0
    if lay.type == "conv":
        weights = c_out * (c_in // lay.groups) * lay.kernel**2
        return Cost(weights + bias, weights * pixels, shape_out.numel)
    if lay.type == "sepconv":
        depthwise, pointwise = c_in * lay.kernel**2, c_in * c_out
        return Cost(depthwise + pointwise + bias, (depthwise + pointwise) * pixels, c_in * pixels + shape_out.numel)
    if lay.type == "linear":
        return Cost(c_in * c_out + bias, c_in * c_out, c_out)
    if lay.type == "bn":
        return Cost(2 * c_in, 0, shape_out.numel)
    return Cost(0, 0, shape_out.numel)


def network_cost(spec: NetworkSpec) -> Cost:
    """The whole network's cost: parameters, multiply-adds and activation values for one image (validates it)."""
    shapes = infer_shapes(spec)
    return sum((layer_cost(lay, shapes[i], shapes[i + 1]) for i, lay in enumerate(spec.layers)), Cost())


def _amount(n: int, digits: int = 3) -> str:
    """A count in words a student reads at a glance: '1.2 billion', '50 million', '12,345'."""
    for size, word in ((10**9, "billion"), (10**6, "million")):
        if n >= size:
            return f"{n / size:.{digits}g} {word}"
    return f"{n:,}"


def _over(total: int, limit: int) -> tuple[str, str]:
    """`total` and `limit` in words, with as many digits as it takes to tell them apart."""
    for digits in (3, 4, 5, 6, 7):
        if _amount(total, digits) != _amount(limit):
            return _amount(total, digits), _amount(limit)
    return f"{total:,}", f"{limit:,}"


def _what_it_adds(lay: Layer, shape_in: Shape, shape_out: Shape, at: str = "") -> str:
    """The layer's own fields that make it costly (`at` the pixels it works on), with the verb that follows."""
    if lay.type in ("conv", "sepconv"):
        kernel = f"{lay.kernel}x{lay.kernel}"
        return f"{lay.channels:,} channels with a {kernel} kernel on {shape_in.channels:,} input channels{at} bring"
    if lay.type == "linear":
        return f"{shape_in.channels:,} inputs to its {lay.channels:,} channels (outputs) bring"
    return f"its output of {shape_out} brings"


def _check_cost(position: int, lay: Layer, shape_in: Shape, shape_out: Shape, before: Cost) -> Cost:
    """The cost up to and with this layer; a SpecError naming it (and its field) when it crosses a limit."""
    total = before + layer_cost(lay, shape_in, shape_out)
    weighted = lay.type in ("conv", "sepconv", "linear")
    if lay.type == "linear":
        smaller = "use fewer channels, or a global average pool before the flatten"
    elif weighted:
        smaller = "use fewer channels or a smaller kernel"
    else:  # a layer without fields only passes on what the ones before it made
        smaller = "use fewer channels in the layers before it"
    downsample = "or downsample (a stride or a pool) earlier"
    at = f" at {shape_out.size}x{shape_out.size} pixels" if shape_out.spatial else ""
    checks = (
        (total.params, MAX_PARAMS, "", "parameters", smaller),
        (total.mult_adds, MAX_MULT_ADDS, at, "multiply-adds for one image", f"{smaller}, {downsample}"),
        (total.activations, MAX_ACTIVATIONS, "", "activation values for one image", f"{smaller}, {downsample}"),
    )
    for value, limit, where, what, fix in checks:
        if value > limit:
            reached, allowed = _over(value, limit)
            raise SpecError(
                f"{_where(position, lay)}: {_what_it_adds(lay, shape_in, shape_out, where)} this network to {reached} "
                f"{what}; the limit is {allowed} — {fix}",
                position,
                "channels" if weighted else None,
            )
    return total


def infer_shapes(spec: NetworkSpec) -> list[Shape]:
    """Validate `spec` and return the shape after each layer (index 0 is the input).

    Raises SpecError naming the layer, the field, what is wrong and how to fix it.
    """
    if not spec.layers:
        raise SpecError("the network has no layers: start from a preset or add a block")
    if len(spec.layers) > MAX_LAYERS:
        raise SpecError(f"the network has {len(spec.layers)} layers; at most {MAX_LAYERS} are allowed")
    c, h, w = spec.input_shape
    if h != w:
        raise SpecError(f"input must be square, got {h}x{w}")
    shapes, cost = [Shape(c, h)], Cost()
    for position, lay in enumerate(spec.layers):
        if lay.type not in LAYER_FIELDS:
            raise SpecError(
                f"layer {position}: unknown layer type '{lay.type}' — use one of {', '.join(LAYER_FIELDS)}",
                position,
                "type",
            )
        _check_values(position, lay)
        shapes.append(_next_shape(position, lay, shapes[-1]))
        cost = _check_cost(position, lay, shapes[-2], shapes[-1], cost)
    out = shapes[-1]
    if out.numel != spec.num_classes or (out.spatial and out.size != 1):
        raise SpecError(
            f"layer {len(spec.layers) - 1} ({spec.layers[-1].type}): the network ends with "
            f"{out if out.spatial else ''}{' = ' if out.spatial else ''}{out.numel} values, but it must give "
            f"{spec.num_classes} class scores: end with a global average pool, a 1x1 conv with "
            f"{spec.num_classes} channels and a flatten (or a flatten and a linear layer with "
            f"{spec.num_classes} outputs)",
            len(spec.layers) - 1,
        )
    return shapes


def validate(spec: NetworkSpec) -> NetworkSpec:
    """Return `spec` unchanged if it is valid; raise SpecError otherwise."""
    infer_shapes(spec)
    return spec


def shapes_until_error(spec: NetworkSpec) -> tuple[list[Shape], SpecError | None]:
    """The shapes after each layer up to the first one that fails (index 0 is the input), and its error.

    Unlike infer_shapes it does not raise, and it does not check how the network ends, so an editor can
    show what an edit did to the layers before the one that fails.
    """
    c, h, _ = spec.input_shape
    shapes, cost = [Shape(c, h)], Cost()
    for position, lay in enumerate(spec.layers):
        try:
            if lay.type not in LAYER_FIELDS:
                raise SpecError(f"layer {position}: unknown layer type '{lay.type}'", position, "type")
            _check_values(position, lay)
            shape = _next_shape(position, lay, shapes[-1])
            cost = _check_cost(position, lay, shapes[-1], shape, cost)
            shapes.append(shape)
        except SpecError as err:
            return shapes, err
    return shapes, None


# ---------------------------------------------------------------- JSON


def layer_from_dict(data: Any, position: int) -> Layer:
    """A layer from its JSON object, with errors that name the layer."""
    if not isinstance(data, dict):
        raise SpecError(
            f'layer {position}: expected an object like {{"type": "conv", ...}}, got {_show(data)}', position
        )
    if "type" not in data:
        raise SpecError(f'layer {position}: missing "type" — one of {", ".join(LAYER_FIELDS)}', position, "type")
    twice = getattr(data, "duplicates", ())
    if twice:
        raise SpecError(f"layer {position}: field {_show(twice[0])} is given twice — keep one", position, twice[0])
    values = {k: v for k, v in data.items() if k != "type"}
    kind = data["type"]
    if not isinstance(kind, str) or kind not in LAYER_FIELDS:
        raise SpecError(
            f"layer {position}: unknown layer type {_show(kind)} — use one of {', '.join(LAYER_FIELDS)}",
            position,
            "type",
        )
    try:
        return _make_layer(kind, values, where=f"layer {position} ({kind})")
    except SpecError as err:
        raise SpecError(str(err), position, err.field) from None


def _unwritable(text: str) -> bool:
    """Whether `text` holds a lone surrogate (no UTF-8 file or page can hold it) or a control character."""
    return any(0xD800 <= ord(c) <= 0xDFFF or (ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in text)


def spec_from_dict(data: Any) -> NetworkSpec:
    """A validated spec from parsed JSON: an object with "layers", or a bare list of layers."""
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, dict):
        raise SpecError('a spec must be a JSON object with a "layers" list')
    known = {"name", "description", "input_shape", "num_classes", "layers"}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise SpecError(f"unknown spec field {_show(unknown[0])}: a spec has {', '.join(sorted(known))}")
    twice = getattr(data, "duplicates", ())
    if twice:
        raise SpecError(f"spec field {_show(twice[0])} is given twice — keep one", field=twice[0])
    layers = data.get("layers")
    if not isinstance(layers, list):
        raise SpecError('a spec needs a "layers" list of layer objects')
    if len(layers) > MAX_LAYERS:
        raise SpecError(f"the network has {len(layers)} layers; at most {MAX_LAYERS} are allowed")
    shape = data.get("input_shape", [3, 32, 32])
    if not (isinstance(shape, list) and len(shape) == 3 and all(type(v) is int and 0 < v <= 1024 for v in shape)):
        raise SpecError(f"input_shape must be [channels, height, width] of positive whole numbers, got {_show(shape)}")
    classes = data.get("num_classes", 10)
    if type(classes) is not int or not 1 < classes <= MAX_CHANNELS:
        raise SpecError(f"num_classes must be a whole number from 2 to {MAX_CHANNELS}, got {_show(classes)}")
    name, description = data.get("name", "custom"), data.get("description", "")
    for what, text, limit in (("name", name, MAX_NAME_CHARS), ("description", description, 50 * MAX_NAME_CHARS)):
        if not isinstance(text, str):
            raise SpecError(f"the spec's {what} must be a string, got {_show(text)}", field=what)
        if len(text) > limit:
            raise SpecError(f"the spec's {what} is {len(text):,} characters; at most {limit:,} are allowed", field=what)
        if _unwritable(text):
            raise SpecError(f"the spec's {what} holds a control character or a lone surrogate — remove it", field=what)
    spec = NetworkSpec(
        layers=tuple(layer_from_dict(item, i) for i, item in enumerate(layers)),
        name=name,
        description=description,
        input_shape=tuple(shape),
        num_classes=classes,
    )
    return validate(spec)


class _JSONObject(dict):
    """A parsed JSON object that remembers the keys its text gave more than once (json keeps the last)."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _JSONObject:
    obj = _JSONObject(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        obj.duplicates = tuple(k for k, _ in pairs if k in seen or seen.add(k))
    return obj


def _number(text: str) -> Any:
    """A JSON number: an int or float, or a LongNumber when it is too long to convert safely."""
    if len(text) > MAX_NUMBER_DIGITS:
        return LongNumber(text)
    return float(text) if any(c in text for c in ".eE") else int(text)


def _deepest(data: Any) -> tuple[int, tuple[Any, ...]]:
    """The nesting depth of parsed JSON and the path of keys and indices to its deepest point (no recursion)."""
    best: tuple[int, tuple[Any, ...]] = (0, ())
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(data, 1, ())]
    while stack:
        value, depth, path = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else None
        if items is None:
            continue
        best = max(best, (depth, path), key=lambda b: b[0])
        if depth <= MAX_SPEC_DEPTH:  # past the limit the answer is known; do not walk a bomb
            stack.extend((v, depth + 1, (*path, k)) for k, v in items)
    return best


def _check_depth(data: Any) -> None:
    depth, path = _deepest(data)
    if depth <= MAX_SPEC_DEPTH:
        return
    if isinstance(data, list):  # a bare list of layers
        path = ("layers", *path)
    if len(path) >= 3 and path[0] == "layers" and isinstance(path[1], int):
        raise SpecError(
            f"layer {path[1]}: field {_show(path[2])} holds lists or objects nested over {MAX_SPEC_DEPTH} deep; "
            "a layer field is a number, true/false or null",
            path[1],
            str(path[2]),
        )
    where = f" at {_show(path[0])}" if path else ""
    raise SpecError(f"the spec is nested over {MAX_SPEC_DEPTH} levels deep{where}; a spec needs 3 (export a preset)")


def spec_from_json(text: str | bytes) -> NetworkSpec:
    """A validated spec from JSON text; malformed, oversized or over-nested JSON is a SpecError too.

    Numbers of any length, NaN and Infinity, and keys given twice are parsed into values that validation
    refuses with the layer and field named, so nothing but a SpecError ever leaves here.
    """
    if not isinstance(text, (str, bytes, bytearray)):
        raise SpecError(f"a spec is JSON text, got {type(text).__name__}")
    if len(text) > MAX_SPEC_BYTES:
        raise SpecError(f"the spec is {len(text):,} bytes long; no network needs over {MAX_SPEC_BYTES:,}")
    try:
        data = json.loads(text, object_pairs_hook=_object, parse_int=_number, parse_float=_number)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpecError(f"the spec is not valid JSON ({err}); export a preset to see the format") from None
    except RecursionError:
        raise SpecError(f"the spec is nested over {MAX_SPEC_DEPTH} levels deep; a spec needs 3") from None
    _check_depth(data)
    return spec_from_dict(data)


def read_spec_text(source: Any) -> str | bytes:
    """The bytes of a spec from a path or an open binary file, reading one byte past MAX_SPEC_BYTES at most.

    A huge file is never read whole: spec_from_json then refuses it by its size.
    """
    if hasattr(source, "read"):
        return source.read(MAX_SPEC_BYTES + 1)
    with open(source, "rb") as f:
        return f.read(MAX_SPEC_BYTES + 1)


# ---------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    make: Callable[[], NetworkSpec] = field(repr=False)


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, description: str) -> Callable[[Callable[[], list[Layer]]], Callable[[], list[Layer]]]:
    """Register a function returning a layer list as preset `name`."""

    def wrap(fn: Callable[[], list[Layer]]) -> Callable[[], list[Layer]]:
        PRESETS[name] = Preset(name, description, lambda: validate(NetworkSpec(tuple(fn()), name, description)))
        return fn

    return wrap


def get_preset(name: str) -> NetworkSpec:
    """The spec of preset `name`."""
    if name not in PRESETS:
        raise SpecError(f"unknown preset '{name}': use one of {', '.join(PRESETS)}")
    return PRESETS[name].make()


def preset_or_file(name: str) -> NetworkSpec:
    """A preset by name, or the spec in a file whose name ends in .json (what `python -m s7core export` writes)."""
    return spec_from_json(read_spec_text(name)) if name.endswith(".json") else get_preset(name)


@register_preset("seed", "The reference solution: 925,706 parameters, RF 64, 87.58% in 19 epochs.")
def _seed() -> list[Layer]:
    return [
        conv(128, 3), bn(), relu(),
        conv(128, 3), bn(), relu(),
        layer("maxpool"),
        sepconv(256, 3, 2, dilation=2), bn(), relu(),
        sepconv(256, 3, 2, dilation=2), bn(), relu(),
        layer("maxpool"),
        sepconv(512, 3, 1), bn(), relu(),
        sepconv(512, 3, 1), bn(), relu(),
        layer("avgpool", kernel=7),
        bn(), conv(512, 1), relu(),
        bn(), conv(10, 1, bias=True),
        layer("flatten"),
    ]  # fmt: skip


@register_preset("tiny", "A small starting point for students: 32k parameters, RF 65, meets every rule.")
def _tiny() -> list[Layer]:
    return [
        *conv_bn_relu(16),
        *conv_bn_relu(32, stride=2),
        *sep_bn_relu(48, padding=2, dilation=2),
        *sep_bn_relu(64, stride=2),
        *sep_bn_relu(96, padding=2, dilation=2),
        *sep_bn_relu(128, stride=2),
        *BLOCKS["classifier"][1](0),
    ]


def _conv_pool_bn_relu(channels: int) -> list[Layer]:
    """3x3 conv, then a 2x2 max pool before BN and ReLU, so those run on a quarter of the pixels."""
    return [conv(channels, 3, 1), layer("maxpool"), bn(), relu()]


@register_preset(
    "fast",
    "Built for speed on a CPU: a 2x2 stride-2 stem takes the image to 16x16 at once, pools come before BN "
    "and ReLU, the dilated separable conv runs at 4x4. 125k parameters, 8.9M multiply-adds, RF 76; with the "
    "'fast' recipe 81.1% test accuracy after 4 epochs (mean of 3 seeds), about a minute on 2 CPU cores.",
)
def _fast() -> list[Layer]:
    return [
        conv(24, 2, stride=2), bn(), relu(),
        *_conv_pool_bn_relu(64),
        *_conv_pool_bn_relu(128),
        *sep_bn_relu(256, padding=2, dilation=2),
        layer("gap"), layer("flatten"), layer("linear", channels=10),
    ]  # fmt: skip


@register_preset(
    "best",
    "Built for the most accuracy a 2-core CPU reaches in about ten minutes: a 2x2 unpadded stem (32 to 31 "
    "pixels), then three stages of 64, 192 and 192 channels, each a 3x3 conv, a 2x2 max pool (before BN and "
    "ReLU) and a second 3x3 conv, the last one a dilated separable conv at 3x3 pixels. 867k parameters, 80M "
    "multiply-adds, RF 83; train it with the 'best' recipe (its measured accuracy and time are in README.md).",
)
def _best() -> list[Layer]:
    return [
        conv(24, 2), bn(), relu(),
        *_conv_pool_bn_relu(64), *conv_bn_relu(64),
        *_conv_pool_bn_relu(192), *conv_bn_relu(192),
        *_conv_pool_bn_relu(192),
        *sep_bn_relu(192, padding=2, dilation=2),
        layer("gap"), layer("flatten"), layer("linear", channels=10),
    ]  # fmt: skip
