"""``brainmets annotate``: the annotation tools from the command line (for scripting and
checks): lesion proposals, click-to-segment from a seed voxel, accepting proposals, the
saved versions. The commands print what they found; ``--save`` / ``accept`` write a new
version of the patient's masks (:mod:`brainmets.annotate.store`)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from brainmets.annotate.case import add_lesion, affine_of, case_files
from brainmets.annotate.grow import grow_lesion
from brainmets.annotate.images import CaseImages, load_case_images
from brainmets.annotate.propose import Candidate, ProposeOptions
from brainmets.annotate.proposers import ImageAnalysisProposer, proposer_from_config
from brainmets.annotate.store import Lesion, current_lesions, save_version
from brainmets.catalog import AnnotationVersion
from brainmets.workspace import Workspace


def default_user() -> str:
    """Who a save from the command line is recorded as (the login name)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _propose(
    ws: Workspace, case: CaseImages, files: dict[str, Path], min_confidence: float
) -> list[Candidate]:
    """The workspace's proposer (``[annotate]``; the image-analysis method by default)."""
    proposer = proposer_from_config(ws.config.data)
    if isinstance(proposer, ImageAnalysisProposer):
        proposer = ImageAnalysisProposer(ProposeOptions(min_confidence=min_confidence))
    return [c for c in proposer.propose(case, files) if c.confidence >= min_confidence]


def _ready(ws: Workspace) -> None:
    with ws.lock():  # bring the catalog to the current schema once
        ws.catalog().close()


def propose_command(
    ws: Workspace,
    patient_id: str,
    json_out: Path | None,
    min_confidence: float,
    console: Console,
) -> list[dict[str, Any]]:
    _ready(ws)
    files = case_files(ws, patient_id)
    case = load_case_images(files)
    cands = _propose(ws, case, files, min_confidence)
    rows = [c.as_dict(i) for i, c in enumerate(cands, start=1)]
    table = Table(title=f"{patient_id}: {len(rows)} candidate lesion(s)")
    for col in ("id", "centre voxel", "centre mm", "voxels", "confidence"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        table.add_row(
            str(r["id"]),
            ", ".join(f"{x:g}" for x in r["centre_voxel"]),  # type: ignore[attr-defined]
            ", ".join(f"{x:g}" for x in r["centre_mm"]),  # type: ignore[attr-defined]
            str(r["volume_voxels"]),
            f"{r['confidence']:.2f}",
        )
    console.print(table)
    if json_out is not None:
        json_out.write_text(json.dumps({"patient": patient_id, "candidates": rows}, indent=1))
    return rows


def grow_command(
    ws: Workspace,
    patient_id: str,
    at: tuple[int, int, int],
    steps: int,
    save: bool,
    user: str,
    console: Console,
) -> tuple[dict[str, Any], AnnotationVersion | None]:
    _ready(ws)
    files = case_files(ws, patient_id)
    case = load_case_images(files)
    m = grow_lesion(case, at, steps=steps)
    out: dict[str, Any] = {
        "patient": patient_id,
        "seed": list(at),
        "peak": list(m.peak),
        "steps": steps,
        **m.counts(),
        "centre_voxel": [round(c, 1) for c in m.centroid()],
        "contrast": round(m.contrast, 2),
        "touches_box": m.touches_box,
    }
    rec = None
    if save:
        lesions, n = add_lesion(current_lesions(ws, patient_id), m, case.shape)
        rec = save_version(ws, patient_id, lesions, affine_of(files), user, "grow")
        out["lesion"] = n
        out["version"] = rec.version
    return out, rec


def accept_command(
    ws: Workspace, patient_id: str, min_confidence: float, user: str, console: Console
) -> tuple[int, AnnotationVersion | None]:
    _ready(ws)
    files = case_files(ws, patient_id)
    case = load_case_images(files)
    cands = _propose(ws, case, files, min_confidence)
    if not cands:
        return 0, None
    lesions: list[Lesion] = current_lesions(ws, patient_id)
    for c in cands:
        lesions, _n = add_lesion(lesions, c.masks, case.shape)
    rec = save_version(
        ws,
        patient_id,
        lesions,
        affine_of(files),
        user,
        "propose",
        note=f"{len(cands)} proposal(s) accepted (confidence >= {min_confidence:g})",
    )
    return len(cands), rec
