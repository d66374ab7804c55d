"""What the assignment's rules cost: `best` beside an unconstrained peer, trained one after the other here.

The rules ask for fewer than 1M parameters, depthwise-separable and dilated convolutions and a global RF above
44. The peer keeps none of them: it is the plain style the published fast CIFAR-10 trainers use, about 2M
parameters of 3x3 convolutions in three stages of 64, 256 and 256 channels (conv, 2x2 max pool, batch norm,
ReLU, conv, batch norm, ReLU), after the same whitened 2x2 stem as `best`. Both train with the `best` recipe
at a set number of epochs, with no time budget and the recipe's share of them at the smaller size (the peer
may get its own number of epochs), on the same machine in one invocation, so the comparison is of
the networks.

Time to X% is the clock (from before the data is read) at the end of the first epoch whose weights score X% on
the test set, plus the cost of one scoring: what a run scheduled to stop there would cost. The test set is
scored for this report only, from `--report-from` on (the trainer chooses nothing from it), and those scorings
are taken off the clock. Both networks' one-cycle schedules end at their last epoch, so an earlier epoch's
score is that of a run still at a high learning rate: the times are upper bounds of a run tuned to stop there.

    python bench/price_of_rules.py                     # best and the peer, seed 0, the recipe's epochs
    python bench/price_of_rules.py --peer-epochs 12 --json report.json

Measured on the 2-core AMD EPYC host (no AMX), nothing else running, `--epochs 18 --report-from 12`: best
92.89% and the peer 93.29% after 18 epochs (13 of them at 24 pixels); 90% reached at 558 s and 640 s (peer /
best 1.15), 93% by the peer at 886 s; whole processes 750 s and 966 s. With `--seed 1`: 93.10% and 93.69%;
93% at 731 s and 967 s (1.32), 90% at 491 s and 729 s. Neither reached 94%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing s7core
from s7core.data import load_cifar10  # noqa: E402
from s7core.errors import UserError  # noqa: E402
from s7core.files import atomic_write  # noqa: E402
from s7core.model import build_model, count_parameters  # noqa: E402
from s7core.recipes import get_recipe  # noqa: E402
from s7core.rules import check_rules  # noqa: E402
from s7core.spec import NetworkSpec, bn, conv, get_preset, layer, relu, validate  # noqa: E402
from s7core.speed import budget_config  # noqa: E402
from s7core.train import EpochEvent, PrecisionEvent, StepEvent, score_test_set, train  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared/data/cifar-10-batches-bin"
THRESHOLDS = (0.90, 0.93, 0.94)


def peer_spec() -> NetworkSpec:
    """The unconstrained peer: ~2M parameters of plain 3x3 convolutions, no separable or dilated layer."""
    layers = [conv(24, 2), bn(), relu()]
    for width in (64, 256, 256):
        layers += [conv(width, 3, 1), layer("maxpool"), bn(), relu(), conv(width, 3, 1), bn(), relu()]
    layers += [layer("gap"), layer("flatten"), layer("linear", channels=10)]
    return validate(NetworkSpec(tuple(layers), "peer", "unconstrained peer in the style of fast CIFAR-10 trainers"))


def race(spec: NetworkSpec, changes: dict[str, Any], data_dir: str, report_from: int) -> dict[str, Any]:
    """Train `spec` with the best recipe changed by `changes`; the clock and test accuracy of each scored epoch."""
    start = time.perf_counter()
    data = load_cifar10(data_dir)
    # the recipe at a set number of epochs: no time budget, the smaller-size epochs at the recipe's share
    recipe = get_recipe("best").config
    config = budget_config(recipe, changes.pop("epochs", recipe.epochs)).replace(time_budget=0.0, **changes)
    scored: list[dict[str, Any]] = []
    off = {"s": 0.0, "last_step": start, "precision": "", "scoring_s": []}

    def on_event(event: StepEvent | EpochEvent | PrecisionEvent) -> None:
        if isinstance(event, PrecisionEvent):
            off["precision"] = event.text
        elif isinstance(event, StepEvent):
            off["last_step"] = time.perf_counter()
        elif event.test_acc is not None and not event.test_subset:  # the trainer's own scoring: the last epoch
            took = time.perf_counter() - off["last_step"]
            off["scoring_s"].append(took)
            scored.append({"epoch": event.epoch, "train_clock_s": off["last_step"] - start - off["s"],
                           "test_acc": event.test_acc})  # fmt: skip

    def on_checkpoint(state: dict[str, Any], best: bool) -> None:
        epoch = state["epoch"]
        if state["step"] or epoch < report_from or epoch >= config.epochs:
            return
        begin = time.perf_counter()
        model = build_model(spec).to(memory_format=torch.channels_last)
        model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
        acc = score_test_set(model, data, config, state["precision"]).accuracy
        took = time.perf_counter() - begin
        scored.append({"epoch": epoch, "train_clock_s": off["last_step"] - start - off["s"], "test_acc": acc})
        off["s"] += took + (begin - off["last_step"])  # the trainer's checkpoint hand-off stays off too
        off["scoring_s"].append(took)

    train(spec, config, data, on_event, on_checkpoint=on_checkpoint)
    scoring = sorted(off["scoring_s"])[len(off["scoring_s"]) // 2]
    reached = {}
    for threshold in THRESHOLDS:
        hit = next((e for e in scored if e["test_acc"] >= threshold), None)
        reached[f"{threshold:.0%}"] = None if hit is None else round(hit["train_clock_s"] + scoring, 1)
    return {
        "network": spec.name,
        "params": count_parameters(build_model(spec)),
        "epochs": config.epochs,
        "small_epochs": config.small_epochs,
        "precision": off["precision"],
        "scored": scored,
        "scoring_s": round(scoring, 1),
        "reached": reached,
        "final_test_acc": scored[-1]["test_acc"],
        "wall_s": round(time.perf_counter() - start, 1),
        "wall_s_without_reporting": round(time.perf_counter() - start - off["s"], 1),
    }


def print_race(run: dict[str, Any]) -> None:
    small = f" ({run['small_epochs']} at the smaller size)" if run["small_epochs"] else ""
    print(f"{run['network']}: {run['params']:,} parameters, {run['epochs']} epochs{small}, {run['precision']}")
    for e in run["scored"]:
        print(f"  epoch {e['epoch']:3d}  test {e['test_acc']:.2%}  training clock {e['train_clock_s']:7.1f} s")
    whole, wall, scoring = run["wall_s_without_reporting"], run["wall_s"], run["scoring_s"]
    print(f"  final {run['final_test_acc']:.2%}; whole process {whole:.1f} s without the reporting-only scorings "
          f"({wall:.1f} s with them); one scoring {scoring:.1f} s")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="best's epochs (default: its recipe's)")
    parser.add_argument("--peer-epochs", type=int, default=None, help="the peer's epochs (default: best's)")
    parser.add_argument("--report-from", type=int, default=None, help="first epoch scored (default: half way)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", default=str(SHARED_DATA))
    parser.add_argument("--json", default=None, help="write every figure to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    epochs = args.epochs or get_recipe("best").config.epochs
    peer = peer_spec()
    broken = [r.title for r in check_rules(peer) if not r.passed]
    print(f"peer: {count_parameters(build_model(peer)):,} parameters; breaks: {'; '.join(broken) or 'no rule'}")
    runs = []
    for spec, n in ((get_preset("best"), epochs), (peer, args.peer_epochs or epochs)):
        changes = {"epochs": n, "seed": args.seed}
        runs.append(race(spec, changes, args.data_dir, args.report_from or n // 2 + 1))
        print_race(runs[-1])
    ours, theirs = runs
    print(f"host: {os.uname().nodename}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    print(f"{'':12}{'best':>10}{'peer':>10}  peer / best")
    rows = []
    for name in ours["reached"]:
        a, b = ours["reached"][name], theirs["reached"][name]
        rows.append({"threshold": name, "best_s": a, "peer_s": b, "peer_over_best": b / a if a and b else None})
        cells = [f"{v:.0f} s" if v else "-" for v in (a, b)]
        ratio = f"{b / a:.2f}" if a and b else "-"
        print(f"time to {name:>4}{cells[0]:>10}{cells[1]:>10}  {ratio}")
    if args.json:
        with atomic_write(args.json, binary=False) as fh:
            json.dump({"command": " ".join(sys.argv), "runs": runs, "table": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
