"""Annotation import: find a patient's annotations, bring them onto the target grid, fuse.

:func:`import_annotations` is the whole operation without the pipeline around it (the
``segment`` stage and tests call it): it reads the annotation folder in the chosen format,
resamples every mask that is not on the target grid (native masks through a world transform,
atlas-space masks through their affines or, for the BraTS array layout, by array index), and
fuses them (:mod:`brainmets.segment.fusion`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np

from brainmets.labelmaps.arrays import VOLUME_LEVELS, grid_overlap, nonzero_box
from brainmets.labelmaps.io import grid_difference, parse_mapping
from brainmets.segment.fusion import (
    SUPPORT,
    FusionResult,
    FusionRules,
    RegionMask,
    fuse,
    separate_drawn_apart,
    touching_lesions,
)
from brainmets.segment.sources import (
    DEFAULT_PATTERNS,
    AnnotationError,
    AnnotationMask,
    MaskNamer,
    find_dicom_seg,
    find_rtstruct,
    read_dicom_seg,
    read_label_map_annotation,
    read_nifti_masks,
    read_rtstruct,
)
from brainmets.segment.transform import (
    THICK_SLICE_RATIO,
    Transform,
    TransformError,
    WorldTransform,
    partial_volume,
    resample_mask,
    resample_nearest,
    transform_from_json,
)
from brainmets.vocab import SUFFIX

FORMATS = ("auto", "masks", "dicom-seg", "rtstruct", "label-map")
MASK_SPACES = ("auto", "native", "atlas")
ALIGNMENTS = ("auto", "world", "array")
INTERPOLATIONS = ("nearest", "linear", "volume")

#: sequence each region is drawn on (the reference: core and necrosis on T1c, whole on FLAIR)
DEFAULT_REGION_SEQUENCE = {
    "core": "t1c",
    "necrosis": "t1c",
    "enhancing": "t1c",
    "whole": "t2f",
    "edema": "t2f",
    "labels": "t1c",
}
DEFAULT_LABEL_MAP_NAMES = [
    "{patient}-seg.nii.gz",
    "seg.nii.gz",
    "label_map.nii.gz",
    "label_map_sri24.nii.gz",
]
#: synthetic-cohort series kinds -> sequence names
_SYNTH_KINDS = {
    "T1": SUFFIX["t1"],
    "T1c": SUFFIX["t1c"],
    "T2": SUFFIX["t2"],
    "FLAIR": SUFFIX["flair"],
}


@dataclass(frozen=True)
class ImportOptions:
    """Options of :func:`import_annotations` (the ``segment`` stage's parameters)."""

    format: str = "auto"
    mask_patterns: Mapping[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_PATTERNS))
    region_sequence: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_REGION_SEQUENCE)
    )
    label_map_names: tuple[str, ...] = tuple(DEFAULT_LABEL_MAP_NAMES)
    label_mapping: str | Mapping[int, int] = "brats-mets"
    mask_space: str = "auto"
    atlas_alignment: str = "auto"
    mask_threshold: float = 0.5
    mask_interpolation: str = "volume"
    rtstruct_pixel_mm: float = 0.5
    rules: FusionRules = field(default_factory=FusionRules)

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("format", self.format, FORMATS),
            ("mask_space", self.mask_space, MASK_SPACES),
            ("atlas_alignment", self.atlas_alignment, ALIGNMENTS),
            ("mask_interpolation", self.mask_interpolation, INTERPOLATIONS),
        ):
            if value not in allowed:
                raise ValueError(f"segment parameter {name}={value!r}: allowed {list(allowed)}")


@dataclass
class ImportResult:
    """The fused label map and what it came from."""

    fusion: FusionResult
    format: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return self.fusion.labels

    def report(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sources": self.sources,
            "skipped_files": self.skipped,
            "notes": self.notes,
            **self.fusion.report(),
        }


# --------------------------------------------------------------- transform lookup
def annotation_transforms(
    folder: Path, transforms_file: str = "transforms.json"
) -> dict[str, Transform]:
    """Transforms stored with the annotations: ``transforms_file`` (``{name: transform}``,
    name = a file stem or a sequence such as ``t1c``), or a synthetic-cohort ``truth.json``."""
    out: dict[str, Transform] = {}
    tf = folder / transforms_file
    if tf.is_file():
        try:
            obj = json.loads(tf.read_text())
        except json.JSONDecodeError as exc:
            raise TransformError(f"{tf}: not valid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise TransformError(f"{tf}: expected an object {{name: transform}}")
        for name, spec in obj.items():
            out[str(name)] = transform_from_json(spec, f"{transforms_file}:{name}")
    truth = folder / "truth.json"
    if truth.is_file():
        out = {**synthetic_truth_transforms(truth), **out}
    return out


def synthetic_truth_transforms(path: Path) -> dict[str, Transform]:
    """Template-to-series transforms of a synthetic patient's ``truth.json`` (baseline study),
    keyed by sequence (``t1c``, ``t2f``, ...) and by mask / SEG file stem. Only the matrices
    are read."""
    obj = json.loads(path.read_text())
    if "studies" not in obj or "truth_files" not in obj:
        return {}
    study = obj["studies"][0]
    by_dir: dict[str, WorldTransform] = {}
    out: dict[str, Transform] = {}
    for s in study.get("series", []):
        t = WorldTransform.from_matrix(s["template_to_scanner"], source=f"{path.name}:{s['kind']}")
        by_dir[s["dir"]] = t
        seq = _SYNTH_KINDS.get(s["kind"])
        if seq and seq not in out:
            out[seq] = t
    files = obj["truth_files"]
    for stem, info in files.get("masks", {}).items():
        if info.get("series") in by_dir:
            out[stem] = by_dir[info["series"]]
    for info in files.get("seg", {}).values():
        if info.get("series") in by_dir:
            out[Path(info["path"]).name.removesuffix(".dcm")] = by_dir[info["series"]]
    return out


# ------------------------------------------------------------------- reading
def _find_label_map(folder: Path, names: tuple[str, ...], patient: str) -> Path | None:
    for n in names:
        p = folder / n.format(patient=patient)
        if p.is_file():
            return p
    return None


def read_annotations(
    folder: Path, options: ImportOptions, patient: str = ""
) -> tuple[str, list[AnnotationMask], list[str]]:
    """Read the annotation folder: ``(format used, masks, files skipped)``."""
    if not folder.is_dir():
        raise AnnotationError(f"annotation folder {folder} does not exist")
    namer = MaskNamer(options.mask_patterns)
    fmt = options.format
    skipped: list[str] = []
    if fmt in ("auto", "masks"):
        masks, skipped = read_nifti_masks(folder, namer, options.mask_threshold)
        if masks or fmt == "masks":
            if not masks:
                raise AnnotationError(
                    f"{folder}: no NIfTI mask matches the mask patterns "
                    f"({sorted(namer_patterns(options))}); files seen: {skipped[:10]}"
                )
            return "masks", masks, skipped
    if fmt in ("auto", "dicom-seg"):
        segs = find_dicom_seg(folder)
        if segs or fmt == "dicom-seg":
            if not segs:
                raise AnnotationError(f"{folder}: no DICOM SEG file found")
            out: list[AnnotationMask] = []
            for p in segs:
                out += read_dicom_seg(p, namer, str(p.relative_to(folder)), options.mask_threshold)
            return "dicom-seg", out, skipped
    if fmt in ("auto", "rtstruct"):
        rts = find_rtstruct(folder)
        if rts or fmt == "rtstruct":
            if not rts:
                raise AnnotationError(f"{folder}: no RTSTRUCT file found")
            out = []
            for p in rts:
                out += read_rtstruct(
                    p, namer, str(p.relative_to(folder)), None, options.rtstruct_pixel_mm
                )
            if not out:
                raise AnnotationError(
                    f"{folder}: no RTSTRUCT ROI name matches a tumour region "
                    "(configure mask_patterns)"
                )
            return "rtstruct", out, skipped
    lm = _find_label_map(folder, options.label_map_names, patient)
    if lm is not None:
        mapping = parse_mapping(options.label_mapping)
        return (
            "label-map",
            [read_label_map_annotation(lm, mapping, str(lm.relative_to(folder)))],
            skipped,
        )
    raise AnnotationError(
        f"{folder}: no annotations found (looked for NIfTI masks named like "
        f"{namer_patterns(options)[:3]}, DICOM SEG, RTSTRUCT and label maps "
        f"{[n.format(patient=patient) for n in options.label_map_names]})"
    )


def namer_patterns(options: ImportOptions) -> list[str]:
    return [p for plist in options.mask_patterns.values() for p in plist]


# ----------------------------------------------------------------- placement
def _resample(
    mask: AnnotationMask,
    data: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: Transform | None,
    options: ImportOptions,
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """Label maps: nearest neighbour; binary masks: ``options.mask_interpolation``."""
    if mask.region == "labels":
        return resample_nearest(data, mask.affine, target_shape, target_affine, transform)
    box, vals = resample_mask(
        data, mask.affine, target_shape, target_affine, transform, options.mask_interpolation
    )
    return box, vals.astype(np.uint8)


def place_mask(
    mask: AnnotationMask,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: Transform | None,
    options: ImportOptions,
) -> tuple[tuple[tuple[slice, ...] | None, np.ndarray], str]:
    """Bring one mask onto the target grid: ``((box, values), how)``."""
    data = mask.data.astype(np.uint8) if mask.data.dtype == bool else mask.data
    shape = tuple(int(s) for s in data.shape)
    same = grid_difference(shape, mask.affine, target_shape, target_affine) is None
    native = options.mask_space == "native" or (
        options.mask_space == "auto" and not same and transform is not None
    )
    if native:
        if transform is None:
            raise AnnotationError(
                f"{mask.source}: mask on a native grid but no transform for it (sequence "
                f"'{options.region_sequence.get(mask.region, '?')}'); run the preprocess stage "
                "or put a transforms.json with the annotations"
            )
        return _resample(mask, data, target_shape, target_affine, transform, options), (
            f"native -> template via {Path(transform.source).name or 'transform'}"
        )
    if same:
        box = nonzero_box(data)
        return (
            (box, data[box]) if box is not None else (None, data[:0, :0, :0])
        ), "on the target grid"
    if options.mask_space == "auto" and shape != tuple(target_shape):
        raise AnnotationError(
            f"{mask.source}: mask on a native grid {shape} but no transform for it (sequence "
            f"'{options.region_sequence.get(mask.region, '?')}'); run the preprocess stage, put a "
            "transforms.json with the annotations, or set mask_space = 'atlas' if the mask is in "
            "atlas space on another grid"
        )
    alignment = options.atlas_alignment
    m = np.linalg.inv(np.asarray(mask.affine, float)) @ np.asarray(target_affine, float)
    if alignment == "auto":
        overlap = grid_overlap(m, tuple(target_shape), shape)
        if overlap >= 0.9:
            alignment = "world"
        elif shape == tuple(target_shape):
            alignment = "array"
        else:
            raise AnnotationError(
                f"{mask.source}: grid {shape} is neither the target grid {tuple(target_shape)} "
                "nor placed on it by its header"
            )
    if alignment == "array":
        if shape != tuple(target_shape):
            raise AnnotationError(
                f"{mask.source}: array alignment needs the target shape {tuple(target_shape)}, "
                f"the mask has {shape}"
            )
        box = nonzero_box(data)
        return ((box, data[box]) if box is not None else (None, data[:0, :0, :0])), (
            "atlas space, by array index (header ignored)"
        )
    return _resample(mask, data, target_shape, target_affine, None, options), (
        "atlas space, through the affines"
    )


def edema_supports(
    drawn: Mapping[str, Sequence[tuple[AnnotationMask, WorldTransform]]],
    placed: Sequence[RegionMask],
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
) -> list[RegionMask]:
    """Per lesion drawn on native grids with a whole tumour and a core: where its whole
    tumour exceeds its core **on the grid the whole tumour was drawn on** (voxels the core
    fills less than the lowest drawing level, :data:`VOLUME_LEVELS`, of: no annotator would
    have drawn them for the core alone; :func:`partial_volume`), brought onto the target grid
    (``"linear"``): the fusion's edema support (:data:`SUPPORT`). An edema component that
    has no voxel in it is an artefact of the two grids (a FLAIR slab sticking out of a
    round core), not oedema the annotator drew. Empty support (the whole tumour is the
    core at the FLAIR's resolution): no edema for that lesion."""
    out: list[RegionMask] = []
    for lesion, items in drawn.items():
        wholes = [(m, t) for m, t in items if m.region == "whole"]
        cores = [(m, t) for m, t in items if m.region in ("core", "enhancing")]
        box_of = [r.box for r in placed if r.lesion == lesion and r.region == "whole"]
        if len(wholes) != 1 or not cores or not box_of:
            continue
        whole, t_whole = wholes[0]
        wdata = np.asarray(whole.data).astype(bool)
        wshape = cast(tuple[int, int, int], tuple(int(v) for v in wdata.shape[:3]))
        core_here = np.zeros(wshape, np.float32)
        to_whole = np.linalg.inv(t_whole.matrix)  # whole tumour's world -> template world
        for core, t_core in cores:
            onto = WorldTransform(t_core.matrix @ to_whole, "core onto the whole tumour's grid")
            core_here = np.maximum(
                core_here, partial_volume(core.data, core.affine, wshape, whole.affine, onto)
            )
        excess = wdata & (core_here < VOLUME_LEVELS[0])
        box, vals = (None, np.zeros((0, 0, 0), bool))
        if excess.any():
            box, vals = resample_mask(
                excess, whole.affine, target_shape, target_affine, t_whole, "linear"
            )
        if box is None:
            box = box_of[0]
            vals = np.zeros(tuple(s.stop - s.start for s in box), bool)
        out.append(RegionMask(SUPPORT, lesion, box, vals, whole.source))
    return out


def import_annotations(
    folder: Path,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    options: ImportOptions | None = None,
    transforms: Mapping[str, Transform] | None = None,
    patient: str = "",
    log: Callable[[str], None] | None = None,
) -> ImportResult:
    """Read, place and fuse one patient's annotations onto the target grid.

    ``transforms`` maps a file stem or a sequence name (``t1c``, ``t2f``) to the transform of
    the image the annotation was drawn on; the stem wins.
    """
    options = options or ImportOptions()
    transforms = dict(transforms or {})
    fmt, masks, skipped = read_annotations(folder, options, patient)
    region_masks: list[RegionMask] = []
    drawn: dict[str, list[tuple[AnnotationMask, WorldTransform]]] = {}
    base: np.ndarray | None = None
    sources: list[dict[str, Any]] = []
    notes: list[str] = []
    for m in masks:
        seq = options.region_sequence.get(m.region, "")
        t = transforms.get(m.key) or transforms.get(seq)
        (box, vals), how = place_mask(m, target_shape, target_affine, t, options)
        sources.append({"file": m.source, "region": m.region, "lesion": m.lesion, "placement": how})
        if box is None:
            if m.data.any():  # something was drawn, nothing arrives: never a silent "no lesion"
                raise AnnotationError(
                    f"{m.source}: {int(np.count_nonzero(m.data))} annotated voxel(s), none on "
                    f"the target grid ({how}): the mask's grid or its transform is wrong"
                )
            notes.append(f"{m.source}: empty mask")
            continue
        if m.region == "labels":
            base = np.zeros(target_shape, np.uint8) if base is None else base
            base[box] = np.where(vals > 0, vals, base[box])
            continue
        if how.startswith("native") and isinstance(t, WorldTransform):
            drawn.setdefault(m.lesion, []).append((m, t))
        drawn_mm = float(np.linalg.norm(np.asarray(m.affine, float)[:3, :3], axis=0).max())
        region_masks.append(
            RegionMask(m.region, m.lesion, box, vals.astype(bool), m.source, drawn_mm)
        )
    if options.rules.edema_support == "drop":
        region_masks += edema_supports(drawn, region_masks, target_shape, target_affine)
    voxel_mm = tuple(float(v) for v in np.linalg.norm(np.asarray(target_affine)[:3, :3], axis=0))
    fusion = fuse(region_masks, target_shape, options.rules, base, voxel_mm)
    if options.rules.apart_contact == "drop":
        separate_drawn_apart(fusion, drawn_apart(fusion, masks, target_affine))
    return ImportResult(fusion, fmt, sources, skipped, notes)


def _touch_structure(affine: np.ndarray, target_mm: float) -> np.ndarray:
    """3x3x3 neighbourhood of "touching" on a drawn grid: no neighbours along thick axes."""
    spacing = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    st = np.ones((3, 3, 3), bool)
    for axis, mm in enumerate(spacing):
        if mm > THICK_SLICE_RATIO * target_mm:
            index: list[Any] = [slice(None)] * 3
            index[axis] = [0, 2]
            st[tuple(index)] = False
    return st


#: the regions drawn for each kind of contact (:func:`drawn_apart`)
_CONTACT_REGIONS = {"core": ("core", "enhancing", "necrosis"), "whole": ("whole", "edema")}


def drawn_apart(
    fusion: FusionResult, masks: Sequence[AnnotationMask], target_affine: np.ndarray
) -> list[tuple[str, str, str]]:
    """Of the lesions touching in the fused label map (:func:`touching_lesions`), those whose
    masks of that kind were drawn on one grid and do not touch there: ``(lesion, lesion,
    kind)``. Touching on the drawn grid: 26-connected, except along an axis whose voxels are
    more than :data:`THICK_SLICE_RATIO` times the target's (a 6 mm slice spacing says
    nothing about a gap of 1-5 mm between two lesions on neighbouring slices: drawn as two
    masks that do not overlap, they stay two). Masks on different grids are not compared."""
    from scipy import ndimage

    target_mm = float(np.linalg.norm(np.asarray(target_affine, float)[:3, :3], axis=0).min())
    out: list[tuple[str, str, str]] = []
    for kind, regions in _CONTACT_REGIONS.items():
        pairs = touching_lesions(fusion, kind)
        if not pairs:
            continue
        drawn: dict[str, list[AnnotationMask]] = {}
        for m in masks:
            if m.region in regions:
                drawn.setdefault(m.lesion, []).append(m)
        for a, b in pairs:
            ma, mb = drawn.get(a, []), drawn.get(b, [])
            if not ma or not mb:
                continue
            grid, aff = ma[0].data.shape, np.asarray(ma[0].affine, float)
            same = all(
                m.data.shape == grid and np.allclose(np.asarray(m.affine, float), aff, atol=1e-4)
                for m in (*ma, *mb)
            )
            if not same:
                continue
            da = np.zeros(grid, bool)
            for m in ma:
                da |= np.asarray(m.data).astype(bool)
            db = np.zeros(grid, bool)
            for m in mb:
                db |= np.asarray(m.data).astype(bool)
            box = nonzero_box(da)
            if box is None or not db.any():
                continue
            pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
            if (da[pad] & db[pad]).any():
                continue
            ring = ndimage.binary_dilation(da[pad], _touch_structure(aff, target_mm))
            if not (ring & db[pad]).any():
                out.append((a, b, kind))
    return out


def reference_grid(path: Path) -> tuple[tuple[int, int, int], np.ndarray, nib.Nifti1Header]:
    """Shape, affine and header of the image whose grid the label map is written on."""
    img = cast(nib.Nifti1Image, nib.load(str(path)))
    shape = tuple(int(s) for s in img.shape[:3])
    return shape, np.asarray(img.affine, float), img.header  # type: ignore[return-value]
