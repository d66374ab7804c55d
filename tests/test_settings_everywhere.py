"""One edit adds a setting everywhere: every field of the config dataclasses has a flag on
`python -m s7core train` and a widget on the Train page, with the limits and words of its declaration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from s7core.__main__ import build_parser, main
from s7core.cli_train import setting_flag
from s7core.config import AugmentConfig, Setting, TrainConfig, settings
from s7core.data import make_tiny_cifar10
from s7core.recipes import get_recipe

APP = Path(__file__).resolve().parents[1] / "app.py"
RECIPE = "fast"  # the Train page opens on the fast preset (the quick demo), whose own recipe is "fast"


def field_paths() -> list[str]:
    """Every field of TrainConfig, with the fields of a nested config (augment) as augment.NAME."""
    paths = []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(TrainConfig(), f.name)
        if dataclasses.is_dataclass(value):
            paths += [f"{f.name}.{g.name}" for g in dataclasses.fields(value)]
        else:
            paths.append(f.name)
    return paths


def declared() -> dict[str, Setting]:
    return {s.path: s for s in settings()}


@pytest.fixture(scope="module")
def train_page(tmp_path_factory: pytest.TempPathFactory) -> AppTest:
    data = make_tiny_cifar10(tmp_path_factory.mktemp("data"), n_train=20, n_test=10)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("S7_DATA_DIR", str(data))
        mp.setenv("S7_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.switch_page("pages/train.py")
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _train_actions() -> dict[str, object]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return {a.dest: a for a in sub.choices["train"]._actions}


def test_every_field_is_a_declared_setting():
    assert sorted(field_paths()) == sorted(declared())
    assert set(field_paths()) >= {f"augment.{f.name}" for f in dataclasses.fields(AugmentConfig)}


def test_every_field_has_a_flag_with_its_declared_help(capsys):
    actions = _train_actions()
    for path in field_paths():
        s = declared()[path]
        action = actions[path]
        assert setting_flag(s) in action.option_strings, path
        assert action.default is None, path  # a flag left out keeps the recipe's value
        assert s.help.replace("%", "%%") in action.help, path
        if s.kind is not bool:
            assert s.allowed() in action.help and action.type is s.kind, path
        else:
            assert f"--no-{setting_flag(s)[2:]}" in action.option_strings, path
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert all(setting_flag(declared()[path]) in text for path in field_paths())
    assert "--tta" in actions["tta_flip"].option_strings  # the short form kept


def _widget(at: AppTest, s: Setting):
    key = f"train_{RECIPE}_{s.path.replace('.', '_')}"
    kind = "selectbox" if s.choices else "checkbox" if s.kind is bool else "number_input"
    return kind, getattr(at, kind)(key=key)


def test_every_field_has_a_widget_on_the_train_page_with_the_declared_words_and_limits(train_page: AppTest):
    config = get_recipe(RECIPE).config.to_dict()
    for path in field_paths():
        s = declared()[path]
        kind, widget = _widget(train_page, s)
        section, _, name = path.rpartition(".")
        assert widget.value == (config[section] if section else config)[name], path
        assert widget.label == s.title and s.help in widget.help, path
        if kind == "number_input":
            assert (widget.min, widget.max) == (s.low, s.high), path
        if kind == "selectbox":
            assert set(s.choices) <= set(widget.options), path
    groups = list(dict.fromkeys(s.group for s in settings()))
    assert [e.label for e in train_page.expander if e.label in groups] == groups  # one heading a group, in order


def test_the_page_and_the_command_line_share_the_cutout_limit(train_page: AppTest, capsys):
    cutout = declared()["augment.cutout"]
    _, widget = _widget(train_page, cutout)
    assert widget.max == cutout.high == 32
    assert AugmentConfig(cutout=32).cutout == 32
    assert main(["train", "--cutout", "33"]) == 2
    assert f"{cutout.label} must be {cutout.allowed()}, got 33 (given as --cutout)" in capsys.readouterr().err
