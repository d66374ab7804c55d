"""The code base stays clean under the project's ruff configuration."""

import shutil
import subprocess

import pytest
from conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (pip install -r requirements-dev.txt)")
def test_ruff_check_passes() -> None:
    result = subprocess.run(["ruff", "check", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
