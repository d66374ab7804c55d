"""Where one training step of a preset with its recipe goes: augmentation, forward, backward, optimizer.

The trainer's own model, optimizer and augmentation (s7core.train._Loop on the real data), in one precision;
each part the median of `--steps` timed steps after `--warmup` untimed ones. `--freeze-stem-bn` and
`--no-freeze-stem-bn` override the recipe, so the two can be compared one after the other:

    python bench/step_parts.py --preset fast --precision bf16-dw32 --no-freeze-stem-bn
    python bench/step_parts.py --preset fast --precision bf16-dw32 --freeze-stem-bn
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing s7core
from s7core.config import with_settings  # noqa: E402
from s7core.data import augment_batch, load_cifar10  # noqa: E402
from s7core.device import autocast  # noqa: E402
from s7core.recipes import default_recipe, get_recipe  # noqa: E402
from s7core.spec import get_preset  # noqa: E402
from s7core.train import _Loop  # noqa: E402

PARTS = ("augment", "forward", "backward", "optimizer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--precision", default="bf16-dw32", help="fp32, bf16, bf16-dw32 or fp16")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the recipe's")
    parser.add_argument("--freeze-stem-bn", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument(
        "--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/cifar-10-batches-bin")
    )
    args = parser.parse_args()

    config = get_recipe(default_recipe(args.preset)).config
    changes = {"precision": args.precision, "val_split": 0}
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.freeze_stem_bn is not None:
        changes["freeze_stem_bn"] = args.freeze_stem_bn
    config = with_settings(config, changes)
    loop = _Loop(get_preset(args.preset), config, load_cifar10(args.data_dir), None, None, None)
    images, labels = loop.train_set
    gen = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {part: [] for part in PARTS}
    for i in range(args.warmup + args.steps):
        idx = torch.randint(0, images.shape[0], (loop.batch,), generator=gen)
        t0 = time.perf_counter()
        x = augment_batch(images[idx], config.augment, loop.aug_gen).contiguous(memory_format=torch.channels_last)
        t1 = time.perf_counter()
        with autocast(loop.device, args.precision):
            loss = F.cross_entropy(loop.model(x).float(), labels[idx], label_smoothing=config.label_smoothing)
        t2 = time.perf_counter()
        loop.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        loop.optimizer.step()
        t4 = time.perf_counter()
        if i >= args.warmup:
            for part, seconds in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                times[part].append(seconds)
    medians = {part: statistics.median(v) for part, v in times.items()}
    total = sum(medians.values())
    parts = ", ".join(f"{part} {seconds * 1e3:.1f} ms" for part, seconds in medians.items())
    frozen = "frozen" if config.freeze_stem_bn else "learning"
    print(f"{args.preset} ({args.precision}, batch {loop.batch}, stem BN {frozen}): {parts}; "
          f"step {total * 1e3:.1f} ms = {loop.batch / total:,.0f} images/s")  # fmt: skip


if __name__ == "__main__":
    main()
