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
from s7core.paths import MAX_NAME_CHARS, PathError, check_folder_path, check_name, download_name, resolve_inside
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


# ---------------------------------------------------------------- folder paths typed in a box or given as a flag

FOLDER_PATHS = [
    ("/srv/../etc", "'..' part"),
    ("data\0x", "NUL character"),
    ("data\nmore", "newline or control character"),
    ("data\x1b[2J", "newline or control character"),
    ("/" + "d" * 5000, "at most 4,096"),
    ("/tmp/" + "é" * 200, "of over 255 bytes"),
]


@pytest.mark.parametrize(("text", "needle"), FOLDER_PATHS, ids=range(len(FOLDER_PATHS)))
def test_folder_paths_no_folder_can_have_are_refused_in_words(text: str, needle: str) -> None:
    with pytest.raises(PathError, match=needle):
        check_folder_path(text)


def test_a_folder_path_may_be_relative_or_in_the_home_folder_and_parent_parts_only_where_allowed(monkeypatch) -> None:
    monkeypatch.setenv("HOME", "/home/teacher")
    assert check_folder_path("~/cifar") == Path("/home/teacher/cifar")
    assert check_folder_path("shared/data") == Path("shared/data")
    assert check_folder_path("../shared/data", allow_parent=True) == Path("../shared/data")
    assert check_folder_path("/srv/a..b") == Path("/srv/a..b")  # '..' inside a name is only a name


def test_the_command_line_refuses_a_data_folder_no_folder_can_have(capsys) -> None:
    from s7core.__main__ import main

    assert main(["data", "--data-dir", "/tmp/x\nrm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the data folder") and "newline" in err and err.count("\n") == 1


def test_a_named_data_folder_that_does_not_exist_is_said_so(tmp_path) -> None:
    from s7core.data import find_cifar10

    status = find_cifar10(tmp_path / "typo")
    assert not status.found and f"the folder {tmp_path / 'typo'} does not exist — check the path" in status.message
