"""Where and at what precision a model runs: the device a setting names, and the autocast context for it.

Training and evaluation both go through `autocast`, so a precision setting means the same thing in each.
Precision 'auto' on the CPU is decided by measuring (`choose_precision`): bf16 is much faster than fp32 on
some processors and networks and slower on others. The measured speeds are kept in a small cache, keyed by
processor, threads, torch and network, so one machine always makes the same choice for the same network
and a run's result does not hinge on how busy the machine was when it started.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from s7core.errors import UserError
from s7core.files import atomic_write, cache_root

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

    This is the choice made without measuring; the trainer measures on the CPU (`choose_precision`), where
    which one is faster depends on the processor and on the network.
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


BF16_MARGIN = 1.05  # bf16 must train this much faster than fp32 to be chosen: fp32 is the more exact of the two
PRECISION_PROBE_STEPS = 3  # timed training steps per candidate precision, after one untimed warm-up step
PRECISION_PROBE_BATCH = 128  # images per probe step at most: enough to rank the two, cheap on a slow CPU
PRECISION_CACHE_FILE = "precision.json"  # under the cache root: measured speeds by machine and network
PRECISION_CACHE_ENTRIES = 200


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a run trains in, and the training speeds (images/s) measured to choose it, if any."""

    precision: str
    measured: dict[str, float] = field(default_factory=dict)  # candidate -> images per second

    def describe(self) -> str:
        """One line for the log: 'bf16 (measured: fp32 1,234 img/s, bf16 2,345 img/s)'."""
        if not self.measured:
            return self.precision
        speeds = ", ".join(f"{name} {rate:,.0f} img/s" for name, rate in self.measured.items())
        return f"{self.precision} (measured: {speeds})"


def choose_precision(
    precision: str,
    device: torch.device,
    model: nn.Module,
    input_shape: tuple[int, int, int],
    batch_size: int,
    channels_last: bool,
) -> PrecisionChoice:
    """The precision to train `model` in: as set, or for 'auto' on the CPU the faster of fp32 and bf16.

    The measurement trains a copy of the model on random images for a few steps, with its own random
    generator, so the run itself (its weights, its random streams) is the same whichever way it goes.
    """
    if precision != "auto" or device.type != "cpu":
        return PrecisionChoice(resolve_precision(precision, device))
    shape = (min(batch_size, PRECISION_PROBE_BATCH), *input_shape)
    key = _probe_key(model, shape, channels_last)
    measured = _read_probe_cache().get(key)
    if not _is_measurement(measured):
        measured = {
            name: round(_training_rate(model, name, device, shape, channels_last), 1) for name in ("fp32", "bf16")
        }
        _remember_probe(key, measured)
    faster = measured["bf16"] > BF16_MARGIN * measured["fp32"]
    return PrecisionChoice("bf16" if faster else "fp32", measured)


def _is_measurement(value: object) -> bool:
    """Whether a cache entry holds a positive speed for each candidate."""
    return (
        isinstance(value, dict)
        and set(value) == {"fp32", "bf16"}
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value.values())
    )


def precision_cache_path() -> Path:
    """Where the measured speeds are kept, so the same network on the same machine always gets the same choice."""
    return cache_root() / PRECISION_CACHE_FILE


def _probe_key(model: nn.Module, shape: tuple[int, ...], channels_last: bool) -> str:
    """This machine (processor, threads, torch) and this network and probe: what the measured speeds depend on."""
    net = hashlib.sha256(repr(model).encode()).hexdigest()[:16]
    layout = "channels_last" if channels_last else "contiguous"
    return f"{_processor()} | torch {torch.__version__} | {torch.get_num_threads()} threads | {net} {shape} {layout}"


def _processor() -> str:
    """The processor's model name, as Linux reports it (platform.processor() elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _read_probe_cache() -> dict:
    """The cache of measured speeds; an unreadable or foreign file counts as empty (it is only a cache)."""
    try:
        data = json.loads(precision_cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _remember_probe(key: str, measured: dict[str, float]) -> None:
    """Add one measurement to the cache (atomically; the newest PRECISION_CACHE_ENTRIES kept)."""
    entries = _read_probe_cache()
    entries.pop(key, None)
    entries[key] = measured
    path = precision_cache_path()
    with contextlib.suppress(OSError):  # a read-only home only costs a measurement next time
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, binary=False) as f:
            json.dump(dict(list(entries.items())[-PRECISION_CACHE_ENTRIES:]), f, indent=1)


def _training_rate(
    model: nn.Module, precision: str, device: torch.device, shape: tuple[int, ...], channels_last: bool
) -> float:
    """Images per second of forward + backward passes of a copy of `model` at `precision`, median of a few steps."""
    probe = copy.deepcopy(model).train()
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(*shape, generator=generator, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for step in range(PRECISION_PROBE_STEPS + 1):
        start = time.perf_counter()
        with autocast(device, precision):
            loss = probe(x).float().square().mean()
        loss.backward()
        if step:  # the first step warms the kernels up
            times.append(time.perf_counter() - start)
    return shape[0] / statistics.median(times)
