"""The naming rule of a built network's modules, in one place, with no torch import.

Spec layer i is the module `layers.i` of the built S7Net, and the two parts of a sepconv are
`layers.i.depthwise` and `layers.i.pointwise`. Tables label the same things by position: '7',
'7.depthwise'. Everything that shows or parses such a name goes through these functions.
"""

from __future__ import annotations

import numbers

from s7core.errors import UserError

LAYERS = "layers"  # the S7Net attribute whose i-th child is spec layer i
SEPCONV_PARTS = ("depthwise", "pointwise")  # the children of a SeparableConv2d, in the order they run


class ModuleNameError(UserError):
    """A module name, or a spec layer and part, that is not one of the network's layers."""


def position_name(index: int, part: str | None = None) -> str:
    """The label of spec layer `index`, or of one part of a sepconv, in tables: '7', '7.depthwise'."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index < 0:
        raise ModuleNameError(f"spec layer {index!r} is not a layer number: use 0, 1, 2, ...")
    if part is not None and part not in SEPCONV_PARTS:
        raise ModuleNameError(f"'{part}' is not a part of a sepconv layer: use {' or '.join(SEPCONV_PARTS)}")
    return str(index) if part is None else f"{index}.{part}"


def module_name(index: int, part: str | None = None) -> str:
    """The module path of spec layer `index` in a built S7Net, or of one part of a sepconv: 'layers.7.depthwise'."""
    return f"{LAYERS}.{position_name(index, part)}"


def position_of(label: str) -> tuple[int, str | None]:
    """The (spec layer, sepconv part or None) a table label names: '7.depthwise' -> (7, 'depthwise')."""
    index, *rest = label.split(".")
    part = rest[0] if len(rest) == 1 else None
    if not index.isdigit() or len(rest) > 1 or (rest and part not in SEPCONV_PARTS):
        raise ModuleNameError(f"'{label}' names no spec layer: use a layer number, e.g. '7' or '7.depthwise'")
    return int(index), part


def layer_of(name: str) -> tuple[int, str | None]:
    """The (spec layer, sepconv part or None) an S7Net module path names: 'layers.7.depthwise' -> (7, 'depthwise')."""
    prefix = f"{LAYERS}."
    try:
        if not name.startswith(prefix):
            raise ModuleNameError(name)
        return position_of(name[len(prefix) :])
    except ModuleNameError:
        examples = f"'{module_name(7)}' or '{module_name(7, SEPCONV_PARTS[0])}'"
        raise ModuleNameError(f"'{name}' is not the module of a spec layer: such names read like {examples}") from None
