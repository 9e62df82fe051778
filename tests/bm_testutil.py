"""Helpers shared by the test modules (import as ``from bm_testutil import ...``).

Kept out of ``conftest.py``: several test folders have their own ``conftest.py``, and
``from conftest import`` would pick whichever was imported last.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, input: str | None = None
):
    """Run the brainmets CLI in a subprocess (as a user would); ``input``: its stdin."""
    return subprocess.run(
        [sys.executable, "-m", "brainmets", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def _generator_hash() -> str:
    import brainmets.synth as synth

    h = hashlib.sha256()
    for p in sorted(Path(synth.__file__).parent.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def anatomy_missing_errors() -> tuple[type[Exception], ...]:
    """What the cohort generator raises when it has no anatomy: no SRI24 atlas and no MNI152
    fallback (nilearn). Tests skip for these only; any other error of the generator fails."""
    from brainmets.atlas import AtlasError
    from brainmets.synth.anatomy import TemplateError

    return (TemplateError, AtlasError)


def cached_synthetic_cohort(request: pytest.FixtureRequest, n_patients: int, seed: int) -> Path:
    """A synthetic cohort (``brainmets.synth``) kept in pytest's cache directory, keyed by
    the generator's source so later runs reuse it (``BRAINMETS_SYNTH_COHORT``: use that
    folder instead). Skips when no anatomy is available to generate one."""
    given = os.environ.get("BRAINMETS_SYNTH_COHORT")
    if given:
        return Path(given)
    synth = pytest.importorskip("brainmets.synth")
    key = f"bm-synth-{n_patients}-{seed}-"
    out = request.config.cache.mkdir(key + _generator_hash())
    if not (out / "truth.json").is_file():
        for stale in out.parent.glob(key + "*"):  # cohorts of older generator versions
            if stale != out and not stale.name.endswith(".partial"):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = out.with_name(out.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            synth.generate_cohort(tmp, n_patients, seed, workers=2)
        except anatomy_missing_errors() as exc:  # neither the SRI24 atlas nor the MNI152 fallback
            pytest.skip(f"no anatomy to generate a synthetic cohort ({exc})")
        shutil.rmtree(out)
        tmp.rename(out)
    return out


#: the shared test data's already-registered BraTS-METS case (preprocess passes it through)
BRATS_MET_CASE = Path("nifti") / "brats_met_00110_000"
#: convert role -> the case's file suffix
BRATS_MET_SUFFIXES = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}


def brats_met_inputs(case_dir: Path) -> dict[str, Path]:
    """The four images of :data:`BRATS_MET_CASE` (in ``case_dir``) by convert role."""
    return {
        role: case_dir / f"BraTS-MET-00110-000-{suffix}.nii.gz"
        for role, suffix in BRATS_MET_SUFFIXES.items()
    }


def preprocess_context(root: Path, inputs: dict[str, str], atlas_dir: str = ""):
    """A preprocess-stage context for patient PAT01 in the workspace folder ``root``, with
    ``inputs`` as the convert stage's recorded outputs (relative to ``root`` or absolute)."""
    from brainmets.pipeline.stage import StageContext
    from brainmets.preprocess.stage import STAGE

    return StageContext(
        patient_id="PAT01",
        stage="preprocess",
        params=dict(STAGE.defaults),
        root=root,
        config={"paths": {"derivatives": "data/derivatives"}, "atlas": {"dir": atlas_dir}},
        inputs={"convert": inputs},
    )
