"""What the assignment's rules cost: `best` beside an unconstrained peer, trained one after the other here.

The rules ask for fewer than 1M parameters, depthwise-separable and dilated convolutions and a global RF above
44. The peer keeps none of them: it is the plain style the published fast CIFAR-10 trainers use, about 2M
parameters of 3x3 convolutions in three stages of 64, 256 and 256 channels (conv, 2x2 max pool, batch norm,
ReLU, conv, batch norm, ReLU), after the same whitened 2x2 stem as `best`. Both train with the `best` recipe
on the same machine in one invocation, so the comparison is of the networks alone. The test set is scored
after every epoch for this report only (the trainer chooses nothing from it; those evaluations are taken off
the clock except at the epoch that reached a threshold), and the report gives, for each network, the time to
90%, 93% and 94% and the ratio of the peer's time to best's.

    python bench/price_of_rules.py                     # best and the peer, seed 0, the recipe's epochs
    python bench/price_of_rules.py --epochs 12 --json report.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing s7core
from time_to_accuracy import SHARED_DATA, print_run, run_once  # noqa: E402  (bench/ is on sys.path)

from s7core.errors import UserError  # noqa: E402
from s7core.files import atomic_write  # noqa: E402
from s7core.model import build_model, count_parameters  # noqa: E402
from s7core.rules import check_rules  # noqa: E402
from s7core.spec import NetworkSpec, bn, conv, layer, relu, validate  # noqa: E402

REPORTED = ("90%", "93%", "94%")


def peer_spec() -> NetworkSpec:
    """The unconstrained peer: ~2M parameters of plain 3x3 convolutions, no separable or dilated layer."""
    layers = [conv(24, 2), bn(), relu()]
    for width in (64, 256, 256):
        layers += [conv(width, 3, 1), layer("maxpool"), bn(), relu(), conv(width, 3, 1), bn(), relu()]
    layers += [layer("gap"), layer("flatten"), layer("linear", channels=10)]
    return validate(NetworkSpec(tuple(layers), "peer", "unconstrained peer in the style of fast CIFAR-10 trainers"))


def ratio_table(ours: dict[str, Any], peer: dict[str, Any]) -> list[dict[str, Any]]:
    """For each threshold: best's and the peer's seconds (None: not reached) and peer / best."""
    rows = []
    for name in REPORTED:
        a, b = ours["reached"].get(name), peer["reached"].get(name)
        a_s, b_s = (a or {}).get("seconds"), (b or {}).get("seconds")
        rows.append(
            {"threshold": name, "best_s": a_s, "peer_s": b_s, "peer_over_best": b_s / a_s if a_s and b_s else None}
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (both networks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--data-dir", default=str(SHARED_DATA / "cifar-10-batches-bin") if SHARED_DATA.is_dir() else None
    )
    parser.add_argument("--json", default=None, help="write every figure to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    changes = {"epochs": args.epochs, "seed": args.seed, "eval_every": 1, "eval_subset": 0}
    peer = peer_spec()
    broken = [r.title for r in check_rules(peer) if not r.passed]
    print(f"peer: {count_parameters(build_model(peer)):,} parameters; breaks: {'; '.join(broken) or 'no rule'}")
    ours = run_once("best", "best", changes, args.data_dir)
    print_run(ours)
    theirs = run_once("peer", "best", changes, args.data_dir, spec=peer)
    print_run(theirs)
    rows = ratio_table(ours, theirs)
    print(f"{'':>9}  {'best':>9}  {'peer':>9}  peer/best")
    for row in rows:
        cells = [f"{row[k]:.1f} s" if row[k] else "not reached" for k in ("best_s", "peer_s")]
        ratio = f"{row['peer_over_best']:.2f}" if row["peer_over_best"] else "-"
        print(f"time to {row['threshold']:>3}  {cells[0]:>9}  {cells[1]:>9}  {ratio}")
    if args.json:
        with atomic_write(args.json, binary=False) as fh:
            json.dump({"command": " ".join(sys.argv), "best": ours, "peer": theirs, "table": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
