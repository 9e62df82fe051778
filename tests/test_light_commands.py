"""``brainmets --help`` and ``brainmets status`` do not load the imaging stack.

Issue 15: every command used to import the whole package (about 1 s before anything
happened). These tests check *what* is imported (a wall-clock time is the benchmark's
business): the default pipeline's outline comes from the vocabulary, and it must agree with
the stages themselves.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from brainmets.stages import default_outline, default_pipeline
from brainmets.workspace import Workspace

#: modules a status or help command must not need
HEAVY = (
    "numpy",
    "scipy",
    "pandas",
    "pydicom",
    "nibabel",
    "SimpleITK",
    "openpyxl",
    "matplotlib",
    "brainmets.preprocess",
    "brainmets.classify",
    "brainmets.features",
    "brainmets.pipeline.runner",
)


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_default_outline_is_the_default_pipeline_by_name_and_scope() -> None:
    assert default_outline() == default_pipeline().outline()


def test_status_does_not_import_the_stages(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws")
    mods = _modules_after(
        "from brainmets import api\n"
        f"rep = api.status({str(tmp_path / 'ws')!r})\n"
        "assert rep.pipeline.names[0] == 'ingest'"
    )
    assert _heavy(mods) == []


def test_status_command_and_help_do_not_import_the_stages(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws")
    for argv in (["status", "-w", str(tmp_path / "ws")], ["--help"]):
        mods = _modules_after(
            "import sys\nfrom brainmets.cli import app\n"
            f"sys.argv = ['brainmets', *{argv!r}]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        )
        assert _heavy(mods) == [], argv
