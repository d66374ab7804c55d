"""Training speed of a preset at several image sizes, and its evaluation speed in fp32 and bf16, on the CPU.

What the early epochs at a smaller size save, and what a scoring of the test set costs: bf16 autocast and the
channels-last layout as the trainer uses them, batch 512 for training (Nesterov SGD steps) and 500 for
evaluation; each figure the median of `--repeats` timed steps after one untimed one.

    python bench/size_speed.py --preset best --sizes 32 28 24 20
    python bench/size_speed.py --preset best --sizes 32 --profile    # where a full-size step's time goes
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing s7core
from s7core.model import build_model  # noqa: E402
from s7core.spec import get_preset  # noqa: E402


def median_seconds(step: Callable[[], None], repeats: int) -> float:
    """The median wall time of `step` over `repeats` calls, after one untimed call."""
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="best")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 28, 24, 20])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print PyTorch's profile of one step per size")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = build_model(get_preset(args.preset)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    print(f"{args.preset}, {torch.get_num_threads()} threads, bf16 autocast, channels-last")
    for size in args.sizes:
        x = torch.randn(args.batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (args.batch,))

        def train_step(x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        print(f"  train at {size}x{size}: {args.batch / median_seconds(train_step, args.repeats):,.0f} images/s")
        if args.profile:
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
                train_step()
            print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    model.eval()
    x = torch.randn(500, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    for precision in ("fp32", "bf16"):

        def forward(precision: str = precision) -> None:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                model(x)

        print(f"  evaluate in {precision}: {500 / median_seconds(forward, args.repeats):,.0f} images/s (one view)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
