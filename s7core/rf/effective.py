"""The effective RF (Luo et al., 2016): where the gradient of one unit lands on real images.

The theoretical RF (s7core.rf.table) is the box a unit could see; the effective RF is how
strongly each pixel of that box actually moves it, usually a roughly Gaussian blob.

The model handed in may be shared between threads (a page caches one model for every
browser session), so it is never touched: no hooks, no train/eval flip, no requires_grad
change. The work happens on a private copy whose parameters share the model's storage.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch import nn

from s7core.errors import UserError
from s7core.model import private_copy
from s7core.rf.table import centre_unit


def _unit_index(unit: Any, rows: int, cols: int, what: str) -> tuple[int, int]:
    """The (row, col) to measure: `unit`, checked against the map's size, or the centre unit when None."""
    if unit is None:
        return centre_unit(rows), centre_unit(cols)
    try:
        row, col = (operator.index(v) for v in unit)
    except (TypeError, ValueError):
        raise UserError(f"unit must be two whole numbers (row, col), got {unit!r}") from None
    if not (0 <= row < rows and 0 <= col < cols):
        raise UserError(
            f"unit ({row}, {col}) is outside the {rows}x{cols} output of {what}: "
            f"use a row from 0 to {rows - 1} and a column from 0 to {cols - 1}"
        )
    return row, col


def _unit_value(out: torch.Tensor, unit: Any, what: str) -> torch.Tensor:
    """The chosen spatial unit of a map summed over channels and images; a vector output summed whole."""
    if out.ndim < 4:
        if unit is not None:
            raise UserError(f"{what} is not a map (shape {tuple(out.shape)}): it has no unit to pick; leave unit unset")
        return out.sum()
    row, col = _unit_index(unit, out.shape[-2], out.shape[-1], what)
    return out[..., row, col].sum()


def effective_rf(
    model: nn.Module, images: torch.Tensor, layer: str | None = None, unit: tuple[int, int] | None = None
) -> np.ndarray:
    """Effective RF: mean |input gradient| of one unit over `images`, an (H, W) map with max 1.

    The unit is spatial position `unit` (row, col; default the centre unit, see centre_unit)
    of `layer`'s output summed over its channels, or the sum of the model's class scores when
    `layer` is None and the model ends in a vector. The model runs in eval mode on a private
    copy; the model itself, its flags, hooks and parameters are left exactly as they were.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise UserError("images must be a tensor of shape (N, C, H, W)")
    if layer is not None and layer not in dict(model.named_modules()):
        raise UserError(f"no module named '{layer}' in {type(model).__name__}; use a name from named_modules()")
    own = private_copy(model, "the effective RF")
    outputs: dict[str | None, Any] = {}
    if layer is not None:  # on the private copy, so no other caller's forward ever runs this hook
        own.get_submodule(layer).register_forward_hook(lambda _m, _a, out: outputs.__setitem__(layer, out))
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():  # a caller's no_grad block would leave the unit without a graph
        outputs[None] = own(x)
        out = outputs[layer]
        while isinstance(out, (tuple, list)):
            out = out[0]
        (grad,) = torch.autograd.grad(_unit_value(out, unit, layer or type(model).__name__), x)
    erf = grad.abs().mean(dim=(0, 1)).double()  # mean over images and input channels: (H, W)
    peak = erf.max()
    return (erf / peak if peak > 0 else erf).cpu().numpy()
