"""An edit that breaks a later row is reported at the row the student changed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from s7core.edits import blame_edit, changed_rows
from s7core.spec import SpecError, get_preset, layer, validate


def _error(spec) -> SpecError:
    with pytest.raises(SpecError) as caught:
        validate(spec)
    return caught.value


def test_a_stride_that_breaks_the_pool_names_the_edited_row_and_the_shapes() -> None:
    seed = get_preset("seed")
    layers = list(seed.layers)
    layers[3] = replace(layers[3], stride=9)
    edited = seed.with_layers(layers)
    message = blame_edit(seed, edited, _error(edited))
    assert message == (
        "Your edit of row 3 (conv: stride 9) makes its output 128x4x4 (it was 128x28x28); "
        "because of that, row 20 (avgpool) fails."
    )


def test_no_blame_when_the_changed_row_is_the_failing_one() -> None:
    seed = get_preset("seed")
    layers = list(seed.layers)
    layers[20] = replace(layers[20], kernel=40)
    edited = seed.with_layers(layers)
    assert blame_edit(seed, edited, _error(edited)) is None


def test_an_inserted_row_is_the_changed_one() -> None:
    seed = get_preset("seed")
    layers = list(seed.layers)
    layers.insert(2, layer("maxpool", kernel=4))
    assert changed_rows(list(seed.layers), layers) == [2]
    edited = seed.with_layers(layers)
    message = blame_edit(seed, edited, _error(edited))
    assert message.startswith("Your edit of row 2 (maxpool: maxpool 4x4) makes its output 128x7x7;")
