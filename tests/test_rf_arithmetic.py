"""The RF arithmetic of one layer: every formula, with its numbers put in, gives the RF table's own value."""

from __future__ import annotations

import math

import pytest

from s7core.errors import UserError
from s7core.rf.arithmetic import layer_arithmetic
from s7core.rf.table import rf_table
from s7core.spec import PRESETS, get_preset

COLUMN = {"RF out": "rf", "jump out": "jump_out", "size out": "size_out", "start out": "start"}


def _evaluate(numbers: str) -> float:
    """The value of a line such as 'floor((14 + 2 x 2 - (3 - 1) x 2 - 1) / 1) + 1'."""
    return eval(numbers.replace("x", "*").replace("floor", "math.floor"), {"math": math})  # noqa: S307


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_line_of_each_layer_computes_the_table_value(preset: str) -> None:
    records = rf_table(get_preset(preset))
    for index in range(1, len(records)):
        for step in layer_arithmetic(records, index).steps:
            expected = getattr(records[index], COLUMN[step.what])
            assert _evaluate(step.numbers) == pytest.approx(expected) == pytest.approx(float(step.result))


def test_the_reference_nets_first_dilated_layer_reads_as_worked_by_hand() -> None:
    records = rf_table(get_preset("seed"))
    index = next(i for i, r in enumerate(records) if r.name == "7.depthwise")
    rf, jump, _, start = layer_arithmetic(records, index).steps
    assert (rf.numbers, rf.result) == ("6 + (3 - 1) x 2 x 2", "14")
    assert (jump.numbers, jump.result) == ("2 x 1", "2")
    assert start.formula == "start in + ((k - 1) x d / 2 - p) x jump in"


def test_the_input_row_has_no_arithmetic() -> None:
    with pytest.raises(UserError, match="from 1 to"):
        layer_arithmetic(rf_table(get_preset("tiny")), 0)
