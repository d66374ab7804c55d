"""Every module of s7core imports on its own, and none of them pulls in streamlit (the library never knows it
is shown in a browser)."""

import json
import subprocess
import sys

from conftest import REPO_ROOT

# Runs in a fresh interpreter: this test process has streamlit loaded already, from the page tests.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
import s7core
names = ["s7core"] + [m.name for m in pkgutil.walk_packages(s7core.__path__, "s7core.")]
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as err:
        failed[name] = f"{type(err).__name__}: {err}"
streamlit = sorted(m for m in sys.modules if m.split(".")[0] == "streamlit")
print(json.dumps({"modules": names, "failed": failed, "streamlit": streamlit}))
"""


def _import_everything() -> dict:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_s7core_module_imports_without_streamlit() -> None:
    found = _import_everything()
    assert {"s7core.model", "s7core.links", "s7core.device", "s7core.__main__"} <= set(found["modules"])
    assert found["failed"] == {}
    assert found["streamlit"] == [], f"s7core pulled in {found['streamlit'][:5]}"
