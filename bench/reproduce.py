"""Reproduce the reference solution: the `seed` net with the `reference` recipe on the real CIFAR-10.

    python bench/reproduce.py [--epochs 20] [--max-steps N] [--data-dir D] [--precision fp32|bf16|auto]
                              [--[no-]channels-last] [--recipe reference]

Prints the test accuracy after each epoch beside the reference's own figures (from reference/README.md), and
the wall time. With --max-steps it trains only that many steps of the first epoch and prints the estimated
time of the full run from the measured step time instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s7core.data import load_cifar10  # noqa: E402
from s7core.recipes import get_recipe  # noqa: E402
from s7core.spec import get_preset  # noqa: E402
from s7core.train import EpochEvent, StepEvent, train  # noqa: E402

# The reference solution's test accuracy (%) after each of its 20 epochs.
REFERENCE_ACCURACY = (58.96, 68.74, 71.64, 76.51, 77.60, 77.89, 80.83, 81.35, 82.49, 83.17,
                      82.46, 85.58, 85.66, 85.77, 85.83, 87.28, 87.13, 87.19, 87.58, 87.35)  # fmt: skip
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-bin"


def _duration(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h}h{rest // 60:02d}m{rest % 60:02d}s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=0, help="train only this many steps, then estimate")
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA) if DEFAULT_DATA.exists() else None)
    parser.add_argument("--recipe", default="reference")
    parser.add_argument("--precision", help="fp32, bf16, fp16 or auto (default: the recipe's)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, help="(default: the recipe's)")
    args = parser.parse_args()

    data = load_cifar10(args.data_dir)
    config = get_recipe(args.recipe).config.replace(
        epochs=args.epochs, max_steps=args.max_steps, precision=args.precision, channels_last=args.channels_last
    )
    steps: list[StepEvent] = []

    def on_event(event) -> None:
        if isinstance(event, StepEvent):
            steps.append(event)
            print(f"\r  step {event.step}/{event.steps_per_epoch}  {event.images_per_s:.0f} img/s", end="", flush=True)
        elif isinstance(event, EpochEvent):
            ref = REFERENCE_ACCURACY[event.epoch - 1] if event.epoch <= len(REFERENCE_ACCURACY) else None
            ours = f"{100 * event.test_acc:6.2f}" if event.test_acc is not None else "     —"
            print(f"\r{event.epoch:>5}  {ours}  {ref if ref is not None else '—':>9}  {_duration(event.epoch_s):>10}")

    print(f"seed + {args.recipe}: {config.epochs} epochs, batch {config.batch_size}, precision {config.precision}"
          f"{' channels_last' if config.channels_last else ''}, data {data.source}")  # fmt: skip
    print("epoch  test %  reference  epoch time")
    start = time.perf_counter()
    result = train(get_preset("seed"), config, data, callback=on_event)
    wall = time.perf_counter() - start
    print(f"\nwall time {_duration(wall)} for {result.global_step} steps on {result.device} ({result.precision})")
    if args.max_steps and steps:
        # the first step events include start-up costs: time the steps after the first
        first, last = steps[0], steps[-1]
        per_step = (last.elapsed_s - first.elapsed_s) / max(last.global_step - first.global_step, 1)
        full = per_step * last.steps_per_epoch * config.epochs
        print(f"{per_step:.3f} s a step ({config.batch_size / per_step:.0f} img/s): an epoch of "
              f"{last.steps_per_epoch} steps ~ {_duration(per_step * last.steps_per_epoch)}, "
              f"{config.epochs} epochs ~ {_duration(full)} (training only, evaluation not counted)")  # fmt: skip
    elif result.best_accuracy is not None:
        print(f"best test accuracy {100 * result.best_accuracy:.2f}% at epoch {result.best_epoch} "
              f"(reference: 87.58% at epoch 19)")  # fmt: skip


if __name__ == "__main__":
    main()
