"""The RF measured by back-propagation: a reference for tests, independent of the RF arithmetic.

A probe copy of the model grows with every input pixel it reads (positive constant weights,
no biases, identities for norms, dropout and activations, average pools for max pools), so
the input pixels with a non-zero gradient for one unit are exactly the pixels that unit
reads. Tests hold s7core.rf.table and s7core.rf.trace against these boxes; the model
itself is never touched, and its weights are never copied.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from s7core.errors import UserError
from s7core.rf._modules import DROPPED_IN_PROBE, check_input_shape, first_line, is_activation, meta_copy, pair
from s7core.rf.table import centre_unit
from s7core.spec import kernel_span


class _MeanLinear(nn.Module):
    """A linear layer whose weights are all 1/in_features, without storing them."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.sum(-1, keepdim=True) / self.in_features  # (..., 1)
        return mean.expand(*x.shape[:-1], self.out_features)  # (..., out_features)


def _pad_sides(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """The (left, right, top, bottom) padding F.pad needs to pad as `conv` does; "same" puts an odd pixel after."""
    if conv.padding == "valid":
        return (0, 0, 0, 0)
    if conv.padding == "same":
        (kh, kw), (dh, dw) = pair(conv.kernel_size), pair(conv.dilation)
        th, tw = kernel_span(kh, dh) - 1, kernel_span(kw, dw) - 1
        return (tw // 2, tw - tw // 2, th // 2, th - th // 2)
    ph, pw = pair(conv.padding)
    return (pw, pw, ph, ph)


class _MeanConv(nn.Module):
    """A conv whose weights are all 1/fan_in, with no bias, without storing them.

    Each output channel of a group is the window mean of the group's channel mean, so it
    is computed as one single-channel box filter over the group means: exact, and cheap
    enough to run in float64 (where grouped convs take a slow path on the CPU).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.groups, self.per_group = conv.groups, conv.out_channels // conv.groups
        self.kernel, self.stride, self.dilation = pair(conv.kernel_size), conv.stride, conv.dilation
        self.padding, self.padding_mode = conv.padding, conv.padding_mode
        self.pad_sides = _pad_sides(conv)  # what torch pads with for non-zero modes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g, (kh, kw) = self.groups, self.kernel
        means = x.reshape(n, g, c // g, h, w).mean(2).reshape(n * g, 1, h, w)  # groups folded into the batch
        padding = self.padding
        if self.padding_mode != "zeros":
            means, padding = nn.functional.pad(means, self.pad_sides, mode=self.padding_mode), 0
        box = means.new_full((1, 1, kh, kw), 1 / (kh * kw))
        out = nn.functional.conv2d(means, box, None, self.stride, padding, self.dilation)  # (N * g, 1, H', W')
        out = out.reshape(n, g, 1, *out.shape[-2:]).expand(n, g, self.per_group, *out.shape[-2:])
        # a real copy: later in-place ops (out += identity) refuse tensors that share memory
        return out.reshape(n, g * self.per_group, *out.shape[-2:]).contiguous()  # (N, out_channels, H', W')


class _WindowMean(nn.Module):
    """A dilated max pool's windows, averaged, so every pixel of a window gets gradient."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel, self.stride = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)
        self.padding, self.dilation = pair(pool.padding), pair(pool.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (kh, kw) = x.shape[1], self.kernel
        weight = x.new_full((c, 1, kh, kw), 1 / (kh * kw))
        return nn.functional.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups=c)


def _probe_layer(m: nn.Module) -> nn.Module | None:
    """The stand-in for `m` in the probe copy, or None to keep `m`."""
    if isinstance(m, nn.Conv2d):
        return _MeanConv(m)
    if isinstance(m, nn.Linear):
        return _MeanLinear(m.in_features, m.out_features)
    if isinstance(m, nn.MaxPool2d):
        if pair(m.dilation) != (1, 1):
            return _WindowMean(m)
        return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode)
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(m.output_size)
    return nn.Identity() if is_activation(m) or isinstance(m, DROPPED_IN_PROBE) else None


def _fill_with_ones(probe: nn.Module, dtype: torch.dtype) -> None:
    """Every parameter and buffer still on the meta device becomes ones (integer buffers keep their type)."""
    for m in probe.modules():
        for key, p in list(m.named_parameters(recurse=False, remove_duplicate=False)):
            if p.is_meta:
                setattr(m, key, nn.Parameter(torch.ones(p.shape, dtype=dtype), False))
        for key, b in list(m.named_buffers(recurse=False, remove_duplicate=False)):
            if b.is_meta:
                setattr(m, key, torch.ones(b.shape, dtype=dtype if b.is_floating_point() else b.dtype))


def _probe_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` whose output grows with every input pixel it depends on.

    Conv and linear weights become a positive constant (1/fan_in) with no bias, norms,
    dropout and activations become identities, max pools become average pools of the same
    geometry; what is left keeps its structure with every weight 1. The model's own
    weights are never copied (the copy starts on the meta device).
    """
    probe = meta_copy(model)
    for name, m in list(probe.named_modules()):
        new = _probe_layer(m) if name else None
        if new is not None:
            parent, _, child = name.rpartition(".")
            setattr(probe.get_submodule(parent), child, new)
    _fill_with_ones(probe, dtype)
    return probe.eval()


def _centre_of(out: Any) -> torch.Tensor:
    """The centre spatial unit of an output, summed over channels (the first sample only)."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim >= 4:
        return out[0, ..., centre_unit(out.shape[-2]), centre_unit(out.shape[-1])].sum()
    return out[0].sum()


def _support(grad: torch.Tensor | None, what: str) -> tuple[int, int, int, int]:
    seen = grad[0].abs().sum(0) > 0 if grad is not None else None
    if seen is None or not seen.any():
        raise UserError(f"{what} does not depend on any input pixel")
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def measured_windows(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    layers: Sequence[str | None] = (None,),
    dtype: torch.dtype = torch.float64,  # float64: the gradient at a deep net's window edge can underflow float32
) -> list[tuple[int, int, int, int]]:
    """Measured input boxes (top, left, bottom, right, inside the image) of the centre unit of each layer.

    `None` stands for the model's output. The box holds every pixel with a non-zero gradient
    in a probe copy of the model (see _probe_copy); the model itself is not touched. Near a
    border it can stop short of the computed window clipped to the image: pixels that taps
    skip (dilation, strided windows that stop before the edge) are never read. Max pools
    called as functions (F.max_pool2d) stay max pools and pass gradient to one pixel a window.
    """
    c, h, w = check_input_shape(input_shape)
    probe = _probe_copy(model, dtype)
    modules = dict(probe.named_modules())
    unknown = [name for name in layers if name is not None and name not in modules]
    if unknown:
        raise UserError(f"no module named '{unknown[0]}' in {type(model).__name__}; use a name from named_modules()")
    outputs: dict[str | None, Any] = {}
    hooks = [  # on the probe copy, which no one else holds
        modules[name].register_forward_hook(lambda _m, _a, out, name=name: outputs.__setitem__(name, out))
        for name in set(layers) - {None}
    ]
    x = torch.ones(1, c, h, w, dtype=dtype, requires_grad=True)
    try:
        with torch.enable_grad():
            outputs[None] = probe(x)
    except Exception as err:  # whatever the model raises, the fix is the same: the shape it is given
        raise UserError(f"{type(model).__name__} does not run on a {c}x{h}x{w} input ({first_line(err)})") from None
    finally:
        for hook in hooks:
            hook.remove()
    boxes = []
    for name in layers:
        with torch.enable_grad():
            unit = _centre_of(outputs[name])
            grad = torch.autograd.grad(unit, x, retain_graph=True, allow_unused=True)[0] if unit.requires_grad else None
        boxes.append(_support(grad, f"the output of {name or type(model).__name__}"))
    return boxes


def measured_rf(model: nn.Module, input_shape: tuple[int, int, int], layer: str | None = None) -> int:
    """RF side (height axis, inside the image) of the centre output unit, measured by back-propagation."""
    top, _, bottom, _ = measured_windows(model, input_shape, [layer])[0]
    return bottom - top + 1


def measured_support(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    layer: str,
    unit: tuple[int, int],
    dtype: torch.dtype = torch.float64,
) -> np.ndarray:
    """An (H, W) bool map of the input pixels with a non-zero gradient for unit (row, col) of `layer`'s output.

    Measured on the probe copy (see _probe_copy), where every path adds a positive amount, so the map is
    exactly the set of pixels with a path to the unit; the model itself is not touched.
    """
    c, h, w = check_input_shape(input_shape)
    probe = _probe_copy(model, dtype)
    modules = dict(probe.named_modules())
    if layer not in modules:
        raise UserError(f"no module named '{layer}' in {type(model).__name__}; use a name from named_modules()")
    outputs: dict[str, Any] = {}
    modules[layer].register_forward_hook(lambda _m, _a, out: outputs.__setitem__(layer, out))  # the probe's own
    x = torch.ones(1, c, h, w, dtype=dtype, requires_grad=True)
    with torch.enable_grad():
        probe(x)
        out = outputs[layer]
        while isinstance(out, (tuple, list)):
            out = out[0]
        row, col = unit
        if out.ndim < 4 and (row, col) == (0, 0):  # a vector (a linear layer): its one "unit" is all of it
            value = out[0].sum()
        elif out.ndim == 4 and 0 <= row < out.shape[-2] and 0 <= col < out.shape[-1]:
            value = out[0, :, row, col].sum()
        else:
            raise UserError(f"unit ({row}, {col}) is not a unit of the {tuple(out.shape)} output of {layer}")
        (grad,) = torch.autograd.grad(value, x)
    return (grad[0] != 0).any(dim=0).numpy()
