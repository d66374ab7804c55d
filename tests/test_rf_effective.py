"""The effective RF: inside the theoretical window of its unit, and the model left as it was."""

import numpy as np
import pytest
import torch
from rf_cases import SPEC_A

from s7core.errors import UserError
from s7core.model import build_model
from s7core.rf.effective import effective_rf
from s7core.rf.table import centre_window
from s7core.rf.trace import rf_table_from_module
from s7core.spec import get_preset, validate


def support(erf: np.ndarray) -> tuple[int, int, int, int]:
    """The box (top, left, bottom, right) of the pixels with a non-zero effective RF."""
    rows, cols = np.nonzero(erf)
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def test_effective_rf_lies_inside_the_theoretical_window_and_peaks_near_its_centre():
    torch.manual_seed(0)
    spec = get_preset("tiny")
    model = build_model(spec)
    record = next(r for r in rf_table_from_module(model, spec.input_shape).records if r.name == "layers.9.pointwise")
    win = centre_window(record, 32)
    assert (win.top, win.bottom, win.padding_fraction) == (4, 20, 0.0)  # rf 17 around pixel 12
    erf = effective_rf(model, torch.randn(16, 3, 32, 32), "layers.9")
    assert erf.shape == (32, 32) and erf.max() == pytest.approx(1.0)
    assert support(erf) == (win.top, win.left, win.bottom, win.right)
    ys, xs = np.mgrid[:32, :32]
    centre = (win.top + win.bottom) / 2
    assert abs((erf * ys).sum() / erf.sum() - centre) < 1
    assert abs((erf * xs).sum() / erf.sum() - centre) < 1
    peak = np.unravel_index(erf.argmax(), erf.shape)
    assert max(abs(peak[0] - centre), abs(peak[1] - centre)) <= record.rf / 4


def test_effective_rf_of_the_class_scores_covers_the_global_window():
    torch.manual_seed(1)
    erf = effective_rf(build_model(validate(SPEC_A)), torch.randn(4, 3, 12, 12))
    assert erf.shape == (12, 12) and erf.max() == pytest.approx(1.0) and (erf > 0).all()
    with pytest.raises(UserError, match="shape"):
        effective_rf(build_model(validate(SPEC_A)), torch.randn(3, 12, 12))


def test_model_is_left_as_it_was():
    model = build_model(get_preset("tiny")).train()
    model.layers[1].eval()  # a mixed state must come back as it was
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # a caller's no_grad block must not stop the gradients it needs
        assert effective_rf(model, torch.randn(2, 3, 32, 32), "layers.3").max() == 1.0
    assert model.training and not model.layers[1].training and model.layers[2].training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
