"""The ``preprocess`` pipeline stage: BraTS-convention preprocessing of one patient.

Reads the convert stage's NIfTI files (roles ``t1``, ``t1c``, ``t2``, ``flair``), writes
``<ID>-t1n/t1c/t2w/t2f.nii.gz``, ``<ID>-mask.nii.gz``, ``<ID>-transforms.json`` (+ ITK
transform files), ``<ID>-qc.json`` into the stage folder, and returns the QC values as
metrics. See :mod:`brainmets.preprocess.pipeline` for the steps.
"""

from __future__ import annotations

from typing import Any

from brainmets.atlas import locate_atlas
from brainmets.config import Config
from brainmets.pipeline.inputs import atlas_inputs
from brainmets.pipeline.stage import Stage, StageContext, StageResult
from brainmets.preprocess.errors import PreprocessError
from brainmets.preprocess.images import SEQUENCES
from brainmets.preprocess.pipeline import PreprocessOptions, preprocess_case

DEFAULTS: dict[str, Any] = PreprocessOptions().to_params()
#: outside inputs: the SRI24 templates (registration target, reference grid, atlas skull
#: stripping); a changed template re-runs this stage and every later one
ATLAS_INPUTS = ("t1_brain.nii.gz", "t1_head.nii.gz")


def _tools() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for dist in ("picsl_greedy", "SimpleITK", "deepbet", "torch", "nibabel"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def run_preprocess(ctx: StageContext) -> StageResult:
    opts = PreprocessOptions.from_params(ctx.params)
    inputs: dict[str, Any] = {}
    missing = []
    for s in SEQUENCES:
        try:
            inputs[s] = ctx.input("convert", s)
        except KeyError:
            missing.append(s)
    if missing:
        raise PreprocessError(
            f"the convert stage recorded no {', '.join(missing)} image(s)", patient=ctx.patient_id
        )
    atlas_dir = Config(root=ctx.root, data=ctx.config).atlas_dir
    rep = locate_atlas(atlas_dir)
    result = preprocess_case(
        inputs,
        ctx.out_dir,
        ctx.patient_id,
        opts,
        atlas_dir=atlas_dir,
        log=ctx.info,
        timings_in_qc=False,  # same bytes on every run; the timings are metrics
        input_names={s: ctx.inputs["convert"][s] for s in inputs},  # workspace-relative
    )
    qc = {**result.qc, "timings_s": {k: round(v, 2) for k, v in result.timings.items()}}
    if qc.get("flags"):
        ctx.warning(f"QC flags: {', '.join(qc['flags'])}", flags=qc["flags"])
    tools = {**_tools(), **{f"preprocess.{k}": v for k, v in result.tools.items()}}
    tools["sri24_atlas"] = str(rep.directory)
    return StageResult(outputs=dict(result.outputs), metrics=qc, tools=tools)


STAGE = Stage(
    name="preprocess",
    func=run_preprocess,
    scope="patient",
    version="2",  # 2: atlas step from a 12-dof fit, fixed_image, lesion protection rework
    defaults=DEFAULTS,
    options=PreprocessOptions,
    fingerprint_inputs=atlas_inputs(*ATLAS_INPUTS),
    summary="co-register, register to SRI24 (BraTS), resample 1 mm 240x240x155, skull strip",
    tools=_tools,
)
