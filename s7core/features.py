"""What each layer sees: the feature maps of one image at one layer, strongest channel first.

The model handed in may be shared between browser sessions (a page caches one), so it is never touched:
the maps come from a forward pass of a private eval-mode copy, with a hook on the copy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from s7core.errors import UserError
from s7core.model import private_copy
from s7core.spec import NetworkSpec


@dataclass(frozen=True)
class FeatureMaps:
    """The channels of one layer's output for one image, ordered by how strongly they respond."""

    layer: str  # the module's name
    maps: np.ndarray  # (C, H, W) float32, strongest channel first
    channels: np.ndarray  # (C,) the original channel index of each map
    strength: np.ndarray  # (C,) mean |activation| of each map, descending

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the layer's output."""
        return tuple(self.maps.shape)


def untrained_model(spec: NetworkSpec, seed: int = 0) -> nn.Module:
    """The spec's network in eval mode with seeded random weights; the process's random state is left alone."""
    from s7core.model import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(spec).eval()


def feature_maps(model: nn.Module, image: torch.Tensor, layer: str) -> FeatureMaps:
    """The output of module `layer` for one normalised image (1, C, H, W), its channels strongest first."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] != 1:
        raise UserError("image must be one normalised image as a tensor of shape (1, C, H, W)")
    own = private_copy(model, "the feature maps")
    modules = dict(own.named_modules())
    if layer not in modules:
        raise UserError(f"no module named '{layer}' in {type(model).__name__}; use a name from named_modules()")
    caught: dict[str, torch.Tensor] = {}
    modules[layer].register_forward_hook(lambda _m, _a, out: caught.__setitem__("out", out))
    with torch.no_grad():
        own(image.float())
    out = caught["out"]
    while isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim != 4:
        raise UserError(f"{layer} gives a vector of {out.shape[-1]} values, not maps: pick a layer before the flatten")
    maps = out[0].float().numpy()  # (C, H, W)
    strength = np.abs(maps).mean(axis=(1, 2))
    order = np.argsort(-strength, kind="stable")
    return FeatureMaps(layer, maps[order], order, strength[order])


def tile(maps: np.ndarray, columns: int, gap: int = 1) -> np.ndarray:
    """Maps (N, H, W) laid out in a grid, each scaled to 0..1 on its own; NaN in the gaps between them."""
    if maps.ndim != 3 or len(maps) == 0:
        raise UserError("tile needs a non-empty stack of maps (N, H, W)")
    n, h, w = maps.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    grid = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), np.nan, dtype=np.float32)
    for i, m in enumerate(maps):
        low, high = float(m.min()), float(m.max())
        scaled = (m - low) / (high - low) if high > low else np.zeros_like(m)
        r, c = divmod(i, columns)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = scaled
    return grid
