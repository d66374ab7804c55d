"""The named training recipes, as data: each one the recipe it starts from and the settings it changes.

`default` starts from TrainConfig's own defaults; every other recipe names its base, so a setting is stated
once, in the recipe that chooses it. Descriptions say what a recipe is; measured results live in README.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from s7core.config import TrainConfig, settings, with_settings
from s7core.errors import UserError


@dataclass(frozen=True)
class Recipe:
    """A named training config, with the recipe it derives from and what it changes there."""

    name: str
    description: str
    config: TrainConfig
    base: str | None = None  # the recipe it starts from; None: TrainConfig's defaults
    changes: Mapping[str, Any] = field(default_factory=dict)  # setting path -> value, relative to `base`

    def changes_text(self) -> str:
        """The settings this recipe changes from its base, in words: "batch size: 256 images per step; ..."."""
        declared = {s.path: s for s in settings()}
        return "; ".join(
            f"{declared[path].label}: {declared[path].shown(value)}" for path, value in self.changes.items()
        )


# name -> (base, description, changes). Listed in the order menus show them.
_DECLARED: dict[str, tuple[str | None, str, dict[str, Any]]] = {
    "reference": (
        "default",
        "The reference solution's recipe as it was: plain SGD, a small batch, RandomAffine + flip, and "
        "ReduceLROnPlateau stepped on the TEST loss — it looks at the test set to lower the learning rate, so "
        "its test accuracy is not a clean held-out figure.",
        # Every setting the reference fixed is stated, even where `default` agrees, so that moving a default
        # never changes this historical recipe.
        {
            "optimizer": "sgd",
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 0.0,
            "batch_size": 32,
            "epochs": 20,
            "schedule": "plateau",
            "plateau_factor": 0.5,
            "plateau_patience": 0,
            "plateau_on_test": True,
            "label_smoothing": 0.0,
            "augment.crop_padding": 0,
            "augment.flip": True,
            "augment.cutout": 0,
            "augment.affine": True,
            "val_split": 0,
        },
    ),
    "default": (
        None,
        "A sound recipe that never looks at the test set: one-cycle SGD with Nesterov momentum, random crop + "
        "flip and label smoothing; training images held out to pick the best checkpoint.",
        {"label_smoothing": 0.1, "val_split": 5000},
    ),
    "seed": (
        "default",
        "For the 'seed' net (the reference network): the 'default' recipe at twice its batch and learning "
        "rate, on all training images, in the fastest precision of this machine (measured), with mirror-image "
        "test-time augmentation. Taken over as it is; "
        "nothing in it was tuned, on the test set or on any other split.",
        {"lr": 0.1, "batch_size": 256, "epochs": 15, "val_split": 0, "tta_flip": True},
    ),
    "fast": (
        "default",
        "Four epochs for the 'fast' preset on a CPU: a whitened, frozen first conv and a frozen BN after it "
        "(so no gradient goes below the second conv), a large batch at a high "
        "peak learning rate, a smaller crop, the fastest precision of this machine (measured) and "
        "test-time augmentation with the mirror image and 1-pixel shifts, all training images, the test set "
        "scored once at the end. Chosen on held-out training images, never on the test set.",
        {
            "lr": 0.4,
            "batch_size": 512,
            "epochs": 4,
            "augment.crop_padding": 2,
            "val_split": 0,
            "tta_flip": True,
            "tta_shift": True,
            "whiten_stem": True,
            "freeze_stem_bn": True,
            "eval_every": 0,
        },
    ),
    "best": (
        "fast",
        "The 'fast' recipe stretched for the 'best' preset: as many epochs as fit in its time budget on the "
        "machine that trains (its speed measured before the first step, or sustained by the runs before), "
        "seven in ten of them on images scaled down to 24x24 pixels (about half the work of an epoch; fewer "
        "when the time left short of one more epoch lets some of them train at full size), the full crop, and "
        "the BN after the stem left to learn. "
        "Chosen on held-out training images, never on the test set.",
        {"epochs": 10, "small_epochs": 7, "time_budget": 11.5, "augment.crop_padding": 4, "freeze_stem_bn": False},
    ),
}


def _build(declared: Mapping[str, tuple[str | None, str, dict[str, Any]]]) -> dict[str, Recipe]:
    """Each declared recipe with its config: its base's config with its changes applied."""
    built: dict[str, Recipe] = {}

    def build(name: str) -> Recipe:
        if name not in built:
            base, description, changes = declared[name]
            start = build(base).config if base else TrainConfig()
            built[name] = Recipe(name, description, with_settings(start, changes), base, changes)
        return built[name]

    return {name: build(name) for name in declared}


RECIPES: dict[str, Recipe] = _build(_DECLARED)


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`."""
    if name not in RECIPES:
        raise UserError(f"unknown recipe '{name}': use one of {', '.join(RECIPES)}")
    return RECIPES[name]


def default_recipe(network_name: str) -> str:
    """The recipe a network was tuned with (a preset's own recipe, e.g. fast -> fast), else "default"."""
    return network_name if network_name in RECIPES and network_name != "reference" else "default"
