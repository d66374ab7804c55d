"""Names that become paths never leave their folder: run names, run folders found by name, download names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runs_helpers import new_run
from test_train import micro_spec, quick_config

from s7core.data import make_tiny_cifar10
from s7core.paths import MAX_NAME_CHARS, PathError, check_name, download_name, resolve_inside
from s7core.runs.status import RunError
from s7core.runs.store import create_run, find_run

HOSTILE = [
    "..",
    ".",
    "../escape",
    "/etc/passwd",
    "a/b",
    "a\\b",
    "r1\0x",
    "r1\n",
    ".hidden",
    "x" * (MAX_NAME_CHARS + 1),
    "",
]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_run_names_are_refused_with_a_reason(name: str) -> None:
    with pytest.raises(PathError) as caught:
        check_name(name)
    assert "run name" in str(caught.value) and "letters, digits" in str(caught.value)


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_create_run_refuses_them_and_makes_nothing_outside_the_root(tmp_path: Path, name: str) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=20, n_test=10)
    root = tmp_path / "box" / "runs"
    with pytest.raises(RunError):
        create_run(micro_spec(), quick_config(), root, name, data)
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["runs"]
    assert list(root.iterdir()) == []


def test_a_symlink_under_the_root_that_leads_out_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "runs", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "sneaky")
    with pytest.raises(PathError, match="outside that folder"):
        resolve_inside(root, "sneaky")
    assert resolve_inside(root, "plain") == root.resolve() / "plain"


def test_find_run_by_name_never_climbs_out_of_the_runs_root(tmp_path: Path) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=20, n_test=10)
    new_run(tmp_path / "other", data, "victim")  # a run outside this root
    root = tmp_path / "runs"
    root.mkdir()
    assert (root / "../other/runs/victim/config.json").exists()  # the name leads to a real run, out of the root
    with pytest.raises(RunError, match="no run"):
        find_run("../other/runs/victim", root)


def test_a_long_spec_name_still_gives_a_valid_default_run_name(tmp_path: Path) -> None:
    data = make_tiny_cifar10(tmp_path / "data", n_train=20, n_test=10)
    spec = micro_spec()
    spec = type(spec)(layers=spec.layers, name="ü/../" + "n" * 190)
    run = create_run(spec, quick_config(), tmp_path / "runs", None, data, "default")
    assert run.parent == tmp_path / "runs" and check_name(run.name) == run.name


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_download_names_are_always_safe_file_names(text: str) -> None:
    name = download_name(text, ".json")
    assert name.endswith(".json") and "/" not in name and "\\" not in name and "\0" not in name
    assert not name.startswith(".") and len(name) <= MAX_NAME_CHARS + len(".json")
    assert check_name(name.removesuffix(".json")) == name.removesuffix(".json")
