"""The named recipes: exactly the configs of tests/golden/recipes.json, each derived from its base once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from s7core.config import TrainConfig, with_settings
from s7core.errors import UserError
from s7core.recipes import RECIPES, default_recipe, get_recipe

GOLDEN = Path(__file__).parent / "golden" / "recipes.json"


@pytest.mark.parametrize("name", list(json.loads(GOLDEN.read_text())))
def test_each_recipe_gives_exactly_its_golden_config(name):
    golden = json.loads(GOLDEN.read_text())[name]
    config = get_recipe(name).config.to_dict()
    assert config == golden
    assert json.dumps(config, sort_keys=True) == json.dumps(golden, sort_keys=True)  # 0.0 stays 0.0, 5 stays 5


def test_the_golden_file_holds_every_recipe():
    assert set(json.loads(GOLDEN.read_text())) == set(RECIPES)


def test_a_recipe_is_its_base_with_its_changes():
    for recipe in RECIPES.values():
        base = RECIPES[recipe.base].config if recipe.base else TrainConfig()
        assert with_settings(base, recipe.changes) == recipe.config, recipe.name
    assert (RECIPES["best"].base, RECIPES["fast"].base, RECIPES["seed"].base) == ("fast", "default", "default")
    assert RECIPES["default"].base is None


def test_a_derived_recipe_states_only_what_it_changes():
    """Only the reference restates values its base shares: it pins every setting the reference solution fixed."""
    for recipe in RECIPES.values():
        if recipe.name == "reference":
            continue
        base = (RECIPES[recipe.base].config if recipe.base else TrainConfig()).to_dict()
        for path, value in recipe.changes.items():
            section, _, name = path.rpartition(".")
            assert (base[section] if section else base)[name] != value, (recipe.name, path)


def test_descriptions_say_what_a_recipe_is_never_a_measured_figure():
    measured = re.compile(r"\d\s*%|\d+(\.\d+)?\s*(s|min|minutes|seconds)\b|\d+\.\d+")
    for recipe in RECIPES.values():
        assert recipe.description and not measured.search(recipe.description), recipe.name


def test_changes_text_names_the_settings_in_words():
    best = "epochs: 10; epochs at a smaller size: 7 epochs; time budget: 11.5 min; random-crop padding: 4 pixels; "
    best += "frozen BN after the stem: off"
    assert get_recipe("best").changes_text() == best
    assert get_recipe("default").changes_text() == "label smoothing: 0.1; held out for validation: 5,000 images"
    assert "test every: only after the last epoch" in get_recipe("fast").changes_text()


def test_reference_recipe_is_the_reference_solution_as_it_was():
    ref = get_recipe("reference")
    c = ref.config
    assert (c.optimizer, c.lr, c.momentum, c.weight_decay, c.batch_size, c.epochs) == ("sgd", 0.01, 0.9, 0.0, 32, 20)
    assert (c.schedule, c.plateau_factor, c.plateau_patience, c.plateau_on_test) == ("plateau", 0.5, 0, True)
    assert c.augment.affine and c.augment.flip and c.augment.crop_padding == 0
    assert "test set" in ref.description


def test_default_recipe_keeps_the_test_set_out_of_its_decisions():
    c = get_recipe("default").config
    assert not c.plateau_on_test and c.val_split > 0
    assert set(RECIPES) >= {"reference", "default"}
    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        get_recipe("nope")


def test_a_preset_tuned_with_its_own_recipe_gets_it_by_default():
    assert default_recipe("fast") == "fast" and default_recipe("best") == "best" and default_recipe("seed") == "seed"
    assert default_recipe("seed-edited") == "default" and default_recipe("my-net") == "default"
    assert default_recipe("reference") == "default"  # the recipe that looks at the test set is never a default
