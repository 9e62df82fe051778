"""Helpers shared by the test modules (import as ``from bm_testutil import ...``).

Kept out of ``conftest.py``: several test folders have their own ``conftest.py``, and
``from conftest import`` would pick whichever was imported last.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from brainmets.workspace import Workspace

TOY = "brainmets.pipeline.toy:pipeline"


def make_toy_workspace(root: Path, **stage_params: dict) -> Workspace:
    """A workspace running the toy pipeline, with the given stage parameters."""
    ws = Workspace.init(root)
    ws.config.data["runner"]["pipeline"] = TOY
    for stage, params in stage_params.items():
        for k, v in params.items():
            ws.config.set_stage_param(stage, k, v)
    ws.save_config()
    return Workspace.open(root)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the brainmets CLI in a subprocess (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "brainmets", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
