"""The effective RF: inside the theoretical window, any unit, and a shared model left untouched by threads."""

import threading

import numpy as np
import pytest
import torch
from rf_cases import SPEC_A
from torch import nn

from s7core.errors import UserError
from s7core.model import build_model
from s7core.rf.effective import effective_rf
from s7core.rf.table import centre_window, rf_table, unit_window
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


def test_effective_rf_of_any_unit_fills_that_units_window_on_the_image():
    torch.manual_seed(0)
    spec = get_preset("tiny")
    model, images = build_model(spec), torch.randn(4, 3, 32, 32)
    record = next(r for r in rf_table(spec) if r.name == "9.pointwise")  # 8x8 units, rf 17, jump 4
    for unit in [(0, 0), (7, 0), (2, 5)]:
        win = unit_window(record, *unit, 32)
        erf = effective_rf(model, images, "layers.9", unit)
        assert support(erf) == (win.clipped_top, win.clipped_left, win.clipped_bottom, win.clipped_right), unit
    assert support(effective_rf(model, images, "layers.9", (0, 0))) == (0, 0, 8, 8)  # rows -8..8, half on padding
    assert np.array_equal(effective_rf(model, images, "layers.9"), effective_rf(model, images, "layers.9", (3, 3)))


def test_a_unit_outside_the_map_or_on_a_vector_is_a_user_error():
    model, images = build_model(get_preset("tiny")), torch.randn(1, 3, 32, 32)
    with pytest.raises(UserError, match=r"unit \(8, 0\) is outside the 8x8 output of layers.9: use a row from 0 to 7"):
        effective_rf(model, images, "layers.9", (8, 0))
    with pytest.raises(UserError, match="unit must be two whole numbers"):
        effective_rf(model, images, "layers.9", (1.5, 2))
    with pytest.raises(UserError, match="is not a map .*leave unit unset"):
        effective_rf(model, images, None, (0, 0))
    with pytest.raises(UserError, match="no module named 'nope'"):
        effective_rf(model, images, "nope")


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


CALLS = [("layers.3", None), ("layers.9", (0, 7)), ("layers.12", None), (None, None)]


def test_threads_sharing_one_model_get_the_sequential_maps_and_leave_it_untouched(monkeypatch):
    torch.manual_seed(2)
    model = build_model(get_preset("tiny")).train()  # train mode: a flip to eval mid-forward would show in the maps
    images = torch.randn(2, 3, 32, 32)
    want = [effective_rf(model, images, layer, unit) for layer, unit in CALLS]
    own = set(model.modules())
    touched = []  # every module a hook was put on, or a flag or requires_grad was set on

    def watch(method):
        original = getattr(nn.Module, method)

        def wrapper(self, *args, **kwargs):
            touched.append((method, self))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(nn.Module, method, wrapper)

    for method in ("register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook", "train"):
        watch(method)
    watch("requires_grad_")
    barrier, errors, mismatches = threading.Barrier(2), [], []

    def work():
        barrier.wait()
        try:
            for _ in range(6):
                for (layer, unit), expected in zip(CALLS, want, strict=True):
                    if not np.allclose(effective_rf(model, images, layer, unit), expected, rtol=0, atol=1e-6):
                        mismatches.append((layer, unit))
        except Exception as err:  # noqa: BLE001 - any error in a thread is what this test looks for
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and mismatches == []
    assert [(method, m) for method, m in touched if m in own] == []
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
