"""The dataset workbook: columns, types and codes read back with openpyxl (and LibreOffice
when installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook

from brainmets.cohort.clinical import COLUMNS
from brainmets.features import DATA_COLUMNS, LESION_COLUMNS, ClinicalTable, write_workbook
from brainmets.lesions import FeatureParams, analyse

PUBLISHED = [
    "BraTS_MET_ID", "Age", "Sex", "Ethnicity", "Smoke", "Primary", "Extranodal", "Survival",
    "Death", "Infratentorial", "ET_num", "Nec_num", "Edema_num", "ET_vol", "Nec_vol",
    "Edema_vol", "Nec_ET_ratio", "Edema_ET_ratio",
]  # fmt: skip


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[5:15, 5:15, 5:15] = 2
    lab[8:12, 8:12, 8:12] = 3
    lab[9:11, 9:11, 9:11] = 1
    a = analyse(lab, np.eye(4))
    empty = analyse(np.zeros((5, 5, 5), np.uint8), np.eye(4))
    clinical = ClinicalTable(
        rows={
            "BraTS-MET-00086-000": {"Age": 61.25, "Sex": 1, "Ethnicity": 0, "Smoke": None,
                                    "Primary": 5, "Extranodal": 1, "Survival": 12.5, "Death": 1},
            "BraTS-MET-00002-000": {"Age": 44.0, "Sex": 0, "Ethnicity": 3, "Smoke": 10.0,
                                    "Primary": 7, "Extranodal": 0, "Survival": 3.0, "Death": 0},
        }
    )  # fmt: skip
    return write_workbook(
        tmp_path / "dataset.xlsx",
        {"BraTS-MET-00086-000": a.features, "BraTS-MET-00002-000": empty.features,
         "BM-ABCDEFGH": None},
        {"BraTS-MET-00086-000": a.lesions},
        clinical,
        params=FeatureParams().as_dict(),
        provenance={"atlas": "SRI24"},
    )  # fmt: skip


def test_data_sheet_columns_types_and_codes(workbook: Path) -> None:
    wb = load_workbook(workbook)
    assert wb.sheetnames == ["Data", "Description", "Lesions", "Provenance"]
    assert DATA_COLUMNS == PUBLISHED
    rows = list(wb["Data"].iter_rows(values_only=True))
    assert list(rows[0]) == PUBLISHED
    recs = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert [r["BraTS_MET_ID"] for r in recs] == [2, 86, "BM-ABCDEFGH"]
    r86 = recs[1]
    assert r86["Smoke"] is None  # missing stays empty
    for col in ("Sex", "Ethnicity", "Primary", "Extranodal", "Death", "Infratentorial", "ET_num"):
        v = r86[col]
        assert v is None or isinstance(v, int) and not isinstance(v, bool), col
    assert r86["Sex"] in COLUMNS["Sex"].codes and r86["Primary"] in COLUMNS["Primary"].codes
    assert r86["Infratentorial"] is None  # no atlas given: empty, not 0
    assert (r86["ET_num"], r86["Nec_num"], r86["Edema_num"]) == (1, 1, 1)
    assert r86["ET_vol"] == 0.056 and isinstance(r86["ET_vol"], float)
    assert r86["Nec_ET_ratio"] == 0.125
    assert recs[0]["ET_vol"] == 0.0 and recs[0]["Nec_ET_ratio"] is None
    assert all(recs[2][c] is None for c in PUBLISHED[1:])
    fmt = {c.column_letter: c.number_format for c in wb["Data"][3]}
    assert fmt["N"] == "0.000"  # ET_vol


def test_description_covers_every_column(workbook: Path) -> None:
    wb = load_workbook(workbook)
    desc = list(wb["Description"].iter_rows(min_row=2, values_only=True))
    data_cols = [r[1] for r in desc if r[0] == "Data"]
    lesion_cols = [r[1] for r in desc if r[0] == "Lesions"]
    assert data_cols == PUBLISHED
    assert lesion_cols == LESION_COLUMNS
    primary = next(r for r in desc if r[1] == "Primary")
    assert "5 NSCLC" in primary[4] and "7 other" in primary[4]
    assert next(r for r in desc if r[1] == "ET_vol")[3] == "cm^3"


def test_lesions_and_provenance(workbook: Path) -> None:
    wb = load_workbook(workbook)
    rows = list(wb["Lesions"].iter_rows(values_only=True))
    assert list(rows[0]) == LESION_COLUMNS
    assert len(rows) == 2 and rows[1][0] == 86
    rec = dict(zip(rows[0], rows[1], strict=True))
    assert rec["has_necrosis"] == 1 and rec["voxels"] == 64
    prov = dict(wb["Provenance"].iter_rows(min_row=2, values_only=True))
    assert prov["version brainmets"]
    assert prov["parameter connectivity"] == 26
    assert prov["atlas"] == "SRI24" and prov["patients"] == 3


def test_opens_in_libreoffice(workbook: Path, tmp_path: Path) -> None:
    office = shutil.which("libreoffice") or shutil.which("soffice")
    if not office:
        pytest.skip("LibreOffice is not installed")
    out = tmp_path / "lo"
    r = subprocess.run(
        [office, "--headless", "--convert-to", "csv", "--outdir", str(out), str(workbook)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    text = (out / "dataset.csv").read_text()
    assert text.splitlines()[0].split(",") == PUBLISHED
