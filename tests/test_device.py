"""The device a setting names and the autocast context training and evaluation share."""

import pytest
import torch

from s7core.device import DeviceError, autocast, resolve_device, resolve_precision
from s7core.errors import UserError

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
