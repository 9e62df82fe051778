"""The final label map as a DICOM Segmentation (highdicom) on the de-identified T1c series.

The label map lies on the SRI24 grid; the T1c series on its own (native) grid. Every pixel of
every T1c frame is placed in the world: DICOM patient coordinates (LPS, mm) from
ImagePositionPatient / ImageOrientationPatient / PixelSpacing, -> RAS, -> SRI24 world through
the preprocess transform (native T1c world -> atlas world), -> label-map voxel, and takes the
label of the nearest voxel (no slice-profile averaging: the SEG shows the label map as it
lies on each T1c pixel centre). One frame per T1c frame, one segment per label:

| segment | label | property type (SCT) | colour |
|---|---|---|---|
| 1 | necrosis (NETC) | 6574001 Necrosis | red |
| 2 | edema (SNFH) | 79654002 Edema | green |
| 3 | enhancing tumour (ET) | 14799000 Neoplasm, metastatic | blue |

Segment numbers equal the label values. Patient, study and de-identification attributes come
from the referenced (already de-identified) series; UIDs are derived from the series UID and
the label map's content, so the same export gives the same UIDs.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset

import brainmets
from brainmets import codes
from brainmets.vocab import EDEMA, ENHANCING, NECROSIS

#: label -> (segment label, RGB); the coded property type is :data:`brainmets.codes.LABEL_TYPES`
SEGMENTS: dict[int, tuple[str, tuple[int, int, int]]] = {
    NECROSIS: ("Necrosis (NETC)", (230, 25, 25)),
    EDEMA: ("Edema (SNFH)", (25, 205, 25)),
    ENHANCING: ("Enhancing tumour (ET)", (40, 90, 255)),
}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class DicomSegError(ValueError):
    """The DICOM SEG cannot be made (missing series, geometry, ...)."""


def uid_from(*parts: str) -> str:
    """A deterministic UID under the 2.25 root (UUID-derived form) from text parts."""
    digest = hashlib.sha256("\x00".join(("brainmets-seg", *parts)).encode()).hexdigest()
    return "2.25." + str(int(digest[:32], 16))


@dataclass(frozen=True)
class FrameGeometry:
    """Where one frame lies: position (LPS, mm), row / column direction cosines, spacing."""

    position: np.ndarray  # ImagePositionPatient: centre of the first (top left) pixel
    row_cosine: np.ndarray  # direction of increasing column index
    column_cosine: np.ndarray  # direction of increasing row index
    spacing: tuple[float, float]  # (between rows, between columns) = PixelSpacing
    rows: int
    columns: int


def _f(values: Sequence[object]) -> np.ndarray:
    return np.array([float(v) for v in values], dtype=float)  # type: ignore[arg-type]


def frame_geometries(ds: Dataset) -> list[FrameGeometry]:
    """The geometry of every frame of a classic or enhanced (multi-frame) image."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
        out = []
        for fg in ds.PerFrameFunctionalGroupsSequence:

            def item(name: str, fg: Dataset = fg) -> Dataset:
                seq = fg.get(name) or shared.get(name)
                if not seq:
                    raise DicomSegError(f"frame without {name}")
                return seq[0]

            iop = _f(item("PlaneOrientationSequence").ImageOrientationPatient)
            ps = _f(item("PixelMeasuresSequence").PixelSpacing)
            pos = _f(item("PlanePositionSequence").ImagePositionPatient)
            out.append(FrameGeometry(pos, iop[:3], iop[3:], (ps[0], ps[1]), rows, cols))
        return out
    for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if kw not in ds:
            raise DicomSegError(f"{ds.get('SOPInstanceUID', '?')}: no {kw}")
    iop = _f(ds.ImageOrientationPatient)
    ps = _f(ds.PixelSpacing)
    return [
        FrameGeometry(_f(ds.ImagePositionPatient), iop[:3], iop[3:], (ps[0], ps[1]), rows, cols)
    ]


def frame_world_ras(g: FrameGeometry) -> np.ndarray:
    """RAS world coordinates (rows, columns, 3) of the centres of a frame's pixels."""
    r = np.arange(g.rows, dtype=float)[:, None, None]
    c = np.arange(g.columns, dtype=float)[None, :, None]
    lps = (
        g.position[None, None, :]
        + c * g.spacing[1] * g.row_cosine[None, None, :]
        + r * g.spacing[0] * g.column_cosine[None, None, :]
    )
    return lps * np.array([-1.0, -1.0, 1.0])


def sample_labels(
    labels: np.ndarray, label_affine: np.ndarray, world_ras: np.ndarray, native_to_atlas: np.ndarray
) -> np.ndarray:
    """Nearest-voxel labels at native world points (``world_ras`` (..., 3)); 0 outside."""
    m = np.linalg.inv(label_affine) @ native_to_atlas
    pts = world_ras.reshape(-1, 3)
    vox = np.rint(pts @ m[:3, :3].T + m[:3, 3]).astype(np.int64)
    inside = np.all((vox >= 0) & (vox < np.array(labels.shape)), axis=1)
    out = np.zeros(len(pts), dtype=np.uint8)
    v = vox[inside]
    out[inside] = labels[v[:, 0], v[:, 1], v[:, 2]]
    return out.reshape(world_ras.shape[:-1])


def read_series(paths: Sequence[str | os.PathLike[str]]) -> list[Dataset]:
    """The series' image instances (headers only), in slice order along the normal."""
    datasets = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in paths]
    datasets = [d for d in datasets if "Rows" in d]
    if not datasets:
        raise DicomSegError("the T1c series has no image instance")
    uids = {d.SeriesInstanceUID for d in datasets}
    if len(uids) != 1:
        raise DicomSegError(f"the files belong to {len(uids)} series")

    def key(d: Dataset) -> tuple[float, int]:
        if "ImagePositionPatient" in d and "ImageOrientationPatient" in d:
            iop = _f(d.ImageOrientationPatient)
            normal = np.cross(iop[:3], iop[3:])
            return (float(normal @ _f(d.ImagePositionPatient)), int(d.get("InstanceNumber") or 0))
        return (0.0, int(d.get("InstanceNumber") or 0))

    return sorted(datasets, key=key)


def label_frames(
    datasets: Sequence[Dataset], seg: nib.Nifti1Image, native_to_atlas: np.ndarray
) -> np.ndarray:
    """The label map on every frame of the series: (frames, rows, columns) uint8."""
    labels = np.asarray(seg.dataobj)
    if not np.all(np.isin(np.unique(labels), [0, 1, 2, 3])):
        raise DicomSegError("the label map has values outside {0, 1, 2, 3}")
    labels = labels.astype(np.uint8)
    frames = []
    for ds in datasets:
        for g in frame_geometries(ds):
            frames.append(sample_labels(labels, seg.affine, frame_world_ras(g), native_to_atlas))
    return np.stack(frames)


def make_segmentation(
    datasets: Sequence[Dataset],
    frames: np.ndarray,
    seg_sha256: str,
    series_number: int = 9901,
) -> Dataset:
    """The DICOM SEG object (highdicom, BINARY, one segment per label, present or not).

    The segments are MANUAL: the label map is the fusion of the imported annotations."""
    import highdicom as hd

    descriptions = []
    for number, (label, rgb) in SEGMENTS.items():
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=label,
                segmented_property_category=codes.CATEGORY,
                segmented_property_type=codes.LABEL_TYPES[number],
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                anatomic_regions=[codes.BRAIN],
                display_color=hd.color.CIELabColor.from_rgb(*rgb),
            )
        )
    series_uid = datasets[0].SeriesInstanceUID
    seg_series = uid_from(series_uid, "series")
    sources: list[Dataset] = list(datasets)
    with warnings.catch_warnings():
        # the de-identified PatientName is the pseudonym, one component: highdicom warns
        warnings.filterwarnings("ignore", message=".*intended person name.*", category=UserWarning)
        obj = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=seg_series,
            series_number=series_number,
            sop_instance_uid=uid_from(series_uid, "instance", seg_sha256),
            instance_number=1,
            manufacturer="brainmets",
            manufacturer_model_name="brainmets export dicom-seg",
            software_versions=brainmets.__version__,
            device_serial_number="brainmets",
            content_description="Brain metastases label map (1 necrosis, 2 edema, 3 enhancing)",
            content_label="BRAINMETS",
            omit_empty_frames=bool(frames.any()),
        )
    obj.SeriesDescription = "brainmets label map"
    obj.PatientIdentityRemoved = "YES"
    src = datasets[0]
    for kw in (
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "LongitudinalTemporalInformationModified",
    ):
        if kw in src:
            setattr(obj, kw, src[kw].value)
    return obj


def write_dicom_seg(
    series_files: Sequence[str | os.PathLike[str]],
    seg_path: str | os.PathLike[str],
    native_to_atlas: np.ndarray,
    dest: str | os.PathLike[str],
) -> Path:
    """Write the label map at ``seg_path`` as a DICOM SEG on the series ``series_files``.

    ``native_to_atlas``: 4x4, native T1c world (RAS mm) -> SRI24 world (RAS mm).
    """
    from brainmets.fsutil import sha256_file

    datasets = read_series(series_files)
    seg = cast(nib.Nifti1Image, nib.load(str(seg_path)))
    frames = label_frames(datasets, seg, native_to_atlas)
    obj = make_segmentation(datasets, frames, sha256_file(seg_path))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    obj.save_as(str(dest), enforce_file_format=True)
    return dest
