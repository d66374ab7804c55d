"""The reachable-pixel map of a unit, held against a gradient measurement (s7core.rf.oracle.measured_support)."""

from __future__ import annotations

import numpy as np
import pytest

from s7core.errors import UserError
from s7core.model import build_model
from s7core.names import module_name, position_of
from s7core.rf.oracle import measured_support
from s7core.rf.reach import HOLE, PADDING, REACHED, gridding_example, measured_reach, reachable_pixels
from s7core.rf.table import centre_unit, rf_table, unit_window
from s7core.spec import PRESETS, get_preset


def _units(record) -> list[tuple[int, int]]:
    """A corner, the centre and the opposite edge: where padding and holes differ most."""
    last, mid = record.size_out - 1, centre_unit(record.size_out)
    return sorted({(0, 0), (mid, mid), (last, 0)})


@pytest.mark.parametrize("preset", ["tiny", "fast", "best"])
def test_reach_matches_the_gradient_of_every_layer(preset: str) -> None:
    spec = get_preset(preset)
    records, model = rf_table(spec), build_model(spec)
    for index in range(1, len(records)):
        record = records[index]
        layer = module_name(*position_of(record.name))
        for row, col in _units(record):
            reach = reachable_pixels(records, index, row, col)
            measured = measured_support(model, spec.input_shape, layer, (row, col))
            assert np.array_equal(reach.image_mask(32), measured), (preset, record.name, row, col)


def test_reach_of_the_reference_net_matches_the_gradient_at_its_dilated_layers() -> None:
    spec = get_preset("seed")
    records, model = rf_table(spec), build_model(spec)
    for index, record in enumerate(records):
        if record.dilation == 2:
            reach = reachable_pixels(records, index, 0, 3)
            measured = measured_support(model, spec.input_shape, module_name(*position_of(record.name)), (0, 3))
            assert np.array_equal(reach.image_mask(32), measured), record.name


def test_stacked_dilated_convs_leave_holes_that_the_gradient_confirms() -> None:
    spec = gridding_example()
    records = rf_table(spec)
    centre = centre_unit(records[3].size_out)
    reach = reachable_pixels(records, 3, centre, centre)
    assert reach.codes.shape == (13, 13) and reach.reached == 7 * 7 and reach.holes == 13 * 13 - 49
    assert (reach.codes[::2, ::2] == REACHED).all() and (reach.codes[1::2, :] == HOLE).all()
    measured = measured_support(build_model(spec), spec.input_shape, module_name(2), (centre, centre))
    assert np.array_equal(reach.image_mask(32), measured)


def test_a_corner_unit_marks_the_padding_and_spans_its_rf_box() -> None:
    records = rf_table(get_preset("tiny"))
    reach = reachable_pixels(records, 3, 0, 0)
    box = unit_window(records[3], 0, 0, 32)
    assert (reach.top, reach.left) == (box.top, box.left) and reach.codes.shape == (records[3].rf,) * 2
    assert reach.padding > 0 and (reach.codes[: -box.top, :] != REACHED).all()  # rows above the image
    assert reach.codes[-1, -1] == REACHED


def test_a_unit_outside_the_layer_or_a_bad_row_is_refused() -> None:
    records = rf_table(get_preset("tiny"))
    with pytest.raises(UserError, match="outside"):
        reachable_pixels(records, 1, 99, 0)
    with pytest.raises(UserError, match="pick one from 1"):
        reachable_pixels(records, 0, 0, 0)


def test_every_preset_reaches_its_whole_image_from_its_last_layer() -> None:
    for name in PRESETS:
        records = rf_table(get_preset(name))
        reach = reachable_pixels(records, len(records) - 1, 0, 0)
        assert reach.image_mask(32).all(), name
        assert PADDING not in reach.codes or reach.padding == reach.codes.size - 32 * 32


@pytest.mark.parametrize("preset", ["seed", "gridding"])
def test_the_measured_reach_of_a_module_is_the_exact_reach_of_its_spec(preset: str) -> None:
    """measured_reach (any nn.Module, used for torchvision classifiers) agrees with the spec arithmetic."""
    spec = gridding_example() if preset == "gridding" else get_preset(preset)
    records, model = rf_table(spec), build_model(spec)
    for index in (3, len(records) // 2, len(records) - 2):
        record = records[index]
        for row, col in _units(record):
            exact = reachable_pixels(records, index, row, col)
            layer = module_name(*position_of(record.name))
            measured = measured_reach(model, spec.input_shape, layer, (record, record), row, col)
            assert (measured.top, measured.left, measured.reached) == (exact.top, exact.left, exact.reached)
            assert np.array_equal(measured.codes == REACHED, exact.codes == REACHED), (preset, record.name, row, col)
            # a module's taps are unknown, so its whole box off the image counts as padding; on the image, the same
            rows, cols = np.indices(exact.codes.shape)
            side = spec.input_shape[1]
            on_image = (
                (0 <= rows + exact.top)
                & (rows + exact.top < side)
                & (0 <= cols + exact.left)
                & (cols + exact.left < side)
            )
            assert np.array_equal((measured.codes == HOLE) & on_image, (exact.codes == HOLE) & on_image)
