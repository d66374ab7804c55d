"""Batched augmentation of uint8 images on whatever device they live on, and the normalisation it ends with.

Tensor ops only (no per-image Python, no PIL), reproducible under a seeded `torch.Generator`.
The crop pads by reflection, not zeros, so a shifted image has no black border the net could
learn to key on and keeps its colour statistics; cutout sets its square to 0 after
normalising, i.e. the mean colour, the least informative value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from s7core.config import AugmentConfig

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the training pixels, in [0, 1]
CIFAR10_STD = (0.2470, 0.2435, 0.2616)  # per-channel standard deviation, in [0, 1]


def _channel_constants(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return mean, std


def _check_images(images: torch.Tensor, dtype: torch.dtype | None = torch.uint8) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    if dtype is not None and images.dtype != dtype:
        raise ValueError(f"images must be {dtype} pixels, got {images.dtype}")


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> float32 (x/255 - mean)/std, on the images' device."""
    _check_images(images)
    mean, std = _channel_constants(images.device)
    return images.float().mul_(1.0 / 255.0).sub_(mean).div_(std)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Normalised float images (N, 3, H, W) -> uint8 pixels, rounded and clipped (the inverse of normalize)."""
    _check_images(x, dtype=None)
    mean, std = _channel_constants(x.device)
    return (x.float() * std + mean).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)


def _normalize_unit(x: torch.Tensor) -> torch.Tensor:
    """float images in [0, 1] -> normalised, in place."""
    mean, std = _channel_constants(x.device)
    return x.sub_(mean).div_(std)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _randint(n: int, high: int, generator: torch.Generator | None) -> torch.Tensor:
    """n integers in [0, high]."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(0, high + 1, (n,), generator=generator, device=device)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect out-of-range indices back inside [0, size) (edge pixel not repeated, like F.pad 'reflect')."""
    index = index.abs()
    return torch.where(index > size - 1, 2 * (size - 1) - index, index)


def _crop_flip(images: torch.Tensor, pad: int, flip: bool, generator: torch.Generator | None) -> torch.Tensor:
    """Random crop of the reflect-padded image and random horizontal flip, as one gather (any dtype)."""
    n, c, h, w = images.shape
    device = images.device
    rows = torch.arange(h, device=device).expand(n, h)
    cols = torch.arange(w, device=device).expand(n, w)
    if pad:
        rows = _reflect(rows + _randint(n, 2 * pad, generator).to(device)[:, None] - pad, h)
        cols = _reflect(cols + _randint(n, 2 * pad, generator).to(device)[:, None] - pad, w)
    if flip:
        flipped = (_uniform(n, 0, 1, generator) < 0.5).to(device)
        cols = torch.where(flipped[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)


def _affine_params(n: int, h: int, w: int, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Per-image parameters drawn as RandomAffine(degrees=7, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=7) does."""
    return {
        "angle": _uniform(n, -7.0, 7.0, generator),  # degrees
        "tx": torch.round(_uniform(n, -0.1 * w, 0.1 * w, generator)),  # whole pixels, as RandomAffine
        "ty": torch.round(_uniform(n, -0.1 * h, 0.1 * h, generator)),
        "scale": _uniform(n, 0.9, 1.1, generator),
        "shear": _uniform(n, -7.0, 7.0, generator),  # degrees, along x only (a single shear number)
    }


def _affine_theta(p: dict[str, torch.Tensor], h: int, w: int) -> torch.Tensor:
    """(N, 2, 3) matrices for F.affine_grid: output -> input, the inverse of torchvision's affine map."""
    angle, shear = torch.deg2rad(p["angle"]), torch.deg2rad(p["shear"])
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # forward map in pixels about the centre, as torchvision's: p' = scale * R(angle) @ [[1, -tan], [0, 1]] @ p + t
    a, b, c, d = cos, -cos * tan - sin, sin, -sin * tan + cos  # rotation @ shear, determinant 1
    # inverse of scale * [[a, b], [c, d]] in closed form (no batched linalg call on the device)
    inv = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / p["scale"][:, None, None]
    shift = -(inv @ torch.stack([p["tx"], p["ty"]], -1)[:, :, None])[..., 0]  # (N, 2)
    # pixels -> affine_grid's [-1, 1] units: divide by half the side on each axis
    half = torch.tensor([w / 2.0, h / 2.0], device=inv.device)
    inv = inv * half[None, None, :] / half[None, :, None]
    return torch.cat([inv, (shift / half)[:, :, None]], dim=2)


def _affine_warp(x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each float image through its own affine map, nearest pixel and black outside the image: what
    RandomAffine does with its defaults (interpolation NEAREST, fill 0), so no image is blurred."""
    n, c, h, w = x.shape
    theta = _affine_theta(params, h, w).to(x.device, torch.float32)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _random_affine(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Per-image random affine of float images, with RandomAffine's ranges and defaults."""
    n, _, h, w = x.shape
    return _affine_warp(x, _affine_params(n, h, w, generator))


def _cutout_mask(n: int, h: int, w: int, side: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """(N, 1, H, W) bool: one side x side square a image, wholly inside it."""
    side = min(side, h, w)
    top = _randint(n, h - side, generator).to(device)[:, None]
    left = _randint(n, w - side, generator).to(device)[:, None]
    rows = torch.arange(h, device=device)[None, :]
    cols = torch.arange(w, device=device)[None, :]
    in_rows = (rows >= top) & (rows < top + side)
    in_cols = (cols >= left) & (cols < left + side)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def augment_batch(
    images: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """uint8 batch (N, 3, H, W) on any device -> augmented, normalised float32 batch on that device.

    Order: crop and flip (one gather on the uint8 pixels), the random affine (on [0, 1]
    floats, black outside the image, as RandomAffine fills), normalisation, cutout (the
    square set to 0, i.e. the mean colour). Flipping before the affine instead of after is
    the same distribution, since every affine range is symmetric about zero.
    """
    _check_images(images)
    n, _, h, w = images.shape
    x = images
    if config.crop_padding or config.flip:
        pad = min(int(config.crop_padding), h - 1, w - 1)  # reflection needs pad < side
        x = _crop_flip(x, pad, config.flip, generator)
    if config.affine:
        x = _normalize_unit(_random_affine(x.float().mul_(1.0 / 255.0), generator))
    else:
        x = normalize(x)
    if config.cutout > 0:
        x = x.masked_fill_(_cutout_mask(n, h, w, int(config.cutout), generator, x.device), 0.0)
    return x


def scale_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised float images (N, C, H, W) scaled to size x size pixels: antialiased bilinear, so a smaller
    image keeps what each pixel showed instead of skipping pixels (the early epochs of `small_epochs`)."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
