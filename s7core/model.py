"""build_model(spec) -> torch.nn.Module: the network a spec describes, on the CPU by default."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

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
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel, stride, padding, dilation, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=bias)


class S7Net(nn.Module):
    """A spec's layers in order; `layers[i]` is the module of spec layer i."""

    def __init__(self, spec: NetworkSpec, layers: list[nn.Module]):
        super().__init__()
        self.spec = spec
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)  # (N, classes) or (N, classes, 1, 1)
        return x.flatten(1)  # (N, classes)


def _module(lay, shape_in: Shape) -> nn.Module:
    t, c_in = lay.type, shape_in.channels
    if t == "conv":
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


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, from the tensors themselves."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
