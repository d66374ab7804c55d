"""Receptive-field (RF) records from a spec: one per spatial layer, and the window of any unit.

Per axis, for a layer of kernel k, dilation d, padding p and stride s, with jump j_in
(distance in input pixels between neighbouring units of its input) and RF r_in:

    span = kernel_span(k, d) = d * (k - 1) + 1
    j_out = j_in * s
    r_out = r_in + (span - 1) * j_in
    start_out = start_in + ((span - 1) / 2 - p) * j_in

`start` is the centre of the first (top-left) output unit in input pixel coordinates,
where 0 is the centre of the top-left input pixel; a negative start means the unit's
window is centred on padding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from s7core.errors import UserError
from s7core.names import SEPCONV_PARTS, position_name
from s7core.spec import NetworkSpec, infer_shapes, kernel_span


@dataclass(frozen=True)
class RFRecord:
    """The receptive field after one spatial layer (or the input, row 0)."""

    name: str  # spec position ("7", "7.depthwise") or module / graph node name
    layer: str  # conv, maxpool, avgpool, input, ...
    kernel: int | None
    dilation: int | None
    padding: int | None
    stride: int | None
    jump_in: int
    jump_out: int  # cumulative stride after the layer, in input pixels
    size_in: int
    size_out: int  # output side, in units
    rf: int  # receptive field side after the layer, in input pixels
    start: float  # centre of the first output unit, in input pixels

    def to_dict(self) -> dict:
        return asdict(self)


def slide(
    jump: float, rf: float, start: float, kernel: int, stride: int, padding: int, dilation: int
) -> tuple[float, float, float]:
    """(jump, rf, start) along one axis after a sliding window: the formulas at the top of this module."""
    span = kernel_span(kernel, dilation)
    return jump * stride, rf + (span - 1) * jump, start + ((span - 1) / 2 - padding) * jump


def input_record(size: int) -> RFRecord:
    """Row 0 of a table: the input image, each pixel its own unit."""
    return RFRecord("input", "input", None, None, None, None, 1, 1, size, size, 1, 0.0)


def next_record(
    prev: RFRecord, name: str, layer: str, kernel: int, stride: int, padding: int, dilation: int, size_out: int
) -> RFRecord:
    """The record after a sliding window applied to the output `prev` describes."""
    jump_out, rf, start = slide(prev.jump_out, prev.rf, prev.start, kernel, stride, padding, dilation)
    return RFRecord(
        name=name,
        layer=layer,
        kernel=kernel,
        dilation=dilation,
        padding=padding,
        stride=stride,
        jump_in=prev.jump_out,
        jump_out=jump_out,
        size_in=prev.size_out,
        size_out=size_out,
        rf=rf,
        start=start,
    )


def rf_table(spec: NetworkSpec) -> list[RFRecord]:
    """RF records for a spec: the input, then one per spatial layer (a sepconv gives two).

    A linear layer after a flatten of an HxW map sees the whole map, so it counts as an
    HxW window; flatten, BN, activations and dropout leave the RF unchanged and get no row.
    """
    shapes = infer_shapes(spec)
    records = [input_record(shapes[0].size)]
    flat_from = None  # spatial side that a flatten folded into the vector
    for i, lay in enumerate(spec.layers):
        size_in, size_out = shapes[i].size, shapes[i + 1].size
        prev = records[-1]
        if lay.type == "conv":
            records.append(
                next_record(prev, position_name(i), "conv", lay.kernel, lay.stride, lay.padding, lay.dilation, size_out)
            )
        elif lay.type == "sepconv":
            depthwise, pointwise = (position_name(i, part) for part in SEPCONV_PARTS)
            dw = next_record(prev, depthwise, "conv", lay.kernel, lay.stride, lay.padding, lay.dilation, size_out)
            records += [dw, next_record(dw, pointwise, "conv", 1, 1, 0, 1, size_out)]
        elif lay.type in ("maxpool", "avgpool"):
            stride = lay.stride or lay.kernel
            records.append(
                next_record(
                    prev, position_name(i), lay.type, lay.kernel, stride, lay.padding, lay.dilation or 1, size_out
                )
            )
        elif lay.type == "gap":
            records.append(next_record(prev, position_name(i), "gap", size_in, size_in, 0, 1, 1))
        elif lay.type == "flatten":
            flat_from = size_in
        elif lay.type == "linear" and flat_from:
            records.append(next_record(prev, position_name(i), "linear", flat_from, flat_from, 0, 1, 1))
            flat_from = 1
    return records


def global_rf(spec: NetworkSpec) -> int:
    """The RF of the network's output units, in input pixels."""
    return rf_table(spec)[-1].rf


def centre_unit(size: int) -> int:
    """The index of the centre unit along a side of `size` units (the upper-left one of two when even)."""
    return (size - 1) // 2


@dataclass(frozen=True)
class Window:
    """The input-pixel box one unit sees: inclusive bounds (may lie outside the image) and its part inside.

    When the window lies wholly on padding, the clipped box is empty (clipped_bottom < clipped_top).
    """

    row: int
    col: int
    top: int
    left: int
    bottom: int
    right: int
    clipped_top: int
    clipped_left: int
    clipped_bottom: int
    clipped_right: int
    padding_fraction: float  # share of the window's pixels that fall outside the image

    def to_dict(self) -> dict:
        return asdict(self)


def unit_window(record: RFRecord, row: int, col: int, image_size: int) -> Window:
    """The box of input pixels that output unit (row, col) of `record`'s layer sees, on a square image."""
    for axis, index in (("row", row), ("col", col)):
        if not 0 <= index < record.size_out:
            side = record.size_out
            raise UserError(f"{axis} {index} is outside the {side}x{side} output of {record.name}: use 0 to {side - 1}")
    if image_size < 1:
        raise UserError(f"image size must be at least 1, got {image_size}")
    half = (record.rf - 1) / 2
    top, left = (round(record.start + i * record.jump_out - half) for i in (row, col))
    bottom, right = top + record.rf - 1, left + record.rf - 1
    ct, cl, cb, cr = max(top, 0), max(left, 0), min(bottom, image_size - 1), min(right, image_size - 1)
    inside = max(cb - ct + 1, 0) * max(cr - cl + 1, 0)
    return Window(row, col, top, left, bottom, right, ct, cl, cb, cr, 1 - inside / record.rf**2)


def centre_window(record: RFRecord, image_size: int) -> Window:
    """The window of the centre unit of `record`'s layer, the unit the effective RF defaults to."""
    middle = centre_unit(record.size_out)
    return unit_window(record, middle, middle, image_size)
