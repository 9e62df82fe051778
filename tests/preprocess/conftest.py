"""Fixtures of the preprocessing tests: the SRI24 atlas, small heads, the real test cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainmets.atlas import AtlasError, atlas_file
from brainmets.preprocess.images import Grid, Volume, load_volume
from brainmets.preprocess.registration import resample_array


@pytest.fixture(scope="session")
def atlas_dir() -> Path:
    try:
        return atlas_file("t1_brain.nii.gz").parent
    except AtlasError as exc:
        pytest.skip(f"SRI24 atlas not available: {exc}")


@pytest.fixture(scope="session")
def head_4mm(atlas_dir: Path) -> Volume:
    """The SRI24 head template at 4 mm (fast registrations)."""
    head = load_volume(atlas_dir / "t1_head.nii.gz")
    aff = head.affine.copy()
    aff[:3, :3] = aff[:3, :3] * 4
    grid = Grid((60, 60, 39), aff)
    return Volume(resample_array(head.data, head.affine, grid, np.eye(4)), aff)


@pytest.fixture(scope="session")
def tcga(testdata: Path) -> dict[str, Path]:
    from brainmets.preprocess.evaluation import tcga_inputs

    try:
        return tcga_inputs(testdata)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
