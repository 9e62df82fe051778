"""Session fixtures: a small synthetic cohort generated once (SRI24 anatomy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainmets.synth.anatomy import resolve_atlas_dir


@pytest.fixture(scope="session")
def atlas_dir() -> Path:
    d = resolve_atlas_dir(None)
    if d is None:
        pytest.skip("SRI24 atlas not available")
    return d


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory, atlas_dir: Path):
    """Three patients: 0 complete (screenshot, overlay, infratentorial lesion, merging
    edema), 1 with a follow-up study and subtraction, 2 without FLAIR."""
    from brainmets.synth import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    summary = generate_cohort(out, 3, seed=11, workers=2)
    return summary
