"""The RF arithmetic of one layer as plain data: each formula with the layer's own numbers put in.

A page shows these lines beside the RF table so a student can check every cell by hand; the numbers come
from the same records (s7core.rf.table) the table shows, and the formulas are the ones at the top of that
module: RF out = RF in + (k - 1) x d x jump in, jump out = jump in x s, and the centre of the first unit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from s7core.errors import UserError
from s7core.rf.table import RFRecord
from s7core.spec import kernel_span


@dataclass(frozen=True)
class Step:
    """One formula: what it computes, the formula in symbols, the numbers put in, and the result."""

    what: str  # "RF out"
    formula: str  # "RF in + (k - 1) x d x jump in"
    numbers: str  # "5 + (3 - 1) x 2 x 2"
    result: str  # "13"
    meaning: str  # one sentence in words


@dataclass(frozen=True)
class LayerArithmetic:
    """The RF arithmetic of one row of the RF table."""

    name: str
    layer: str
    steps: tuple[Step, ...]

    def to_dict(self) -> dict:
        """Plain data, ready for JSON."""
        return asdict(self)


def _num(value: float) -> str:
    """A number as a person writes it: 3, 1.5, -0.5."""
    return f"{value:g}"


def layer_arithmetic(records: list[RFRecord], index: int) -> LayerArithmetic:
    """The formulas of RF table row `index`, with that row's numbers (row 0, the input, has none to show)."""
    if not 1 <= index < len(records):
        raise UserError(f"row {index} is not a layer of the RF table: pick one from 1 to {len(records) - 1}")
    r, prev = records[index], records[index - 1]
    k, d, s, p, j = r.kernel, r.dilation, r.stride, r.padding, r.jump_in
    span = kernel_span(k, d)
    steps = (
        Step(
            "RF out",
            "RF in + (k - 1) x d x jump in",
            f"{prev.rf} + ({k} - 1) x {d} x {j}",
            str(r.rf),
            f"{k} taps {d} unit{'s' if d != 1 else ''} apart, on units {j} input pixel{'s' if j != 1 else ''} "
            f"apart, widen the RF by {(span - 1) * j}: a unit here sees {r.rf} input pixels across",
        ),
        Step(
            "jump out",
            "jump in x s",
            f"{j} x {s}",
            str(r.jump_out),
            f"neighbouring output units sit {r.jump_out} input pixel{'s' if r.jump_out != 1 else ''} apart",
        ),
        Step(
            "size out",
            "floor((in + 2p - (k - 1) x d - 1) / s) + 1",
            f"floor(({r.size_in} + 2 x {p} - ({k} - 1) x {d} - 1) / {s}) + 1",
            str(r.size_out),
            f"the output is {r.size_out}x{r.size_out} units",
        ),
        Step(
            "start out",
            "start in + ((k - 1) x d / 2 - p) x jump in",
            f"{_num(prev.start)} + (({k} - 1) x {d} / 2 - {p}) x {j}",
            _num(r.start),
            "the first (top-left) unit is centred on input pixel "
            f"{_num(r.start)}" + (" (on the padding)" if r.start < 0 else ""),
        ),
    )
    return LayerArithmetic(r.name, r.layer, steps)
