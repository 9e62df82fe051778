"""The dataset descriptor (stage ``report``): cohort flow, patient characteristics, scanners,
Table 1 of the acquisition parameters, lesion totals and histograms, per-patient figures and
QC, as self-contained HTML, Markdown and CSV. See ``docs/report_export.md``.

The cohort model, tables and document are the library :mod:`brainmets.cohort` (re-exported
here); this package adds :func:`report_path` (the HTML report recorded in a workspace) and
the stage, :data:`brainmets.report.stage.STAGE`.
"""

from __future__ import annotations

from pathlib import Path

from brainmets.cohort import (
    DEFAULTS,
    Clinical,
    Cohort,
    Document,
    PatientRecord,
    Table,
    build_document,
    load_cohort,
    load_workspace_clinical,
    open_cohort,
    write_document,
)


def report_path(workspace_root: str | Path) -> Path | None:
    """The workspace's HTML report as the catalog records it (None when there is none)."""
    from brainmets.catalog import COHORT, Catalog
    from brainmets.workspace import CATALOG_NAME

    root = Path(workspace_root)
    cat = Catalog.open(root / CATALOG_NAME, readonly=True)
    try:
        run = cat.stage_run(COHORT, "report")
        outs = cat.stage_outputs(COHORT, "report")
    finally:
        cat.close()
    if run is None or run.status != "done" or "html" not in outs:
        return None
    path = root / outs["html"][0]
    return path if path.is_file() else None


__all__ = [
    "DEFAULTS",
    "Clinical",
    "Cohort",
    "Document",
    "PatientRecord",
    "Table",
    "build_document",
    "load_cohort",
    "load_workspace_clinical",
    "open_cohort",
    "report_path",
    "write_document",
]
