"""Shared test settings: where the real CIFAR-10 copy lives, keeping tests off the user's folders, and the one local
Ray cluster of a test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-bin"


@pytest.fixture(autouse=True)
def _isolated_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs and caches go to temporary folders unless a test points them elsewhere."""
    if "S7_RUNS_DIR" not in os.environ:
        monkeypatch.setenv("S7_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The full CIFAR-10 copy beside the repository; skips the test when it is absent."""
    if not (REAL_DATA / "test_batch.bin").exists():
        pytest.skip(f"real CIFAR-10 not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The dashboard address of a local Ray cluster (tests/ray_cluster.py), started the first time a test asks for
    it and shared by every cluster test of the session."""
    from ray_cluster import local_cluster

    with local_cluster() as address:
        yield address
