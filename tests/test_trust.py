"""No pickle from untrusted places: every torch.load, np.load and unpickling call in the tree is checked here.

The check reads the syntax tree of every Python file, so a call split over lines or written as `numpy.load`
is found too. A new call without `weights_only=True` / `allow_pickle=False` fails this test, naming its line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("s7core", "pages", "bench", "tests")
# (module alias, function) -> the keyword and the value it must be given
GUARDED = {
    ("torch", "load"): ("weights_only", True),
    ("np", "load"): ("allow_pickle", False),
    ("numpy", "load"): ("allow_pickle", False),
}
# pickle itself may be used only to build test fixtures, and by the restricted CIFAR-10 unpickler
PICKLE_READERS = {"load", "loads", "Unpickler"}
PICKLE_ALLOWED = {Path("s7core/data/unpickle.py")}


def python_files() -> list[Path]:
    files = [REPO / "app.py"] + [p for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py"))]
    return [p for p in files if p.is_file()]


def _constant(node: ast.AST) -> object:
    return node.value if isinstance(node, ast.Constant) else ast.unparse(node)


def violations(source: str, relative: Path) -> list[str]:
    """Lines where a guarded load lacks its keyword, or where pickle reads outside the allowed files."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
        where = f"{relative}:{node.lineno}: {ast.unparse(node)[:100]}"
        rule = GUARDED.get((owner, node.func.attr))
        if rule is not None:
            keyword, wanted = rule
            given = {k.arg: _constant(k.value) for k in node.keywords}
            if given.get(keyword, "missing") is not wanted:
                found.append(f"{where} — pass {keyword}={wanted}")
        if owner == "pickle" and node.func.attr in PICKLE_READERS and relative not in PICKLE_ALLOWED:
            if relative.parts[0] != "tests":
                found.append(f"{where} — read with s7core.data.unpickle, never plain pickle")
    return found


def test_every_load_in_the_tree_refuses_pickled_code() -> None:
    files = python_files()
    assert len(files) > 50  # the walk really found the tree
    problems = [v for path in files for v in violations(path.read_text(), path.relative_to(REPO))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("torch.load(path)", "weights_only=True"),
        ("torch.load(\n    path,\n    weights_only=False,\n)", "weights_only=True"),
        ("np.load(f)", "allow_pickle=False"),
        ("numpy.load(f, allow_pickle=True)", "allow_pickle=False"),
        ("pickle.loads(blob)", "never plain pickle"),
    ],
)
def test_the_check_catches_each_unguarded_form(source: str, needle: str) -> None:
    (problem,) = violations(source, Path("s7core/new.py"))
    assert problem.startswith("s7core/new.py:1:") and needle in problem


def test_the_check_accepts_guarded_calls() -> None:
    source = "torch.load(p, map_location='cpu', weights_only=True)\nnp.load(f, allow_pickle=False)\n"
    assert violations(source, Path("s7core/new.py")) == []
