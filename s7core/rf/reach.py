"""Which input pixels can reach one unit: the exact set of pixels with a path to it, from the spec's layers.

The RF box (s7core.rf.table.unit_window) is the span of a unit's window. Inside it, not every pixel need
be read: stacked dilated convolutions skip pixels between their taps (the "gridding" holes), and a tap
that lands on an intermediate layer's zero padding reads nothing further back. This module follows every
tap of every layer backwards from one unit, per axis, and returns a map of the box:

    REACHED   an image pixel with at least one path to the unit
    PADDING   a position outside the image that the unit's window covers (zero padding)
    HOLE      a pixel inside the box that no path reaches

Per axis, output unit o of a window (kernel k, dilation d, stride s, padding p) reads input units
o*s - p + t*d for t = 0..k-1. A 2-d window reads every (row, column) pair of taps, so the reached set of a
unit is the product of a reached set of rows and one of columns.

Any other nn.Module (a torchvision classifier, with its branches and merges) gets the same map from
`measured_reach`: the pixels with a non-zero gradient in a probe copy whose every path adds a positive amount
(s7core.rf.oracle.measured_support), laid over the box its traced RF records give.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from s7core.errors import UserError
from s7core.rf._modules import first_line
from s7core.rf.table import RFRecord, unit_window
from s7core.spec import NetworkSpec, layer

HOLE, REACHED, PADDING = 0, 1, 2


@dataclass(frozen=True)
class ReachMap:
    """The pixels one unit can reach, over its RF box; `codes[i, j]` is the pixel (top + i, left + j)."""

    name: str  # the layer's table label ('7', '7.depthwise')
    row: int
    col: int
    top: int  # input-pixel coordinates of codes[0, 0]; negative where the box starts on padding
    left: int
    codes: np.ndarray  # (rows, cols) uint8: HOLE, REACHED or PADDING; (rf, rf) for a spec's layer

    @property
    def reached(self) -> int:
        """How many image pixels have a path to the unit."""
        return int((self.codes == REACHED).sum())

    @property
    def holes(self) -> int:
        """How many image pixels inside the box no path reaches."""
        return int((self.codes == HOLE).sum())

    @property
    def padding(self) -> int:
        """How many positions of the box lie on zero padding, outside the image."""
        return int((self.codes == PADDING).sum())

    def image_mask(self, image_size: int) -> np.ndarray:
        """An (image_size, image_size) bool map of the image pixels with a path to the unit."""
        mask = np.zeros((image_size, image_size), dtype=bool)
        rows, cols = np.nonzero(self.codes == REACHED)
        mask[rows + self.top, cols + self.left] = True
        return mask


def _taps(units: set[int], record: RFRecord) -> set[int]:
    """The input units that the output units `units` of one window read (bounds not checked)."""
    k, d, s, p = record.kernel, record.dilation, record.stride, record.padding
    return {o * s - p + t * d for o in units for t in range(k)}


def _axis(records: list[RFRecord], index: int, unit: int) -> tuple[set[int], set[int]]:
    """(reached, window) input positions along one axis of unit `unit` of record `index`.

    `reached` drops a position that falls on an intermediate layer's padding (nothing lies behind it);
    `window` keeps every position, so its span is the RF box.
    """
    reached, window = {unit}, {unit}
    for record in reversed(records[1 : index + 1]):
        reached = {i for i in _taps(reached, record) if 0 <= i < record.size_in}
        window = _taps(window, record)
    return reached, window


def reachable_pixels(records: list[RFRecord], index: int, row: int, col: int) -> ReachMap:
    """The reach map of output unit (row, col) of `records[index]` (an RF table from s7core.rf.table)."""
    if not 1 <= index < len(records):
        raise UserError(f"layer {index} is not a row of the RF table: pick one from 1 to {len(records) - 1}")
    record = records[index]
    size = records[0].size_out
    box = unit_window(record, row, col, size)  # checks the unit lies inside the layer's output
    rows_hit, rows_window = _axis(records, index, row)
    cols_hit, cols_window = _axis(records, index, col)
    height, width = box.bottom - box.top + 1, box.right - box.left + 1
    if (min(rows_window), max(rows_window), min(cols_window), max(cols_window)) != (
        box.top,
        box.bottom,
        box.left,
        box.right,
    ):  # the two computations are independent; a mismatch is a bug, not a user's mistake
        raise AssertionError(f"reach of {record.name} disagrees with its RF box")
    codes = np.full((height, width), HOLE, dtype=np.uint8)
    outside_r = np.array([not 0 <= box.top + i < size for i in range(height)])
    outside_c = np.array([not 0 <= box.left + j < size for j in range(width)])
    in_window_r = np.array([box.top + i in rows_window for i in range(height)])
    in_window_c = np.array([box.left + j in cols_window for j in range(width)])
    hit_r = np.array([box.top + i in rows_hit for i in range(height)])
    hit_c = np.array([box.left + j in cols_hit for j in range(width)])
    codes[np.outer(in_window_r, in_window_c) & (outside_r[:, None] | outside_c[None, :])] = PADDING
    codes[np.outer(hit_r, hit_c)] = REACHED
    return ReachMap(record.name, row, col, box.top, box.left, codes)


def measured_reach(
    model: Any, input_shape: tuple[int, int, int], module: str, records: tuple[RFRecord, RFRecord], row: int, col: int
) -> ReachMap:
    """The reach map of unit (row, col) of `module` in any nn.Module, measured by back-propagation.

    `records` are the module's traced RF records of the height and the width axis (ModuleRF.records and
    width_records); they give the box. Where paths of different geometry merge (a residual block's shortcut),
    a path may reach a pixel just outside that box: the map then grows to hold it. The model is not touched.
    """
    from s7core.rf.oracle import measured_support

    rows_record, cols_record = records
    _, height, width = input_shape
    for axis, index, record in (("row", row, rows_record), ("column", col, cols_record)):
        if not 0 <= index < record.size_out:
            side = record.size_out
            raise UserError(f"{axis} {index} is outside the {side} units of {record.name}: use 0 to {side - 1}")
    rows_box = unit_window(rows_record, row, row, height)
    cols_box = unit_window(cols_record, col, col, width)
    try:
        support = measured_support(model, input_shape, module, (row, col))  # (H, W) bool
    except UserError:
        raise
    except Exception as err:  # a layer the probe cannot stand in for (attention reads its linear's weight)
        raise UserError(
            f"which pixels reach a unit of {type(model).__name__} cannot be measured ({first_line(err)}): its "
            "layers read their weights directly; the RF box above still holds"
        ) from None
    hit_rows, hit_cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
    top, bottom = rows_box.top, rows_box.bottom
    left, right = cols_box.left, cols_box.right
    if len(hit_rows):
        top, bottom = min(top, int(hit_rows[0])), max(bottom, int(hit_rows[-1]))
        left, right = min(left, int(hit_cols[0])), max(right, int(hit_cols[-1]))
    rows = np.arange(top, bottom + 1)[:, None]
    cols = np.arange(left, right + 1)[None, :]
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    codes = np.where(inside, HOLE, PADDING).astype(np.uint8)  # a general module's taps are not known: all of it
    reached = np.zeros(codes.shape, dtype=bool)
    reached[inside] = support[np.broadcast_to(rows, codes.shape)[inside], np.broadcast_to(cols, codes.shape)[inside]]
    codes[reached] = REACHED
    return ReachMap(rows_record.name, row, col, top, left, codes)


def gridding_example() -> NetworkSpec:
    """A network whose units have holes: three 3x3 convs with dilation 2 straight on the image.

    Each conv reads every second pixel, and nothing in between fills the gaps, so a unit of the third conv
    reaches one pixel in four of its 13x13 box: the gridding that a dense layer before the dilated ones
    (as in the presets) avoids.
    """
    dilated = [layer("conv", channels=16, kernel=3, padding=2, dilation=2) for _ in range(3)]
    head = [layer("gap"), layer("conv", channels=10, kernel=1, bias=True), layer("flatten")]
    return NetworkSpec(tuple(dilated + head), "gridding", "Three dilated 3x3 convs on the image: see the holes.")
