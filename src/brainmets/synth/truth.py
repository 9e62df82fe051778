"""Ground-truth outputs: per-lesion masks on series grids (NIfTI, reference naming), DICOM
SEG referencing the source series, and template-space label/instance maps."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.valuerep import DA, TM

from brainmets import codes
from brainmets.labelmaps.arrays import volume_level
from brainmets.synth.anatomy import Template
from brainmets.synth.geometry import Grid, grid_box_of_source_box, resample
from brainmets.synth.lesions import LesionSet

#: reference mask names: {which: (file stem pattern, grid kind)}
MASK_NAMES = {
    "core": "Core{n}_PGGE",
    "necrosis": "Necrosis{n}_PGGE",
    "whole": "Whole{n}_FLAIR",
}


def lesion_ids_on_grid(
    t: Template, ls: LesionSet, grid: Grid, to_template: np.ndarray, which: str, thickness: float
) -> np.ndarray:
    """Lesion id (1..N, 0 none) per voxel of ``grid``: each lesion's ``which`` mask is
    resampled (linear, slice-profile averaged for thick slices) and kept where its partial
    volume reaches the level at which the drawn mask has the lesion's true volume (an
    unbiased annotator: a fixed 0.5 threshold after resampling shrinks small lesions by up
    to a fifth), the level bounded to [0.25, 0.75]; a voxel claimed by two lesions goes to
    the larger partial volume."""
    ids = np.zeros(grid.shape, dtype=np.uint8)
    best = np.zeros(grid.shape, dtype=np.float32)
    n_sub = 1 if thickness <= 1.5 else 2
    for n in range(1, len(ls.params) + 1):
        lo, mask = ls.lesion_mask(n, which)
        if not mask.any():
            continue
        box = grid_box_of_source_box(t.affine, grid, to_template, lo, lo + np.array(mask.shape))
        if box is None:
            continue
        pv = resample(
            mask.astype(np.float32),
            t.affine,
            grid,
            to_template,
            order=1,
            thickness=thickness,
            n_sub=n_sub,
            box=box,
            src_origin=(int(lo[0]), int(lo[1]), int(lo[2])),
        )
        sl = tuple(slice(a, b) for a, b in box)
        region = best[sl]
        true_mm3 = float(mask.sum()) * abs(float(np.linalg.det(t.affine[:3, :3])))
        native_mm3 = true_mm3 / abs(float(np.linalg.det(np.asarray(to_template)[:3, :3])))
        want = int(round(native_mm3 / abs(float(np.linalg.det(grid.affine[:3, :3])))))
        upd = (pv >= volume_level(pv, want)) & (pv > region)
        region[upd] = pv[upd]
        ids[sl][upd] = n
    return ids


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


#: mask kind -> segmented property type (the whole tumour and the core are the metastasis)
_TYPES = {
    "core": codes.METASTASIS_TYPE,
    "necrosis": codes.NECROSIS_TYPE,
    "whole": codes.METASTASIS_TYPE,
}


def write_seg(
    path: Path,
    source_files: list[Path],
    ids: np.ndarray,
    lesion_numbers: list[int],
    which: str,
    uid_series: str,
    uid_sop: str,
    series_number: int,
    when: dt.datetime,
    make_uid_fn,
) -> None:
    """DICOM SEG (binary, one segment per lesion) referencing the source series' instances.

    ``ids`` is the lesion-id map on the source grid ([i, j, k], k in instance order)."""
    import highdicom as hd

    # reference only the instances that show a segment (SEG frames exist only there)
    used = [k for k in range(ids.shape[2]) if ids[:, :, k].any()]
    sources = [pydicom.dcmread(str(source_files[k]), stop_before_pixels=True) for k in used]
    relabel = np.zeros(256, dtype=np.uint8)
    descriptions = []
    for seg_no, n in enumerate(lesion_numbers, start=1):
        relabel[n] = seg_no
        label = MASK_NAMES[which].format(n=n)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=seg_no,
                segment_label=label,
                segmented_property_category=codes.CATEGORY,
                segmented_property_type=_TYPES[which],
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
                tracking_id=label,
                tracking_uid=make_uid_fn("tracking", which, n),
            )
        )
    frames = np.transpose(relabel[ids[:, :, used]], (2, 1, 0))  # (k, rows=j, cols=i)
    src0 = sources[0]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=uid_series,
        series_number=series_number,
        sop_instance_uid=uid_sop,
        instance_number=1,
        manufacturer="brainmets",
        manufacturer_model_name="synthetic cohort",
        software_versions="brainmets.synth",
        device_serial_number="0",
        content_description=f"{which} masks as drawn on {src0.SeriesDescription}"[:64],
        content_creator_name="SYNTHETIC^ANNOTATOR",
        content_label=which.upper(),
        content_date=when.date(),
        content_time=when.time(),
        omit_empty_frames=True,
    )
    seg.InstanceCreationDate = DA(when.strftime("%Y%m%d"))
    seg.InstanceCreationTime = TM(when.strftime("%H%M%S"))
    seg.SeriesDate = DA(when.strftime("%Y%m%d"))
    seg.SeriesTime = TM(when.strftime("%H%M%S"))
    for item in getattr(seg, "ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S")
    dim_uid = make_uid_fn("dimension-organization", which)
    for item in getattr(seg, "DimensionOrganizationSequence", []):
        item.DimensionOrganizationUID = dim_uid
    for item in getattr(seg, "DimensionIndexSequence", []):
        item.DimensionOrganizationUID = dim_uid
    seg.file_meta.ImplementationClassUID = make_uid_fn("implementation")
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path), enforce_file_format=True)
