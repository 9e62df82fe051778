"""The ``features`` pipeline stage: count and measure one patient's lesions.

Reads the label map recorded by ``segment`` (role ``seg``), checks it (labels 0-3, integral,
on the preprocessed grid when that is recorded) and, when segment recorded one, the lesion
instance map (role ``instances``: which annotated lesion each voxel was drawn for; oedema
shared by several lesions is split by it), and writes ``lesions.csv`` (one row per
lesion) and ``features.json`` (the reference sheet's per-patient features, details, lesions,
parameters). Every convention is a stage parameter (:class:`brainmets.lesions.FeatureParams`).
The cohort workbook is written from these files by
:func:`brainmets.cohort.write_workspace_workbook`.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainmets.cohort.workbook import LESION_DESCRIPTION
from brainmets.config import Config
from brainmets.fsutil import atomic_write_text
from brainmets.labelmaps.io import (
    LabelMapError,
    check_same_grid,
    load_instance_map,
    load_label_map,
)
from brainmets.lesions.analysis import FeatureParams, analyse
from brainmets.lesions.atlas import load_atlas_labels
from brainmets.pipeline.inputs import atlas_inputs
from brainmets.pipeline.stage import Stage, StageContext, StageResult, module_version

#: 2: shared oedema split by the annotated lesion (instance map); lesion centroids named
#: centroid_{x,y,z}_mm (SRI24 world, RAS+; issue 18)
VERSION = "2"


@dataclass(frozen=True)
class FeaturesOptions(FeatureParams):
    """The stage parameters (``[stages.features]``): every feature convention
    (:class:`FeatureParams`), plus the preprocess role whose grid the label map must share
    (``check_grid_role``; "" = no check)."""

    check_grid_role: str = "t1c"

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> FeaturesOptions:
        opts = cls.from_mapping(params)
        assert isinstance(opts, FeaturesOptions)
        return opts


#: stage parameters: every feature convention, plus the grid check
DEFAULTS: dict[str, Any] = {**FeatureParams().as_dict(), "check_grid_role": "t1c"}
#: outside inputs: the SRI24 labels (infratentorial flag, location names)
ATLAS_INPUTS = ("tissues.nii.gz", "suptent.nii.gz", "tzo116plus.nii.gz", "tzo116plus_labels.txt")


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
    instances = None
    if "instances" in ctx.inputs.get("segment", {}):  # per-lesion annotations: who drew what
        instances = load_instance_map(ctx.input("segment", "instances"), lm)
    analysis = analyse(lm, params=params, atlas=atlas, instances=instances)
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
        "connected-components-3d": module_version(cc3d),
        "nibabel": nibabel.__version__,
    }


STAGE = Stage(
    name="features",
    func=run_features,
    scope="patient",
    version=VERSION,
    defaults=DEFAULTS,
    options=FeaturesOptions,
    fingerprint_inputs=atlas_inputs(*ATLAS_INPUTS),
    summary="count and measure lesions; per-patient imaging features",
    tools=_tools,
)

__all__ = [
    "DEFAULTS",
    "STAGE",
    "LabelMapError",
    "run_features",
]
