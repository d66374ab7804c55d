"""Per-layer training-step speed on the CPU: fp32 vs bf16 autocast, contiguous vs channels_last.

Times forward + backward of one conv layer (dense 3x3, depthwise 3x3, pointwise 1x1) at the
sizes the fast presets use, and prints GFLOP/s (2 FLOPs a multiply-add, backward = 2x forward).

    python bench/layer_speed.py --batch 256

Measured on the 2-core development machine (AMD EPYC, AVX-512 BF16) while it was nearly idle, GFLOP/s
as fp32 / fp32 channels-last / bf16 / bf16 channels-last:
dense 3->64 at 32x32: 10 / 43 / 12 / 32; dense 64->64 at 32: 165 / 286 / 259 / 190;
dense 128->128 at 16: 281 / 403 / 588 / 597; dense 256->256 at 8: 379 / 463 / 796 / 808;
depthwise 64 at 32: 5 / 12 / 6 / 8; depthwise 256 at 8, dilation 2: 3 / 8 / 4 / 6;
pointwise 128->256 at 8: 202 / 303 / 356 / 425.
So: bf16 + channels-last for the dense convs of 64+ channels (about 2x), depthwise convs are memory
bound at any precision (keep them few and at small maps), and a conv on the 3 colour channels at
full resolution is slow whatever the setting (a 2x2 stride-2 stem avoids it).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

CASES = [  # name, in channels, out channels, size, groups, kernel, dilation
    ("dense 3->64 @32", 3, 64, 32, 1, 3, 1),
    ("dense 64->64 @32", 64, 64, 32, 1, 3, 1),
    ("dense 64->128 @16", 64, 128, 16, 1, 3, 1),
    ("dense 128->128 @16", 128, 128, 16, 1, 3, 1),
    ("dense 128->256 @8", 128, 256, 8, 1, 3, 1),
    ("dense 256->256 @8", 256, 256, 8, 1, 3, 1),
    ("depthwise 64 @32", 64, 64, 32, 64, 3, 1),
    ("depthwise 128 @16 d2", 128, 128, 16, 128, 3, 2),
    ("depthwise 256 @8 d2", 256, 256, 8, 256, 3, 2),
    ("pointwise 128->256 @8", 128, 256, 8, 1, 1, 1),
    # the 3x3 layers of the fast preset
    ("fast: dense 24->64 @16", 24, 64, 16, 1, 3, 1),
    ("fast: dense 64->128 @8", 64, 128, 8, 1, 3, 1),
    ("fast: depthwise 128 @4 d2", 128, 128, 4, 128, 3, 2),
    ("fast: pointwise 128->256 @4", 128, 256, 4, 1, 1, 1),
    # the best preset's widest layers
    ("best: dense 24->64 @32", 24, 64, 32, 1, 3, 1),
    ("best: depthwise 256 @4 d2", 256, 256, 4, 256, 3, 2),
]


def time_step(conv: nn.Module, x: torch.Tensor, bf16: bool, repeats: int) -> float:
    """Median seconds of one forward+backward pass."""
    times = []
    for i in range(repeats + 2):
        x.grad = None
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = conv(x)
        y.float().sum().backward()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"{'layer':24} {'MMAC/img':>9} " + " ".join(f"{m:>12}" for m in ("fp32", "fp32 cl", "bf16", "bf16 cl")))
    for name, cin, cout, size, groups, k, d in CASES:
        conv = nn.Conv2d(cin, cout, k, padding=d * (k // 2), dilation=d, groups=groups, bias=False)
        macs = cin // groups * cout * k * k * size * size
        row = []
        for cl in (False, True):
            fmt = torch.channels_last if cl else torch.contiguous_format
            conv = conv.to(memory_format=fmt)
            x = torch.randn(args.batch, cin, size, size).to(memory_format=fmt).requires_grad_(True)
            for bf16 in (False, True):
                sec = time_step(conv, x, bf16, args.repeats)
                row.append((bf16, cl, 6 * macs * args.batch / sec / 1e9))
        row.sort()
        cells = " ".join(f"{g:9.0f} GF/s" for _, _, g in row)
        print(f"{name:24} {macs / 1e6:9.2f} {cells}")


if __name__ == "__main__":
    main()
