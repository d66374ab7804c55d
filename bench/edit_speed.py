"""How long the editor waits after each edit: rf_table + summarize + check_rules on a 40-layer spec.

Each repeat changes one layer's channel count, as a student's edit does, so the summary
cache never helps (`--same` measures the cached case instead). Prints the median and p90,
wall-clock and CPU time.

    python bench/edit_speed.py --repeats 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing s7core

from s7core.rf.table import rf_table  # noqa: E402
from s7core.rules import check_rules  # noqa: E402
from s7core.spec import BLOCKS, NetworkSpec, layer, sep_bn_relu, validate  # noqa: E402
from s7core.summary import summarize  # noqa: E402


def forty_layer_spec(width: int = 64) -> NetworkSpec:
    """A valid 40-layer spec: conv and sepconv blocks (some dilated), three pools, dropout, the classifier."""
    layers = [*BLOCKS["conv-bn-relu"][1](width)]
    for stage in range(3):
        for dilation in (1, 2, 1):
            layers += sep_bn_relu(width * (stage + 1), padding=dilation, dilation=dilation)
        layers.append(layer("maxpool"))
    layers += [*sep_bn_relu(width * 3), layer("dropout")]
    layers += BLOCKS["classifier"][1](0)
    spec = validate(NetworkSpec(tuple(layers), name="bench40"))
    assert len(spec.layers) == 40, len(spec.layers)
    return spec


def edited(spec: NetworkSpec, step: int) -> NetworkSpec:
    """`spec` with the first conv's channel count changed: a new, uncached spec every step."""
    first = spec.layers[0]
    changed = layer("conv", **{**first.fields(), "channels": 16 + step % 4000})
    return spec.with_layers((changed, *spec.layers[1:]))


def time_edits(repeats: int, same: bool) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds per edit for `repeats` edits (after a few warm-up calls).

    CPU time is what the work costs; wall time adds waiting for a core on a busy machine.
    """
    base = forty_layer_spec()
    wall, cpu = [], []
    for step in range(repeats + 5):
        spec = base if same else edited(base, step)
        start, start_cpu = time.perf_counter(), time.process_time()
        rf_table(spec)
        summarize(spec)
        check_rules(spec)
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return wall[5:], cpu[5:]


def describe(timings: list[float]) -> str:
    """'median X ms  p90 Y ms  max Z ms'."""
    ordered = sorted(timings)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered):7.2f} ms   p90 {p90:7.2f} ms   max {ordered[-1]:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--same", action="store_true", help="re-check one unchanged spec (the cached case)")
    args = parser.parse_args()
    wall, cpu = time_edits(args.repeats, args.same)
    case = "unchanged spec (cached)" if args.same else "a new spec each time"
    print(f"rf_table + summarize + check_rules, 40 layers, {case}, {len(wall)} repeats")
    print(f"wall  {describe(wall)}")
    print(f"cpu   {describe(cpu)}")


if __name__ == "__main__":
    main()
