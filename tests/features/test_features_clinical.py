"""The clinical sheet: reading CSV/XLSX, cell validation, MRN -> pseudonym mapping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from openpyxl import Workbook

from brainmets.features import load_clinical, map_to_pseudonyms
from brainmets.ids import patient_pseudonym

HEADER = ["MRN", "Age", "Sex", "Ethnicity", "Smoke", "Primary", "Extranodal", "Survival", "Death"]
ROWS = [
    ["20000001", 61.5, 1, 0, 20, 5, 1, 12.3, 1],  # good
    ["20000002", 55, 0, "O", None, "NCSLC", 0, 4, 0],  # letter O, typo, missing Smoke
    ["20000003", 130, "F", 3, 10, "SCLC ", 1, 2.5, "1"],  # age out of range; names -> codes
    [None, 50, 0, 0, 0, 1, 0, 1, 0],  # no MRN
    ["20000005", 40, 2, 5, 0, 8, 2, -1, 3],  # every code wrong
    ["20000001", 62, 1, 0, 20, 5, 1, 12, 1],  # duplicate of row 2
    [20000007.0, "forty", 0, 1.0, "12.5", 7, 0, "3,5", 0],  # numeric MRN; text numbers
]


def _xlsx(path: Path, header: list[str], rows: list[list]) -> Path:
    wb = Workbook()
    ws = wb.active
    ws.title = "Data"
    ws.append(header)
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def _problems(table) -> dict[tuple[int, str], str]:
    return {(p.row, p.column): p.severity for p in table.problems}


def test_validation_reports_row_column_value_and_keeps_good_rows(tmp_path: Path) -> None:
    table = load_clinical(_xlsx(tmp_path / "c.xlsx", HEADER, ROWS))
    assert table.n_rows == 7
    probs = _problems(table)
    # the good row is untouched... but it is duplicated at row 7: both rows are left out
    assert "20000001" not in table.rows
    assert probs[(7, "MRN")] == "error"
    assert probs[(3, "Ethnicity")] == "error"  # letter O
    assert probs[(3, "Primary")] == "error"  # NCSLC
    assert probs[(3, "Smoke")] == "warning"  # missing: left empty
    assert table.rows["20000002"]["Ethnicity"] is None
    assert table.rows["20000002"]["Primary"] is None
    assert table.rows["20000002"]["Age"] == 55.0
    assert probs[(4, "Age")] == "error"
    assert table.rows["20000003"]["Sex"] == 1 and probs[(4, "Sex")] == "warning"
    assert table.rows["20000003"]["Primary"] == 3 and probs[(4, "Primary")] == "warning"
    assert table.rows["20000003"]["Death"] == 1
    assert probs[(5, "MRN")] == "error"
    for col in ("Sex", "Ethnicity", "Primary", "Extranodal", "Survival", "Death"):
        assert probs[(6, col)] == "error", col
    assert table.rows["20000007"]["Smoke"] == 12.5
    assert (
        probs[(8, "Age")] == "error" and probs[(8, "Survival")] == "error"
    )  # "3,5" is not a number
    # values are shown, MRNs never
    by = {(p.row, p.column): p for p in table.problems}
    assert by[(3, "Ethnicity")].value == "'O'"
    assert (
        "not an allowed code" in by[(3, "Primary")].message
        and "5 NSCLC" in by[(3, "Primary")].message
    )
    assert all("2000000" not in p.value for p in table.problems)
    assert "row 3, column Ethnicity, value 'O'" in str(by[(3, "Ethnicity")])


def test_drop_row_mode(tmp_path: Path) -> None:
    table = load_clinical(_xlsx(tmp_path / "c.xlsx", HEADER, ROWS), on_invalid="drop_row")
    assert "20000002" not in table.rows and "20000003" not in table.rows


def test_csv_with_semicolons_and_dates(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_text(
        "\ufeffMRN;Age;Sex;Survival;Diagnosis_date;Last_contact_date;Name\n"
        "30000001;60;0;;2020-01-01;2020-07-19;Jane Doe\n"
        "30000002;60;1;1;2020-01-01;2020-07-19;\n"
        "30000003;60;1;;2020-03-01;2020-01-01;\n"
    )
    table = load_clinical(p)
    assert table.rows["30000001"]["Survival"] == 6.67  # 200 days / 30
    probs = {(x.row, x.column): x for x in table.problems}
    assert probs[(2, "Survival")].severity == "warning"  # computed from the dates
    assert probs[(3, "Survival")].severity == "warning"  # disagrees with the dates
    assert probs[(4, "Last_contact_date")].severity == "error"
    assert probs[(1, "Name")].message.startswith("column not used")
    assert probs[(1, "Smoke")].message.startswith("column missing")


def test_missing_key_column_and_bad_files(tmp_path: Path) -> None:
    table = load_clinical(_xlsx(tmp_path / "c.xlsx", ["ID", "Age"], [["1", 3]]))
    assert not table.rows and table.errors[0].message == "the sheet has no MRN column"
    with pytest.raises(FileNotFoundError):
        load_clinical(tmp_path / "none.xlsx")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.csv or \.xlsx"):
        load_clinical(tmp_path / "x.json")


def test_mapping_to_pseudonyms(tmp_path: Path) -> None:
    key = b"k" * 32
    table = load_clinical(_xlsx(tmp_path / "c.xlsx", HEADER, ROWS[1:3]))
    known = [patient_pseudonym(key, "20000002")]
    mapped = map_to_pseudonyms(table, key, known)
    assert list(mapped.rows) == known
    assert mapped.source_rows[known[0]] == 2
    unknown = [p for p in mapped.problems if "no patient of the workspace" in p.message]
    assert [p.row for p in unknown] == [3] and unknown[0].value == "<MRN withheld>"


def test_collection_sheet_keyed_by_id(tmp_path: Path) -> None:
    header = ["BraTS_MET_ID", "Age", "Sex", "ET_num", "Ethnicity"]
    table = load_clinical(
        _xlsx(
            tmp_path / "p.xlsx", header, [[86, 50.2, 1, 3, 0], ["BraTS-MET-00002-000", 40, 0, 1, 1]]
        ),
        key_column="BraTS_MET_ID",
    )
    assert set(table.rows) == {"86", "2"}
    assert not [p for p in table.problems if p.column == "ET_num"]  # feature columns are known


def test_dates_as_excel_dates(tmp_path: Path) -> None:
    header = ["MRN", "Age", "Birth_date", "Diagnosis_date"]
    rows = [["1", None, dt.datetime(1960, 1, 1), dt.datetime(2020, 1, 1)]]
    table = load_clinical(_xlsx(tmp_path / "c.xlsx", header, rows))
    assert table.rows["1"]["Age"] == round(
        (dt.date(2020, 1, 1) - dt.date(1960, 1, 1)).days / 365, 2
    )
