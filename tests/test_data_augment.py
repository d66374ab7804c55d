"""Batched augmentation and normalisation, against torch's and torchvision's own operations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from s7core.data import CIFAR10_MEAN, CIFAR10_STD, AugmentConfig, AugmentError, augment_batch, denormalize, normalize
from s7core.data.augment import _affine_params, _affine_warp
from s7core.errors import UserError


def images(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(
    "field,label,value",
    [("crop_padding", "random-crop padding", -1), ("crop_padding", "random-crop padding", 17),
     ("cutout", "cutout square", 2.5), ("cutout", "cutout square", True)],
)  # fmt: skip
def test_augment_config_out_of_range(field, label, value):
    with pytest.raises(AugmentError, match=f"{label} must be whole pixels from 0 to"):
        AugmentConfig(**{field: value})
    assert issubclass(AugmentError, UserError)


def test_normalize_values():
    x = torch.tensor([0, 255, 125], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    y = normalize(x)
    assert y.dtype == torch.float32 and y.shape == (2, 3, 2, 2)
    expected = [(0 - CIFAR10_MEAN[0]) / CIFAR10_STD[0], (1 - CIFAR10_MEAN[1]) / CIFAR10_STD[1]]
    assert y[0, 0, 0, 0].item() == pytest.approx(expected[0], abs=1e-6)
    assert y[1, 1, 1, 1].item() == pytest.approx(expected[1], abs=1e-6)
    assert y[0, 2, 0, 0].item() == pytest.approx((125 / 255 - CIFAR10_MEAN[2]) / CIFAR10_STD[2], abs=1e-6)


def test_denormalize_inverts_normalize():
    x = images(8)
    assert torch.equal(denormalize(normalize(x)), x)
    white = torch.full((1, 3, 2, 2), 10.0)  # far above any pixel: clipped
    assert denormalize(white).unique().tolist() == [255]


def test_augment_shapes_dtypes_and_off_is_normalize():
    x = images()
    for config in (AugmentConfig(), AugmentConfig(cutout=8), AugmentConfig(affine=True, crop_padding=0)):
        y = augment_batch(x, config, seeded())
        assert y.shape == x.shape and y.dtype == torch.float32 and torch.isfinite(y).all()
    off = AugmentConfig(crop_padding=0, flip=False, cutout=0, affine=False)
    assert torch.equal(augment_batch(x, off, seeded()), normalize(x))
    assert x.dtype == torch.uint8  # input left untouched
    with pytest.raises(ValueError, match="must be torch.uint8 pixels"):
        augment_batch(x.float(), AugmentConfig())
    with pytest.raises(ValueError, match=r"must be \(N, 3, H, W\)"):
        normalize(x[:, :1])


def test_flip_mirrors_exactly_the_selected_images():
    x = images(64)
    y = augment_batch(x, AugmentConfig(crop_padding=0, flip=True), seeded(5))
    plain, mirrored = normalize(x), normalize(x.flip(-1))
    same = (y == plain).flatten(1).all(1)
    flipped = (y == mirrored).flatten(1).all(1)
    assert torch.all(same ^ flipped)  # every image is exactly one of the two
    assert 16 <= int(flipped.sum()) <= 48


def test_crop_is_a_window_of_the_reflect_padded_image():
    x = images(12)
    pad = 4
    y = augment_batch(x, AugmentConfig(crop_padding=pad, flip=False), seeded(2))
    padded = F.pad(normalize(x), (pad,) * 4, mode="reflect")
    offsets = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(padded[i, :, dy : dy + 32, dx : dx + 32], y[i])
        ]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 6  # the offsets vary from image to image


def test_cutout_zeroes_one_square_per_image():
    x = images(32)
    side = 8
    y = augment_batch(x, AugmentConfig(crop_padding=0, flip=False, cutout=side), seeded(1))
    cut = (y == 0).all(1)  # (N, H, W): normalised 0 is the mean colour; no uint8 pixel normalises to exactly 0
    assert not (normalize(x) == 0).any()
    tops = set()
    for i in range(len(x)):
        rows, cols = torch.nonzero(cut[i], as_tuple=True)
        assert len(rows) == side * side
        assert rows.max() - rows.min() == side - 1 and cols.max() - cols.min() == side - 1
        tops.add(int(rows.min()))
    assert torch.equal(y[~cut[:, None].expand_as(y)], normalize(x)[~cut[:, None].expand_as(y)])
    assert len(tops) > 5


def test_same_seed_same_batch():
    x = images(32)
    for config in (AugmentConfig(cutout=6), AugmentConfig(crop_padding=0, affine=True)):
        a, b = augment_batch(x, config, seeded(7)), augment_batch(x, config, seeded(7))
        assert torch.equal(a, b)
        assert not torch.equal(a, augment_batch(x, config, seeded(8)))


def test_affine_matches_torchvision_nearest_pixel():
    """Same parameters, same pixels as torchvision's affine with RandomAffine's defaults (nearest, fill 0)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    x = torch.rand(1, 3, 32, 32, generator=seeded(0))
    for angle, tx, ty, scale, shear in [(5.0, 2, -3, 1.07, 4.0), (-7.0, -3, 1, 0.9, -6.5), (3.0, 0, 0, 1.1, 7.0)]:
        params = dict(angle=angle, tx=tx, ty=ty, scale=scale, shear=shear)
        ours = _affine_warp(x, {k: torch.tensor([float(v)]) for k, v in params.items()})
        nearest = InterpolationMode.NEAREST
        reference = TF.affine(x, angle, [tx, ty], scale, [shear, 0.0], interpolation=nearest, fill=0.0)
        same = (ours - reference).abs() < 1e-6
        assert same.float().mean() > 0.99, same.float().mean()  # a pixel may differ where a sample point is a tie
        assert set(ours.unique().tolist()) <= set(x.unique().tolist()) | {0.0}  # moved pixels, nothing blended


def test_affine_parameter_ranges():
    p = _affine_params(4000, 32, 32, seeded(0))
    assert -7 <= p["angle"].min() < -6.9 and 6.9 < p["angle"].max() <= 7
    assert -7 <= p["shear"].min() < -6.9 and 6.9 < p["shear"].max() <= 7
    assert 0.9 <= p["scale"].min() < 0.901 and 1.099 < p["scale"].max() <= 1.1
    assert set(p["tx"].tolist()) == {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0} == set(p["ty"].tolist())


def test_affine_fills_black_outside():
    """A white batch stays white inside and turns black (normalised 0 pixel) where the image moved away."""
    x = torch.full((64, 3, 32, 32), 255, dtype=torch.uint8)
    y = augment_batch(x, AugmentConfig(crop_padding=0, flip=False, affine=True), seeded(3))
    white, black = normalize(x[:1, :, :1, :1]).view(3), normalize(torch.zeros(1, 3, 1, 1, dtype=torch.uint8)).view(3)
    centre = y[:, :, 12:20, 12:20]
    assert torch.allclose(centre, white.view(1, 3, 1, 1).expand_as(centre), atol=1e-4)
    is_black = torch.isclose(y, black.view(1, 3, 1, 1), atol=1e-4).all(1)
    assert is_black.flatten(1).any(1).float().mean() > 0.5  # most images show some fill at an edge


def test_augment_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    x = images(64)
    for config in (AugmentConfig(cutout=8), AugmentConfig(crop_padding=0, affine=True)):
        cpu = augment_batch(x, config, seeded(4))
        gpu = augment_batch(x.cuda(), config, seeded(4))
        assert gpu.device.type == "cuda"
        assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)


class _CountTorchCalls(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside it."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def torch_calls(n: int, config: AugmentConfig) -> int:
    with _CountTorchCalls() as counter:
        augment_batch(images(n), config, seeded(0))
    return counter.calls


def test_augment_has_no_per_image_python():
    """The whole batch goes through the same few tensor ops, whatever its size: no loop over images."""
    every_switch = AugmentConfig(crop_padding=4, flip=True, cutout=8, affine=True)
    for config in (AugmentConfig(crop_padding=4, flip=True, cutout=8), every_switch):
        assert torch_calls(4, config) == torch_calls(512, config)
