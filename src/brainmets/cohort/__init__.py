"""The cohort: who is in the dataset, their clinical rows, scanners and acquisition tables, the
dataset workbook and the dataset descriptor (library layer, read by the report and export
stages and by the review app).

* :func:`open_cohort` / :func:`cohort_for` / :class:`Cohort` / :class:`PatientRecord` — who is
  found, has the four sequences, is included (and why not), with each patient's outputs;
* :func:`clinical_for` / :class:`Clinical` — the hospital's clinical sheet, validated and
  keyed by pseudonym (:mod:`brainmets.cohort.clinical` has the codebooks);
* :func:`scanners` / :func:`table1` and the other tables (:mod:`brainmets.cohort.tables`);
* :func:`write_workbook` / :func:`write_workspace_workbook` — the clinical + imaging workbook;
* :func:`build_document` / :func:`write_document` — the dataset descriptor of a cohort.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainmets.cohort.clinical import (
        Clinical,
        ClinicalTable,
        clinical_for,
        load_clinical,
        load_workspace_clinical,
        map_to_pseudonyms,
        sheet_path,
        workspace_clinical,
    )
    from brainmets.cohort.document import DEFAULTS, build_document, report_metrics
    from brainmets.cohort.model import (
        Cohort,
        PatientRecord,
        cohort_for,
        load_cohort,
        open_cohort,
        reason_category,
    )
    from brainmets.cohort.render import Document, write_document
    from brainmets.cohort.tables import Table, scanners, table1
    from brainmets.cohort.workbook import (
        workspace_features,
        write_workbook,
        write_workspace_workbook,
    )

#: public name -> the module that defines it, imported on first use: ``brainmets.cohort.review``
#: (read by ``brainmets status``) must not pull in the report's figures and workbooks
_EXPORTS: dict[str, str] = {
    "Clinical": "brainmets.cohort.clinical",
    "ClinicalTable": "brainmets.cohort.clinical",
    "Cohort": "brainmets.cohort.model",
    "DEFAULTS": "brainmets.cohort.document",
    "Document": "brainmets.cohort.render",
    "PatientRecord": "brainmets.cohort.model",
    "Table": "brainmets.cohort.tables",
    "build_document": "brainmets.cohort.document",
    "clinical_for": "brainmets.cohort.clinical",
    "cohort_for": "brainmets.cohort.model",
    "load_clinical": "brainmets.cohort.clinical",
    "load_cohort": "brainmets.cohort.model",
    "load_workspace_clinical": "brainmets.cohort.clinical",
    "map_to_pseudonyms": "brainmets.cohort.clinical",
    "open_cohort": "brainmets.cohort.model",
    "reason_category": "brainmets.cohort.model",
    "report_metrics": "brainmets.cohort.document",
    "scanners": "brainmets.cohort.tables",
    "sheet_path": "brainmets.cohort.clinical",
    "table1": "brainmets.cohort.tables",
    "workspace_clinical": "brainmets.cohort.clinical",
    "workspace_features": "brainmets.cohort.workbook",
    "write_document": "brainmets.cohort.render",
    "write_workbook": "brainmets.cohort.workbook",
    "write_workspace_workbook": "brainmets.cohort.workbook",
}

__all__ = [
    "DEFAULTS",
    "Clinical",
    "ClinicalTable",
    "Cohort",
    "Document",
    "PatientRecord",
    "Table",
    "build_document",
    "clinical_for",
    "cohort_for",
    "load_clinical",
    "load_cohort",
    "load_workspace_clinical",
    "map_to_pseudonyms",
    "open_cohort",
    "reason_category",
    "report_metrics",
    "scanners",
    "sheet_path",
    "table1",
    "workspace_clinical",
    "workspace_features",
    "write_document",
    "write_workbook",
    "write_workspace_workbook",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brainmets.cohort' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
