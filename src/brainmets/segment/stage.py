"""The ``segment`` pipeline stage: import one patient's annotations and fuse them into
``<ID>-seg.nii.gz`` (``uint8``, labels 0-3) on the preprocessed (SRI24) grid.

Inputs:

* the annotation folder, ``annotations_dir`` (relative to the workspace or absolute) with
  ``{patient}`` (the pseudonymous ID) or ``{mrn}`` (the folder is named by the hospital ID:
  it is found by computing the pseudonym of every folder name beside it with the workspace
  key, so no mapping table is needed and the MRN is never written anywhere);
* the preprocess outputs when recorded: the reference grid (role ``reference_role``, default
  ``t1c``) and the template-to-native transforms (roles ``transform_role``, default
  ``transform_{sequence}``: the ITK files ``<ID>-<seq>-to-sri24.txt``; else ``transforms``,
  ``<ID>-transforms.json``; see :mod:`brainmets.segment.transform`). Without them the SRI24
  ``t1_brain.nii.gz`` grid is used, and native masks need a ``transforms.json`` (or a
  synthetic ``truth.json``) in the annotation folder.

A patient whose annotation folder does not exist (for ``{mrn}``: no folder beside the others
belongs to the patient) is not an error: the stage returns ``waiting`` ("awaiting
annotation: ..."), the patient's later stages wait, and the next run looks again. A folder
that exists but holds nothing readable is an error.

Outputs: ``seg`` (``<ID>-seg.nii.gz``) and ``report`` (``segment.json``: format, every mask
and how it was placed, per-lesion voxel counts, every conflict and how it was resolved).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from brainmets.atlas import atlas_file
from brainmets.config import Config
from brainmets.fsutil import atomic_write_text
from brainmets.labelmaps.io import save_instance_map, save_label_map
from brainmets.pipeline.inputs import InputContext, describe_atlas, describe_folder
from brainmets.pipeline.options import option_defaults
from brainmets.pipeline.stage import Stage, StageContext, StageResult
from brainmets.segment.fusion import DEFAULT_MIN_EDEMA_VOXELS, FusionRules
from brainmets.segment.importer import (
    DEFAULT_LABEL_MAP_NAMES,
    DEFAULT_REGION_SEQUENCE,
    ImportOptions,
    annotation_transforms,
    import_annotations,
    reference_grid,
)
from brainmets.segment.sources import DEFAULT_PATTERNS, AnnotationError, AnnotationsMissing
from brainmets.segment.transform import Transform, read_transform, transforms_from_case_json

VERSION = "3"  # 2: volume-keeping mask resampling, edema cleaning; 3: connectivity, support
TRANSFORM_SOURCES = ("auto", "preprocess", "annotations")
REFERENCES = ("auto", "preprocess", "atlas")


@dataclass(frozen=True)
class SegmentOptions:
    """The stage parameters (``[stages.segment]``), checked when built: the annotation
    folder, the import options (:class:`ImportOptions`), the fusion rules
    (:class:`FusionRules`), where the transforms and the reference grid come from."""

    annotations_dir: str = "annotations/{patient}"
    format: str = "auto"
    mask_patterns: dict[str, str | list[str]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_PATTERNS.items()}
    )
    region_sequence: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_REGION_SEQUENCE))
    label_map_names: list[str] = field(default_factory=lambda: list(DEFAULT_LABEL_MAP_NAMES))
    label_mapping: str | dict[str, Any] = "brats-mets"
    mask_space: str = "auto"
    atlas_alignment: str = "auto"
    mask_threshold: float = 0.5
    mask_interpolation: str = "volume"
    rtstruct_pixel_mm: float = 0.5
    transform_source: str = "auto"
    transform_role: str = "transform_{sequence}"
    transforms_file: str = "transforms.json"
    reference: str = "auto"
    reference_role: str = "t1c"
    necrosis_outside_core: str = "keep"
    core_outside_whole: str = "keep"
    overlap_priority: list[int] = field(default_factory=lambda: [1, 3, 2])
    min_edema_voxels: int = DEFAULT_MIN_EDEMA_VOXELS
    detached_edema: str = "join"
    edema_shell: str = "drop"
    edema_support: str = "drop"
    apart_contact: str = "drop"
    min_inside_brain: float = 0.5

    def __post_init__(self) -> None:
        if self.transform_source not in TRANSFORM_SOURCES:
            raise ValueError(f"transform_source must be one of {TRANSFORM_SOURCES}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}")
        options_from_params(dataclasses.asdict(self))  # the import options' own checks


DEFAULTS: dict[str, Any] = option_defaults(SegmentOptions)


def options_from_params(params: dict[str, Any]) -> ImportOptions:
    """:class:`ImportOptions` from the stage parameters."""
    return ImportOptions(
        format=str(params["format"]),
        mask_patterns={
            k: [v] if isinstance(v, str) else list(v) for k, v in params["mask_patterns"].items()
        },
        region_sequence=dict(params["region_sequence"]),
        label_map_names=tuple(params["label_map_names"]),
        label_mapping=params["label_mapping"],
        mask_space=str(params["mask_space"]),
        atlas_alignment=str(params["atlas_alignment"]),
        mask_threshold=float(params["mask_threshold"]),
        mask_interpolation=str(params["mask_interpolation"]),
        rtstruct_pixel_mm=float(params["rtstruct_pixel_mm"]),
        rules=FusionRules.from_mapping(params),
    )


def resolve_annotation_dir(root: Path, pattern: str, patient: str, key: bytes | None) -> Path:
    """The patient's annotation folder from ``pattern`` (see the module docstring).

    For ``{mrn}``, a missing parent folder or no folder of the patient in it raises
    :class:`AnnotationsMissing`; for ``{patient}`` the path is returned as it is."""
    if "{mrn}" in pattern:
        if key is None:
            raise AnnotationError("annotations_dir uses {mrn} but the workspace key is unavailable")
        from brainmets.ids import patient_pseudonym

        head, _, tail = pattern.partition("{mrn}")
        parent = Path(head.format(patient=patient))
        parent = parent if parent.is_absolute() else root / parent
        if not parent.is_dir():
            raise AnnotationsMissing(f"annotation folder {parent} does not exist")
        for entry in sorted(parent.iterdir()):
            if entry.is_dir() and patient_pseudonym(key, entry.name) == patient:
                rest = tail.lstrip("/").format(patient=patient)
                return entry / rest if rest else entry
        raise AnnotationsMissing(
            f"no folder in {parent} belongs to {patient} (folder names are compared as MRNs "
            "through the workspace key)"
        )
    p = Path(pattern.format(patient=patient))
    return p if p.is_absolute() else root / p


def _key(ctx: StageContext, pattern: str) -> bytes | None:
    """The workspace key when the annotation folders are named by MRN (``{mrn}``), else None.
    A key that cannot be read is an error (raised, naming the file), never skipped."""
    if "{mrn}" not in pattern:
        return None
    from brainmets.workspace import read_key

    return read_key(Config(root=ctx.root, data=ctx.config).key_file)


def _transforms(
    ctx: StageContext, folder: Path, params: dict[str, Any]
) -> tuple[dict[str, Transform], str]:
    source = params["transform_source"]
    if source not in TRANSFORM_SOURCES:
        raise ValueError(f"transform_source must be one of {TRANSFORM_SOURCES}")
    pre: dict[str, Transform] = {}
    recorded = ctx.inputs.get("preprocess", {})
    for seq in sorted(set(params["region_sequence"].values())):
        role = str(params["transform_role"]).format(sequence=seq)
        if role in recorded:
            pre[seq] = read_transform(ctx.input("preprocess", role))
    if "transforms" in recorded:  # the case's transforms.json fills what the roles lack
        for seq, t in transforms_from_case_json(ctx.input("preprocess", "transforms")).items():
            pre.setdefault(seq, t)
    if source == "preprocess" or (source == "auto" and pre):
        if not pre:
            raise AnnotationError(
                f"no preprocess transform recorded for {ctx.patient_id} (roles "
                f"'{params['transform_role']}'); run `brainmets preprocess` first"
            )
        return pre, "preprocess"
    return annotation_transforms(folder, str(params["transforms_file"])), "annotations"


def _reference(ctx: StageContext, params: dict[str, Any]) -> tuple[Path, str]:
    mode = params["reference"]
    if mode not in REFERENCES:
        raise ValueError(f"reference must be one of {REFERENCES}")
    role = str(params["reference_role"])
    if mode in ("auto", "preprocess") and role in ctx.inputs.get("preprocess", {}):
        return ctx.input("preprocess", role), f"preprocess/{role}"
    if mode == "preprocess":
        raise AnnotationError(
            f"the preprocess output '{role}' of {ctx.patient_id} is not recorded; run "
            "`brainmets preprocess` first (or set [stages.segment] reference = 'atlas')"
        )
    atlas_dir = Config(root=ctx.root, data=ctx.config).atlas_dir
    return atlas_file("t1_brain.nii.gz", atlas_dir), "atlas t1_brain.nii.gz"


def _awaiting(ctx: StageContext, pattern: str, folder: Path | None) -> str:
    """What the stage waits for. A folder named by the hospital ID (``{mrn}``) is never
    shown: it is ``<annotations of ID>``; else the folder relative to the workspace."""
    if "{mrn}" in pattern or folder is None:
        name = f"<annotations of {ctx.patient_id}>"
    else:
        try:
            name = str(folder.relative_to(ctx.root))
        except ValueError:
            name = str(folder)
    return f"awaiting annotation: no annotation folder {name} for {ctx.patient_id}"


def run_segment(ctx: StageContext) -> StageResult:
    params = ctx.params
    options = options_from_params(params)
    pattern = str(params["annotations_dir"])
    try:
        folder = resolve_annotation_dir(ctx.root, pattern, ctx.patient_id, _key(ctx, pattern))
    except AnnotationsMissing:
        return StageResult(waiting=_awaiting(ctx, pattern, None))
    if not folder.exists():  # not annotated yet: a state, not a failure
        return StageResult(waiting=_awaiting(ctx, pattern, folder))
    ref_path, ref_desc = _reference(ctx, params)
    if ref_desc.startswith("atlas"):
        ctx.info("no preprocessed reference recorded: writing on the SRI24 t1_brain grid")
    shape, affine, header = reference_grid(ref_path)
    try:
        transforms, t_source = _transforms(ctx, folder, params)
        result = import_annotations(
            folder, shape, affine, options, transforms, ctx.patient_id, log=ctx.warning
        )
    except ValueError as exc:  # AnnotationError, LabelMapError, TransformError
        if "{mrn}" not in str(params["annotations_dir"]):
            raise
        # the folder is named by the hospital ID: keep it out of logs and the catalog
        raise type(exc)(
            str(exc).replace(str(folder), f"<annotations of {ctx.patient_id}>")
        ) from None
    for c in result.fusion.conflicts:
        ctx.warning(
            f"lesion {c.lesion}: {c.kind} ({c.voxels} voxels): {c.resolution}",
            lesion=c.lesion,
            kind=c.kind,
        )
    shown = (
        f"<annotations of {ctx.patient_id}>"
        if "{mrn}" in str(params["annotations_dir"])  # the folder is named by the hospital ID
        else str(folder)
    )
    _check_placement(ctx, result, shown, params)
    removed = result.fusion.removed
    if removed:
        ctx.info(
            f"edema fragments removed (partial volume between the whole-tumour and core "
            f"grids): {sum(n for n, _ in removed.values())} component(s), "
            f"{sum(v for _, v in removed.values())} voxel(s) in {len(removed)} lesion(s)"
        )
    seg = save_label_map(
        ctx.out_dir / f"{ctx.patient_id}-seg.nii.gz", result.labels, affine, header
    )
    outputs = {"seg": seg}
    if result.fusion.instances is not None and result.fusion.instance_names:
        outputs["instances"] = save_instance_map(
            ctx.out_dir / f"{ctx.patient_id}-lesions.nii.gz",
            result.fusion.instances,
            affine,
            header,
        )
    report = {
        "patient": ctx.patient_id,
        "reference_grid": ref_desc,
        "transforms": t_source,
        **result.report(),
    }
    rep = atomic_write_text(ctx.out_dir / "segment.json", json.dumps(report, indent=1))
    vox = report["voxels"]
    return StageResult(
        outputs={**outputs, "report": rep},
        metrics={
            "format": result.format,
            "masks": len(result.sources),
            "conflicts": len(result.fusion.conflicts),
            "edema_fragments_removed": sum(n for n, _ in removed.values()),
            **{f"{k}_voxels": v for k, v in vox.items()},
        },
        tools=_tools(),
    )


def _check_placement(ctx: StageContext, result: Any, folder: str, params: dict[str, Any]) -> None:
    """A label map that lies mostly outside the brain (the preprocess brain mask, when
    recorded) means a wrong grid or transform: an error naming the annotations, never a
    published lesion map."""
    lesion = result.labels > 0
    n = int(lesion.sum())
    limit = float(params["min_inside_brain"])
    if not n or limit <= 0 or "mask" not in ctx.inputs.get("preprocess", {}):
        return
    import nibabel as nib

    img = cast(nib.Nifti1Image, nib.load(str(ctx.input("preprocess", "mask"))))
    brain = np.asarray(img.dataobj) > 0
    if brain.shape != lesion.shape:
        return
    inside = float((lesion & brain).sum()) / n
    if inside < limit:
        raise AnnotationError(
            f"{folder}: only {inside:.0%} of the {n} labelled voxel(s) lie inside the brain "
            f"mask (min_inside_brain = {limit:g}): the annotation's grid or transform is wrong"
        )


def _tools() -> dict[str, str]:
    import highdicom
    import nibabel
    import scipy

    return {
        "nibabel": nibabel.__version__,
        "scipy": scipy.__version__,
        "highdicom": highdicom.__version__,
    }


def _fingerprint_inputs(inp: InputContext) -> Any:
    """The annotation folder's files (names relative to the folder, content hashes) and,
    when the reference grid may be the atlas's, the SRI24 ``t1_brain.nii.gz``: a changed
    annotation or template re-runs the stage.

    A folder that does not exist (or, for ``{mrn}``, no folder of the patient) is described
    as missing; a workspace key that cannot be read (needed for ``{mrn}``) raises."""
    pattern = str(inp.params["annotations_dir"])
    key = inp.key() if "{mrn}" in pattern else None
    try:
        folder = resolve_annotation_dir(inp.root, pattern, inp.patient_id, key)
    except AnnotationError as exc:  # {mrn}: no folder of this patient (yet)
        annotations: dict[str, Any] = {"missing": str(exc)}
    else:
        annotations = describe_folder(folder, "annotation folder")
    out: dict[str, Any] = {"annotations": annotations}
    if inp.params["reference"] != "preprocess":
        out.update(describe_atlas(["t1_brain.nii.gz"], inp.config.atlas_dir))
    return out


STAGE = Stage(
    name="segment",
    func=run_segment,
    scope="patient",
    version=VERSION,
    defaults=DEFAULTS,
    options=SegmentOptions,
    summary="import annotations and fuse them into one label map",
    fingerprint_inputs=_fingerprint_inputs,
    tools=_tools,
)
