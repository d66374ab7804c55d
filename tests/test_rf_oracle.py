"""The gradient oracle itself: its probe copy against PyTorch, its errors, and the model it leaves alone."""

import pytest
import torch
from torch import nn

from s7core.errors import UserError
from s7core.model import build_model
from s7core.rf.oracle import _MeanConv, measured_rf, measured_windows
from s7core.spec import get_preset

CONVS = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, padding=2, dilation=2, padding_mode="reflect"),
    dict(kernel_size=(3, 5), padding=(1, 2), padding_mode="circular", groups=2),
    dict(kernel_size=4, padding="same", padding_mode="replicate"),
    dict(kernel_size=(2, 3), padding="same", dilation=(3, 1), padding_mode="reflect"),
    dict(kernel_size=3, padding="valid", stride=2, padding_mode="reflect"),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's note on its own speed
@pytest.mark.parametrize("geometry", CONVS)
def test_mean_conv_is_the_conv_with_weights_one_over_fan_in(geometry):
    conv = nn.Conv2d(4, 6, bias=False, **geometry)
    with torch.no_grad():
        conv.weight.fill_(1 / conv.weight[0].numel())
    x = torch.randn(2, 4, 9, 10, dtype=torch.float64)
    want = conv.double()(x)
    got = _MeanConv(conv)(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-12)


def test_bad_layers_and_shapes_are_user_errors():
    with pytest.raises(UserError, match="no module named 'nope'"):
        measured_windows(nn.Conv2d(3, 3, 3), (3, 8, 8), ["nope"])
    with pytest.raises(UserError, match="Conv2d does not run on a 1x8x8 input"):
        measured_rf(nn.Conv2d(3, 3, 3), (1, 8, 8))
    with pytest.raises(UserError, match="three positive whole numbers"):
        measured_rf(nn.Conv2d(3, 3, 3), (3, 0, 8))


def test_model_is_left_as_it_was():
    model = build_model(get_preset("tiny")).train()
    model.layers[1].eval()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # a caller's no_grad block must not stop the gradients the probe needs
        assert measured_windows(model, (3, 32, 32), ["layers.3"]) == [(12, 12, 16, 16)]  # rf 5 around pixel 14
    assert model.training and not model.layers[1].training and model.layers[2].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
