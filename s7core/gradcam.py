"""Grad-CAM (Selvaraju et al., 2017): where in an image a conv layer holds the evidence for a class.

For class c and a layer with maps A_k, each map is weighted by the mean gradient of the
class score over its positions, a_k = mean_ij d y_c / d A_k[i, j]; the CAM is
ReLU(sum_k a_k A_k), upsampled to the image and scaled so its peak is 1.

The model handed in may be shared between threads (a page caches one model for every browser
session), so it is never touched: the hooks and the eval mode go on a private copy whose
parameters share the model's storage (s7core.model.private_copy), and no parameter gets a gradient.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from s7core.errors import UserError
from s7core.model import private_copy


def _example(model: nn.Module, input_shape: tuple[int, int, int]) -> torch.Tensor:
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    if first is None:
        return torch.zeros(1, *input_shape)
    return torch.zeros(1, *input_shape, dtype=first.dtype, device=first.device)


def gradcam_layers(model: nn.Module, input_shape: tuple[int, int, int] | None = None) -> list[str]:
    """Names of the Conv2d modules whose output is still a map (larger than 1x1), in the order they run.

    `input_shape` (C, H, W) defaults to the model's spec input shape, else 3x32x32.
    """
    shape = input_shape or getattr(getattr(model, "spec", None), "input_shape", (3, 32, 32))
    own = private_copy(model, "the list of Grad-CAM layers")
    convs = {m: name for name, m in own.named_modules() if isinstance(m, nn.Conv2d)}
    seen: list[tuple[str, tuple[int, ...]]] = []
    for m in convs:  # on the private copy, so no other caller's forward ever runs these hooks
        m.register_forward_hook(lambda mod, _a, out: seen.append((convs[mod], out.shape)))
    try:
        with torch.no_grad():
            own(_example(own, tuple(shape)))
    except Exception as err:  # any failure here means the model does not take this shape
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        c, h, w = shape
        what = f"{type(model).__name__} does not run on a {c}x{h}x{w} input ({reason})"
        raise UserError(f"{what}; pass the input_shape it takes") from None
    names: list[str] = []
    for name, out in seen:
        if out[-2] * out[-1] > 1 and name not in names:
            names.append(name)
    return names


def _targets(target: Any, logits: torch.Tensor) -> torch.Tensor:
    """The class index per image: the given ones (checked) or the predicted ones."""
    n, classes = logits.shape
    if target is None:
        return logits.argmax(1)
    target = torch.as_tensor(target).reshape(-1).to(logits.device)
    if target.numel() != n or target.is_floating_point() or not ((target >= 0) & (target < classes)).all():
        raise UserError(f"target must hold one class index from 0 to {classes - 1} per image ({n} images)")
    return target.long()


def grad_cam(model: nn.Module, images: torch.Tensor, layer: str, target: torch.Tensor | None = None) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] of `layer` for `target` classes (None: the predicted ones).

    `images` is a normalised (N, C, H, W) batch on the model's device. A map that is zero
    everywhere (no positive evidence) stays zero.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise UserError("images must be a tensor of shape (N, C, H, W)")
    if not layer or layer not in dict(model.named_modules()):
        raise UserError(f"no layer named '{layer}' in {type(model).__name__}; pick one from gradcam_layers(model)")
    own = private_copy(model, "Grad-CAM")
    kept: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _args: Any, out: torch.Tensor) -> torch.Tensor:
        kept["maps"] = out
        return out.clone()  # an in-place op after the layer (ReLU(inplace=True)) must not overwrite the kept maps

    own.get_submodule(layer).register_forward_hook(keep)  # on the private copy: no other forward runs it
    x = images.detach().clone().requires_grad_(True)  # the graph then exists even though the weights are frozen
    with torch.enable_grad():
        logits = own(x)  # (N, classes)
    maps = kept.get("maps")
    if not isinstance(maps, torch.Tensor) or maps.ndim != 4:
        raise UserError(f"layer '{layer}' does not give (N, C, H, W) maps; pick one from gradcam_layers(model)")
    with torch.enable_grad():  # a caller's no_grad block would leave the score without a graph
        score = logits.gather(1, _targets(target, logits).view(-1, 1)).sum()
        (grads,) = torch.autograd.grad(score, maps)  # (N, C, h, w)
    weights = grads.mean((2, 3), keepdim=True)  # (N, C, 1, 1): how much each map counts for the class
    cam = torch.relu((weights * maps).sum(1, keepdim=True))  # (N, 1, h, w)
    cam = nn.functional.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.amax((1, 2), keepdim=True)  # (N, 1, 1)
    cam = torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), torch.zeros_like(cam))
    return cam.detach().double().cpu().numpy()


def overlay(image: np.ndarray, cam: np.ndarray, strength: float = 0.65) -> np.ndarray:
    """A (3, H, W) uint8 image with a Grad-CAM map (H, W) in [0, 1] laid over it, as (3, H, W) uint8.

    Hot places turn red to yellow with an opacity that grows with the map; cold places keep their colours.
    """
    heat = np.stack([np.ones_like(cam), cam, np.zeros_like(cam)]) * 255  # (3, H, W): red at 0, yellow at 1
    alpha = strength * cam[None]  # (1, H, W)
    return (image * (1 - alpha) + heat * alpha).round().astype(np.uint8)
