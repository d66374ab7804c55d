"""The device a setting names and the autocast context training and evaluation share."""

import pytest
import torch

import s7core.device as device_module
from s7core.config import BF16_DEPTHWISE_FP32
from s7core.device import (
    BF16_MARGIN,
    DeviceError,
    autocast,
    choose_precision,
    precision_cache_path,
    precision_candidates,
    resolve_device,
    resolve_precision,
)
from s7core.errors import UserError
from s7core.model import build_model
from s7core.spec import NetworkSpec, bn, conv, get_preset, layer, relu, sepconv, validate

CPU = torch.device("cpu")


def test_auto_device_is_cuda_only_when_there_is_one():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == CPU


def test_missing_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="no CUDA GPU is available — use device 'auto' or 'cpu'") as err:
        resolve_device("cuda:1")
    assert isinstance(err.value, UserError)


def test_auto_precision_is_fp32_on_the_cpu_and_others_stay():
    assert resolve_precision("auto", CPU) == "fp32"
    for precision in ("fp32", "bf16", "fp16"):
        assert resolve_precision(precision, CPU) == precision


def test_auto_precision_is_bf16_on_a_gpu_that_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"


def test_autocast_runs_a_matmul_in_the_precision_asked_for():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast(CPU, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (a @ b).dtype == torch.float32


# ---------------------------------------------------------------- precision 'auto' on the CPU is measured


def _net() -> torch.nn.Module:
    plain = (conv(16, 3, 1, stride=2), bn(), relu(), conv(32, 3, 1), bn(), relu(), layer("gap"),
             conv(10, 1, bias=True), layer("flatten"))  # fmt: skip
    return build_model(validate(NetworkSpec(plain, "plain")))  # no depthwise conv: fp32 and bf16 the candidates


def _depthwise_net() -> torch.nn.Module:
    return build_model(get_preset("tiny"))  # separable convs: bf16-dw32 is a candidate too


def _fake_rates(monkeypatch, rates: dict[str, float]) -> list[str]:
    """Replace the timing by fixed rates; returns the list of precisions measured, in order."""
    calls: list[str] = []

    def measure(model, candidates, device, shape, channels_last):
        calls.extend(candidates)
        return {precision: rates[precision] for precision in candidates}

    monkeypatch.setattr(device_module, "_training_rates", measure)
    return calls


def test_a_set_precision_is_not_measured(monkeypatch):
    calls = _fake_rates(monkeypatch, {"fp32": 1.0, "bf16": 9.0})
    for precision in ("fp32", "bf16"):
        choice = choose_precision(precision, CPU, _net(), (3, 32, 32), 64, True)
        assert choice.precision == precision and choice.measured == {}
    assert calls == []


@pytest.mark.parametrize(
    ("bf16_rate", "chosen"), [(100.0 * BF16_MARGIN + 1, "bf16"), (100.0 * BF16_MARGIN - 1, "fp32"), (50.0, "fp32")]
)
def test_auto_takes_bf16_only_when_clearly_faster(monkeypatch, bf16_rate, chosen):
    _fake_rates(monkeypatch, {"fp32": 100.0, "bf16": bf16_rate})
    choice = choose_precision("auto", CPU, _net(), (3, 32, 32), 64, True)
    assert choice.precision == chosen
    assert choice.measured == {"fp32": 100.0, "bf16": round(bf16_rate, 1)}
    assert chosen in choice.describe() and "fp32 100 img/s" in choice.describe()


DW = BF16_DEPTHWISE_FP32


@pytest.mark.parametrize(
    ("rates", "chosen"),
    [
        ({"fp32": 100.0, DW: 300.0, "bf16": 120.0}, DW),  # bf16 depthwise kernels slow: keep them in fp32
        ({"fp32": 100.0, DW: 300.0, "bf16": 300.0 * BF16_MARGIN + 1}, "bf16"),  # all-bf16 clearly faster still
        ({"fp32": 100.0, DW: 300.0, "bf16": 300.0 * BF16_MARGIN - 1}, DW),  # not clearly: the more exact one
        ({"fp32": 100.0, DW: 100.0 * BF16_MARGIN - 1, "bf16": 100.0 * BF16_MARGIN - 1}, "fp32"),
        ({"fp32": 100.0, DW: 90.0, "bf16": 200.0}, "bf16"),
    ],
)
def test_a_net_with_depthwise_convs_also_measures_them_kept_in_fp32(monkeypatch, rates, chosen):
    calls = _fake_rates(monkeypatch, rates)
    choice = choose_precision("auto", CPU, _depthwise_net(), (3, 32, 32), 64, True)
    assert calls == ["fp32", DW, "bf16"] and choice.measured == rates and choice.precision == chosen
    assert f"{DW} {rates[DW]:,.0f} img/s" in choice.describe()


def test_only_nets_with_depthwise_convs_have_the_third_candidate():
    assert precision_candidates(_net()) == ("fp32", "bf16")
    assert precision_candidates(_depthwise_net()) == ("fp32", DW, "bf16")
    layers = (conv(8, 3, 1), conv(8, 3, 1, groups=2), layer("gap"), conv(10, 1), layer("flatten"))
    grouped = validate(NetworkSpec(layers, "grouped"))
    assert precision_candidates(build_model(grouped)) == ("fp32", "bf16")  # grouped, not depthwise


def _output_dtypes(model: torch.nn.Module, x: torch.Tensor, precision: str) -> dict[str, torch.dtype]:
    """The dtype of every conv's output in one forward pass under `autocast(precision)`."""
    seen: dict[str, torch.dtype] = {}
    hooks = [
        m.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, out.dtype))
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with autocast(CPU, precision):
        out = model(x)
    for hook in hooks:
        hook.remove()
    seen["logits"] = out.dtype
    return seen


def test_bf16_dw32_runs_the_depthwise_convs_in_fp32_and_the_rest_in_bf16():
    spec = validate(
        NetworkSpec(
            (conv(8, 3, 1), bn(), relu(), conv(8, 3, 1, groups=8), bn(), relu(), sepconv(16, 3, 1), bn(), relu(),
             layer("gap"), conv(10, 1, bias=True), layer("flatten")),
            "dw",
        )
    )  # fmt: skip
    model, x = build_model(spec), torch.randn(2, 3, 16, 16)
    depthwise = {"layers.3", "layers.6.depthwise"}
    mixed = _output_dtypes(model, x, DW)
    assert {name for name, dtype in mixed.items() if dtype == torch.float32} == depthwise
    assert set(_output_dtypes(model, x, "bf16").values()) == {torch.bfloat16}
    assert set(_output_dtypes(model, x, "fp32").values()) == {torch.float32}
    with autocast(CPU, DW):
        pass
    assert set(_output_dtypes(model, x, "bf16").values()) == {torch.bfloat16}  # the context ends with the block
    with autocast(CPU, DW):
        assert model(x).dtype == torch.bfloat16  # training and scoring in it go through the same forward
    with autocast(CPU, DW):
        loss = model(x).float().square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters())


def test_the_measurement_is_kept_so_the_same_machine_chooses_the_same(monkeypatch):
    calls = _fake_rates(monkeypatch, {"fp32": 100.0, "bf16": 200.0})
    first = choose_precision("auto", CPU, _net(), (3, 32, 32), 64, True)
    second = choose_precision("auto", CPU, _net(), (3, 32, 32), 64, True)
    assert first == second and calls == ["fp32", "bf16"]  # measured once, then read back
    choose_precision("auto", CPU, _net(), (3, 32, 32), 64, False)  # another layout is another measurement
    assert calls == ["fp32", "bf16"] * 2
    precision_cache_path().write_text("{ not json")  # a damaged cache is only a cache: measure again
    assert choose_precision("auto", CPU, _net(), (3, 32, 32), 64, True).precision == "bf16"


def test_a_net_with_a_frozen_layer_is_measured_on_its_own(monkeypatch):
    """A frozen layer skips its share of the backward pass, so it trains at another speed."""
    calls = _fake_rates(monkeypatch, {"fp32": 100.0, "bf16": 200.0})
    choose_precision("auto", CPU, _net(), (3, 32, 32), 64, True)
    frozen = _net()
    next(frozen.parameters()).requires_grad_(False)
    choose_precision("auto", CPU, frozen, (3, 32, 32), 64, True)
    choose_precision("auto", CPU, _net(), (3, 32, 32), 64, True)  # the unfrozen one is read back
    assert calls == ["fp32", "bf16"] * 2


def test_measuring_leaves_the_model_and_the_random_streams_alone():
    model = _net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    choice = choose_precision("auto", CPU, model, (3, 32, 32), 8, False)
    assert set(choice.measured) == {"fp32", "bf16"} and all(v > 0 for v in choice.measured.values())
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and model.training
