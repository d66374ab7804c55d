"""Training throughput (images/s) of a preset on this machine, for each precision and memory layout.

    python bench/throughput.py [--preset seed] [--batch-sizes 32 128] [--steps 20] [--warmup 3]

Times full training steps (augmentation, forward, backward, SGD update) on random uint8 images already in
memory, the way `s7core.train` runs them, for fp32, fp32 + channels_last and bf16 + channels_last, and prints
a table: images per wall-clock second, and per CPU-second of this process (steadier on a shared machine; the
"vs fp32" column compares those). Run it before changing the CPU defaults of `precision` and `channels_last`
in TrainConfig.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s7core.data import AugmentConfig, augment_batch  # noqa: E402
from s7core.model import build_model  # noqa: E402
from s7core.spec import get_preset  # noqa: E402
from s7core.train import autocast  # noqa: E402

VARIANTS = (("fp32", False), ("fp32", True), ("bf16", True))


def images_per_second(
    preset: str, batch: int, precision: str, channels_last: bool, steps: int, warmup: int
) -> tuple[float, float]:
    """Training images per wall-clock second and per CPU-second of this process (all its threads) over
    `steps` timed steps after `warmup` untimed ones. On a machine shared with other jobs the wall figure
    swings with their load; the CPU figure much less."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_model(get_preset(preset)).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randint(0, 256, (batch * 4, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (batch * 4,))
    gen = torch.Generator().manual_seed(0)

    def step(i: int) -> None:
        sl = slice((i % 4) * batch, (i % 4 + 1) * batch)
        x = augment_batch(images[sl], AugmentConfig(), gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), labels[sl])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(i)
    images = steps * batch
    return images / (time.perf_counter() - start), images / (time.process_time() - cpu_start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seed")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    args = parser.parse_args()
    print(f"preset {args.preset}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'batch':>5}  {'precision':<9}  {'layout':<13}  {'images/s':>9}  {'images/cpu-s':>12}  {'vs fp32':>7}")
    for batch in args.batch_sizes:
        base = None
        for precision, channels_last in VARIANTS:
            wall, cpu = images_per_second(args.preset, batch, precision, channels_last, args.steps, args.warmup)
            base = base or cpu
            layout = "channels_last" if channels_last else "contiguous"
            print(
                f"{batch:>5}  {precision:<9}  {layout:<13}  {wall:>9.1f}  {cpu:>12.1f}  {cpu / base:>6.2f}x", flush=True
            )


if __name__ == "__main__":
    main()
