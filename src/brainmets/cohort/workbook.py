"""The dataset workbook, compatible with the published collection's clinical file.

Sheets:

* ``Data``: one row per patient, the published columns (:data:`DATA_COLUMNS`) coded as in
  ``docs/conventions.md``; a missing value is an empty cell;
* ``Description``: the data dictionary (every column of ``Data`` and ``Lesions``: type, unit,
  codes, meaning);
* ``Lesions`` (our extension): one row per lesion;
* ``Provenance`` (our extension): software and versions, parameters, atlas, date, inputs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from brainmets.cohort.clinical import COLUMNS as CLINICAL_COLUMNS
from brainmets.cohort.clinical import OUTPUT_COLUMNS, ClinicalTable, workspace_clinical
from brainmets.fsutil import atomic_path
from brainmets.lesions.analysis import FEATURE_COLUMNS, LesionRecord, PatientFeatures
from brainmets.pipeline.stage import module_version

ID_COLUMN = "BraTS_MET_ID"
DATA_COLUMNS: list[str] = [ID_COLUMN, *OUTPUT_COLUMNS, *FEATURE_COLUMNS]

#: column -> (type, unit, description, codes)
FEATURE_DESCRIPTION: dict[str, tuple[str, str, str, str]] = {
    ID_COLUMN: (
        "integer or text",
        "",
        "patient ID: the collection's number (86 = folder BraTS-MET-00086-000) or the "
        "pseudonymous workspace ID",
        "",
    ),
    "Infratentorial": (
        "integer",
        "",
        "any lesion infratentorial (SRI24: tissues > 0 and suptent == 0; a lesion counts when "
        "its centroid or most of its voxels lie there)",
        "0 no, 1 yes",
    ),
    "ET_num": ("integer", "", "connected components of enhancing tumour (label 3)", ""),
    "Nec_num": ("integer", "", "connected components of necrosis (label 1)", ""),
    "Edema_num": (
        "integer",
        "",
        "connected components of edema (label 2); edema of neighbouring lesions merges",
        "",
    ),
    "ET_vol": ("number", "cm^3", "enhancing tumour volume (3 decimals)", ""),
    "Nec_vol": ("number", "cm^3", "necrosis volume (3 decimals)", ""),
    "Edema_vol": ("number", "cm^3", "edema volume (3 decimals)", ""),
    "Nec_ET_ratio": ("number", "", "Nec_vol / (ET_vol + Nec_vol); empty without tumour core", ""),
    "Edema_ET_ratio": (
        "number",
        "",
        "Edema_vol / (ET_vol + Nec_vol); empty without tumour core",
        "",
    ),
}

LESION_DESCRIPTION: dict[str, tuple[str, str, str]] = {
    "lesion": ("integer", "", "lesion number within the patient (1 = largest core)"),
    "voxels": ("integer", "voxels", "tumour-core voxels (labels 1 and 3) of the lesion"),
    "volume_cm3": ("number", "cm^3", "tumour-core volume"),
    "et_voxels": ("integer", "voxels", "enhancing voxels"),
    "nec_voxels": ("integer", "voxels", "necrosis voxels"),
    "edema_voxels": ("integer", "voxels", "edema voxels attributed to the lesion"),
    "et_vol": ("number", "cm^3", "enhancing volume"),
    "nec_vol": ("number", "cm^3", "necrosis volume"),
    "edema_vol": (
        "number",
        "cm^3",
        "edema attributed to the lesion (shared edema split by nearest core)",
    ),
    "edema_shared": ("0/1", "", "the lesion's edema touches another lesion"),
    "max_diameter_mm": ("number", "mm", "maximum 3D diameter of the core"),
    "centroid_x_mm": (
        "number",
        "mm",
        "core centroid x, SRI24 template world, RAS+ (NIfTI affine of the preprocessed grid, "
        "the SRI24 header diag(-1, 1, 1) with origin at voxel (0, 0, 0): x = -i)",
    ),
    "centroid_y_mm": ("number", "mm", "core centroid y, SRI24 template world, RAS+ (y = j)"),
    "centroid_z_mm": ("number", "mm", "core centroid z, SRI24 template world, RAS+ (z = k)"),
    "centroid_i": ("number", "voxel", "core centroid, array index i of the label map"),
    "centroid_j": ("number", "voxel", "core centroid, array index j"),
    "centroid_k": ("number", "voxel", "core centroid, array index k"),
    "subcentimetre": ("0/1", "", "maximum diameter below 10 mm"),
    "has_necrosis": ("0/1", "", "the lesion contains necrosis"),
    "has_edema": ("0/1", "", "edema touches the lesion"),
    "infratentorial": ("0/1", "", "the lesion is infratentorial"),
    "infratentorial_fraction": ("number", "", "fraction of core voxels in infratentorial brain"),
    "location": ("text", "", "supratentorial or infratentorial"),
    "region": ("text", "", "most frequent SRI24 tzo116plus (AAL-style) parcel of the core"),
}
LESION_COLUMNS = [ID_COLUMN, *LESION_DESCRIPTION]

_FORMATS = {
    "Age": "0.00",
    "Survival": "0.00",
    "Smoke": "0.0",
    "ET_vol": "0.000",
    "Nec_vol": "0.000",
    "Edema_vol": "0.000",
    "Nec_ET_ratio": "0.0000",
    "Edema_ET_ratio": "0.0000",
}


def workbook_id(patient_id: str) -> int | str:
    """The workbook ID of a patient: the collection number for ``BraTS-MET-XXXXX-000`` or an
    integer ID, else the ID as text."""
    from brainmets.ids import normalise_id

    key = normalise_id(patient_id)
    return int(key) if key.isdigit() else patient_id


def _cell(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v != v:  # NaN
        return None
    if hasattr(v, "item") and not isinstance(v, str | bytes):
        return v.item()
    return v


def _feature_row(f: PatientFeatures | Mapping[str, Any] | None) -> dict[str, Any]:
    if f is None:
        return {}
    if isinstance(f, PatientFeatures):
        return f.row()
    return {c: f.get(c) for c in FEATURE_COLUMNS}


def _lesion_rows(items: Sequence[LesionRecord | Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(x) if isinstance(x, LesionRecord) else dict(x) for x in items]


def _order(ids: Iterable[str]) -> list[str]:
    def key(p: str) -> tuple[int, int, str]:
        w = workbook_id(p)
        return (0, w, "") if isinstance(w, int) else (1, 0, str(w))

    return sorted(ids, key=key)


def _versions() -> dict[str, str]:
    import cc3d
    import nibabel
    import numpy
    import openpyxl
    import scipy

    import brainmets

    def ver(m: Any) -> str:
        return module_version(m)

    return {
        "brainmets": brainmets.__version__,
        "python": platform.python_version(),
        "numpy": ver(numpy),
        "scipy": ver(scipy),
        "nibabel": ver(nibabel),
        "connected-components-3d": ver(cc3d),
        "openpyxl": ver(openpyxl),
    }


def write_workbook(
    path: str | os.PathLike[str],
    features: Mapping[str, PatientFeatures | Mapping[str, Any] | None],
    lesions: Mapping[str, Sequence[LesionRecord | Mapping[str, Any]]] | None = None,
    clinical: ClinicalTable | Mapping[str, Mapping[str, Any]] | None = None,
    ids: Mapping[str, int | str] | None = None,
    params: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Write the dataset workbook atomically and return its path.

    Args:
        features: patient -> features (:class:`PatientFeatures`, or a mapping with the
            feature columns, or ``None`` when the patient has no label map).
        lesions: patient -> lesion records (the ``Lesions`` sheet).
        clinical: validated clinical rows keyed by the same patient IDs.
        ids: patient -> ``BraTS_MET_ID`` (default :func:`workbook_id`).
        params: the feature parameters used (Provenance).
        provenance: more key/value pairs for the Provenance sheet (atlas, inputs, ...).
    """
    from openpyxl import Workbook
    from openpyxl.styles import Font

    rows_clin = clinical.rows if isinstance(clinical, ClinicalTable) else dict(clinical or {})
    lesions = lesions or {}
    patients = _order(set(features) | set(rows_clin))
    ids = dict(ids or {})
    bold = Font(bold=True)

    wb = Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(DATA_COLUMNS)
    for pid in patients:
        rec: dict[str, Any] = {ID_COLUMN: ids.get(pid, workbook_id(pid))}
        clin = rows_clin.get(pid) or {}
        for c in OUTPUT_COLUMNS:
            rec[c] = clin.get(c)
        rec.update(_feature_row(features.get(pid)))
        ws.append([_cell(rec.get(c)) for c in DATA_COLUMNS])
    _style(ws, DATA_COLUMNS, bold)

    wd = wb.create_sheet("Description")
    wd.append(["Sheet", "Column", "Type", "Unit", "Codes", "Description"])
    wd.append(
        [
            "Data",
            ID_COLUMN,
            *FEATURE_DESCRIPTION[ID_COLUMN][:2],
            "",
            FEATURE_DESCRIPTION[ID_COLUMN][2],
        ]
    )
    for c in OUTPUT_COLUMNS:
        spec = CLINICAL_COLUMNS[c]
        codes = ", ".join(f"{k} {v}" for k, v in (spec.codes or {}).items())
        kind = "integer code" if spec.kind == "code" else "number"
        wd.append(["Data", c, kind, spec.unit, codes, spec.description + "; empty when missing"])
    for c in FEATURE_COLUMNS:
        kind, unit, text, codes = FEATURE_DESCRIPTION[c]
        wd.append(["Data", c, kind, unit, codes, text])
    wd.append(["Lesions", ID_COLUMN, "integer or text", "", "", "patient ID as in Data"])
    for c, (kind, unit, text) in LESION_DESCRIPTION.items():
        codes = "0 no, 1 yes" if kind == "0/1" else ""
        wd.append(["Lesions", c, "integer" if kind == "0/1" else kind, unit, codes, text])
    _style(
        wd,
        ["Sheet", "Column", "Type", "Unit", "Codes", "Description"],
        bold,
        widths=(10, 18, 14, 8, 40, 90),
    )

    wl = wb.create_sheet("Lesions")
    wl.append(LESION_COLUMNS)
    for pid in patients:
        for les in _lesion_rows(lesions.get(pid, [])):
            les[ID_COLUMN] = ids.get(pid, workbook_id(pid))
            wl.append([_cell(les.get(c)) for c in LESION_COLUMNS])
    _style(wl, LESION_COLUMNS, bold)

    wp = wb.create_sheet("Provenance")
    wp.append(["Key", "Value"])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    items: list[tuple[str, Any]] = [("created (UTC)", now.isoformat()), ("patients", len(patients))]
    items += [(f"version {k}", v) for k, v in _versions().items()]
    for k, v in (params or {}).items():
        items.append((f"parameter {k}", v))
    if isinstance(clinical, ClinicalTable):
        items += [
            ("clinical rows read", clinical.n_rows),
            ("clinical rows used", len(clinical.rows)),
            ("clinical errors", len(clinical.errors)),
            ("clinical warnings", len(clinical.warnings)),
        ]
    for k, v in (provenance or {}).items():
        items.append((k, v))
    for k, v in items:
        value = v if isinstance(v, int | float | str) or v is None else json.dumps(v, default=str)
        wp.append([k, value])
    _style(wp, ["Key", "Value"], bold, widths=(34, 100))

    wb.properties.creator = "brainmets"
    wb.properties.title = "Brain metastases dataset: clinical and imaging features"
    dest = Path(path)
    with atomic_path(dest) as tmp:
        wb.save(str(tmp))
    return dest


def _style(ws: Any, columns: Sequence[str], bold: Any, widths: Sequence[int] | None = None) -> None:
    from openpyxl.utils import get_column_letter

    for cell in ws[1]:
        cell.font = bold
    ws.freeze_panes = "A2"
    for i, c in enumerate(columns, start=1):
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = widths[i - 1] if widths else max(10, len(c) + 2)
        fmt = _FORMATS.get(c)
        if fmt:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                if isinstance(cell.value, float):
                    cell.number_format = fmt


# ----------------------------------------------------------------- workspace level
def workspace_features(
    root: str | os.PathLike[str],
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The recorded ``features.json`` of every patient of a workspace (successful runs):
    ``(patient -> feature row, patient -> lesions, parameters of the runs)``."""
    from brainmets.catalog import Catalog
    from brainmets.workspace import CATALOG_NAME

    root = Path(root)
    cat = Catalog.open(root / CATALOG_NAME, readonly=True)
    try:
        rows = cat.output_files(stage="features", role="features", status="done")
    finally:
        cat.close()
    feats: dict[str, dict[str, Any]] = {}
    lesions: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, Any] = {}
    for r in rows:
        doc = json.loads((root / r.path).read_text())
        feats[r.patient_id] = doc["features"]
        lesions[r.patient_id] = doc["lesions"]
        params = params or doc.get("params", {})
    return feats, lesions, params


def write_workspace_workbook(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    clinical_sheet: str | os.PathLike[str] | None = None,
    ids: Mapping[str, int | str] | None = None,
) -> tuple[Path, ClinicalTable | None]:
    """The dataset workbook of a workspace (features of every patient + clinical sheet)."""
    feats, lesions, params = workspace_features(root)
    table = workspace_clinical(root, clinical_sheet, sorted(feats)) if clinical_sheet else None
    path = write_workbook(
        out,
        feats,
        lesions,
        table,
        ids=ids,
        params=params,
        provenance={
            "source": "workspace",
            "clinical sheet": Path(clinical_sheet).name if clinical_sheet else "",
        },
    )
    return path, table
