"""Students computing at once on one cached model never see each other's tensors or an error.

The pages keep one model per network or run for every browser session (st.cache_resource), and Streamlit runs
each session's script in its own thread. Grad-CAM and the effective RF must therefore leave that model alone.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from s7core.gradcam import grad_cam, gradcam_layers
from s7core.model import build_model
from s7core.names import module_name
from s7core.rf.effective import effective_rf
from s7core.spec import get_preset
from s7core.summary import summarize_module

ROUNDS = 12  # per thread; each round is one Grad-CAM or effective-RF call


def shared_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(get_preset("tiny")).eval()
    for m in model.modules():  # trained-looking batch-norm statistics, so eval and train modes really differ
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def _state(model: torch.nn.Module) -> tuple:
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())
    flags = tuple(m.training for m in model.modules())
    grads = tuple((p.requires_grad, p.grad is None) for p in model.parameters())
    return hooks, flags, grads


def test_grad_cam_and_effective_rf_from_two_threads_match_their_results_alone() -> None:
    model = shared_model()
    before = _state(model)
    layers = gradcam_layers(model)
    generator = torch.Generator().manual_seed(1)
    jobs = {
        "cam-early": lambda x: grad_cam(model, x, layers[0]),
        "cam-late": lambda x: grad_cam(model, x, layers[-1]),
        "erf": lambda x: effective_rf(model, x, module_name(6)),
    }
    inputs = {name: torch.randn(3, 3, 32, 32, generator=generator) for name in jobs}
    alone = {name: job(inputs[name]) for name, job in jobs.items()}
    results: dict[str, list[np.ndarray]] = {name: [] for name in jobs}
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def work(name: str) -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                results[name].append(jobs[name](inputs[name]))
        except BaseException as err:  # a thread's error must fail the test, not vanish
            errors.append(err)

    threads = [threading.Thread(target=work, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, repr(errors[0])
    for name, got in results.items():
        assert len(got) == ROUNDS
        for result in got:
            np.testing.assert_allclose(result, alone[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert _state(model) == before  # no hook left, no flag flipped, no gradient kept


def test_the_shared_model_keeps_its_train_mode_and_its_hooks() -> None:
    model = shared_model().train()
    handle = model.register_forward_hook(lambda *_: None)  # a hook of the model's owner stays its only one
    before = _state(model)
    x = torch.randn(2, 3, 32, 32)
    grad_cam(model, x, gradcam_layers(model)[-1])
    effective_rf(model, x, module_name(3))
    assert _state(model) == before and model.training
    assert list(model._forward_hooks) == [handle.id]
    handle.remove()


def test_a_parameter_table_in_one_thread_never_reaches_another_threads_backward_pass() -> None:
    """A parameter table counts FLOPs while other sessions run Grad-CAM: its counting must stay in its thread."""
    model = shared_model()
    x = torch.randn(2, 3, 32, 32)
    layer = gradcam_layers(model)[-1]
    expected = grad_cam(model, x, layer), effective_rf(model, x, module_name(6))
    tables, cams, errors = [], [], []
    done = threading.Event()

    def tables_job() -> None:
        try:
            while not done.is_set():
                with torch.device("meta"):
                    meta = build_model(get_preset("tiny"))
                tables.append(summarize_module(meta, (3, 32, 32)).mult_adds)
        except BaseException as err:  # a thread's error must fail the test
            errors.append(err)

    def cams_job() -> None:
        try:
            for _ in range(ROUNDS):
                cams.append((grad_cam(model, x, layer), effective_rf(model, x, module_name(6))))
        except BaseException as err:
            errors.append(err)
        finally:
            done.set()

    threads = [threading.Thread(target=tables_job), threading.Thread(target=cams_job)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, repr(errors[0])
    assert len(tables) >= 1 and len(set(tables)) == 1  # every table the same, however the threads interleaved
    for got in cams:
        for result, alone in zip(got, expected, strict=True):
            np.testing.assert_allclose(result, alone, rtol=1e-5, atol=1e-6)
