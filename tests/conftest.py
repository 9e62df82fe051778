"""Shared fixtures: workspaces, the toy pipeline, the shared reference data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brainmets.shared import shared_dir, testdata_dir
from brainmets.workspace import Workspace

TOY = "brainmets.pipeline.toy:pipeline"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


def make_toy_workspace(root: Path, **stage_params: dict) -> Workspace:
    ws = Workspace.init(root)
    ws.config.data["runner"]["pipeline"] = TOY
    for stage, params in stage_params.items():
        for k, v in params.items():
            ws.config.set_stage_param(stage, k, v)
    ws.save_config()
    return Workspace.open(root)


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


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the brainmets CLI in a subprocess (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "brainmets", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
