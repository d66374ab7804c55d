"""Receptive-field (RF) records, one per spatial layer, from a spec.

Per axis, for a layer of kernel k, dilation d, padding p and stride s, with jump j_in
(distance in input pixels between neighbouring units of its input) and RF r_in:

    k_eff = d * (k - 1) + 1
    j_out = j_in * s
    r_out = r_in + (k_eff - 1) * j_in
    start_out = start_in + ((k_eff - 1) / 2 - p) * j_in

`start` is the centre of the first (top-left) output unit in input pixel coordinates,
where 0 is the centre of the top-left input pixel; a negative start means the unit's
window is centred on padding.

Beyond specs: `rf_table_from_module` traces any nn.Module with torch.fx and moves the
same arithmetic through its graph (residual adds and concatenations keep the largest RF);
`measured_rf` / `measured_windows` measure the RF by back-propagation, independently of
that arithmetic; `effective_rf` gives where the gradient of one unit actually lands;
`unit_window` gives the box of input pixels one unit sees, with its share on padding.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from math import prod
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from s7core.errors import UserError
from s7core.model import eval_mode
from s7core.spec import NetworkSpec, infer_shapes


@dataclass(frozen=True)
class RFRecord:
    """The receptive field after one spatial layer (or the input, row 0)."""

    name: str  # spec position ("7", "7.depthwise") or module / graph node name
    layer: str  # conv, maxpool, avgpool, input, ...
    kernel: int | None
    dilation: int | None
    padding: int | None
    stride: int | None
    jump_in: int
    jump_out: int  # cumulative stride after the layer, in input pixels
    size_in: int
    size_out: int  # output side, in units
    rf: int  # receptive field side after the layer, in input pixels
    start: float  # centre of the first output unit, in input pixels

    def to_dict(self) -> dict:
        return asdict(self)


def input_record(size: int) -> RFRecord:
    return RFRecord("input", "input", None, None, None, None, 1, 1, size, size, 1, 0.0)


def next_record(
    prev: RFRecord, name: str, layer: str, kernel: int, stride: int, padding: int, dilation: int, size_out: int
) -> RFRecord:
    """The record after a sliding window applied to the output `prev` describes."""
    span = dilation * (kernel - 1) + 1
    return RFRecord(
        name=name,
        layer=layer,
        kernel=kernel,
        dilation=dilation,
        padding=padding,
        stride=stride,
        jump_in=prev.jump_out,
        jump_out=prev.jump_out * stride,
        size_in=prev.size_out,
        size_out=size_out,
        rf=prev.rf + (span - 1) * prev.jump_out,
        start=prev.start + ((span - 1) / 2 - padding) * prev.jump_out,
    )


def rf_table(spec: NetworkSpec) -> list[RFRecord]:
    """RF records for a spec: the input, then one per spatial layer (a sepconv gives two).

    A linear layer after a flatten of an HxW map sees the whole map, so it counts as an
    HxW window; flatten, BN, activations and dropout leave the RF unchanged and get no row.
    """
    shapes = infer_shapes(spec)
    records = [input_record(shapes[0].size)]
    flat_from = None  # spatial side that a flatten folded into the vector
    for i, lay in enumerate(spec.layers):
        size_in, size_out = shapes[i].size, shapes[i + 1].size
        prev = records[-1]
        if lay.type == "conv":
            records.append(
                next_record(prev, str(i), "conv", lay.kernel, lay.stride, lay.padding, lay.dilation, size_out)
            )
        elif lay.type == "sepconv":
            dw = next_record(
                prev, f"{i}.depthwise", "conv", lay.kernel, lay.stride, lay.padding, lay.dilation, size_out
            )
            records += [dw, next_record(dw, f"{i}.pointwise", "conv", 1, 1, 0, 1, size_out)]
        elif lay.type in ("maxpool", "avgpool"):
            stride = lay.stride or lay.kernel
            records.append(
                next_record(prev, str(i), lay.type, lay.kernel, stride, lay.padding, lay.dilation or 1, size_out)
            )
        elif lay.type == "gap":
            records.append(next_record(prev, str(i), "gap", size_in, size_in, 0, 1, 1))
        elif lay.type == "flatten":
            flat_from = size_in
        elif lay.type == "linear" and flat_from:
            records.append(next_record(prev, str(i), "linear", flat_from, flat_from, 0, 1, 1))
            flat_from = 1
    return records


def global_rf(spec: NetworkSpec) -> int:
    """The RF of the network's output units, in input pixels."""
    return rf_table(spec)[-1].rf


# ---------------------------------------------------------------- any nn.Module
#
# The module is traced with torch.fx, shapes come from one forward pass on fake tensors
# (no memory, no arithmetic), then each graph node moves an RF state forward. A state keeps
# both axes apart, so non-square kernels and strides are tracked exactly; records report
# the height axis (ModuleRF.width_records holds the width axis).


@dataclass(frozen=True)
class ModuleRF:
    """RF records of a traced nn.Module, in graph order, with what the tracer had to guess.

    Records describe the height axis; `width_records` (same order) the width axis, which
    differs only for non-square kernels, strides or inputs. `global_rf` is the RF of the
    model's output units: the larger of the two axes.
    """

    records: list[RFRecord]
    warnings: list[str]
    global_rf: int
    width_records: list[RFRecord] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "records": [r.to_dict() for r in self.records],
            "warnings": list(self.warnings),
            "global_rf": self.global_rf,
            "width_records": [r.to_dict() for r in self.width_records],
        }


@dataclass(frozen=True)
class _Axis:
    """One axis of the RF state of a tensor: what its units see along that axis."""

    jump: float  # distance between neighbouring units, in input pixels
    rf: float  # window side of one unit, in input pixels
    start: float  # centre of the first unit, in input pixel coordinates
    size: int  # number of units along the axis


@dataclass(frozen=True)
class _State:
    h: _Axis
    w: _Axis
    flat: bool = False  # the map was flattened into a vector; a linear layer then sees all of it
    dims: tuple[int, int] = (-2, -1)  # where height and width sit in the tensor: (-3, -2) once channels-last


@dataclass(frozen=True)
class _Step:
    """What one graph node did: a window (per-axis geometry), a whole-map view, a merge..."""

    layer: str
    kernel: tuple[int, int] | None = None
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] | None = None
    dilation: tuple[int, int] | None = None


def _slide(a: _Axis, kernel: int, stride: int, padding: int, dilation: int, size_out: int) -> _Axis:
    span = dilation * (kernel - 1) + 1
    return _Axis(a.jump * stride, a.rf + (span - 1) * a.jump, a.start + ((span - 1) / 2 - padding) * a.jump, size_out)


def _adaptive(a: _Axis, size_out: int) -> tuple[_Axis, int, bool]:
    """An adaptive pool (or resize) from a.size to size_out units: new axis, largest window, exact?"""
    n = a.size
    bounds = [(i * n // size_out, -(-(i + 1) * n // size_out)) for i in range(size_out)]
    kernel = max(hi - lo for lo, hi in bounds)
    first = a.start + (bounds[0][0] + bounds[0][1] - 1) / 2 * a.jump
    last = a.start + (bounds[-1][0] + bounds[-1][1] - 1) / 2 * a.jump
    jump = (last - first) / (size_out - 1) if size_out > 1 else a.jump * n
    lows = [lo for lo, _ in bounds]
    steps = {b - a for a, b in zip(lows, lows[1:], strict=False)}
    exact = len({hi - lo for lo, hi in bounds}) == 1 and len(steps) <= 1  # one window size, one stride
    return _Axis(jump, a.rf + (kernel - 1) * a.jump, first, size_out), kernel, exact


def _whole(a: _Axis) -> _Axis:
    """One unit that sees every unit of the axis (global pool, linear layer after a flatten)."""
    return _slide(a, a.size, a.size, 0, 1, 1)


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        value = tuple(value) * 2 if len(value) == 1 else tuple(value)
    else:
        value = (value, value)
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise TypeError(f"not a 2-d geometry: {value!r}")
    return value


def _window_step(layer: str, kernel: Any, stride: Any, padding: Any, dilation: Any) -> _Step:
    """A sliding window's geometry per axis; padding "same" pads (k_eff - 1) // 2 before, as torch does."""
    k, d = _pair(kernel), _pair(dilation)
    s = k if stride is None or stride == () or stride == [] else _pair(stride)
    if isinstance(padding, str):
        p = (0, 0) if padding == "valid" else tuple(d[i] * (k[i] - 1) // 2 for i in range(2))
    else:
        p = _pair(padding)
    return _Step(layer, k, s, p, d)


def _arg(node: fx.Node, index: int, name: str, default: Any = None) -> Any:
    return node.args[index] if len(node.args) > index else node.kwargs.get(name, default)


def _shape(node: Any) -> tuple[int, ...] | None:
    """A node's output shape as _ShapeRecorder saw it; None for anything but a tensor."""
    shape = node.meta.get("rf_shape") if isinstance(node, fx.Node) else None
    return shape if isinstance(shape, tuple) else None


class _ShapeRecorder(fx.Interpreter):
    """Runs the graph once, noting each node's output shape ("parts" for a tuple or list of tensors)."""

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            n.meta["rf_shape"] = tuple(result.shape)
        elif isinstance(result, (tuple, list)) and any(isinstance(r, torch.Tensor) for r in result):
            n.meta["rf_shape"] = "parts"
        return result


def _op_name(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(node.target)).__name__
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))


def _what(gm: fx.GraphModule, node: fx.Node) -> str:
    """How a warning names a node: the module's name and class, or the graph node's name."""
    return f"{node.target} ({_op_name(gm, node)})" if node.op == "call_module" else node.name


_DROPPED_IN_PROBE = (  # normalisation and dropout: identities in the probe
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
    nn.modules.dropout._DropoutNd,
)
_NEUTRAL_MODULES = (*_DROPPED_IN_PROBE, nn.Identity, nn.Flatten, nn.ChannelShuffle)  # leave the RF as it is
_MERGE_NAMES = {"add": "add", "iadd": "add", "cat": "cat", "concat": "cat", "mul": "mul", "imul": "mul"}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp", "adaptive_avg_pool2d", "adaptive_max_pool2d"}
_SHAPE_ONLY = {"expand_as", "view_as", "reshape_as", "type_as"}  # the other tensor lends only its shape or type
_SUSPECT_WORDS = ("conv", "pool", "unfold", "fold", "attention", "roll", "pad")


def _classify(gm: fx.GraphModule, node: fx.Node) -> tuple[str, _Step | str | None]:
    """What a one-input node does: a window with its geometry, an adaptive pool or resize, linear, neutral, unknown."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, nn.Conv2d):
            return "window", _window_step("conv", m.kernel_size, m.stride, m.padding, m.dilation)
        if isinstance(m, nn.MaxPool2d):
            return "window", _window_step("maxpool", m.kernel_size, m.stride, m.padding, m.dilation)
        if isinstance(m, nn.AvgPool2d):
            return "window", _window_step("avgpool", m.kernel_size, m.stride, m.padding, 1)
        if isinstance(m, nn.LPPool2d):
            return "window", _window_step("lppool", m.kernel_size, m.stride, 0, 1)
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return "adaptive", "adaptive_avgpool" if isinstance(m, nn.AdaptiveAvgPool2d) else "adaptive_maxpool"
        if isinstance(m, nn.Upsample):
            return "resize", "upsample"
        if isinstance(m, nn.Linear):
            return "linear", None
        neutral = isinstance(m, _NEUTRAL_MODULES) or type(m).__module__ == "torch.nn.modules.activation"
        return ("neutral" if neutral and not isinstance(m, nn.MultiheadAttention) else "unknown"), None
    name = _op_name(gm, node)
    if name == "conv2d" and node.op == "call_function":
        weight = _shape(_arg(node, 1, "weight"))
        kernel = weight[-2:] if weight else None
        return "window", _window_step(
            "conv", kernel, _arg(node, 3, "stride", 1), _arg(node, 4, "padding", 0), _arg(node, 5, "dilation", 1)
        )
    if name in ("max_pool2d", "avg_pool2d") and node.op == "call_function":
        dilation = _arg(node, 4, "dilation", 1) if name == "max_pool2d" else 1
        kernel, stride, padding = _arg(node, 1, "kernel_size"), _arg(node, 2, "stride"), _arg(node, 3, "padding", 0)
        return "window", _window_step(name.replace("_pool2d", "pool"), kernel, stride, padding, dilation)
    if name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        return "adaptive", name.replace("_pool2d", "pool")
    if name in ("interpolate", "upsample"):
        return "resize", "upsample"
    if name == "linear":
        return "linear", None
    return ("unknown" if any(w in name.lower() for w in _SUSPECT_WORDS) else "neutral"), None


def _resample(state: _State, out_hw: tuple[int, int], layer: str) -> tuple[_State, _Step, bool]:
    (h, kh, exact_h), (w, kw, exact_w) = _adaptive(state.h, out_hw[0]), _adaptive(state.w, out_hw[1])
    stride = tuple(max(1, round(new.jump / old.jump)) if old.jump else 1 for new, old in ((h, state.h), (w, state.w)))
    return _State(h, w), _Step(layer, (kh, kw), stride, (0, 0), (1, 1)), exact_h and exact_w


def _whole_map(state: _State, layer: str, flat: bool) -> tuple[_State, _Step]:
    size = (state.h.size, state.w.size)
    return _State(_whole(state.h), _whole(state.w), flat), _Step(layer, size, size, (0, 0), (1, 1))


def _map_side(out: tuple[int, ...], state: _State) -> tuple[int, int] | None:
    """The height and width of an output that is still a map, read where the state says they sit."""
    if len(out) < 3 or len(out) + min(state.dims) < 1:
        return None
    hw = (out[state.dims[0]], out[state.dims[1]])
    return hw if len(out) >= 4 or hw == (state.h.size, state.w.size) else None


def _moved_dims(node: fx.Node, state: _State, ndim: int) -> tuple[int, int] | None:
    """Where height and width sit after a permute or transpose (None: the node is neither, or unreadable)."""
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    args = list(node.args[1:]) or list(node.kwargs.values())
    if name == "permute":
        order = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        where = lambda d: [o % ndim for o in order].index(d)
    elif name in ("transpose", "swapaxes") and len(args) == 2:
        a, b = (v % ndim for v in args)
        where = lambda d: {a: b, b: a}.get(d, d)
    else:
        return None
    return tuple(where(ndim + d) - ndim for d in state.dims)


def _advance(gm: fx.GraphModule, node: fx.Node, state: _State) -> tuple[_State | None, _Step | None, str | None]:
    """The state after a node with one RF-carrying input (None: not a tensor), the step if the RF moved, a warning."""
    out, src = _shape(node), next((n for n in node.all_input_nodes if _shape(n) is not None), None)
    try:
        kind, detail = _classify(gm, node)
        moved = _moved_dims(node, state, len(_shape(src))) if src is not None else None
    except (TypeError, ValueError):  # geometry computed at run time: nothing to read from the graph
        kind, detail, moved = "unknown", None, None
    what, name = _what(gm, node), _op_name(gm, node)
    if out is None:  # a tuple of tensors passes its state on to the getitem nodes that read it; a number has none
        return (state if node.meta.get("rf_shape") == "parts" else None), None, None
    if moved is not None:
        return replace(state, dims=moved), None, None
    if state.flat:
        if kind == "linear":
            return *_whole_map(state, "linear", True), None
        if len(out) >= 4:
            return state, None, f"{what}: turns a vector back into a map; the RF after it is not tracked"
        return state, None, None
    hw = _map_side(out, state)
    if hw is None:
        if src is not None and prod(_shape(src)[1:]) == prod(out[1:]):
            return replace(state, flat=True), None, None  # a flatten: the next linear layer sees it all
        note = None if name in _REDUCTIONS else f"{what}: reduces the map to {out}; counted as a global pool"
        return *_whole_map(state, name if name in _REDUCTIONS else "reduce", True), note
    if kind == "window":
        h = _slide(state.h, detail.kernel[0], detail.stride[0], detail.padding[0], detail.dilation[0], hw[0])
        w = _slide(state.w, detail.kernel[1], detail.stride[1], detail.padding[1], detail.dilation[1], hw[1])
        return _State(h, w), detail, None
    if hw == (1, 1) and kind != "adaptive" and name in _REDUCTIONS:  # x.mean((2, 3), keepdim=True)
        return *_whole_map(state, name, False), None
    if kind in ("adaptive", "resize") or hw != (state.h.size, state.w.size):
        new, step, exact = _resample(state, hw, detail if isinstance(detail, str) else "resize")
        if exact and kind != "resize":  # even windows, or each unit repeated (a broadcast expand)
            return replace(new, dims=state.dims), step, None
        note = f"{what}: resamples {state.h.size}x{state.w.size} to {hw[0]}x{hw[1]}; its RF is approximate"
        return replace(new, dims=state.dims), step, note
    if kind == "linear" and state.dims[1] == -1:
        return state, None, f"{what}: a linear layer across the width of a map; counted as leaving the RF unchanged"
    if kind == "unknown":
        return state, None, f"{what}: not a layer the RF tracer knows; counted as leaving the RF unchanged"
    return state, None, None  # norms, activations, dropout, reshapes that keep the map, a linear over channels


def _merge(gm: fx.GraphModule, node: fx.Node, ins: list[_State]) -> tuple[_State, _Step, str | None]:
    """Where paths meet: keep the largest RF; warn when the paths' units do not line up."""
    out = _shape(node)
    hw = _map_side(out, ins[0]) if out is not None else None
    axes = []
    for i in (0, 1):
        column = [s.h if i == 0 else s.w for s in ins]
        full = [a for a in column if hw is None or a.size == hw[i]] or column  # not the broadcast 1x1 ones
        best = max(full, key=lambda a: a.rf)
        axes.append(_Axis(best.jump, max(a.rf for a in column), best.start, best.size))
    name = _op_name(gm, node)
    step = _Step(_MERGE_NAMES.get(name, name))
    differ = []
    for label, key in (("jumps", lambda a: a.jump), ("centres", lambda a: a.start)):
        values = sorted({(round(key(s.h), 6), round(key(s.w), 6)) for s in ins})
        if len(values) > 1:
            differ.append(f"{label} " + " vs ".join(f"{h:g}" if h == w else f"{h:g}x{w:g}" for h, w in values))
    note = None
    broadcast = [s for s in ins if (s.h.size, s.w.size) == (1, 1)]
    if differ and broadcast and hw is not None and hw != (1, 1):
        note = (
            f"{_what(gm, node)}: a 1x1 branch (RF {round(max(s.h.rf for s in broadcast))}) is broadcast over the "
            f"{hw[0]}x{hw[1]} map, as in squeeze-and-excitation: every unit now depends on that whole window"
        )
    elif differ:
        note = (
            f"{_what(gm, node)}: paths meet with different {' and '.join(differ)} (input pixels); the largest RF "
            "is kept, but units of the paths do not see the same pixels"
        )
    return _State(axes[0], axes[1], all(s.flat for s in ins), ins[0].dims), step, note


def _records(name: str, step: _Step, prev: _State, new: _State) -> tuple[RFRecord, RFRecord]:
    """The height-axis and width-axis records of one step."""
    pair = []
    for i, (a, b) in enumerate(((prev.h, new.h), (prev.w, new.w))):
        geo = [None if v is None else v[i] for v in (step.kernel, step.dilation, step.padding, step.stride)]
        pair.append(
            RFRecord(name, step.layer, *geo, round(a.jump), round(b.jump), a.size, b.size, round(b.rf), b.start)
        )
    return pair[0], pair[1]


def _trace(module: nn.Module) -> fx.GraphModule:
    if not isinstance(module, nn.Module):
        raise UserError(f"expected a torch.nn.Module, got {type(module).__name__}")
    try:
        return fx.symbolic_trace(module)
    except Exception as err:  # torch.fx raises many kinds; each means the same to a user
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserError(
            f"{type(module).__name__} cannot be traced by torch.fx ({reason}): its forward has Python control "
            "flow or calls that depend on tensor values; compute the RF of a part without them, or use measured_rf"
        ) from None


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    ok = isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in input_shape):
        raise UserError(f"input shape must be three positive whole numbers CxHxW, e.g. 3x32x32; got {input_shape!r}")
    return tuple(input_shape)


def _example(module: nn.Module, input_shape: tuple[int, int, int], device: str | None = None) -> torch.Tensor:
    """A zero batch of one image, of the module's float type, on its device (or `device`)."""
    first = next((p for p in module.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.float32
    return torch.zeros(1, *input_shape, dtype=dtype, device=device or (first.device if first is not None else "cpu"))


def _meta_copy(module: nn.Module) -> nn.Module:
    """A copy of `module` whose tensors live on the meta device: shapes without memory or arithmetic."""
    memo: dict[int, Any] = {id(b): torch.empty_like(b, device="meta") for b in module.buffers()}
    memo |= {id(p): nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad) for p in module.parameters()}
    return copy.deepcopy(module, memo)


def _traced_with_shapes(module: nn.Module, input_shape: tuple[int, int, int]) -> fx.GraphModule:
    """The module traced by torch.fx, with each node's output shape in node.meta.

    Shapes come from a forward on a meta-device copy in eval mode (the module itself is not
    touched); where an op has no meta kernel, from one real forward on zeros.
    """
    try:
        meta = _meta_copy(module).eval()
    except Exception:  # a module that cannot be copied: the real forward below still works
        meta = None
    if meta is not None:
        gm = _trace(meta)
        try:
            _ShapeRecorder(gm).run(_example(module, input_shape, "meta"))
            return gm
        except Exception:  # an op without a meta kernel, or a bad shape that the real forward will name
            pass
    gm = _trace(module)
    with eval_mode(module), torch.no_grad():
        try:
            _ShapeRecorder(gm).run(_example(module, input_shape))
        except Exception as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            c, h, w = input_shape
            raise UserError(
                f"a forward pass of {type(module).__name__} on a {c}x{h}x{w} input failed ({reason}); "
                "check the input shape (channels first) and that the model accepts images of that size"
            ) from None
    return gm


def rf_table_from_module(module: nn.Module, input_shape: tuple[int, int, int]) -> ModuleRF:
    """RF records of any traceable nn.Module on a CxHxW input, in graph order, with warnings.

    Conv2d, max/avg pools (module or functional, padding "same" included), adaptive pools
    and resizes move the RF; a linear layer after a flatten sees the whole map; norms,
    activations, dropout and reshapes leave it unchanged. Where paths meet (add, cat, mul)
    the largest RF is kept, with a warning when the paths' jumps or centres differ.
    Records give the height axis (ModuleRF.width_records the width); a record's name is the
    module's qualified name (layer4.1.conv2) or the graph node's (add_3, adaptive_avg_pool2d).
    Raises UserError when the module cannot be traced or does not run on that shape.
    """
    _, height, width = _check_input_shape(input_shape)
    gm = _traced_with_shapes(module, input_shape)
    states: dict[fx.Node, _State] = {}
    rows, cols = [input_record(height)], [input_record(width)]
    warnings: list[str] = []
    outputs: list[_State] = []
    for node in gm.graph.nodes:
        if node.op == "placeholder" and not states:
            states[node] = _State(_Axis(1, 1, 0.0, height), _Axis(1, 1, 0.0, width))
            continue
        sources = node.args[:1] if node.op == "call_method" and node.target in _SHAPE_ONLY else node.all_input_nodes
        ins = [states[n] for n in sources if n in states]
        if node.op == "output":
            outputs = ins
        if node.op not in ("call_module", "call_function", "call_method") or not ins:
            continue
        if len(ins) > 1:
            state, step, note = _merge(gm, node, ins)
        else:
            state, step, note = _advance(gm, node, ins[0])
        if state is not None:
            states[node] = state
        if step is not None:
            name = node.target if node.op == "call_module" else node.name
            row, col = _records(name, step, ins[0] if len(ins) == 1 else state, state)
            rows.append(row)
            cols.append(col)
        if note:
            warnings.append(note)
    if not outputs:
        raise UserError(f"the output of {type(module).__name__} does not depend on its input: there is no RF")
    top = max(max(s.h.rf, s.w.rf) for s in outputs)
    return ModuleRF(rows, warnings, round(top), cols)


# ---------------------------------------------------------------- RF measured by gradients


class _MeanLinear(nn.Module):
    """A linear layer whose weights are all 1/in_features, without storing them."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.sum(-1, keepdim=True) / self.in_features  # (..., 1)
        return mean.expand(*x.shape[:-1], self.out_features)  # (..., out_features)


class _MeanConv(nn.Module):
    """A conv whose weights are all 1/fan_in, with no bias, without storing them.

    Each output channel of a group is the window mean of the group's channel mean, so it
    is computed as one single-channel box filter over the group means: exact, and cheap
    enough to run in float64 (where grouped convs take a slow path on the CPU).
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.groups, self.per_group = conv.groups, conv.out_channels // conv.groups
        self.kernel, self.stride, self.dilation = _pair(conv.kernel_size), conv.stride, conv.dilation
        self.padding, self.padding_mode = conv.padding, conv.padding_mode
        self.pad4 = conv._reversed_padding_repeated_twice  # what torch pads with for non-zero modes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g, (kh, kw) = self.groups, self.kernel
        means = x.reshape(n, g, c // g, h, w).mean(2).reshape(n * g, 1, h, w)  # groups folded into the batch
        padding = self.padding
        if self.padding_mode != "zeros":
            means, padding = nn.functional.pad(means, self.pad4, mode=self.padding_mode), 0
        box = means.new_full((1, 1, kh, kw), 1 / (kh * kw))
        out = nn.functional.conv2d(means, box, None, self.stride, padding, self.dilation)  # (N * g, 1, H', W')
        out = out.reshape(n, g, 1, *out.shape[-2:]).expand(n, g, self.per_group, *out.shape[-2:])
        # a real copy: later in-place ops (out += identity) refuse tensors that share memory
        return out.reshape(n, g * self.per_group, *out.shape[-2:]).contiguous()  # (N, out_channels, H', W')


class _WindowMean(nn.Module):
    """A dilated max pool's windows, averaged, so every pixel of a window gets gradient."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel, self.stride = _pair(pool.kernel_size), _pair(pool.stride or pool.kernel_size)
        self.padding, self.dilation = _pair(pool.padding), _pair(pool.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, (kh, kw) = x.shape[1], self.kernel
        weight = x.new_full((c, 1, kh, kw), 1 / (kh * kw))
        return nn.functional.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups=c)


def _probe_layer(m: nn.Module, dtype: torch.dtype) -> nn.Module | None:
    """The stand-in for `m` in the probe copy, or None to keep `m`."""
    if isinstance(m, nn.Conv2d):
        return _MeanConv(m)
    if isinstance(m, nn.Linear):
        return _MeanLinear(m.in_features, m.out_features)
    if isinstance(m, nn.MaxPool2d):
        if _pair(m.dilation) != (1, 1):
            return _WindowMean(m)
        return nn.AvgPool2d(m.kernel_size, m.stride, m.padding, m.ceil_mode)
    if isinstance(m, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(m.output_size)
    activation = type(m).__module__ == "torch.nn.modules.activation" and not isinstance(m, nn.MultiheadAttention)
    return nn.Identity() if activation or isinstance(m, _DROPPED_IN_PROBE) else None


def _probe_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of `model` whose output grows with every input pixel it depends on.

    Conv and linear weights become a positive constant (1/fan_in) with no bias, norms,
    dropout and activations become identities, max pools become average pools of the same
    geometry; what is left keeps its structure with every weight 1. The model's own
    weights are never copied (the copy starts on the meta device).
    """
    probe = _meta_copy(model)
    for name, m in list(probe.named_modules()):
        new = _probe_layer(m, dtype) if name else None
        if new is not None:
            parent, _, child = name.rpartition(".")
            setattr(probe.get_submodule(parent), child, new)
    for m in probe.modules():
        for key, p in m._parameters.items():
            if p is not None and p.is_meta:
                m._parameters[key] = nn.Parameter(torch.ones(p.shape, dtype=dtype), False)
        for key, b in m._buffers.items():
            if b is not None and b.is_meta:
                m._buffers[key] = torch.ones(b.shape, dtype=dtype if b.is_floating_point() else b.dtype)
    return probe.eval()


def _central_unit(out: Any) -> torch.Tensor:
    """The central spatial unit of an output, summed over channels (the first sample only)."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    if out.ndim >= 4:
        return out[0, ..., (out.shape[-2] - 1) // 2, (out.shape[-1] - 1) // 2].sum()
    return out[0].sum()


def _support(grad: torch.Tensor | None, what: str) -> tuple[int, int, int, int]:
    seen = grad[0].abs().sum(0) > 0 if grad is not None else None
    if seen is None or not seen.any():
        raise UserError(f"{what} does not depend on any input pixel")
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1])


def measured_windows(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    layers: Sequence[str | None] = (None,),
    dtype: torch.dtype = torch.float64,  # float64: the gradient at a deep net's window edge can underflow float32
) -> list[tuple[int, int, int, int]]:
    """Measured input boxes (top, left, bottom, right, inside the image) of the central unit of each layer.

    `None` stands for the model's output. The box holds every pixel with a non-zero gradient
    in a probe copy of the model (see _probe_copy); the model itself is not touched. Near a
    border it can stop short of the computed window clipped to the image: pixels that taps
    skip (dilation, strided windows that stop before the edge) are never read. Max pools
    called as functions (F.max_pool2d) stay max pools and pass gradient to one pixel a window.
    """
    c, h, w = _check_input_shape(input_shape)
    probe = _probe_copy(model, dtype)
    modules = dict(probe.named_modules())
    unknown = [name for name in layers if name is not None and name not in modules]
    if unknown:
        raise UserError(f"no module named '{unknown[0]}' in {type(model).__name__}; use a name from named_modules()")
    outputs: dict[str | None, Any] = {}
    hooks = [
        modules[name].register_forward_hook(lambda _m, _a, out, name=name: outputs.__setitem__(name, out))
        for name in set(layers) - {None}
    ]
    x = torch.ones(1, c, h, w, dtype=dtype, requires_grad=True)
    try:
        with torch.enable_grad():
            outputs[None] = probe(x)
    except Exception as err:  # whatever the model raises, the fix is the same: the shape it is given
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        raise UserError(f"{type(model).__name__} does not run on a {c}x{h}x{w} input ({reason})") from None
    finally:
        for hook in hooks:
            hook.remove()
    boxes = []
    for name in layers:
        with torch.enable_grad():
            unit = _central_unit(outputs[name])
            grad = torch.autograd.grad(unit, x, retain_graph=True, allow_unused=True)[0] if unit.requires_grad else None
        boxes.append(_support(grad, f"the output of {name or type(model).__name__}"))
    return boxes


def measured_rf(model: nn.Module, input_shape: tuple[int, int, int], layer: str | None = None) -> int:
    """RF side (height axis, inside the image) of the central output unit, measured by back-propagation."""
    top, _, bottom, _ = measured_windows(model, input_shape, [layer])[0]
    return bottom - top + 1


# ---------------------------------------------------------------- effective RF and unit windows


def effective_rf(model: nn.Module, images: torch.Tensor, layer: str | None = None) -> np.ndarray:
    """Effective RF (Luo et al., 2016): mean |input gradient| of the central unit, an (H, W) map with max 1.

    The unit is the central spatial position of `layer`'s output summed over its channels,
    or the sum of the model's class scores when `layer` is None. The model runs in eval
    mode with its weights untouched; its train/eval flags are restored.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise UserError("images must be a tensor of shape (N, C, H, W)")
    modules = dict(model.named_modules())
    if layer is not None and layer not in modules:
        raise UserError(f"no module named '{layer}' in {type(model).__name__}; use a name from named_modules()")
    outputs: dict[str | None, Any] = {}
    hook = modules[layer].register_forward_hook(lambda _m, _a, out: outputs.__setitem__(layer, out)) if layer else None
    x = images.detach().clone().requires_grad_(True)
    try:
        with eval_mode(model), torch.enable_grad():
            outputs[None] = model(x)
    finally:
        if hook is not None:
            hook.remove()
    out = outputs[layer]
    while isinstance(out, (tuple, list)):
        out = out[0]
    with torch.enable_grad():  # a caller's no_grad block would leave the unit without a graph
        unit = out[..., (out.shape[-2] - 1) // 2, (out.shape[-1] - 1) // 2].sum() if out.ndim >= 4 else out.sum()
        (grad,) = torch.autograd.grad(unit, x)
    erf = grad.abs().mean(dim=(0, 1)).double()  # mean over images and input channels: (H, W)
    peak = erf.max()
    return (erf / peak if peak > 0 else erf).cpu().numpy()


@dataclass(frozen=True)
class Window:
    """The input-pixel box one unit sees: inclusive bounds (may lie outside the image) and its part inside.

    When the window lies wholly on padding, the clipped box is empty (clipped_bottom < clipped_top).
    """

    row: int
    col: int
    top: int
    left: int
    bottom: int
    right: int
    clipped_top: int
    clipped_left: int
    clipped_bottom: int
    clipped_right: int
    padding_fraction: float  # share of the window's pixels that fall outside the image

    def to_dict(self) -> dict:
        return asdict(self)


def unit_window(record: RFRecord, row: int, col: int, image_size: int) -> Window:
    """The box of input pixels that output unit (row, col) of `record`'s layer sees, on a square image."""
    for axis, index in (("row", row), ("col", col)):
        if not 0 <= index < record.size_out:
            side = record.size_out
            raise UserError(f"{axis} {index} is outside the {side}x{side} output of {record.name}: use 0 to {side - 1}")
    if image_size < 1:
        raise UserError(f"image size must be at least 1, got {image_size}")
    half = (record.rf - 1) / 2
    top, left = (round(record.start + i * record.jump_out - half) for i in (row, col))
    bottom, right = top + record.rf - 1, left + record.rf - 1
    ct, cl, cb, cr = max(top, 0), max(left, 0), min(bottom, image_size - 1), min(right, image_size - 1)
    inside = max(cb - ct + 1, 0) * max(cr - cl + 1, 0)
    return Window(row, col, top, left, bottom, right, ct, cl, cb, cr, 1 - inside / record.rf**2)
