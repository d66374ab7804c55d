"""Any torchvision classifier by name: its RF table through the module tracer (s7core.rf.trace), and the model.

The RF table needs only the layers' geometry, so the model is built on the meta device for it (no weights, no
memory). The views that run the network (effective RF, feature maps) get a real one from `build_classifier`:
seeded random weights, or torchvision's pretrained weights, downloaded once into torch.hub's cache and read
with `torch.load(..., weights_only=True)`. `classifier_info` says what a model costs before it is built, and
`Classifier.budget_problem` refuses what would take too long or too much memory on this machine.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
    return rf_table_from_module(meta_classifier(name), input_shape or default_input(name))


# ---------------------------------------------------------------- running a classifier: weights, cost, images

UNTRAINED, PRETRAINED = "untrained", "pretrained"
WEIGHTS = (UNTRAINED, PRETRAINED)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the normalisation torchvision's ImageNet weights were trained with
IMAGENET_STD = (0.229, 0.224, 0.225)
# What one view may cost on a 2-core CPU. On the 2-core AMD EPYC host (README, "Any torchvision classifier"),
# vgg16's 15.5 G mult-adds an image took 1.9 s for an effective RF at 224x224, so 40 G is about 5 s a view;
# 150 M parameters are 600 MB a model, of which the Receptive-field page keeps two.
MAX_VIEW_MULT_ADDS = 40_000_000_000
MAX_VIEW_PARAMETERS = 150_000_000
DOWNLOAD_TIMEOUT_S = 20.0  # per network read: an offline machine fails at once, a blackholed one after this
# The builders of these pass arguments of their own when they load weights; a model built without weights
# needs the same ones for the weights to mean what they were trained to (torchvision.models.googlenet, ...).
BUILD_FOR_WEIGHTS = {
    "googlenet": {"transform_input": True, "init_weights": False},
    "inception_v3": {"transform_input": True, "init_weights": False},
}
# Old checkpoints of DenseNet spell 'norm.1' where the modules say 'norm1' (torchvision.models.densenet)
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class WeightsError(ZooError):
    """Pretrained weights that could not be downloaded or read; the untrained network is the fallback."""


@dataclass(frozen=True)
class Classifier:
    """What a torchvision classifier costs and where its pretrained weights come from, without building it."""

    name: str
    parameters: int
    mult_adds: int  # per image, at `input_shape`
    input_shape: tuple[int, int, int]
    weights_url: str | None
    weights_mb: float | None  # the download's size

    @property
    def cached(self) -> bool:
        """Whether the pretrained weights are already on this machine (looked at each time: a download adds them)."""
        return self.weights_url is not None and _weights_path(self.weights_url).is_file()

    def budget_problem(self) -> str | None:
        """Why running this classifier would take too long or too much memory here; None when it fits."""
        c, h, w = self.input_shape
        if self.parameters > MAX_VIEW_PARAMETERS:
            return (
                f"{self.name} has {self.parameters / 1e6:,.0f} M parameters ({self.parameters * 4 / 1e9:.1f} GB in "
                f"memory), more than the {MAX_VIEW_PARAMETERS / 1e6:.0f} M these views run on this server: pick a "
                "smaller classifier; its RF table and boxes above need no weights"
            )
        if self.mult_adds > MAX_VIEW_MULT_ADDS:
            return (
                f"{self.name} needs {self.mult_adds / 1e9:,.1f} G mult-adds an image at {h}x{w}, more than the "
                f"{MAX_VIEW_MULT_ADDS / 1e9:.0f} G these views allow on this server (a minute or more a view on a "
                "CPU): use a smaller input side or a smaller classifier"
            )
        return None


def _weights_entry(name: str) -> Any:
    """torchvision's default weights entry of `name`, or None when it has none."""
    import torchvision

    try:
        return torchvision.models.get_model_weights(name).DEFAULT
    except (ValueError, AttributeError, KeyError):
        return None


def _weights_path(url: str) -> Path:
    """Where the file of `url` lives on this machine: torch.hub's cache, which torchvision also uses."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urllib.parse.urlparse(url).path).name


def meta_classifier(name: str) -> nn.Module:
    """The classifier on the meta device, in eval mode: shapes and counts, no memory for its weights."""
    import torchvision

    check_name(name)
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # googlenet's note about its weight init says nothing to a user here
            return torchvision.models.get_model(name, weights=None).eval()
    except Exception as err:  # a model that cannot be built on the meta device says why in its own words
        raise ZooError(f"{name} could not be built ({first_line(err)})") from None


@functools.lru_cache(maxsize=64)
def classifier_info(name: str, input_shape: tuple[int, int, int] | None = None) -> Classifier:
    """Parameters and mult-adds an image of `name` at `input_shape` (its training size by default), and its weights.

    From torchvision's weights metadata where it has some (instant; mult-adds scaled from the training size by the
    number of pixels, as a convnet's cost grows), else counted on the meta device.
    """
    check_name(name)
    shape = tuple(input_shape or default_input(name))
    entry = _weights_entry(name)
    if entry is not None and "_ops" in entry.meta:
        _, h0, w0 = default_input(name)
        params, mult_adds = entry.meta["num_params"], round(entry.meta["_ops"] * 1e9 * shape[1] * shape[2] / (h0 * w0))
    else:
        params, mult_adds = _counted(name, shape)
    url = entry.url if entry is not None else None
    size = entry.meta.get("_file_size") if entry is not None else None
    return Classifier(name, params, mult_adds, shape, url, size)


def _counted(name: str, shape: tuple[int, ...]) -> tuple[int, int]:
    """(parameters, mult-adds an image) of `name`, counted from a forward pass on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    model = meta_classifier(name)
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model(torch.zeros(1, *shape, device="meta"))
    except Exception as err:
        raise ZooError(f"{name} does not run on a {'x'.join(map(str, shape))} input ({first_line(err)})") from None
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


@functools.lru_cache(maxsize=32)
def module_names(name: str) -> frozenset[str]:
    """The names of the classifier's modules: the rows of its RF table that a view can hook."""
    return frozenset(n for n, _ in meta_classifier(name).named_modules() if n)


def check_name(name: str) -> None:
    """ZooError unless `name` is one of torchvision's classifiers, with the closest names as a hint."""
    names = torchvision_classifiers()
    if name not in names:
        close = [n for n in names if name.lower().rstrip("0123456789_") in n][:6]
        hint = f" — did you mean {', '.join(close)}?" if close else f"; pick one of {', '.join(names[:8])}, ..."
        raise ZooError(f"torchvision has no classifier named {name!r}{hint}")


def _download(url: str, target: Path) -> None:
    """Fetch `url` into `target` atomically, checked against the hash prefix in its file name (torch.hub's rule)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(target.name)
    digest = hashlib.sha256()
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if match and not digest.hexdigest().startswith(match.group(1)):
            raise WeightsError(f"the download of {url} is corrupt (its SHA-256 does not match): try again")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def pretrained_weights_file(name: str) -> Path:
    """The local file of `name`'s pretrained weights, downloaded once from PyTorch's servers when missing."""
    entry = _weights_entry(name)
    if entry is None:
        raise WeightsError(f"torchvision has no pretrained weights for {name}: only the untrained network is shown")
    path = _weights_path(entry.url)
    if path.is_file():
        return path
    try:
        _download(entry.url, path)
    except (OSError, urllib.error.URLError) as err:
        host = urllib.parse.urlparse(entry.url).netloc
        reason = first_line(getattr(err, "reason", None) or err)
        raise WeightsError(
            f"the pretrained weights of {name} could not be downloaded from {host} ({reason}): this machine may be "
            f"offline. Copy {Path(entry.url).name} into {path.parent} to use them, or use the untrained network"
        ) from None
    return path


def load_state(path: Path) -> dict[str, torch.Tensor]:
    """A weights file read as tensors only (weights_only=True: a file that carries code is refused)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # an unpickling error, a truncated file, a file that is not torch's
        raise WeightsError(f"{path} is not a weights file torch can read safely ({first_line(err)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds no state dict (names to tensors): not a weights file of a torchvision model")
    return {_OLD_DENSENET_KEY.sub(r"\1\2", key): value for key, value in state.items()}


def build_classifier(name: str, weights: str = UNTRAINED) -> nn.Module:
    """The classifier in eval mode on the CPU: seeded random weights (untrained) or torchvision's pretrained ones."""
    import torchvision

    if weights not in WEIGHTS:
        raise ZooError(f"weights must be one of {', '.join(WEIGHTS)}, got {weights!r}")
    check_name(name)
    problem = classifier_info(name).budget_problem()
    if problem:
        raise ZooError(problem)
    state = load_state(pretrained_weights_file(name)) if weights == PRETRAINED else None
    extra = BUILD_FOR_WEIGHTS.get(name, {}) if state is not None else {}
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)  # the same untrained network on every machine and every call
        warnings.simplefilter("ignore")
        model = torchvision.models.get_model(name, weights=None, **extra)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise WeightsError(f"the weights file does not fit {name} ({first_line(err)})") from None
    return model.eval()


def imagenet_batch(image: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) uint8 image as the (1, 3, H, W) batch torchvision's classifiers take (ImageNet-normalised)."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ZooError(f"a torchvision classifier takes an RGB image of uint8 pixels (H, W, 3), got {image.shape}")
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255)[None]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (x - mean) / std
