"""Fixtures of the report tests: a small workspace run through features, report and export."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainmets.atlas import AtlasError, atlas_file


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
