"""RF tables of specs against hand-worked numbers and the reference table; unit windows; the centre unit."""

import csv

import pytest
from rf_cases import HAND_WORKED, REFERENCE, SPEC_B

from s7core.errors import UserError
from s7core.rf.table import centre_unit, centre_window, global_rf, rf_table, unit_window
from s7core.spec import get_preset, kernel_span, validate


def test_kernel_span_counts_the_gaps_dilation_opens():
    assert [kernel_span(k) for k in (1, 2, 3, 5)] == [1, 2, 3, 5]
    assert kernel_span(3, 2) == 5  # taps at 0, 2, 4
    assert kernel_span(3, 20) == 41
    assert kernel_span(2, 3) == 4  # taps at 0 and 3
    assert kernel_span(1, 7) == 1  # one tap has no gaps


def test_centre_unit_is_the_middle_or_the_upper_left_of_the_middle_two():
    assert [centre_unit(n) for n in (1, 2, 3, 4, 5, 32)] == [0, 0, 1, 1, 2, 15]


@pytest.mark.parametrize("spec, table", HAND_WORKED)
def test_hand_worked_tables(spec, table):
    spec = validate(spec)
    assert [(r.size_out, r.jump_out, r.rf, r.start) for r in rf_table(spec)] == table
    assert global_rf(spec) == table[-1][2]


def test_hand_worked_windows():
    records = rf_table(validate(SPEC_B))
    out = unit_window(records[-1], 0, 0, 8)
    assert (out.top, out.left, out.bottom, out.right) == (-3, -3, 9, 9)
    assert (out.clipped_top, out.clipped_left, out.clipped_bottom, out.clipped_right) == (0, 0, 7, 7)
    assert out.padding_fraction == pytest.approx(1 - 64 / 169)
    pool = records[4]  # avgpool: 2x2 units, jump 4, rf 9, start 1 -> unit (1, 0) centred on row 5, col 1
    win = unit_window(pool, 1, 0, 8)
    assert (win.top, win.left, win.bottom, win.right) == (1, -3, 9, 5)
    assert (win.clipped_top, win.clipped_left, win.clipped_bottom, win.clipped_right) == (1, 0, 7, 5)
    assert win.padding_fraction == pytest.approx(1 - 7 * 6 / 81)
    inner = unit_window(records[1], 1, 1, 8)  # conv s2 p1: unit 1 centred on pixel 2, rows 1..3
    assert (inner.top, inner.bottom, inner.padding_fraction) == (1, 3, 0.0)
    with pytest.raises(UserError, match="outside the 2x2 output"):
        unit_window(pool, 2, 0, 8)


def test_centre_window_is_the_window_of_the_centre_unit():
    records = rf_table(validate(SPEC_B))
    pool = centre_window(records[4], 8)  # a 2x2 output: its centre unit is (0, 0), rows -3..5
    assert (pool.row, pool.col, pool.top, pool.left, pool.bottom, pool.right) == (0, 0, -3, -3, 5, 5)
    conv = centre_window(records[1], 8)  # a 4x4 output: unit (1, 1), rows 1..3
    assert conv == unit_window(records[1], 1, 1, 8) and (conv.top, conv.bottom) == (1, 3)


def test_seed_spec_reproduces_reference_table():
    with REFERENCE.open() as f:
        rows = list(csv.DictReader(f))
    fields = ("kernel", "dilation", "padding", "stride", "jump_out", "size_out", "rf")
    want = [(row["layer"], *(int(row[k]) if row[k] else None for k in fields)) for row in rows]
    assert [(r.layer, *(getattr(r, k) for k in fields)) for r in rf_table(get_preset("seed"))] == want
