"""What the review app shows of a workspace: the worklist, a case, and its image files.

Read only, through the public API (:func:`brainmets.api.status`) and the catalog's typed
methods; every file comes from a recorded stage output and is checked to lie inside the
workspace and outside ``private/`` before it is served (:func:`image_file`). Patients are
named by their pseudonyms only: nothing here holds a source path or an original identifier.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, cast

from brainmets import api
from brainmets.catalog import Catalog
from brainmets.cohort.review import ApprovalRule, ReviewState, review_settings, review_states
from brainmets.workspace import Workspace

log = logging.getLogger("brainmets.review")

#: the images a case view loads: role -> (stage, stage output role)
IMAGE_ROLES: dict[str, tuple[str, str]] = {
    "t1n": ("preprocess", "t1n"),
    "t1c": ("preprocess", "t1c"),
    "t2w": ("preprocess", "t2w"),
    "t2f": ("preprocess", "t2f"),
    "seg": ("segment", "seg"),
}
#: the lesion-table columns sent to the browser (from features' lesions.csv)
LESION_COLUMNS = (
    "lesion",
    "volume_cm3",
    "et_vol",
    "nec_vol",
    "edema_vol",
    "max_diameter_mm",
    "centroid_i",
    "centroid_j",
    "centroid_k",
    "location",
    "region",
    "infratentorial",
    "subcentimetre",
)
#: the preprocessing QC values shown in the worklist
QC_VALUES = ("brain_volume_cm3", "mask_template_dice", "skull_stripper", "passthrough")


def approval_rule(ws: Workspace) -> ApprovalRule:
    """The workspace's rule: ``[review] required_approvals`` (default 1) and
    ``distinct_users`` (default true) of ``brainmets.toml`` (bad values: ``ConfigError``)."""
    return review_settings(ws.config.data).rule


def inside(ws: Workspace, rel: str) -> Path | None:
    """The file a catalog path names, or None when it (after following links) leaves the
    workspace, lies in ``private/`` or is not a regular file."""
    root = ws.root.resolve()
    try:
        p = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        return None
    private = ws.config.path("private").resolve()
    if not p.is_relative_to(root) or p.is_relative_to(private) or not p.is_file():
        return None
    return p


def image_file(ws: Workspace, cat: Catalog, patient_id: str, role: str) -> tuple[Path, str] | None:
    """(file, sha256) of one of a case's images (:data:`IMAGE_ROLES`); None when the
    patient, the role or the file is unknown, or the file would leave the workspace."""
    if role not in IMAGE_ROLES or cat.patient(patient_id) is None:
        return None
    stage, out_role = IMAGE_ROLES[role]
    rec = cat.stage_outputs(patient_id, stage).get(out_role)
    if rec is None:
        return None
    p = inside(ws, rec[0])
    if p is None:
        log.warning(
            "refused to serve %s/%s: the recorded file is not in the workspace", patient_id, role
        )
        return None
    return p, rec[1]


def _json_output(ws: Workspace, cat: Catalog, pid: str, stage: str, role: str) -> dict[str, Any]:
    rec = cat.stage_outputs(pid, stage).get(role)
    p = inside(ws, rec[0]) if rec else None
    if p is None:
        return {}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _lesions(ws: Workspace, cat: Catalog, pid: str) -> list[dict[str, Any]] | None:
    rec = cat.stage_outputs(pid, "features").get("lesions")
    p = inside(ws, rec[0]) if rec else None
    if p is None:
        return None
    rows = []
    with p.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict[str, Any] = {}
            for k in LESION_COLUMNS:
                v = r.get(k, "")
                if k in ("location", "region"):
                    row[k] = v
                elif k in ("infratentorial", "subcentimetre"):
                    row[k] = v in ("1", "True", "true")
                else:
                    try:
                        row[k] = float(v) if "." in v else int(v)
                    except ValueError:
                        row[k] = None
            rows.append(row)
    return rows


def _state_json(st: ReviewState) -> dict[str, Any]:
    last = st.last
    return {
        "state": st.state,
        "detail": st.detail,
        "by": last.user_name if last else None,
        "at": last.decided_at if last else None,
    }


def _decision_json(d: Any, current: str | None) -> dict[str, Any]:
    return {
        "id": d.id,
        "user": d.user_name,
        "role": d.role,
        "at": d.decided_at,
        "decision": d.decision,
        "reason": d.reason,
        "lesion": d.lesion,
        "voxel": list(d.voxel) if d.voxel else None,
        "label_map_current": d.label_map_sha256 == current,
    }


def worklist(ws: Workspace) -> list[dict[str, Any]]:
    """One row per patient: stage states, lesion count, QC values and flags, review state."""
    rep = api.status(ws)
    rule = approval_rule(ws)
    stages = [s.name for s in rep.pipeline.stages if s.scope == "patient"]
    out = []
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        states = review_states(cat, rule)
        for p in rep.patients:
            seg = cat.stage_outputs(p.id, "segment").get("seg")
            st = states[p.id]
            qc = _json_output(ws, cat, p.id, "preprocess", "qc")
            feats = cat.stage_run(p.id, "features")
            metrics = feats.metrics if feats and feats.status == "done" else {}
            out.append(
                {
                    "id": p.id,
                    "status": p.status,
                    "excluded_reason": p.excluded_reason,
                    "stages": {s: rep.state(p.id, s) for s in stages},
                    "included": p.id in rep.included,
                    "lesions": metrics.get("ET_num"),
                    "et_volume_cm3": metrics.get("ET_vol"),
                    "qc": {k: qc.get(k) for k in QC_VALUES if k in qc},
                    "flags": [str(f) for f in qc.get("flags", [])],
                    "has_images": seg is not None,
                    "review": _state_json(st),
                }
            )
    return out


def case(ws: Workspace, patient_id: str) -> dict[str, Any] | None:
    """A case's detail: its worklist row, lesion table, images and review history."""
    row = next((r for r in worklist(ws) if r["id"] == patient_id), None)
    if row is None:
        return None
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        seg = cat.stage_outputs(patient_id, "segment").get("seg")
        current = seg[1] if seg else None
        images = {
            role: (found[1][:16] if (found := image_file(ws, cat, patient_id, role)) else None)
            for role in IMAGE_ROLES
        }
        history = [_decision_json(d, current) for d in cat.review_decisions(patient_id)]
        lesions = _lesions(ws, cat, patient_id)
        ref = image_file(ws, cat, patient_id, "t1c")
    grid = None
    if ref is not None:  # voxel (array index) <-> world mm, for the viewers' cursor
        import nibabel as nib
        import numpy as np

        img = cast(nib.Nifti1Image, nib.load(str(ref[0])))
        aff = np.asarray(img.affine, dtype=np.float64)
        grid = {
            "shape": [int(x) for x in img.shape[:3]],
            "affine": aff.round(6).tolist(),
            "inverse": np.linalg.inv(aff).round(9).tolist(),
        }
    return {
        **row,
        "images": images,
        "label_map_sha256": current,
        "grid": grid,
        "lesion_table": lesions,
        "history": history,
        "rule": dict(vars(approval_rule(ws))),
    }


def review_counts(ws: Workspace) -> dict[str, int]:
    """Patients per review state."""
    counts: dict[str, int] = {}
    for r in worklist(ws):
        counts[r["review"]["state"]] = counts.get(r["review"]["state"], 0) + 1
    return counts
