"""Each preset's depthwise convs, forward + backward, through torch's own kernels, through s7core's weight
gradient and as s7core's per-channel matrix products (`s7core/depthwise.py`), in fp32 and bf16, channels-last,
at the shapes the network gives them.

    python bench/depthwise_speed.py [--presets tiny seed fast best] [--batch 128] [--repeats 8] [--json FILE]

Prints one line per depthwise conv and precision: its input, stride and dilation, the median milliseconds of
a forward and backward pass each way, and which way a training step takes (s7core's only for dilated convs on
maps of at most `SMALL_MAP_PIXELS` output pixels: the matrix products in bf16, the weight gradient sums
otherwise). Run it before changing that limit or the dtype that takes the products.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s7core.depthwise import DepthwiseConv2d, depthwise_conv, small_map_conv  # noqa: E402
from s7core.files import atomic_write  # noqa: E402
from s7core.model import build_model  # noqa: E402
from s7core.spec import get_preset  # noqa: E402


def input_shapes(model: nn.Module, image: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
    """Each depthwise conv's input shape (C, H, W), from one forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}

    def keep(name: str):
        def hook(module, inputs, output) -> None:  # noqa: ANN001
            shapes[name] = tuple(inputs[0].shape[1:])

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if isinstance(m, DepthwiseConv2d)]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *image))  # eval: batch norm on one image
    model.train()
    for handle in handles:
        handle.remove()
    return shapes


def median_ms(step, repeats: int) -> float:
    step()  # warm-up: the library picks its kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


WAYS = ("torch", "sums", "products")  # torch's kernels; s7core's weight gradient sums; its matrix products


def time_ways(conv: DepthwiseConv2d, x: torch.Tensor, grad: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median ms of a forward and backward pass of `conv` on x, each of the WAYS."""

    def torchs() -> None:
        nn.Conv2d._conv_forward(conv, x, conv.weight, conv.bias).backward(grad)

    def sums() -> None:
        depthwise_conv(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation).backward(grad)

    def products() -> None:
        small_map_conv(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation).backward(grad)

    steps = {"torch": torchs, "sums": sums, "products": products}
    return {way: median_ms(steps[way], repeats) for way in WAYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "seed", "fast", "best"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--json", type=Path, help="write the rows to this file too")
    args = ap.parse_args()
    rows = []
    for preset in args.presets:
        spec = get_preset(preset)
        model = build_model(spec)
        for name, shape in input_shapes(model, spec.input_shape).items():
            conv = model.get_submodule(name)
            for dtype in (torch.float32, torch.bfloat16):
                conv.to(dtype)
                x = torch.randn(args.batch, *shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
                x.requires_grad_()
                grad = torch.randn_like(conv(x))
                ms = time_ways(conv, x, grad, args.repeats)
                takes = "torch"
                if conv.own_gradient(x, conv.weight):
                    takes = "products" if dtype == torch.bfloat16 else "sums"
                row = {
                    "preset": preset, "layer": name, "input": list(shape), "stride": conv.stride[0],
                    "dilation": conv.dilation[0], "dtype": str(dtype).removeprefix("torch."),
                    **{f"{way}_ms": round(ms[way], 2) for way in WAYS}, "training_takes": takes,
                }  # fmt: skip
                rows.append(row)
                times = ", ".join(f"{way} {ms[way]:7.2f} ms" for way in WAYS)
                print(
                    f"{preset:5} {name:20} in {'x'.join(map(str, shape)):9} stride {row['stride']} dilation "
                    f"{row['dilation']} {row['dtype']:8}: {times}; training takes {takes}",
                    flush=True,
                )
            conv.float()
    if args.json:
        with atomic_write(args.json, binary=False) as fh:
            fh.write(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
