"""Shared fixtures: workspaces, the toy pipeline, the shared reference data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bm_testutil import make_toy_workspace
from brainmets.shared import ENV_SHARED, shared_dir, testdata_dir
from brainmets.workspace import Workspace

#: the repository checkout holding these tests (the library never points at it)
REPO_ROOT = Path(__file__).resolve().parents[1]

# The development setup keeps the shared reference data beside the checkout: use it when
# BRAINMETS_SHARED is not set, wherever pytest was started (the CLI subprocesses inherit it).
if not os.environ.get(ENV_SHARED) and (REPO_ROOT.parent / "shared").is_dir():
    os.environ[ENV_SHARED] = str(REPO_ROOT.parent / "shared")


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
