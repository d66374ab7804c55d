"""How long the data side of a training step takes: augmenting one batch on the CPU, and loading CIFAR-10.

Times `augment_batch` on a batch of synthetic uint8 images for each augmentation the recipes use (one
thread by default: a busy shared machine stalls multi-threaded kernels at their barriers), and, when a
data folder is given, one `load_cifar10` of it. Prints the median and the fastest of the repeats.

    python bench/augment_speed.py --batch 512 --repeats 30 [--data-dir PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing s7core

from s7core.data import AugmentConfig, augment_batch, load_cifar10  # noqa: E402

CONFIGS = {
    "crop + flip + cutout 8": AugmentConfig(crop_padding=4, flip=True, cutout=8),
    "crop + flip": AugmentConfig(crop_padding=4, flip=True),
    "random affine + flip": AugmentConfig(crop_padding=0, flip=True, affine=True),
}


def time_augment(config: AugmentConfig, batch: int, repeats: int) -> list[float]:
    """Seconds per call of augment_batch on `batch` random images, `repeats` times."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8, generator=generator)
    augment_batch(images, config, generator)  # the first call pays for lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        augment_batch(images, config, generator)
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    """Print the timings; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="images per augmented batch")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per augmentation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--data-dir", help="also time one load_cifar10 of this folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"augment_batch, {args.batch} images, {args.threads} thread(s), {args.repeats} repeats")
    for name, config in CONFIGS.items():
        times = time_augment(config, args.batch, args.repeats)
        print(f"  {name}: median {statistics.median(times) * 1000:.1f} ms, fastest {min(times) * 1000:.1f} ms")
    if args.data_dir:
        start = time.perf_counter()
        data = load_cifar10(args.data_dir)
        seconds = time.perf_counter() - start
        count = len(data.train_images) + len(data.test_images)
        print(f"load_cifar10({args.data_dir}): {seconds:.2f} s for {count:,} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
