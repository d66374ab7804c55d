"""Shared cases for the RF tests: hand-worked specs and tables, and checks against measured gradients."""

from __future__ import annotations

import random
from pathlib import Path

from torch import nn

from s7core.rf.oracle import measured_windows
from s7core.rf.table import RFRecord, centre_window
from s7core.rf.trace import ModuleRF
from s7core.spec import NetworkSpec, conv, kernel_span, layer, sepconv

REFERENCE = Path(__file__).resolve().parent / "golden/seed_rf.csv"


def numbers(record: RFRecord) -> tuple:
    """Everything but the name and kind, which differ between the spec and module paths."""
    return (
        record.kernel, record.dilation, record.padding, record.stride, record.jump_in, record.jump_out,
        record.size_in, record.size_out, record.rf, record.start,
    )  # fmt: skip


def border_slack(records: list[RFRecord]) -> int:
    """How far inside the image a clipped window's edge may stop.

    The window is a bounding box; near a border some of its pixels can go unread when taps
    skip units (dilation) or strided windows stop short of the map's end (squeezenet's 7x7
    stride-2 conv on 224 reads rows 0..(109 - 1) * 2 + 6 = 222, never row 223). Each window
    layer loses at most (max(dilation, stride) - 1) of its input jumps that way.
    """
    return sum((max(r.dilation or 1, r.stride or 1) - 1) * r.jump_in for r in records if r.kernel)


def assert_window(box: tuple, records: list[RFRecord], index: int, size: int) -> None:
    """A measured box equals the computed window of the centre unit of records[index] on every side inside
    the image; on a side cut by the border it stops within border_slack of the image edge."""
    record = records[index]
    win = centre_window(record, size)
    slack = border_slack(records[: index + 1])
    for got, edge in ((box[0], win.top), (box[1], win.left)):
        assert got == edge if edge >= 0 else 0 <= got <= slack, (record.name, box, win)
    for got, edge in ((box[2], win.bottom), (box[3], win.right)):
        assert got == edge if edge <= size - 1 else size - 1 - slack <= got <= size - 1, (record.name, box, win)


def check_against_gradients(model: nn.Module, table: ModuleRF, shape: tuple, names: list[str]) -> None:
    """Measured boxes of the centre unit of each named layer, and of the output, match the computed ones."""
    index = {r.name: i for i, r in enumerate(table.records)}
    boxes = measured_windows(model, shape, [*names, None])
    for name, box in zip(names, boxes, strict=False):
        assert_window(box, table.records, index[name], shape[1])
    assert_window(boxes[-1], table.records, len(table.records) - 1, shape[1])


def module_layers(model: nn.Module, table: ModuleRF) -> list[str]:
    """Names of the model's modules that have a record in the table, in graph order."""
    modules = dict(model.named_modules())
    return [r.name for r in table.records if r.name in modules and r.layer != "input"]


# ---------------------------------------------------------------- hand-worked tables

# A, on 3x12x12. Per layer: size, jump, rf, start (centre of unit 0, in input pixels).
#   input                   12  1   1  0
#   conv 3x3 p0             10  1   3  0 + (1 - 0) * 1   = 1.0
#   maxpool 2x2             5   2   4  1 + 0.5 * 1       = 1.5
#   conv 3x3 d2 p0 (span 5) 1   2  12  1.5 + (2 - 0) * 2 = 5.5   rf = 4 + 4 * 2
#   conv 1x1                1   2  12  5.5
# The one output unit sees rows 5.5 - 5.5 .. 5.5 + 5.5 = 0..11: exactly the image.
SPEC_A = NetworkSpec(
    (conv(8, 3), layer("maxpool"), conv(8, 3, dilation=2), conv(10, 1, bias=True), layer("flatten")),
    input_shape=(3, 12, 12),
)
TABLE_A = [(12, 1, 1, 0.0), (10, 1, 3, 1.0), (5, 2, 4, 1.5), (1, 2, 12, 5.5), (1, 2, 12, 5.5)]

# B, on 3x8x8: stride, padding, a separable conv and a global pool.
#   conv 3x3 s2 p1          (8 + 2 - 3) // 2 + 1 = 4    jump 2  rf 3   start 0 + (1 - 1) * 1 = 0
#   depthwise 3x3 p1        4  2   3 + 2 * 2 = 7   0 + (1 - 1) * 2 = 0
#   pointwise 1x1           4  2   7  0
#   avgpool 2x2             2  4   7 + 1 * 2 = 9   0 + 0.5 * 2 = 1.0
#   gap (a 2x2 window)      1  8   9 + 1 * 4 = 13  1 + 0.5 * 4 = 3.0
#   conv 1x1                1  8  13  3.0
# The output unit's window is rows 3 - 6 .. 3 + 6 = -3..9: 64 of its 169 pixels are in the image.
SPEC_B = NetworkSpec(
    (
        conv(4, 3, padding=1, stride=2), sepconv(4, 3, padding=1), layer("avgpool"), layer("gap"),
        conv(10, 1, bias=True), layer("flatten"),
    ),
    input_shape=(3, 8, 8),
)  # fmt: skip
TABLE_B = [(8, 1, 1, 0.0), (4, 2, 3, 0.0), (4, 2, 7, 0.0), (4, 2, 7, 0.0), (2, 4, 9, 1.0), (1, 8, 13, 3.0)]
TABLE_B.append((1, 8, 13, 3.0))

# C, on 3x4x4: a linear layer after a flatten of a 2x2 map sees the whole map.
#   conv 3x3 p0   2  1  3  1.0
#   linear        1  2  3 + (2 - 1) * 1 = 4   1 + 0.5 * 1 = 1.5  -> rows 0..3, the image
SPEC_C = NetworkSpec((conv(4, 3), layer("flatten"), layer("linear", channels=10)), input_shape=(3, 4, 4))
TABLE_C = [(4, 1, 1, 0.0), (2, 1, 3, 1.0), (1, 2, 4, 1.5)]

HAND_WORKED = [(SPEC_A, TABLE_A), (SPEC_B, TABLE_B), (SPEC_C, TABLE_C)]


def random_spec(rng: random.Random) -> NetworkSpec:
    """A spec of a few random convs, separable convs and pools (strides, dilations, padding), then a head."""
    layers = []
    for _ in range(rng.randint(2, 6)):
        kind, k, d, s = rng.choice("CSMA"), rng.choice([1, 2, 3, 5]), rng.choice([1, 1, 2, 3]), rng.choice([1, 1, 2])
        p = rng.randint(0, kernel_span(k, d) // 2)
        if kind == "C":
            layers += [conv(4, k, p, stride=s, dilation=d), layer("bn"), layer("relu")]
        elif kind == "S":
            layers += [sepconv(4, k, p, stride=s, dilation=d), layer("relu")]
        else:
            pool = dict(kernel=rng.choice([2, 3]), stride=rng.choice([None, 1, 2]), padding=rng.randint(0, 1))
            layers.append(
                layer("maxpool", dilation=rng.choice([1, 2]), **pool) if kind == "M" else layer("avgpool", **pool)
            )
    head = rng.choice(
        [[layer("gap"), conv(10, 1, bias=True), layer("flatten")], [layer("flatten"), layer("linear", channels=10)]]
    )
    return NetworkSpec(tuple(layers + head), input_shape=(3, *[rng.choice([16, 24, 32])] * 2))
