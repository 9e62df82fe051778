"""The ``features`` pipeline stage: count and measure one patient's lesions.

Reads the label map recorded by ``segment`` (role ``seg``), checks it (labels 0-3, integral,
on the preprocessed grid when that is recorded), and writes ``lesions.csv`` (one row per
lesion) and ``features.json`` (the reference sheet's per-patient features, details, lesions,
parameters). Every convention is a stage parameter (:class:`brainmets.lesions.FeatureParams`).
The cohort workbook is written from these files by :func:`write_workspace_workbook` (called by
the ``report``/``export`` stages).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brainmets.config import Config
from brainmets.features.clinical import ClinicalTable, load_clinical, map_to_pseudonyms
from brainmets.features.workbook import LESION_DESCRIPTION, write_workbook
from brainmets.fsutil import atomic_write_text
from brainmets.labelmaps.io import LabelMapError, check_same_grid, load_label_map
from brainmets.lesions.analysis import FeatureParams, analyse
from brainmets.lesions.atlas import load_atlas_labels
from brainmets.pipeline.stage import Stage, StageContext, StageResult

VERSION = "1"
#: stage parameters: every feature convention, plus the grid check
DEFAULTS: dict[str, Any] = {**FeatureParams().as_dict(), "check_grid_role": "t1c"}


def feature_params(params: Mapping[str, Any]) -> FeatureParams:
    return FeatureParams.from_mapping({k: v for k, v in params.items() if k != "check_grid_role"})


def lesions_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(
        buf, fieldnames=list(LESION_DESCRIPTION), extrasaction="ignore", lineterminator="\n"
    )
    w.writeheader()
    for r in rows:
        w.writerow(
            {k: (int(v) if isinstance(v, bool) else ("" if v is None else v)) for k, v in r.items()}
        )
    return buf.getvalue()


def run_features(ctx: StageContext) -> StageResult:
    params = feature_params(ctx.params)
    try:
        seg_path = ctx.input("segment", "seg")
    except KeyError:
        raise ValueError(
            f"no label map recorded for {ctx.patient_id} (segment output 'seg'); run "
            "`brainmets segment` first"
        ) from None
    lm = load_label_map(seg_path)
    role = str(ctx.params.get("check_grid_role") or "")
    if role and role in ctx.inputs.get("preprocess", {}):
        check_same_grid(lm, ctx.input("preprocess", role))
    atlas = load_atlas_labels(Config(root=ctx.root, data=ctx.config).atlas_dir)
    analysis = analyse(lm, params=params, atlas=atlas)
    if analysis.placement is not None and analysis.placement.mode == "array":
        ctx.warning(f"{seg_path.name}: placed on the atlas {analysis.placement.note}")
    doc = {
        "patient": ctx.patient_id,
        "seg": os.path.relpath(seg_path, ctx.root),
        "atlas": {"rule": atlas.rule, "folder": Path(atlas.source).name},
        **analysis.to_json(),
    }
    out_json = atomic_write_text(ctx.out_dir / "features.json", json.dumps(doc, indent=1))
    out_csv = atomic_write_text(ctx.out_dir / "lesions.csv", lesions_csv(doc["lesions"]))
    if analysis.features.n_lesions == 0:
        ctx.info("empty label map: no lesion (all features zero)")
    return StageResult(
        outputs={"features": out_json, "lesions": out_csv},
        metrics={k: v for k, v in analysis.features.row().items() if v is not None},
        tools=_tools(),
    )


def _tools() -> dict[str, str]:
    import cc3d
    import nibabel

    return {
        "connected-components-3d": str(getattr(cc3d, "__version__", "?")),
        "nibabel": nibabel.__version__,
    }


# ----------------------------------------------------------------- cohort level
def workspace_features(
    root: str | os.PathLike[str],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The recorded ``features.json`` of every patient of a workspace (successful runs):
    ``(patient -> feature row, patient -> lesions, parameters of the runs)``."""
    from brainmets.catalog import Catalog
    from brainmets.workspace import CATALOG_NAME

    root = Path(root)
    cat = Catalog.open(root / CATALOG_NAME, readonly=True)
    try:
        rows = cat.query(
            "SELECT o.patient_id, o.path FROM stage_outputs o JOIN stage_runs r"
            " ON r.patient_id = o.patient_id AND r.stage = o.stage"
            " WHERE o.stage = 'features' AND o.role = 'features' AND r.status = 'done'"
            " ORDER BY o.patient_id"
        )
    finally:
        cat.close()
    feats: dict[str, dict[str, Any]] = {}
    lesions: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, Any] = {}
    for r in rows:
        doc = json.loads((root / r["path"]).read_text())
        feats[r["patient_id"]] = doc["features"]
        lesions[r["patient_id"]] = doc["lesions"]
        params = params or doc.get("params", {})
    return feats, lesions, params


def workspace_clinical(
    root: str | os.PathLike[str], sheet: str | os.PathLike[str], patients: list[str]
) -> ClinicalTable:
    """Read, validate and pseudonymise the hospital's clinical sheet for a workspace."""
    from brainmets.workspace import Workspace

    ws = Workspace.open(root)
    table = load_clinical(sheet, key_column="MRN")
    return map_to_pseudonyms(table, ws.key(), patients)


def write_workspace_workbook(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    clinical_sheet: str | os.PathLike[str] | None = None,
    ids: Mapping[str, int | str] | None = None,
) -> tuple[Path, ClinicalTable | None]:
    """The dataset workbook of a workspace (features of every patient + clinical sheet)."""
    feats, lesions, params = workspace_features(root)
    table = workspace_clinical(root, clinical_sheet, sorted(feats)) if clinical_sheet else None
    path = write_workbook(
        out,
        feats,
        lesions,
        table,
        ids=ids,
        params=params,
        provenance={
            "source": "workspace",
            "clinical sheet": Path(clinical_sheet).name if clinical_sheet else "",
        },
    )
    return path, table


STAGE = Stage(
    name="features",
    func=run_features,
    scope="patient",
    version=VERSION,
    defaults=DEFAULTS,
    summary="count and measure lesions; per-patient imaging features",
    issue=7,
    tools=_tools,
)

__all__ = [
    "DEFAULTS",
    "STAGE",
    "LabelMapError",
    "run_features",
    "workspace_features",
    "write_workspace_workbook",
]
