"""Annotation readers: per-lesion / per-region NIfTI masks, DICOM SEG, RTSTRUCT, label maps.

Every reader returns :class:`AnnotationMask` objects: a mask (boolean) or a combined label map
(``region == "labels"``, values 0-3 after the label mapping) on the grid it was drawn on, with
that grid's RAS affine. Nothing is resampled here (see :mod:`brainmets.segment.transform`).

Mask names are matched against patterns such as ``Core{n}_PGGE``: ``{n}`` is the lesion number
(optional, with an optional ``_`` or ``-`` before it), matching is case-insensitive and on the
whole file stem (or DICOM segment / ROI name). Regions: ``core`` (tumour core: enhancing +
necrosis), ``necrosis``, ``whole`` (whole tumour), ``enhancing`` and ``edema``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np

from brainmets.codes import REGION_OF_CODE
from brainmets.labelmaps.io import LabelMapError, as_label_array
from brainmets.segment.transform import FLIP_LPS

REGIONS = ("core", "necrosis", "whole", "enhancing", "edema")

#: region -> name patterns ({n}: lesion number). The reference's naming works out of the box.
DEFAULT_PATTERNS: dict[str, list[str]] = {
    "core": ["Core{n}_PGGE", "Core{n}", "TC{n}", "TumorCore{n}", "TumourCore{n}"],
    "necrosis": ["Necrosis{n}_PGGE", "Necrosis{n}", "Nec{n}", "NETC{n}", "NCR{n}"],
    "whole": ["Whole{n}_FLAIR", "Whole{n}", "WT{n}", "WholeTumor{n}", "WholeTumour{n}"],
    "enhancing": ["Enhancing{n}", "ET{n}", "Enhancement{n}"],
    "edema": ["Edema{n}", "Oedema{n}", "SNFH{n}", "ED{n}"],
}

#: SNOMED CT codes of segmented property types -> region (DICOM SEG fallback)
PROPERTY_CODES: dict[str, str] = REGION_OF_CODE


class AnnotationError(ValueError):
    """An annotation file is unusable; the message names it."""


class AnnotationsMissing(AnnotationError):
    """The patient's annotation folder does not exist (yet): not an error of the
    annotations, the segment stage waits for them (``waiting``)."""


@dataclass
class AnnotationMask:
    """One mask or label map on the grid it was drawn on."""

    region: str  # one of REGIONS, or "labels" for a combined label map
    lesion: str  # lesion number as text ("" for a per-region mask)
    data: np.ndarray  # bool (mask) or uint8 (labels)
    affine: np.ndarray  # RAS voxel -> world (mm)
    source: str  # file name (relative to the annotation folder) [+ segment/ROI]
    key: str  # the file stem, used to look up a transform

    @property
    def name(self) -> str:
        return f"{self.region}{self.lesion}" if self.region != "labels" else "labels"


class MaskNamer:
    """Match names to ``(region, lesion)`` with configurable patterns."""

    def __init__(self, patterns: Mapping[str, Iterable[str]] | None = None) -> None:
        pats = DEFAULT_PATTERNS if patterns is None else patterns
        self.rules: list[tuple[re.Pattern[str], str]] = []
        for region, plist in pats.items():
            if region not in REGIONS:
                raise ValueError(f"unknown region {region!r} in mask patterns; regions: {REGIONS}")
            for pat in [plist] if isinstance(plist, str) else plist:
                self.rules.append((self._compile(pat), region))

    @staticmethod
    def _compile(pattern: str) -> re.Pattern[str]:
        if pattern.count("{n}") > 1:
            raise ValueError(f"mask pattern {pattern!r}: at most one {{n}}")
        parts = [re.escape(p) for p in pattern.split("{n}")]
        body = r"(?:[_\- ]?(?P<n>\d+))?".join(parts)
        return re.compile(rf"^{body}$", re.IGNORECASE)

    def match(self, name: str) -> tuple[str, str] | None:
        stem = strip_suffix(name)
        for rx, region in self.rules:
            m = rx.match(stem)
            if m:
                n = m.groupdict().get("n") or ""
                return region, str(int(n)) if n else ""
        return None


def strip_suffix(name: str) -> str:
    for suf in (".nii.gz", ".nii", ".dcm", ".nrrd", ".mha", ".nhdr"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return name


def _binary(data: np.ndarray, source: str, threshold: float = 0.5) -> np.ndarray:
    """A boolean mask from a mask image: integers/bools with one non-zero value; floats in
    [0, 1] (fractional masks) thresholded at ``threshold``."""
    arr = np.asarray(data)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise AnnotationError(f"{source}: expected a 3D mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise AnnotationError(f"{source}: mask holds NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0 or hi > 1:
            if np.array_equal(arr, np.rint(arr)):
                arr = arr.astype(np.int64)
            else:
                raise AnnotationError(
                    f"{source}: float mask with values outside [0, 1] ({lo:g}..{hi:g})"
                )
        else:
            return arr >= threshold
    if not np.issubdtype(arr.dtype, np.integer):
        raise AnnotationError(f"{source}: unsupported mask data type {arr.dtype}")
    values = np.unique(arr[arr != 0]) if arr.any() else np.array([], arr.dtype)
    if len(values) > 1:
        raise AnnotationError(
            f"{source}: a mask must be binary, found values {values[:8].tolist()}; "
            "a combined label map needs format 'label-map' with a label mapping"
        )
    if len(values) and values[0] < 0:
        raise AnnotationError(f"{source}: negative mask value {values[0]}")
    return arr != 0


def _nifti_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith((".nii", ".nii.gz"))
    )


def read_nifti_masks(
    folder: Path, namer: MaskNamer, threshold: float = 0.5
) -> tuple[list[AnnotationMask], list[str]]:
    """All NIfTI masks under ``folder`` whose name matches a pattern, and the names skipped."""
    masks: list[AnnotationMask] = []
    skipped: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for path in _nifti_files(folder):
        rel = str(path.relative_to(folder))
        hit = namer.match(path.name)
        if hit is None:
            skipped.append(rel)
            continue
        if hit in seen:
            raise AnnotationError(
                f"{rel} and {seen[hit]} both name the {hit[0]} mask of lesion {hit[1] or '(all)'}"
            )
        seen[hit] = rel
        try:
            img = cast(nib.Nifti1Image, nib.load(str(path)))
            data = np.asanyarray(img.dataobj)
        except Exception as exc:
            raise AnnotationError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
        masks.append(
            AnnotationMask(
                region=hit[0],
                lesion=hit[1],
                data=_binary(data, str(path), threshold),
                affine=np.asarray(img.affine, float),
                source=rel,
                key=strip_suffix(path.name),
            )
        )
    return masks, skipped


def read_label_map_annotation(
    path: Path, mapping: Mapping[int, int] | None, rel: str
) -> AnnotationMask:
    """An already-combined label map, translated to our labels by ``mapping``."""
    try:
        img = cast(nib.Nifti1Image, nib.load(str(path)))
        raw = np.asanyarray(img.dataobj)
    except Exception as exc:
        raise AnnotationError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    try:
        data = as_label_array(raw, str(path), mapping)
    except LabelMapError as exc:
        raise AnnotationError(str(exc)) from None
    return AnnotationMask(
        "labels", "", data, np.asarray(img.affine, float), rel, strip_suffix(path.name)
    )


# -------------------------------------------------------------------------- DICOM
def _dicom_files(folder: Path, modality: str) -> list[Path]:
    import pydicom

    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.lower().endswith(
            (".nii", ".nii.gz", ".json", ".xlsx", ".csv")
        ):
            continue
        try:
            ds = pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=["Modality"])
        except Exception:
            continue
        if str(ds.get("Modality", "")) == modality:
            out.append(p)
    return out


def find_dicom_seg(folder: Path) -> list[Path]:
    return _dicom_files(folder, "SEG")


def find_rtstruct(folder: Path) -> list[Path]:
    return _dicom_files(folder, "RTSTRUCT")


def _region_from_text(text: str) -> str | None:
    t = text.lower()
    for region, words in (
        ("necrosis", ("necro",)),
        ("whole", ("whole", "flair")),
        ("edema", ("edema", "oedema")),
        ("enhancing", ("enhanc",)),
        ("core", ("core",)),
    ):
        if any(w in t for w in words):
            return region
    return None


def read_dicom_seg(
    path: Path, namer: MaskNamer, rel: str, threshold: float = 0.5
) -> list[AnnotationMask]:
    """Every segment of a DICOM SEG (binary or fractional) as a mask with its geometry.

    A segment's region and lesion come from its label (patterns); failing that, the region
    from its property type (necrosis, edema) or from the SEG's content label / description.
    """
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:
        raise AnnotationError(
            f"{path}: not a readable DICOM SEG ({type(exc).__name__}: {exc})"
        ) from exc
    fallback = _region_from_text(
        " ".join(
            str(seg.get(k, "")) for k in ("ContentLabel", "SeriesDescription", "ContentDescription")
        )
    )
    out: list[AnnotationMask] = []
    numbers = list(seg.segment_numbers)
    try:
        vol = seg.get_volume(combine_segments=False, segment_numbers=numbers)
    except Exception as exc:
        raise AnnotationError(
            f"{path}: the SEG's frames do not form a regular volume ({type(exc).__name__}: {exc})"
        ) from exc
    arr = np.asarray(vol.array)
    if arr.ndim == 3:
        arr = arr[..., None]
    affine = FLIP_LPS @ np.asarray(vol.affine, float)
    for ch, num in enumerate(numbers):
        desc = seg.get_segment_description(num)
        label = str(desc.SegmentLabel)
        hit = namer.match(label)
        if hit is None:
            region = None
            try:
                code = str(desc.SegmentedPropertyTypeCodeSequence[0].CodeValue)
                region = PROPERTY_CODES.get(code)
            except (AttributeError, IndexError):
                region = None
            region = region or _region_from_text(label) or fallback
            if region is None:
                raise AnnotationError(
                    f"{path}: cannot tell the region of segment {num} '{label}' (name it like "
                    "Core1 / Necrosis1 / Whole1 or configure the mask patterns)"
                )
            digits = re.findall(r"\d+", label)
            hit = (region, str(int(digits[-1])) if digits else str(num))
        out.append(
            AnnotationMask(
                region=hit[0],
                lesion=hit[1],
                data=_binary(arr[..., ch], f"{path} segment {num}", threshold),
                affine=affine,
                source=f"{rel}#segment{num}:{label}",
                key=strip_suffix(Path(rel).name),
            )
        )
    return out


def _fill_polygon(shape2d: tuple[int, int], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Even-odd scanline fill of one polygon (vertex coordinates in pixel units, pixel
    centres at integers) on an array indexed ``[x, y]``."""
    out = np.zeros(shape2d, bool)
    x0, y0 = np.asarray(xs, float), np.asarray(ys, float)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    j_lo = max(int(np.ceil(y0.min())), 0)
    j_hi = min(int(np.floor(y0.max())), shape2d[1] - 1)
    for j in range(j_lo, j_hi + 1):
        cross = ((y0 <= j) & (y1 > j)) | ((y1 <= j) & (y0 > j))
        if not cross.any():
            continue
        xa, ya, xb, yb = x0[cross], y0[cross], x1[cross], y1[cross]
        xi = np.sort(xa + (j - ya) * (xb - xa) / (yb - ya))
        for a, b in zip(xi[0::2], xi[1::2], strict=False):
            i0 = max(int(np.ceil(a)), 0)
            i1 = min(int(np.floor(b)), shape2d[0] - 1)
            if i1 >= i0:
                out[i0 : i1 + 1, j] = True
    return out


def _contour_grid(
    contours: Sequence[np.ndarray], pixel_mm: float
) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid (shape, RAS affine) in the plane of the contours: in-plane ``pixel_mm``,
    slices at the contour planes (spacing = smallest gap between planes)."""
    pts_all = np.concatenate(contours)
    normal = None
    for c in contours:
        if len(c) >= 3:
            centred = c - c.mean(axis=0)
            _, s, vt = np.linalg.svd(centred, full_matrices=False)
            if s[1] > 1e-6:
                normal = vt[2]
                break
    if normal is None:
        normal = np.array([0.0, 0.0, 1.0])
    normal = normal / np.linalg.norm(normal)
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(normal, helper)
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    planes = np.unique(np.round([float(c[0] @ normal) for c in contours], 3))
    gaps = np.diff(planes)
    gaps = gaps[gaps > 1e-3]
    dz = float(gaps.min()) if len(gaps) else 1.0
    pu, pv, pw = pts_all @ u, pts_all @ v, pts_all @ normal
    origin = u * (pu.min() - pixel_mm) + v * (pv.min() - pixel_mm) + normal * pw.min()
    shape = (
        int(np.ceil((pu.max() - pu.min()) / pixel_mm)) + 3,
        int(np.ceil((pv.max() - pv.min()) / pixel_mm)) + 3,
        int(round((pw.max() - pw.min()) / dz)) + 1,
    )
    aff = np.eye(4)
    aff[:3, 0], aff[:3, 1], aff[:3, 2], aff[:3, 3] = u * pixel_mm, v * pixel_mm, normal * dz, origin
    return shape, aff


def read_rtstruct(
    path: Path,
    namer: MaskNamer,
    rel: str,
    reference: tuple[tuple[int, int, int], np.ndarray] | None = None,
    pixel_mm: float = 0.5,
) -> list[AnnotationMask]:
    """Closed planar contours of every named ROI rasterised to masks.

    On ``reference`` (shape, RAS affine: the image the contours were drawn on) when given and
    the contours lie on its slices; otherwise on a grid built from the contours themselves
    (in-plane ``pixel_mm``, one slice per contour plane). Several contours of one ROI on one
    slice combine by exclusive or (so an inner contour is a hole).
    """
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise AnnotationError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from exc
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.get("StructureSetROISequence", [])}
    out: list[AnnotationMask] = []
    for roi in ds.get("ROIContourSequence", []):
        num = int(roi.ReferencedROINumber)
        label = names.get(num, f"ROI{num}")
        hit = namer.match(label)
        if hit is None:
            region = _region_from_text(label)
            if region is None:
                continue  # not a tumour ROI (e.g. body outline)
            digits = re.findall(r"\d+", label)
            hit = (region, str(int(digits[-1])) if digits else str(num))
        contours = []
        for c in roi.get("ContourSequence", []):
            if str(c.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            pts = np.asarray(c.ContourData, float).reshape(-1, 3)
            if len(pts) >= 3:
                contours.append((FLIP_LPS[:3, :3] @ pts.T).T)  # LPS -> RAS
        if not contours:
            continue
        grid = reference
        if grid is not None and not _on_slices(contours, grid[1]):
            grid = None
        if grid is None:
            grid = _contour_grid(contours, pixel_mm)
        shape, aff = grid
        inv = np.linalg.inv(aff)
        mask = np.zeros(shape, bool)
        for c in contours:
            ijk = c @ inv[:3, :3].T + inv[:3, 3]
            k = int(round(float(ijk[:, 2].mean())))
            if not 0 <= k < shape[2]:
                continue
            mask[:, :, k] ^= _fill_polygon(shape[:2], ijk[:, 0], ijk[:, 1])
        out.append(
            AnnotationMask(
                hit[0], hit[1], mask, aff, f"{rel}#roi{num}:{label}", strip_suffix(Path(rel).name)
            )
        )
    return out


def _on_slices(contours: Sequence[np.ndarray], affine: np.ndarray, tol: float = 0.1) -> bool:
    inv = np.linalg.inv(affine)
    for c in contours:
        k = c @ inv[2, :3] + inv[2, 3]
        if np.ptp(k) > tol or abs(k.mean() - round(k.mean())) > tol:
            return False
    return True
