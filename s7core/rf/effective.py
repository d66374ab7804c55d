"""The effective RF (Luo et al., 2016): where the gradient of one unit lands on real images.

The theoretical RF (s7core.rf.table) is the box a unit could see; the effective RF is how
strongly each pixel of that box actually moves it, usually a roughly Gaussian blob.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from s7core.errors import UserError
from s7core.model import eval_mode
from s7core.rf.table import centre_unit


def effective_rf(model: nn.Module, images: torch.Tensor, layer: str | None = None) -> np.ndarray:
    """Effective RF: mean |input gradient| of the centre unit, an (H, W) map with max 1.

    The unit is the centre spatial position of `layer`'s output summed over its channels,
    or the sum of the model's class scores when `layer` is None. The model runs in eval
    mode with its weights untouched; its train/eval flags are restored.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise UserError("images must be a tensor of shape (N, C, H, W)")
    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        raise UserError(f"no module named '{layer}' in {type(model).__name__}; use a name from named_modules()")
    outputs: dict[str | None, Any] = {}
    hook = modules[layer].register_forward_hook(lambda _m, _a, out: outputs.__setitem__(layer, out)) if layer else None
    x = images.detach().clone().requires_grad_(True)
    try:
        with eval_mode(model), torch.enable_grad():
            outputs[None] = model(x)
    finally:
        if hook is not None:
            hook.remove()
    out = outputs[layer]
    while isinstance(out, (tuple, list)):
        out = out[0]
    with torch.enable_grad():  # a caller's no_grad block would leave the unit without a graph
        row, col = (centre_unit(out.shape[-2]), centre_unit(out.shape[-1])) if out.ndim >= 4 else (None, None)
        unit = out[..., row, col].sum() if out.ndim >= 4 else out.sum()
        (grad,) = torch.autograd.grad(unit, x)
    erf = grad.abs().mean(dim=(0, 1)).double()  # mean over images and input channels: (H, W)
    peak = erf.max()
    return (erf / peak if peak > 0 else erf).cpu().numpy()
