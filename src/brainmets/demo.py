"""The steps of ``brainmets demo``: a synthetic cohort, a workspace set up to read it, and
the check of the de-identified files against the originals, and the check of the published
features and label maps against the cohort's truth.

:func:`brainmets.api.demo` runs them in order, with the pipeline in between; nothing here
prints. Layout of the demo folder::

    DIRECTORY/cohort/      the synthetic cohort (dicom/, truth/, clinical.xlsx, truth.json)
    DIRECTORY/workspace/   the workspace that reads it
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from brainmets.pipeline import load_pipeline
from brainmets.workspace import Workspace

if TYPE_CHECKING:
    from brainmets.deid.verify import VerifyReport
    from brainmets.synth.check import TruthCheck
    from brainmets.synth.cohort import CohortSummary

COHORT_DIR = "cohort"
WORKSPACE_DIR = "workspace"


def has_cohort(cohort_dir: Path) -> bool:
    """Whether ``cohort_dir`` holds a complete synthetic cohort (its ``truth.json``)."""
    return (Path(cohort_dir) / "truth.json").exists()


def make_cohort(
    cohort_dir: Path, patients: int, seed: int = 0, workers: int = 0
) -> tuple[CohortSummary, float]:
    """Generate ``patients`` synthetic patients into ``cohort_dir``; the summary and the
    seconds it took. Raises ``ValueError`` for fewer than one patient and the generator's
    ``TemplateError`` / ``CohortDirError`` (no anatomy; a folder that is not a cohort)."""
    if patients < 1:
        raise ValueError("patients must be at least 1")
    from brainmets.synth.cohort import generate_cohort

    t0 = time.perf_counter()
    summary = generate_cohort(Path(cohort_dir), patients, seed, workers=workers or None)
    return summary, time.perf_counter() - t0


def prepare_workspace(ws_dir: Path, cohort_dir: Path) -> Workspace:
    """Open (or create) the workspace at ``ws_dir`` and point it at the cohort: its DICOM as
    a source, the synthetic annotators' masks for ``segment`` and the clinical sheet for
    ``report``."""
    ws_dir, cohort_dir = Path(ws_dir), Path(cohort_dir)
    ws = Workspace.open(ws_dir) if (ws_dir / "brainmets.toml").exists() else Workspace.init(ws_dir)
    with ws.lock():
        ws.config.add_source(cohort_dir / "dicom")
        ws.config.set_stage_param("segment", "annotations_dir", str(cohort_dir / "truth" / "{mrn}"))
        ws.config.set_stage_param("report", "clinical_sheet", str(cohort_dir / "clinical.xlsx"))
        ws.config.save()
    return ws


def deidentified_dir(ws: Workspace) -> Path | None:
    """The workspace's de-identified DICOM folder, when the pipeline wrote one."""
    path = ws.config.path("dicom")
    return path if path.is_dir() else None


def check_deidentification(cohort_dir: Path, ws: Workspace) -> VerifyReport | None:
    """Look for leaks: the cohort's original DICOM against the workspace's de-identified
    files (None when there are none yet)."""
    out = deidentified_dir(ws)
    if out is None:
        return None
    from brainmets.deid import verify_tree

    return verify_tree(Path(cohort_dir) / "dicom", out, progress=False)


def check_against_truth(cohort_dir: Path, ws: Workspace) -> TruthCheck | None:
    """The workspace's published features and label maps against the synthetic cohort's
    truth (None when the cohort has no truth or the pipeline has no segment and features
    stages, e.g. a toy pipeline)."""
    from brainmets.synth.check import check_workspace, load_truth

    try:
        truth = load_truth(cohort_dir)
    except FileNotFoundError:
        return None
    pipeline = load_pipeline(ws.config.data["runner"]["pipeline"])
    if not truth.get("patients") or not {"segment", "features"} <= set(pipeline.names):
        return None
    return check_workspace(cohort_dir, ws.root)


def report_file(ws: Workspace) -> Path | None:
    """The HTML report the pipeline wrote (None when there is none)."""
    from brainmets.report import report_path

    return report_path(ws.root)
