"""Any torchvision classifier by name: its RF table through the module tracer (s7core.rf.trace).

The model is built on the meta device (no weights downloaded, no memory for them), which is all the
tracer needs: shapes, kernels, strides, paddings and dilations.
"""

from __future__ import annotations

import functools

import torch

from s7core.errors import UserError
from s7core.rf._modules import first_line
from s7core.rf.trace import ModuleRF, rf_table_from_module

DEFAULT_INPUT = (3, 224, 224)  # what torchvision's classifiers are trained on
INPUTS = {"inception_v3": (3, 299, 299)}  # the exceptions, from torchvision's own weight metadata


class ZooError(UserError):
    """A torchvision model name that is not a classifier torchvision has, or one that cannot be traced."""


@functools.cache
def torchvision_classifiers() -> tuple[str, ...]:
    """The names of torchvision's image classifiers (resnet18, vgg16, ...), sorted."""
    try:
        import torchvision
    except ImportError:
        raise ZooError("torchvision is not installed: pip install -r requirements.txt") from None
    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def default_input(name: str) -> tuple[int, int, int]:
    """The input shape a classifier was trained at."""
    return INPUTS.get(name, DEFAULT_INPUT)


@functools.lru_cache(maxsize=32)
def torchvision_rf(name: str, input_shape: tuple[int, int, int] | None = None) -> ModuleRF:
    """The RF table of torchvision classifier `name` on a CxHxW input (its training size by default)."""
    names = torchvision_classifiers()
    if name not in names:
        close = [n for n in names if name.lower().rstrip("0123456789_") in n][:6]
        hint = f" — did you mean {', '.join(close)}?" if close else f"; pick one of {', '.join(names[:8])}, ..."
        raise ZooError(f"torchvision has no classifier named {name!r}{hint}")
    import torchvision

    try:
        with torch.device("meta"):
            model = torchvision.models.get_model(name, weights=None)
    except Exception as err:  # a model that cannot be built on the meta device says why in its own words
        raise ZooError(f"{name} could not be built ({first_line(err)})") from None
    return rf_table_from_module(model.eval(), input_shape or default_input(name))
