"""What the tracer and the oracle share: the torch layers that leave the RF alone, and small checks.

Every class is named through torch's public API; tests/test_rf_modules.py fails when torch
adds a norm, dropout or activation that is missing here.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from s7core.errors import UserError

NORMS = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d,
    nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.LazyInstanceNorm1d,
    nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
)  # fmt: skip
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
DROPPED_IN_PROBE = (*NORMS, *DROPOUTS)  # identities in the gradient probe; the tracer leaves the RF as it is
# element-wise activations; MultiheadAttention, which torch files beside them, mixes positions and is not one
ACTIVATIONS = (
    nn.CELU, nn.ELU, nn.GELU, nn.GLU, nn.Hardshrink, nn.Hardsigmoid, nn.Hardswish, nn.Hardtanh, nn.LeakyReLU,
    nn.LogSigmoid, nn.LogSoftmax, nn.Mish, nn.PReLU, nn.RReLU, nn.ReLU, nn.ReLU6, nn.SELU, nn.SiLU, nn.Sigmoid,
    nn.Softmax, nn.Softmax2d, nn.Softmin, nn.Softplus, nn.Softshrink, nn.Softsign, nn.Tanh, nn.Tanhshrink,
    nn.Threshold,
)  # fmt: skip


def is_activation(m: nn.Module) -> bool:
    """Whether `m` is one of torch's own activations (a subclass may redefine forward, so it is not)."""
    return type(m) in ACTIVATIONS


def pair(value: Any) -> tuple[int, int]:
    """A 2-d geometry (kernel, stride, ...) as (height, width), from an int or a one- or two-item sequence."""
    if isinstance(value, (tuple, list)):
        value = tuple(value) * 2 if len(value) == 1 else tuple(value)
    else:
        value = (value, value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"not a 2-d geometry: {value!r}")
    return value


def check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    """The CxHxW input shape as a tuple, or a UserError that shows the expected form."""
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape):
        raise UserError(f"input shape must be three positive whole numbers CxHxW, e.g. 3x32x32; got {input_shape!r}")
    return tuple(input_shape)


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none), short enough for a one-line error."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


def meta_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose tensors live on the meta device: shapes without memory or arithmetic."""
    memo: dict[int, Any] = {id(b): torch.empty_like(b, device="meta") for b in module.buffers()}
    memo |= {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in module.parameters()}
    return copy.deepcopy(module, memo)
