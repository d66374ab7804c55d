"""Where and at what precision a model runs: the device a setting names, and the autocast context for it.

Training and evaluation both go through `autocast`, so a precision setting means the same thing in each.
Precision 'auto' on the CPU is decided by measuring (`choose_precision`): bf16 is much faster than fp32 on
some processors and networks and slower on others, and within one network the layer types differ: the dense
and pointwise convs gain from bf16 while depthwise convs can run slower in it than in fp32. So the candidates
are fp32, bf16, and bf16 with the depthwise convs kept in fp32 (precision 'bf16-dw32', for networks that have
depthwise convs); the layers ask `depthwise_forward` to run a depthwise conv in the precision in force.
The measured speeds are kept in a small cache, keyed by processor, threads, torch and network, so one
machine always makes the same choice for the same network and a run's result does not hinge on how busy the
machine was when it started.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import hashlib
import json
import platform
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from s7core.config import BF16_DEPTHWISE_FP32
from s7core.errors import UserError
from s7core.files import atomic_write, cache_root

# precisions run under torch.autocast, and the dtype each casts the convs and matmuls to
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, BF16_DEPTHWISE_FP32: torch.bfloat16, "fp16": torch.float16}
DEPTHWISE_IN_FP32 = frozenset({BF16_DEPTHWISE_FP32})  # precisions whose depthwise convs run in fp32
_depthwise_fp32 = contextvars.ContextVar("s7core_depthwise_fp32", default=False)  # set by `autocast`


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


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Mixed-precision context for bf16/bf16-dw32/fp16 on `device`, nothing for fp32."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        yield
        return
    token = _depthwise_fp32.set(precision in DEPTHWISE_IN_FP32)
    try:
        with torch.autocast(device.type, dtype=dtype):
            yield
    finally:
        _depthwise_fp32.reset(token)


def is_depthwise(module: nn.Module) -> bool:
    """Whether `module` is a depthwise conv: one filter per input channel (groups = in channels > 1)."""
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def has_depthwise(model: nn.Module) -> bool:
    """Whether any module of `model` is a depthwise conv (so that bf16-dw32 differs from bf16 for it)."""
    return any(is_depthwise(m) for m in model.modules())


def depthwise_forward(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`conv(x)` for a depthwise conv: in fp32 inside `autocast` of a precision that keeps depthwise convs in
    fp32 (bf16-dw32), else as the autocast in force says."""
    if _depthwise_fp32.get() and torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return conv(x.float())
    return conv(x)


BF16_MARGIN = 1.05  # a candidate must train this much faster than a more exact one to be chosen over it
PRECISION_PROBE_STEPS = 5  # timed training steps per candidate precision, after one untimed warm-up step
PRECISION_PROBE_BATCH = 128  # images per probe step at most: enough to rank the two, cheap on a slow CPU
PRECISION_CACHE_FILE = "precision.json"  # under the cache root: measured speeds by machine and network
MEASUREMENT_CACHE_ENTRIES = 200  # per cache file
# The version of s7core's own kernels that a measured speed was taken with (its depthwise conv paths, its
# optimizer step): raised whenever they change, so that a speed measured before is measured again.
KERNELS_VERSION = 2


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
    """The precision to train `model` in: as set, or for 'auto' on the CPU the fastest candidate.

    The candidates (`precision_candidates`), from the most exact to the least, are fp32, bf16-dw32 (when the
    network has depthwise convs) and bf16; each one is taken over the one chosen so far only when it trains at
    least BF16_MARGIN times faster. The measurement trains a copy of the model on random images for a few
    steps, with its own random generator, so the run itself (its weights, its random streams) is the same
    whichever way it goes.
    """
    if precision != "auto" or device.type != "cpu":
        return PrecisionChoice(resolve_precision(precision, device))
    shape = (min(batch_size, PRECISION_PROBE_BATCH), *input_shape)
    key = _probe_key(model, shape, channels_last)
    candidates = precision_candidates(model)
    measured = read_measurements(precision_cache_path()).get(key)
    if not _is_measurement(measured, candidates):
        rates = _training_rates(model, candidates, device, shape, channels_last)
        measured = {name: round(rates[name], 1) for name in candidates}
        remember_measurement(precision_cache_path(), key, measured)
    chosen = candidates[0]
    for name in candidates[1:]:
        if measured[name] > BF16_MARGIN * measured[chosen]:
            chosen = name
    return PrecisionChoice(chosen, {name: measured[name] for name in candidates})


def precision_candidates(model: nn.Module) -> tuple[str, ...]:
    """The precisions 'auto' measures on the CPU for `model`, the most exact first."""
    return ("fp32", BF16_DEPTHWISE_FP32, "bf16") if has_depthwise(model) else ("fp32", "bf16")


def _is_measurement(value: object, candidates: tuple[str, ...]) -> bool:
    """Whether a cache entry holds a positive speed for each candidate."""
    return (
        isinstance(value, dict)
        and set(value) == set(candidates)
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value.values())
    )


def precision_cache_path() -> Path:
    """Where the measured speeds are kept, so the same network on the same machine always gets the same choice."""
    return cache_root() / PRECISION_CACHE_FILE


def machine_key(device: torch.device) -> str:
    """What a measured speed depends on besides the network: the processor (and GPU), torch and threads."""
    gpu = f" | {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"{_processor()}{gpu} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def network_key(model: nn.Module) -> str:
    """The network as built, for the caches of measured speeds: a hash of its module tree (each module's class
    and settings), so a network that the code now builds differently is another network, measured afresh."""
    return hashlib.sha256(repr(model).encode()).hexdigest()[:16]


def measurement_key(device: torch.device, model: nn.Module, detail: str) -> str:
    """The key of a measured speed, in every cache of them: this machine, this network as built, and `detail`,
    what else that measurement depends on (its batch, layout, settings)."""
    return f"{machine_key(device)} | {network_key(model)} | kernels {KERNELS_VERSION} | {detail}"


def _probe_key(model: nn.Module, shape: tuple[int, ...], channels_last: bool) -> str:
    """The precision probe's key: this machine and network, the probe's shape and memory layout, and the
    frozen parameters, if any (a frozen layer skips its share of the backward pass)."""
    layout = "channels_last" if channels_last else "contiguous"
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    return measurement_key(
        torch.device("cpu"), model, f"probe {shape} {layout}" + (f" frozen {frozen}" if frozen else "")
    )


def _processor() -> str:
    """The processor's model name, as Linux reports it (platform.processor() elsewhere)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def read_measurements(path: Path) -> dict:
    """A cache file of measured speeds; an unreadable or foreign file counts as empty (it is only a cache)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember_measurement(path: Path, key: str, value: object) -> None:
    """Add one measurement to a cache file (atomically; the newest MEASUREMENT_CACHE_ENTRIES kept)."""
    entries = read_measurements(path)
    entries.pop(key, None)
    entries[key] = value
    with contextlib.suppress(OSError):  # a read-only home only costs a measurement next time
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, binary=False) as f:
            json.dump(dict(list(entries.items())[-MEASUREMENT_CACHE_ENTRIES:]), f, indent=1)


def _training_rates(
    model: nn.Module, candidates: tuple[str, ...], device: torch.device, shape: tuple[int, ...], channels_last: bool
) -> dict[str, float]:
    """Images per second of forward + backward passes of a copy of `model` at each candidate precision, the
    median of a few steps each. The candidates take turns, one step each, so that a machine whose speed drifts
    while it measures (a shared host) slows them alike instead of whichever came last."""
    probe = copy.deepcopy(model).train()
    generator = torch.Generator(device).manual_seed(0)
    x = torch.randn(*shape, generator=generator, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step(precision: str) -> float:
        start = time.perf_counter()
        with autocast(device, precision):
            loss = probe(x).float().square().mean()
        loss.backward()
        return time.perf_counter() - start

    for precision in candidates:  # the first step of each warms its kernels up
        step(precision)
    times: dict[str, list[float]] = {precision: [] for precision in candidates}
    for _ in range(PRECISION_PROBE_STEPS):
        for precision in candidates:
            times[precision].append(step(precision))
    return {precision: shape[0] / statistics.median(times[precision]) for precision in candidates}
