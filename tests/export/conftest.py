"""Fixtures of the export tests (the small workspace of ``tests/report/rx_workspace.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from brainmets.atlas import AtlasError, atlas_file

_REPORT_TESTS = str(Path(__file__).resolve().parents[1] / "report")
if _REPORT_TESTS not in sys.path:
    sys.path.insert(0, _REPORT_TESTS)


@pytest.fixture(scope="session")
def sri24_atlas() -> Path:
    try:
        return atlas_file("t1_brain.nii.gz").parent
    except AtlasError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def rx(tmp_path_factory: pytest.TempPathFactory, sri24_atlas: Path):
    from rx_workspace import make_workspace

    return make_workspace(tmp_path_factory.mktemp("rx"))
