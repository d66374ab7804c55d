"""The parameter table: one row per leaf module in forward order, as the torchsummary package prints it.

Every number comes from PyTorch itself: the model is built on the meta device (no memory,
no arithmetic), a (1, C, H, W) meta tensor is sent through it with forward hooks that read
each leaf's output shape, parameters are counted with `numel()`, and multiply-adds come from
torch's own FLOP formulas (`torch.utils.flop_counter.flop_registry`, FLOPs / 2; they count
convolutions and matrix products, so BN, pooling and activations show 0), applied per leaf by
a dispatch mode that sees only this thread's ops.

The memory lines follow torchsummary's estimate: 4 bytes a number; the input once; every
leaf's output twice (forward value and its gradient); the parameters once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from s7core.errors import UserError
from s7core.model import S7Net, build_model
from s7core.spec import NetworkSpec

BYTES_PER_NUMBER = 4  # float32
MB = 1024**2
RULE = "-" * 64
DOUBLE_RULE = "=" * 64


class SummaryError(UserError):
    """A module that does not run on the input shape it was given."""


@dataclass(frozen=True)
class SummaryRow:
    """One leaf module's call: its output shape, parameters and multiply-adds."""

    index: int  # 1-based, in the order the forward pass reached it
    name: str  # module path, e.g. "layers.7.depthwise"
    position: int | None  # the spec layer it belongs to (None for a module not built from a spec)
    type: str  # module class, e.g. "Conv2d"
    output_shape: tuple[int, ...]  # without the batch dimension
    params: int
    trainable: int
    mult_adds: int  # multiply-adds for one image

    @property
    def key(self) -> str:
        """torchsummary's row label, e.g. 'Conv2d-1'."""
        return f"{self.type}-{self.index}"


@dataclass(frozen=True)
class Summary:
    """The whole table plus torchsummary's totals and memory estimate (MB = 2**20 bytes)."""

    rows: tuple[SummaryRow, ...]
    total_params: int
    trainable_params: int
    mult_adds: int
    input_mb: float
    forward_backward_mb: float
    params_mb: float
    total_mb: float

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def to_dict(self) -> dict:
        """Plain JSON-ready data; output shapes become lists."""
        data = asdict(self)
        data["rows"] = [{**row, "output_shape": list(row["output_shape"])} for row in data["rows"]]
        data["non_trainable_params"] = self.non_trainable_params
        return data


# ---------------------------------------------------------------- computing


def _first_tensor(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (list, tuple)):
        for item in output:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _positions(model: nn.Module) -> dict[str, int]:
    """The spec layer of each module path, as the model tells it; empty for a model not built from a spec."""
    if not isinstance(model, S7Net):
        return {}
    return {name: index for name, (index, _part) in model.layer_modules().items()}


class _LeafFlops(TorchDispatchMode):
    """Counts the FLOPs of every op in this thread, by the leaf module that runs it, with torch's own formulas.

    torch's FlopCounterMode tracks modules through global module hooks, which fire in every thread's forward
    pass; a page computing a parameter table would then hook another student's Grad-CAM in mid-backward. A
    dispatch mode is thread-local, and the leaf is known from hooks on this model's own modules only.
    """

    def __init__(self) -> None:
        super().__init__()
        self.leaf: str | None = None  # the leaf module running now
        self.by_leaf: dict[str, int] = {}
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's signature
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            flops = formula(*args, **kwargs, out_val=out)
            self.total += flops
            if self.leaf is not None:
                self.by_leaf[self.leaf] = self.by_leaf.get(self.leaf, 0) + flops
        return out


def _leaf_calls(
    model: nn.Module, x: torch.Tensor
) -> tuple[list[tuple[str, nn.Module, tuple[int, ...]]], dict[str, int], int]:
    """Run `model` on `x`; (name, module, output shape) per leaf call, the FLOPs per leaf name, and in all."""
    calls: list[tuple[str, nn.Module, tuple[int, ...]]] = []
    counter = _LeafFlops()

    def enter_for(name: str):
        def enter(module: nn.Module, inputs: object) -> None:
            counter.leaf = name

        return enter

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            counter.leaf = None
            tensor = _first_tensor(output)
            calls.append((name, module, tuple(tensor.shape[1:]) if tensor is not None else ()))

        return hook

    leaves = [(name, module) for name, module in model.named_modules() if name and not any(module.children())]
    handles = [module.register_forward_pre_hook(enter_for(name)) for name, module in leaves]
    handles += [module.register_forward_hook(hook_for(name)) for name, module in leaves]
    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # batch statistics of a single image are undefined (BN on a 1x1 map)
    try:
        with torch.no_grad(), counter:
            model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        shape = "x".join(map(str, x.shape[1:]))
        detail = " ".join(str(err).split())[:300]
        raise SummaryError(
            f"{type(model).__name__} does not run on a {shape} input ({type(err).__name__}: {detail}); "
            f"check the input shape (channels first, e.g. 3x32x32)"
        ) from None
    finally:
        for module, training in modes:  # each submodule's own mode, as the caller left it
            module.training = training
        for handle in handles:
            handle.remove()
    return calls, counter.by_leaf, counter.total


def _mb(numbers: int) -> float:
    return numbers * BYTES_PER_NUMBER / MB


def summarize_module(model: nn.Module, input_shape: tuple[int, ...]) -> Summary:
    """The parameter table of any module for one input of `input_shape` (C, H, W), batch dimension excluded."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    calls, flops, total_flops = _leaf_calls(model, torch.zeros(1, *input_shape, device=device))
    positions = _positions(model)
    rows = []
    for index, (name, module, shape) in enumerate(calls, start=1):
        params = sum(p.numel() for p in module.parameters())
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        mult_adds = flops.get(name, 0) // 2
        kind = _torch_kind(module)
        rows.append(SummaryRow(index, name, positions.get(name), kind, shape, params, trainable, mult_adds))
    total = sum(p.numel() for p in model.parameters())
    trainable_total = sum(p.numel() for p in model.parameters() if p.requires_grad)
    outputs = sum(math.prod(row.output_shape) for row in rows)
    sizes = (_mb(math.prod(input_shape)), _mb(2 * outputs), _mb(total))
    return Summary(
        rows=tuple(rows),
        total_params=total,
        trainable_params=trainable_total,
        mult_adds=total_flops // 2,
        input_mb=sizes[0],
        forward_backward_mb=sizes[1],
        params_mb=sizes[2],
        total_mb=sum(sizes),
    )


def _torch_kind(module: nn.Module) -> str:
    """The torch layer type a module is, as torchsummary names it: "Conv2d" for s7core's DepthwiseConv2d too."""
    kinds = (c.__name__ for c in type(module).__mro__ if c.__module__.startswith("torch.nn"))
    return next(kinds, type(module).__name__)


def summarize(spec: NetworkSpec) -> Summary:
    """The parameter table of a spec's model (built on the meta device; cached, since specs are frozen)."""
    try:
        hash(spec)
    except TypeError:  # a spec built by hand with a list of layers is not hashable
        return _summarize_spec(spec)
    return _summarize_cached(spec)


def _summarize_spec(spec: NetworkSpec) -> Summary:
    with torch.device("meta"):
        model = build_model(spec)
    return summarize_module(model, spec.input_shape)


_summarize_cached = functools.lru_cache(maxsize=256)(_summarize_spec)


# ---------------------------------------------------------------- formatting


def _shape_text(shape: tuple[int, ...]) -> str:
    return str([-1, *shape])


def format_summary(summary: Summary, extended: bool = False) -> str:
    """torchsummary's text table; `extended` adds the multiply-adds and module path columns."""
    header = f"{'Layer (type)':>20}  {'Output Shape':>25} {'Param #':>15}"
    rule, double = RULE, DOUBLE_RULE
    if extended:
        header += f" {'Mult-Adds':>15}  Module"
        width = max([len(header), *(len(_row_text(r, True)) for r in summary.rows)])
        rule, double = "-" * width, "=" * width
    lines = [rule, header, double]
    lines += [_row_text(row, extended) for row in summary.rows]
    lines += [
        double,
        f"Total params: {summary.total_params:,}",
        f"Trainable params: {summary.trainable_params:,}",
        f"Non-trainable params: {summary.non_trainable_params:,}",
    ]
    if extended:
        lines.append(f"Mult-adds (one image): {summary.mult_adds:,}")
    lines += [
        rule,
        f"Input size (MB): {summary.input_mb:0.2f}",
        f"Forward/backward pass size (MB): {summary.forward_backward_mb:0.2f}",
        f"Params size (MB): {summary.params_mb:0.2f}",
        f"Estimated Total Size (MB): {summary.total_mb:0.2f}",
        rule,
    ]
    return "\n".join(lines) + "\n"


def _row_text(row: SummaryRow, extended: bool) -> str:
    text = f"{row.key:>20}  {_shape_text(row.output_shape):>25} {row.params:>15,}"
    if extended:
        text += f" {row.mult_adds:>15,}  {row.name}"
    return text
