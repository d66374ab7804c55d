"""The CPU depthwise conv whose weight gradient s7core computes: the same numbers as torch's, for any shape."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from s7core import depthwise
from s7core.depthwise import DepthwiseConv2d, small_map_conv, weight_grad
from s7core.device import autocast
from s7core.model import SeparableConv2d, build_model
from s7core.spec import get_preset

CPU = torch.device("cpu")
# (channels, size, kernel, stride, padding, dilation)
SHAPES = [
    (4, 4, 3, 1, 2, 2),  # the `fast` preset's dilated conv at 4x4
    (3, 3, 3, 1, 2, 2),  # `best`'s, at 3x3: an odd side
    (5, 7, 3, 2, 2, 2),  # strided and dilated, odd side
    (2, 6, 5, 1, 2, 1),  # 5x5
    (3, 9, 3, 1, 0, 3),  # no padding, dilation 3
    (4, 8, 3, 2, 1, 1),  # strided, undilated
]


def _pair(conv: nn.Conv2d) -> nn.Conv2d:
    """A plain nn.Conv2d with `conv`'s weights: torch's own kernels, the reference."""
    plain = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        groups=conv.groups, bias=conv.bias is not None,
    )  # fmt: skip
    plain.load_state_dict(conv.state_dict())
    return plain


@pytest.mark.parametrize("c,size,k,s,p,d", SHAPES)
def test_the_weight_gradient_equals_torchs_in_float64(c, size, k, s, p, d):
    gen = torch.Generator().manual_seed(size * 7 + k)
    x = torch.randn(6, c, size, size, generator=gen, dtype=torch.float64)
    w = torch.randn(c, 1, k, k, generator=gen, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, w, None, s, p, d, c)
    g = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    (expected,) = torch.autograd.grad(out, w, g)
    ours = weight_grad(x, g, (k, k), (s, s), (p, p), (d, d))
    assert ours.shape == w.shape and ours.dtype == torch.float64
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)  # the same sum in another order


@pytest.mark.parametrize("c,size,k,s,p,d", SHAPES)
def test_the_matrix_products_give_torchs_output_and_gradients_in_float64(c, size, k, s, p, d):
    gen = torch.Generator().manual_seed(size * 5 + k)
    x = torch.randn(3, c, size, size, generator=gen, dtype=torch.float64)
    w = torch.randn(c, 1, k, k, generator=gen, dtype=torch.float64)
    b = torch.randn(c, generator=gen, dtype=torch.float64)
    results = []
    for conv in (
        lambda *t: F.conv2d(*t, (s, s), (p, p), (d, d), c),
        lambda *t: small_map_conv(*t, (s, s), (p, p), (d, d)),
    ):
        inputs = [t.clone().requires_grad_() for t in (x, w, b)]
        out = conv(*inputs)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view(out.shape))
        results.append((out.detach(), *(t.grad for t in inputs)))
    for ours, torchs in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(ours, torchs, rtol=1e-10, atol=1e-12)


def test_a_rectangular_map_numbers_its_pixels_row_by_row():
    x = torch.randn(2, 3, 3, 5, dtype=torch.float64)
    w = torch.randn(3, 1, 3, 3, dtype=torch.float64)
    expected = F.conv2d(x, w, None, 1, 2, 2, 3)
    torch.testing.assert_close(small_map_conv(x, w, None, (1, 1), (2, 2), (2, 2)), expected)


def test_batches_split_into_chunks_sum_to_the_same_gradient(monkeypatch):
    x = torch.randn(9, 3, 4, 4, dtype=torch.float64)
    g = torch.randn(9, 3, 4, 4, dtype=torch.float64)
    whole = weight_grad(x, g, (3, 3), (1, 1), (2, 2), (2, 2))
    monkeypatch.setattr(depthwise, "CHUNK_BYTES", 1)  # one image per pass
    torch.testing.assert_close(weight_grad(x, g, (3, 3), (1, 1), (2, 2), (2, 2)), whole)


def test_gradcheck_through_the_module():
    conv = DepthwiseConv2d(3, 3, stride=1, padding=2, dilation=2, bias=True).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert conv.own_gradient(x, conv.weight)
    assert torch.autograd.gradcheck(lambda inp, w, b: conv._conv_forward(inp, w, b), (x, conv.weight, conv.bias))


@pytest.mark.parametrize("c,size,k,s,p,d", SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_output_and_every_gradient_match_nn_conv2d_in_fp32(c, size, k, s, p, d, channels_last):
    torch.manual_seed(0)
    ours = DepthwiseConv2d(c, k, s, p, d, bias=True)
    plain = _pair(ours)
    x = torch.randn(5, c, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    results = []
    for conv in (ours, plain):
        inp = x.clone().requires_grad_()
        out = conv(inp)
        out.backward(torch.linspace(-1, 1, out.numel()).view(out.shape))
        results.append((out.detach(), inp.grad, conv.weight.grad, conv.bias.grad))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_under_bf16_autocast_it_computes_in_bf16_as_autocast_would():
    torch.manual_seed(0)
    ours = DepthwiseConv2d(8, 3, 1, 2, 2, bias=False)
    plain = _pair(ours)
    x = torch.randn(16, 8, 4, 4).contiguous(memory_format=torch.channels_last)
    grads = []
    for conv in (ours, plain):
        with autocast(CPU, "bf16"):
            out = conv(x.clone().requires_grad_())
        assert out.dtype == torch.bfloat16
        out.float().square().sum().backward()
        assert conv.weight.grad.dtype == torch.float32  # the parameter stays fp32
        grads.append(conv.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0.03, atol=0.03 * grads[1].abs().max().item())


def test_in_bf16_training_takes_the_matrix_products(monkeypatch):
    calls = []
    monkeypatch.setattr(depthwise, "small_map_conv", lambda *a: calls.append("products") or F.conv2d(*a, a[0].shape[1]))
    monkeypatch.setattr(depthwise, "depthwise_conv", lambda *a: calls.append("sums") or F.conv2d(*a, a[0].shape[1]))
    conv = DepthwiseConv2d(4, 3, 1, 2, 2, bias=False)
    x = torch.randn(2, 4, 4, 4, requires_grad=True)
    conv(x)
    with autocast(CPU, "bf16"):
        conv(x)
    conv.to(torch.bfloat16)(x.detach().bfloat16().requires_grad_())
    assert calls == ["sums", "products", "products"]


def test_bf16_dw32_keeps_the_depthwise_conv_in_fp32():
    net = nn.Sequential(SeparableConv2d(8, 4, 3, 1, 2, 2, bias=False))
    x = torch.randn(4, 8, 4, 4)
    dtypes = {}
    net[0].depthwise.register_forward_hook(lambda mod, inp, out: dtypes.update(out=out.dtype))
    with autocast(CPU, "bf16-dw32"):
        net(x).sum().backward()
    assert dtypes["out"] == torch.float32


def test_where_torchs_own_gradient_is_used():
    conv = DepthwiseConv2d(4, 3, 1, 2, 2, bias=False)
    small = torch.randn(2, 4, 4, 4)
    assert conv.own_gradient(small, conv.weight)  # dilated, 16 output pixels
    assert not conv.own_gradient(torch.randn(2, 4, 5, 5), conv.weight)  # 25 output pixels: torch's is as fast
    assert not DepthwiseConv2d(4, 3, 1, 1, 1).own_gradient(small, conv.weight)  # undilated
    with torch.no_grad():
        assert not conv.own_gradient(small, conv.weight)  # no gradient to compute
    frozen = conv.weight.detach()
    assert not conv.own_gradient(small, frozen)  # neither input nor weight needs one


def test_hooks_fire_and_the_state_dict_is_a_conv2ds():
    conv = DepthwiseConv2d(4, 3, 1, 2, 2, bias=True)
    seen = []
    conv.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    conv(torch.randn(2, 4, 4, 4)).sum().backward()  # the own-gradient path
    assert seen == [torch.Size([2, 4, 4, 4])]
    assert set(conv.state_dict()) == set(_pair(conv).state_dict()) == {"weight", "bias"}
    assert isinstance(conv, nn.Conv2d) and conv.groups == 4


def test_presets_build_their_depthwise_convs_with_it():
    for name in ("tiny", "fast", "best"):
        model = build_model(get_preset(name))
        kinds = {type(m) for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1}
        assert kinds == {DepthwiseConv2d}, name
