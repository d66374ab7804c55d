"""build_model(spec) -> torch.nn.Module: the network a spec describes, on the CPU by default.

The built model also names its modules: spec layer i is the module `module_name(i)` ('layers.7'), and the
two parts of a sepconv are `module_name(i, "depthwise")` and `module_name(i, "pointwise")`. `layer_of`
reads such a name back. Pages, commands and tables use these instead of spelling the names themselves.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from s7core.depthwise import DepthwiseConv2d
from s7core.device import depthwise_forward, is_depthwise
from s7core.errors import UserError
from s7core.names import SEPCONV_PARTS, ModuleNameError, layer_of, module_name, position_name
from s7core.spec import NetworkSpec, Shape, infer_shapes

ACTIVATION_MODULES = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
}


class SeparableConv2d(nn.Sequential):
    """A depthwise kxk conv (one filter per channel) followed by a pointwise 1x1 conv."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: int, dilation: int, bias: bool
    ):
        super().__init__()
        self.depthwise = DepthwiseConv2d(in_channels, kernel, stride, padding, dilation, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(depthwise_forward(self.depthwise, x))


class S7Net(nn.Module):
    """A spec's layers in order; `layers[i]` is the module of spec layer i."""

    def __init__(self, spec: NetworkSpec, layers: list[nn.Module]):
        super().__init__()
        self.spec = spec
        self.layers = nn.Sequential(*layers)
        # spec conv layers that are depthwise convs (groups = channels): run through depthwise_forward
        self.depthwise_layers = frozenset(i for i, m in enumerate(layers) if is_depthwise(m))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.depthwise_layers:
            x = self.layers(x)  # (N, classes) or (N, classes, 1, 1)
        else:
            for index, module in enumerate(self.layers):
                x = depthwise_forward(module, x) if index in self.depthwise_layers else module(x)
        return x.flatten(1)  # (N, classes)

    def module_name(self, index: int, part: str | None = None) -> str:
        """The module path of spec layer `index` (or of one part of a sepconv), checked against this network."""
        _check_layer(self.spec, index, part)
        return module_name(index, part)

    def layer_of(self, name: str) -> tuple[int, str | None]:
        """The (spec layer, sepconv part or None) that module path `name` is, checked against this network."""
        index, part = layer_of(name)
        _check_layer(self.spec, index, part, name)
        return index, part

    def layer_modules(self) -> dict[str, tuple[int, str | None]]:
        """Every module built from a spec layer, by path: {'layers.0': (0, None), 'layers.1.depthwise': ...}."""
        names: dict[str, tuple[int, str | None]] = {}
        for index, lay in enumerate(self.spec.layers):
            names[module_name(index)] = (index, None)
            for part in SEPCONV_PARTS if lay.type == "sepconv" else ():
                names[module_name(index, part)] = (index, part)
        return names


def _check_layer(spec: NetworkSpec, index: int, part: str | None, name: str | None = None) -> None:
    """ModuleNameError unless the spec has layer `index`, and `part` is None or that layer is a sepconv."""
    what = f"'{name}'" if name is not None else f"layer {position_name(index, part)}"
    count = len(spec.layers)
    if not 0 <= index < count:
        raise ModuleNameError(f"{what}: network '{spec.name}' has layers 0 to {count - 1}; pick one of those")
    kind = spec.layers[index].type
    if part is not None and kind != "sepconv":
        raise ModuleNameError(f"{what}: layer {index} is a {kind}, which has no {part} part; only a sepconv has one")


def _module(lay, shape_in: Shape) -> nn.Module:
    t, c_in = lay.type, shape_in.channels
    if t == "conv":
        if lay.groups == c_in == lay.channels and c_in > 1:  # one filter per channel
            return DepthwiseConv2d(c_in, lay.kernel, lay.stride, lay.padding, lay.dilation, lay.bias)
        return nn.Conv2d(c_in, lay.channels, lay.kernel, lay.stride, lay.padding, lay.dilation, lay.groups, lay.bias)
    if t == "sepconv":
        return SeparableConv2d(c_in, lay.channels, lay.kernel, lay.stride, lay.padding, lay.dilation, lay.bias)
    if t == "bn":
        return nn.BatchNorm2d(c_in) if shape_in.spatial else nn.BatchNorm1d(c_in)
    if t in ACTIVATION_MODULES:
        return ACTIVATION_MODULES[t]()
    if t == "dropout":
        return nn.Dropout(lay.p)
    if t == "maxpool":
        return nn.MaxPool2d(lay.kernel, lay.stride or lay.kernel, lay.padding, lay.dilation)
    if t == "avgpool":
        return nn.AvgPool2d(lay.kernel, lay.stride or lay.kernel, lay.padding)
    if t == "gap":
        return nn.AdaptiveAvgPool2d(1)
    if t == "flatten":
        return nn.Flatten()
    if t == "linear":
        return nn.Linear(c_in, lay.channels, lay.bias)
    raise AssertionError(f"no module for layer type {t!r}")  # infer_shapes refuses unknown types first


def build_model(spec: NetworkSpec) -> S7Net:
    """The torch model of a (validated) spec; maps (N, C, H, W) to (N, num_classes) logits.

    Build it under `with torch.device("meta"):` to get shapes and counts without memory.
    """
    shapes = infer_shapes(spec)
    return S7Net(spec, [_module(lay, shapes[i]) for i, lay in enumerate(spec.layers)])


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; every submodule's own train/eval flag restored after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in flags:
            m.training = training


def private_copy(model: nn.Module, purpose: str) -> nn.Module:
    """An eval-mode copy of `model` to hook and run freely: parameters share its storage without gradients.

    Pages cache one model for every browser session, so a hook, a train/eval flip or a requires_grad change on
    it would reach another student's forward pass in another thread. Buffers are cloned, since a forward may
    update them in place. `purpose` ends the message when the model cannot be copied.
    """
    memo: dict[int, Any] = {id(p): nn.Parameter(p.detach(), requires_grad=False) for p in model.parameters()}
    memo |= {id(b): b.clone() for b in model.buffers()}
    try:
        return copy.deepcopy(model, memo).eval()
    except Exception as err:  # whatever deepcopy trips on, the model cannot be used without touching it
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise UserError(
            f"{type(model).__name__} cannot be copied ({reason}); {purpose} is computed on a copy so that a model "
            "shared with other users is left alone"
        ) from None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, from the tensors themselves."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
