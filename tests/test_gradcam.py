"""Grad-CAM on hand-built nets whose evidence is known, and on a preset."""

import numpy as np
import pytest
import torch
from torch import nn

from s7core.errors import UserError
from s7core.gradcam import grad_cam, gradcam_layers
from s7core.model import build_model
from s7core.spec import get_preset


class ColourNet(nn.Module):
    """Class 0 scores redness, class 1 blueness; the features are the mean red / blue of each 2x2 block."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 2, 2, stride=2, bias=False)  # 16x16 image -> 8x8 maps
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 0.25
            self.features.weight[1, 2] = 0.25
        self.relu = nn.ReLU(inplace=True)  # in place: the kept maps must not be overwritten
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(self.relu(self.features(x))).flatten(1)  # (N, 2)


def red_left_blue_right(red: float = 1.0, blue: float = 0.5) -> torch.Tensor:
    image = torch.zeros(1, 3, 16, 16)
    image[0, 0, :, :8] = red
    image[0, 2, :, 8:] = blue
    return image


def test_cam_lies_on_the_half_that_decides_the_class():
    model = ColourNet()
    image = red_left_blue_right()
    assert model(image).argmax(1).item() == 0  # red scores 0.5, blue 0.25
    cam = grad_cam(model, image, "features")[0]
    # Only the red map counts; it is 1 on map columns 0..3 and 0 on 4..7. Bilinear upsampling
    # 8 -> 16 reads column j at (j + 0.5) / 2 - 0.5: 7 -> 3.25 (0.75 of map column 3), 8 -> 3.75 (0.25).
    assert cam.shape == (16, 16)
    np.testing.assert_allclose(cam[:, :7], 1.0)
    np.testing.assert_allclose(cam[:, 7], 0.75)
    np.testing.assert_allclose(cam[:, 8], 0.25)
    np.testing.assert_allclose(cam[:, 9:], 0.0)
    assert cam[:, :8].sum() / cam.sum() == pytest.approx(7.75 / 8)
    blue = grad_cam(model, image, "features", target=torch.tensor([1]))[0]  # asked for blue: the right half
    np.testing.assert_allclose(blue, cam[:, ::-1], atol=1e-12)


def test_batch_mixes_predicted_and_given_targets():
    model = ColourNet()
    images = torch.cat([red_left_blue_right(1.0, 0.5), red_left_blue_right(0.2, 1.0)])
    cams = grad_cam(model, images, "features")  # predicted: red for the first, blue for the second
    assert cams.shape == (2, 16, 16)
    assert cams[0, :, :7].min() == pytest.approx(1.0) and cams[0, :, 9:].max() == 0.0
    assert cams[1, :, 9:].min() == pytest.approx(1.0) and cams[1, :, :7].max() == 0.0
    flipped = grad_cam(model, images, "features", target=torch.tensor([1, 0]))
    np.testing.assert_allclose(flipped, cams[:, :, ::-1], atol=1e-12)


class GapNet(nn.Module):
    """Conv, ReLU, global average pool, linear: Grad-CAM on the ReLU output equals the class activation map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def test_equals_the_class_activation_map_of_a_gap_network():
    torch.manual_seed(0)
    model = GapNet()
    images = torch.randn(3, 3, 12, 12)
    target = torch.tensor([0, 2, 1])
    with torch.no_grad():
        maps = model.act(model.conv(images))  # (3, 4, 12, 12)
        # CAM (Zhou et al., 2016): sum_k w_ck A_k; Grad-CAM's weights are w_ck / (h w), the same up to scale
        cam = torch.relu(torch.einsum("nk,nkhw->nhw", model.fc.weight[target], maps))
        cam = cam / cam.amax((1, 2), keepdim=True)
    np.testing.assert_allclose(grad_cam(model, images, "act", target), cam.numpy(), atol=1e-6)


def test_model_is_left_as_it_was():
    model = build_model(get_preset("tiny")).train()
    model.layers[1].eval()
    for p in model.layers[0].parameters():
        p.requires_grad_(False)  # frozen weights still give a CAM
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # a caller's no_grad block must not stop it
        cams = grad_cam(model, torch.randn(4, 3, 32, 32), "layers.12.pointwise")
    assert cams.shape == (4, 32, 32) and cams.min() >= 0 and cams.max() <= 1
    assert all(c.max() in (0.0, pytest.approx(1.0)) for c in cams)
    assert model.training and not model.layers[1].training and model.layers[2].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_layers_offered_are_the_convs_with_a_map():
    model = build_model(get_preset("tiny"))
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    layers = gradcam_layers(model)
    assert convs[-1] == "layers.19"  # the 1x1 conv after the global pool: its output is 1x1
    assert layers == convs[:-1]
    assert layers[:3] == ["layers.0", "layers.3", "layers.6.depthwise"]
    assert gradcam_layers(ColourNet(), (3, 16, 16)) == ["features"]
    assert gradcam_layers(ColourNet(), (3, 2, 2)) == []  # one 1x1 map: nothing to locate
    with pytest.raises(UserError, match="does not run on a 1x16x16 input"):
        gradcam_layers(ColourNet(), (1, 16, 16))


def test_bad_requests_are_user_errors():
    model, image = ColourNet(), red_left_blue_right()
    with pytest.raises(UserError, match="no layer named 'nope'"):
        grad_cam(model, image, "nope")
    with pytest.raises(UserError, match="does not give \\(N, C, H, W\\) maps"):
        grad_cam(GapNet(), torch.randn(1, 3, 8, 8), "fc")
    with pytest.raises(UserError, match="one class index from 0 to 1"):
        grad_cam(model, image, "features", target=torch.tensor([2]))
    with pytest.raises(UserError, match="shape"):
        grad_cam(model, image[0], "features")


def test_overlay_keeps_cold_pixels_and_paints_hot_ones():
    from s7core.gradcam import overlay

    image = np.full((3, 2, 2), 100, dtype=np.uint8)
    cam = np.array([[0.0, 1.0], [0.5, 0.0]])
    out = overlay(image, cam, strength=1.0)
    assert out.dtype == np.uint8 and out.shape == (3, 2, 2)
    assert out[:, 0, 0].tolist() == [100, 100, 100] and out[:, 1, 1].tolist() == [100, 100, 100]
    assert out[:, 0, 1].tolist() == [255, 255, 0]  # full evidence: yellow
    assert out[:, 1, 0].tolist() == [178, 114, 50]  # half: halfway to orange (255, 127.5, 0)
