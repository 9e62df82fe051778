"""Segmentation import and fusion: annotations (NIfTI masks, DICOM SEG, RTSTRUCT, label maps)
on native or atlas grids -> one ``uint8`` label map (1 necrosis, 2 edema, 3 enhancing) on
the preprocessed SRI24 grid. See ``docs/lesions.md``."""

from __future__ import annotations

from brainmets.segment.fusion import Conflict, FusionResult, FusionRules, RegionMask, fuse
from brainmets.segment.importer import (
    ImportOptions,
    ImportResult,
    annotation_transforms,
    import_annotations,
    read_annotations,
)
from brainmets.segment.sources import (
    DEFAULT_PATTERNS,
    AnnotationError,
    AnnotationMask,
    AnnotationsMissing,
    MaskNamer,
    read_dicom_seg,
    read_nifti_masks,
    read_rtstruct,
)
from brainmets.segment.transform import (
    ItkTransform,
    TransformError,
    WorldTransform,
    read_transform,
    resample_full,
    resample_nearest,
)

__all__ = [
    "DEFAULT_PATTERNS",
    "AnnotationError",
    "AnnotationMask",
    "AnnotationsMissing",
    "Conflict",
    "FusionResult",
    "FusionRules",
    "ImportOptions",
    "ImportResult",
    "ItkTransform",
    "MaskNamer",
    "RegionMask",
    "TransformError",
    "WorldTransform",
    "annotation_transforms",
    "fuse",
    "import_annotations",
    "read_annotations",
    "read_dicom_seg",
    "read_nifti_masks",
    "read_rtstruct",
    "read_transform",
    "resample_full",
    "resample_nearest",
]
