"""A depthwise conv for CPU training whose weight gradient is computed here, as sums of shifted products.

torch's CPU kernels compute the weight gradient of a depthwise conv fast only for the plain case (3x3, padding
1, no dilation, stride 1). A dilated one takes a generic path with a large cost per image and channel: the
`fast` preset's dilated depthwise conv at 4x4 pixels took 39 ms in its backward pass against 0.3 ms forward,
a fifth of the training step. Since a depthwise filter sees one channel only, its
gradient is, for each filter tap (i, j), the sum over images and output pixels of the output gradient times
the input pixel under that tap: kh x kw products of two maps the size of the output, which this module sums
in batches of images small enough to stay in the processor's cache.

The forward pass and the input gradient are torch's own kernels; only the weight gradient differs, and it is
the same sum up to the order of additions (accumulated in fp32 at least, whatever the precision).

In bf16 the same small-map conv runs faster still as matrix products (`small_map_conv`): on a map of P output
and Q input pixels, each channel's filter is a P x Q matrix (its taps placed where they fall), so the conv is
one (images x Q) by (Q x P) product per channel, and autograd's backward of those products is both gradients.
torch's bf16 batched matrix product of such small matrices was fast on the Xeon with AMX where it was measured,
and its fp32 one slow; fp32 and fp16 keep the path above (`bench/depthwise_speed.py` times them on a host).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

CHUNK_BYTES = 4 << 20  # padded input images per summing pass: about this many bytes, so they stay in cache
# Dilated convs with output maps of at most this many pixels take this module's weight gradient. On larger maps
# torch's own is as fast or faster; on small ones its fixed cost per image dominates (bench/depthwise_speed.py).
SMALL_MAP_PIXELS = 16


class DepthwiseConv2d(nn.Conv2d):
    """nn.Conv2d with one filter per channel (groups = in = out channels); on the CPU, with a gradient to
    compute, its weight gradient comes from `weight_grad`. Same parameters and state dict as nn.Conv2d, and
    hooks fire as on any module."""

    def __init__(self, channels: int, kernel_size, stride=1, padding=0, dilation=1, bias: bool = True):  # noqa: ANN001
        super().__init__(channels, channels, kernel_size, stride, padding, dilation, groups=channels, bias=bias)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if not self.own_gradient(x, weight):
            return super()._conv_forward(x, weight, bias)
        if torch.is_autocast_enabled("cpu"):  # cast as autocast would cast a conv's arguments
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            bias = bias.to(dtype) if bias is not None else None
        with torch.autocast("cpu", enabled=False):
            conv = small_map_conv if x.dtype == torch.bfloat16 else depthwise_conv
            return conv(x, weight, bias, self.stride, self.padding, self.dilation)

    def own_gradient(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether this call takes s7core's way (`small_map_conv` in bf16, else `weight_grad`): CPU training (a
        gradient to compute) of a dilated conv on a small map, where torch's generic path is slow. Undilated ones
        torch computes fast enough."""
        return (
            x.device.type == "cpu"
            and x.dim() == 4
            and max(self.dilation) > 1
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and torch.is_grad_enabled()
            and (x.requires_grad or weight.requires_grad)
            and _output_pixels(self, x.shape[-2:]) <= SMALL_MAP_PIXELS
        )


def depthwise_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride, padding, dilation, groups=channels), its weight gradient from
    `weight_grad`; x, weight and bias of one dtype, autocast off."""
    return _DepthwiseConv.apply(x, weight, bias, stride, padding, dilation)


def small_map_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, stride, padding, dilation, groups=channels) as one matrix product per channel:
    the (N, Q) input pixels of a channel times its (Q, P) filter matrix. For small maps (P and Q pixels)."""
    n, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    taps = _taps((h, w), (kh, kw), stride, padding, dilation).to(weight.device, weight.dtype)  # (kh * kw, P, Q)
    ho, wo = _output_size((h, w), (kh, kw), stride, padding, dilation)
    filters = torch.einsum("ct,tpq->cpq", weight.reshape(c, kh * kw), taps)  # (C, P, Q)
    out = torch.bmm(x.transpose(0, 1).reshape(c, n, h * w), filters.transpose(1, 2))  # (C, N, P)
    out = out.view(c, n, ho, wo).transpose(0, 1)
    return out if bias is None else out + bias.view(1, c, 1, 1)


@functools.lru_cache(maxsize=64)
def _taps(
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """For each filter tap t, the 0/1 matrix (P, Q) that is 1 where output pixel p reads input pixel q through
    t; taps that fall on the zero padding read nothing. Pixels are numbered row by row."""
    (h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = size, kernel, stride, padding, dilation
    ho, wo = _output_size(size, kernel, stride, padding, dilation)
    taps = torch.zeros(kh * kw, ho * wo, h * w)
    for i in range(kh):
        for j in range(kw):
            for a in range(ho):
                for b in range(wo):
                    row, col = a * sh - ph + i * dh, b * sw - pw + j * dw
                    if 0 <= row < h and 0 <= col < w:
                        taps[i * kw + j, a * wo + b, row * w + col] = 1
    return taps


def _output_size(
    size: tuple[int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> tuple[int, int]:
    """The output map's (height, width) of a conv with these settings on a map of `size`."""
    return tuple(  # type: ignore[return-value]
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation, strict=True)
    )


def weight_grad(
    x: torch.Tensor,
    grad: torch.Tensor,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:
    """The gradient of a depthwise conv's weight (C, 1, kh, kw), in x's dtype, from its input x (N, C, H, W)
    and output gradient (N, C, Ho, Wo): for each tap, the output gradient times the input pixels under it."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c = x.shape[:2]
    ho, wo = grad.shape[-2:]
    padded = F.pad(x, (pw, pw, ph, ph))
    chunk = max(1, CHUNK_BYTES // max(1, padded[0].numel() * padded.element_size()))
    acc = torch.promote_types(x.dtype, torch.float32)  # bf16 and fp16 products are summed in fp32
    sums = torch.zeros(kh * kw, c, dtype=acc, device=x.device)
    for start in range(0, n, chunk):
        g, xs = grad[start : start + chunk], padded[start : start + chunk]
        for i in range(kh):
            rows = slice(dh * i, dh * i + sh * (ho - 1) + 1, sh)
            for j in range(kw):
                window = xs[:, :, rows, dw * j : dw * j + sw * (wo - 1) + 1 : sw]  # (n, C, Ho, Wo)
                sums[i * kw + j] += (g * window).sum((0, 2, 3), dtype=acc)
    return sums.t().reshape(c, 1, kh, kw).to(x.dtype)


def _output_pixels(conv: nn.Conv2d, size: tuple[int, int]) -> int:
    ho, wo = _output_size(tuple(size), conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    return ho * wo


class _DepthwiseConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):  # noqa: ANN001, ANN205 (torch's signature)
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        x, weight = ctx.saved_tensors
        stride, padding, dilation, has_bias = ctx.conf
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, stride, padding, dilation, False, (0, 0), x.shape[1], (True, False, False)
            )[0]
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad(x, grad, weight.shape[-2:], stride, padding, dilation)
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3), dtype=torch.promote_types(grad.dtype, torch.float32)).to(grad.dtype)
        return grad_x, grad_w, grad_b, None, None, None
