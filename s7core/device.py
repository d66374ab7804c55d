"""Where and at what precision a model runs: the device a setting names, and the autocast context for it.

Training and evaluation both go through `autocast`, so a precision setting means the same thing in each.
"""

from __future__ import annotations

import contextlib

import torch

from s7core.errors import UserError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # precisions run under torch.autocast


class DeviceError(UserError):
    """A device that was asked for but is not there."""


def resolve_device(name: str) -> torch.device:
    """The torch device of a `device` setting: 'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N'."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device '{name}' was asked for but no CUDA GPU is available — use device 'auto' or 'cpu'")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' becomes bf16 on a GPU that has it and fp32 on the CPU; any other precision stays as it is.

    fp32 is the CPU default because bf16 slows down nets made mostly of depthwise convolutions there
    (README, "Measured figures"; bench/throughput.py measures it).
    """
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context for bf16/fp16 on `device`, nothing for fp32."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
