"""RF records of any nn.Module, traced with torch.fx: the spec arithmetic of s7core.rf.table moved through a graph.

The module is traced with torch.fx, shapes come from one forward pass on fake tensors
(no memory, no arithmetic), then each graph node moves an RF state forward. A state keeps
both axes apart, so non-square kernels and strides are tracked exactly; records report
the height axis (ModuleRF.width_records holds the width axis). Residual adds and
concatenations keep the largest RF.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import prod
from typing import Any

import torch
from torch import fx, nn

from s7core.errors import UserError
from s7core.model import eval_mode
from s7core.rf._modules import DROPPED_IN_PROBE, check_input_shape, first_line, is_activation, meta_copy, pair
from s7core.rf.table import RFRecord, input_record, slide
from s7core.spec import kernel_span


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
    return _Axis(*slide(a.jump, a.rf, a.start, kernel, stride, padding, dilation), size_out)


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


def _window_step(layer: str, kernel: Any, stride: Any, padding: Any, dilation: Any) -> _Step:
    """A sliding window's geometry per axis; padding "same" pads (span - 1) // 2 before, as torch does."""
    k, d = pair(kernel), pair(dilation)
    s = k if stride is None or stride == () or stride == [] else pair(stride)
    if isinstance(padding, str):
        p = (0, 0) if padding == "valid" else tuple((kernel_span(k[i], d[i]) - 1) // 2 for i in range(2))
    else:
        p = pair(padding)
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


_NEUTRAL_MODULES = (*DROPPED_IN_PROBE, nn.Identity, nn.Flatten, nn.ChannelShuffle)  # leave the RF as it is
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
        return ("neutral" if isinstance(m, _NEUTRAL_MODULES) or is_activation(m) else "unknown"), None
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
    axes = []
    for i, (a, b) in enumerate(((prev.h, new.h), (prev.w, new.w))):
        geo = [None if v is None else v[i] for v in (step.kernel, step.dilation, step.padding, step.stride)]
        axes.append(
            RFRecord(name, step.layer, *geo, round(a.jump), round(b.jump), a.size, b.size, round(b.rf), b.start)
        )
    return axes[0], axes[1]


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with every conv module a leaf: its geometry is what counts, however its own forward
    computes it (s7core's DepthwiseConv2d chooses a gradient path in Python)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, module_qualified_name)


def _trace(module: nn.Module) -> fx.GraphModule:
    if not isinstance(module, nn.Module):
        raise UserError(f"expected a torch.nn.Module, got {type(module).__name__}")
    try:
        return fx.GraphModule(module, _Tracer().trace(module), type(module).__name__)
    except Exception as err:  # torch.fx raises many kinds; each means the same to a user
        reason = first_line(err)
        raise UserError(
            f"{type(module).__name__} cannot be traced by torch.fx ({reason}): its forward has Python control "
            "flow or calls that depend on tensor values; compute the RF of a part without them, or use measured_rf"
        ) from None


def _example(module: nn.Module, input_shape: tuple[int, int, int], device: str | None = None) -> torch.Tensor:
    """A zero batch of one image, of the module's float type, on its device (or `device`)."""
    first = next((p for p in module.parameters() if p.is_floating_point()), None)
    dtype = first.dtype if first is not None else torch.float32
    return torch.zeros(1, *input_shape, dtype=dtype, device=device or (first.device if first is not None else "cpu"))


def _traced_with_shapes(module: nn.Module, input_shape: tuple[int, int, int]) -> fx.GraphModule:
    """The module traced by torch.fx, with each node's output shape in node.meta.

    Shapes come from a forward on a meta-device copy in eval mode (the module itself is not
    touched); where an op has no meta kernel, from one real forward on zeros.
    """
    try:
        meta = meta_copy(module).eval()
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
            reason = first_line(err)
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
    _, height, width = check_input_shape(input_shape)
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
