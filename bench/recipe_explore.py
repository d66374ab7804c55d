"""Try a preset with a recipe and some settings changed, scored on held-out training images only.

Trains through the project's own trainer (`s7core.train.train`) on 45,000 training images and scores the
5,000 held out after every epoch; the test set is replaced by an empty one, so nothing here can be chosen on
it. Prints each epoch's validation accuracy and the clock (data loading included), then one JSON line.

    PYTHONPATH=. python bench/recipe_explore.py --preset best --recipe best --set epochs=10 --set small_epochs=5
    PYTHONPATH=. python bench/recipe_explore.py --preset my-net.json --recipe fast

A --preset ending in .json is read as a spec file (what `python -m s7core export` writes).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from s7core.config import with_settings
from s7core.data import load_cifar10
from s7core.recipes import get_recipe
from s7core.spec import preset_or_file
from s7core.train import EpochEvent, PrecisionEvent, train

DATA = Path(__file__).resolve().parents[2] / "shared/data/cifar-10-batches-bin"
HELD_OUT = 5000


def parse_value(text: str):
    """A --set value as JSON where it parses (numbers, true/false), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="best")
    ap.add_argument("--recipe", default="best")
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help="a setting to change")
    ap.add_argument("--data-dir", type=Path, default=DATA)
    args = ap.parse_args()
    start = time.perf_counter()
    changes = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = with_settings(get_recipe(args.recipe).config, {**changes, "val_split": HELD_OUT})
    data = load_cifar10(args.data_dir)
    empty = data.test_images[:0], data.test_labels[:0]
    data = dataclasses.replace(data, test_images=empty[0], test_labels=empty[1])
    history = []

    def report(event) -> None:
        if isinstance(event, PrecisionEvent):
            print(event.text, flush=True)
        elif isinstance(event, EpochEvent):
            clock = time.perf_counter() - start
            history.append(round(100 * event.val_acc, 2))
            line = f"epoch {event.epoch:2d}  val {100 * event.val_acc:.2f}%  {event.epoch_s:5.1f} s"
            line += f"  clock {clock:6.1f} s"
            print(line, flush=True)

    train(preset_or_file(args.preset), config, data, report)
    total = time.perf_counter() - start
    print(json.dumps({"preset": args.preset, "recipe": args.recipe, "changes": changes, "val": history,
                      "seconds": round(total, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
