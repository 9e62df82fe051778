"""Shared fixtures: workspaces, the toy pipeline, the shared reference data."""

from __future__ import annotations

from pathlib import Path

import pytest

from bm_testutil import make_toy_workspace
from brainmets.shared import shared_dir, testdata_dir
from brainmets.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


@pytest.fixture
def toy_ws(tmp_path: Path) -> Workspace:
    return make_toy_workspace(tmp_path / "toy")


@pytest.fixture(scope="session")
def testdata() -> Path:
    d = testdata_dir()
    if not d.is_dir():
        pytest.skip(f"shared test data not found at {d} (set BRAINMETS_SHARED)")
    return d


@pytest.fixture(scope="session")
def shared() -> Path:
    d = shared_dir()
    if not d.is_dir():
        pytest.skip(f"shared data folder not found at {d} (set BRAINMETS_SHARED)")
    return d
