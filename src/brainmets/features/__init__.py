"""Per-patient imaging features, the clinical sheet (reading, validation, pseudonymisation)
and the dataset workbook (``Data``, ``Description``, ``Lesions``, ``Provenance``)."""

from __future__ import annotations

from brainmets.cohort.clinical import (
    COLUMNS,
    ClinicalTable,
    Problem,
    load_clinical,
    map_to_pseudonyms,
    read_sheet,
    validate_rows,
)
from brainmets.cohort.workbook import DATA_COLUMNS, LESION_COLUMNS, workbook_id, write_workbook

__all__ = [
    "COLUMNS",
    "DATA_COLUMNS",
    "LESION_COLUMNS",
    "ClinicalTable",
    "Problem",
    "load_clinical",
    "map_to_pseudonyms",
    "read_sheet",
    "validate_rows",
    "workbook_id",
    "write_workbook",
]
