"""Dataset exports (stage ``export``) and their validation (``brainmets validate``).

Layouts: ``collection`` (the published Pretreat-MetsToBrain-Masks layout + workbook + report
+ dataset card + ``MANIFEST.sha256``), ``nnunet`` (nnU-Net v2 raw dataset), ``dicom-seg``
(DICOM Segmentation per patient on the de-identified T1c series). See
``docs/report_export.md``.

Public API:

* :func:`validate` / :func:`validate_collection` / :func:`validate_nnunet` — check a dataset
  folder, every problem listed;
* :func:`conform` and the header conventions (:mod:`brainmets.export.conventions`);
* :func:`write_manifest` / :func:`check_manifest`;
* :func:`export_command` / :func:`run_validate` in :mod:`brainmets.export.cli` for the CLI;
* :data:`STAGE` lives in :mod:`brainmets.export.stage`.
"""

from __future__ import annotations

from brainmets.export.conventions import BRATS_MET_AFFINE, SRI24_AFFINE, conform
from brainmets.export.layouts import DEFAULTS, LAYOUTS, ExportError
from brainmets.export.manifest import MANIFEST_NAME, check_manifest, write_manifest
from brainmets.export.validate import (
    ValidationReport,
    validate,
    validate_collection,
    validate_nnunet,
)

__all__ = [
    "BRATS_MET_AFFINE",
    "DEFAULTS",
    "LAYOUTS",
    "MANIFEST_NAME",
    "SRI24_AFFINE",
    "ExportError",
    "ValidationReport",
    "check_manifest",
    "conform",
    "validate",
    "validate_collection",
    "validate_nnunet",
    "write_manifest",
]
