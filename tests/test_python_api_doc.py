"""docs/python_api.md: its examples run, in order, as one script (the page stays true)."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "python_api.md"
NOT_RUN = "<!-- not run:"
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```python\n(?P<code>.*?)\n```", re.S)


def blocks() -> list[tuple[bool, str]]:
    """(run it?, code) for each ``python`` block of the page, in order."""
    return [
        (not m["before"].startswith(NOT_RUN), m["code"])
        for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))
    ]


def test_page_has_an_example_per_stage() -> None:
    text = DOC.read_text(encoding="utf-8")
    for package in (
        "api",
        "deid",
        "classify",
        "convert",
        "preprocess",
        "segment",
        "lesions",
        "cohort",
        "export",
    ):
        assert f"brainmets.{package}" in text, package
    assert sum(run for run, _ in blocks()) >= 9


def test_blocks_not_run_still_name_real_things() -> None:
    """A block the suite does not run still compiles and imports only names that exist."""
    for run, code in blocks():
        if run:
            continue
        tree = ast.parse(code)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                mod = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(mod, alias.name), f"{node.module}.{alias.name}"


def test_page_examples_run(tmp_path: Path) -> None:
    shared = Path(os.environ.get("BRAINMETS_SHARED", ""))
    needed = [
        shared / "testdata/dicom/ge_pioneer_3d_t1_mprage/dicom",
        shared / "testdata/nifti/brats_met_00110_000",
        shared / "atlas/sri24",
    ]
    missing = [str(p) for p in needed if not p.is_dir()]
    if missing:
        pytest.skip(f"shared test data absent: {', '.join(missing)}")
    script = tmp_path / "python_api_examples.py"
    script.write_text("\n\n".join(code for run, code in blocks() if run) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BRAINMETS_SHARED": str(shared)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    # what the page promises, seen in its output
    assert "patient de-identified" in proc.stdout
    assert "leak check: clean" in proc.stdout
    assert "1 found, 0 included" in proc.stdout
