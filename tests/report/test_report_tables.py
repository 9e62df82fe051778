"""The report's tables as pure functions: formatting, units, Table 1 form, scanners, reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainmets.catalog import StageRun
from brainmets.cohort.model import Cohort, PatientRecord, reason_category
from brainmets.cohort.render import Document, Section, render_html, render_markdown, table_csv
from brainmets.cohort.tables import (
    NA,
    acquisition_of,
    cohort_flow,
    field_strength_label,
    fmt_num,
    median_range,
    n_pct,
    sample_patients,
    scanners,
    table1,
    vendor_name,
)


def _run(stage: str, status: str = "done", error: str | None = None) -> StageRun:
    return StageRun("x", stage, status, None, None, None, None, error, {}, {}, {}, {}, 1)


def _patient(pid: str, selected: dict, sidecars: dict | None = None) -> PatientRecord:
    return PatientRecord(
        id=pid,
        runs={"classify": _run("classify")},
        has_sequences=True,
        included=True,
        selected=selected,
        sidecars=sidecars or {},
    )


def test_formatting() -> None:
    assert fmt_num(120.0) == "120" and fmt_num(2.98) == "2.98" and fmt_num(0.1234, 3) == "0.123"
    assert fmt_num(None) == NA
    assert n_pct(1, 3) == "1 (33.3%)" and n_pct(0, 0) == "0 (-)"
    assert median_range([3, 1, 2, None]) == "2 (1-3)"
    assert median_range([None, None]) == NA


def test_acquisition_units_header_first_then_sidecar_seconds() -> None:
    p = _patient(
        "P1",
        {"flair": {"echo_time": 120.5, "repetition_time": None, "mr_acquisition_type": "2d"}},
        {"flair": {"EchoTime": 0.999, "RepetitionTime": 9.0, "SliceThickness": 5}},
    )
    a = acquisition_of(p, "flair")
    assert a.echo_time_ms == 120.5  # DICOM header, ms: the sidecar is not used
    assert a.repetition_time_ms == pytest.approx(9000.0)  # sidecar seconds -> ms
    assert a.slice_thickness_mm == 5 and a.slice_spacing_mm is None
    assert a.acquisition == "2D"
    assert dict(a.sources) == {
        "echo_time": "dicom",
        "repetition_time": "sidecar",
        "slice_thickness": "sidecar",
    }
    assert acquisition_of(p, "t1c").acquisition == NA


def test_table1_form() -> None:
    pts = [
        _patient("P1", {"flair": {"mr_acquisition_type": "2D", "echo_time": 100.0}}),
        _patient("P2", {"flair": {"mr_acquisition_type": "3D", "echo_time": 300.0}}),
        _patient("P3", {"flair": {}}),
    ]
    t = table1(Cohort(Path("."), pts, ["classify"]))
    assert t.columns == ["Parameter", "FLAIR", "T1 post-contrast", "T1", "T2"]
    assert [r[0].strip() for r in t.rows] == [
        "Acquisition, n (%)",
        "2D",
        "3D",
        "N/A",
        "Echo time (ms), median (range)",
        "Repetition time (ms), median (range)",
        "Slice thickness (mm), median (range)",
        "Slice spacing (mm), median (range)",
        "Inversion time (ms), median (range)",
        "Flip angle (deg), median (range)",
        "In-plane pixel spacing, coarser axis (mm), median (range)",
        "Matrix rows (px), median (range)",
        "Matrix columns (px), median (range)",
        "Contrast agent recorded (ContrastBolusAgent), n (%)",
        "none recorded",
    ]
    assert t.lookup("  2D", "FLAIR") == "1 (33.3%)"
    assert t.lookup("  N/A", "FLAIR") == "1 (33.3%)"
    assert t.lookup("Echo time (ms), median (range)", "FLAIR") == "200 (100-300)"
    assert t.lookup("Repetition time (ms), median (range)", "FLAIR") == NA
    assert t.lookup("  N/A", "T1 post-contrast") == "3 (100.0%)"
    assert "echo time (flair 1, t1 post-contrast 3, t1 3, t2 3)" in t.note.lower()
    assert "inversion time (" not in t.note.lower()  # not a missing value


def test_table1_extra_parameters_and_models() -> None:
    t1c = {
        "flip_angle": 9.0,
        "inversion_time": 900.0,
        "pixel_spacing": [0.9, 1.2],
        "rows": 256,
        "columns": 192,
        "contrast_agent": " Gadovist ",
        "field_strength": 3.0,
        "manufacturer": "SIEMENS",
        "model": "Skyra",
    }
    pts = [
        _patient("P1", {"t1c": t1c, "t2": {"flip_angle": 150.0}}),
        _patient(
            "P2",
            {"t1c": {"model": "Signa HDxt", "manufacturer": "GE MEDICAL SYSTEMS"}},
            {"t1c": {"FlipAngle": 15, "InversionTime": 0.45}},
        ),
    ]
    cohort = Cohort(Path("."), pts, ["classify"])
    t = table1(cohort)
    col = "T1 post-contrast"
    assert t.lookup("Flip angle (deg), median (range)", col) == "12 (9-15)"
    assert t.lookup("Inversion time (ms), median (range)", col) == "675 (450-900)"  # s -> ms
    assert t.lookup("In-plane pixel spacing, coarser axis (mm), median (range)", col) == (
        "1.2 (1.2-1.2)"
    )
    assert t.lookup("Matrix rows (px), median (range)", col) == "256 (256-256)"
    assert t.lookup("Flip angle (deg), median (range)", "T2") == "150 (150-150)"
    assert t.lookup("  Gadovist", col) == "1 (50.0%)"
    assert t.lookup("  Gadovist", "T1") == "0 (0.0%)"
    assert t.lookup("  none recorded", col) == "1 (50.0%)"
    sc = scanners(cohort)
    assert sc.lookup("  Siemens Skyra") == "1 (50.0%)"
    assert sc.lookup("  GE Signa HDxt") == "1 (50.0%)"


def test_scanners() -> None:
    assert field_strength_label(2.89362) == "3 T"
    assert field_strength_label(1.494) == "1.5 T"
    assert field_strength_label(15000) == "1.5 T"  # gauss in old headers
    assert field_strength_label(0.35) == "0.35 T"
    assert field_strength_label(None) == NA
    assert vendor_name("SIEMENS") == "Siemens"
    assert vendor_name("GE MEDICAL SYSTEMS") == "GE"
    assert vendor_name("Philips Medical Systems") == "Philips"
    assert vendor_name("TOSHIBA_MEC") == "Canon (Toshiba)"
    assert vendor_name("Acme MR") == "Acme MR"
    assert vendor_name(None) == NA
    pts = [
        _patient("P1", {"t1c": {"field_strength": 3.0, "manufacturer": "SIEMENS"}}),
        _patient("P2", {"t1c": {"field_strength": 1.5, "manufacturer": "GE MEDICAL SYSTEMS"}}),
        _patient("P3", {}, {"t1c": {"MagneticFieldStrength": 3, "Manufacturer": "Siemens"}}),
    ]
    t = scanners(Cohort(Path("."), pts, ["classify"]))
    assert t.lookup("  1 T") == "0 (0.0%)"
    assert t.lookup("  1.5 T") == "1 (33.3%)"
    assert t.lookup("  3 T") == "2 (66.7%)"
    assert t.lookup("  Siemens") == "2 (66.7%)"


def test_reason_category() -> None:
    assert (
        reason_category("classify: no study with all of t1, t1c, t2, flair: study X lacks flair")
        == "classify: missing flair"
    )
    assert (
        reason_category("classify: study 1 lacks t2 and flair; study 2 lacks t1c")
        == "classify: missing t2, flair, t1c"
    )
    assert reason_category("preprocess failed: RegistrationFailed: NMI low") == (
        "preprocess failed: RegistrationFailed"
    )
    assert reason_category("not processed by segment") == "not processed by segment"


def test_cohort_flow_counts() -> None:
    a = _patient("A", {})
    b = PatientRecord(id="B", has_sequences=True, included=False, reason="x failed: E")
    c = PatientRecord(id="C", has_sequences=False, included=False, reason="classify: lacks t1")
    t = cohort_flow(Cohort(Path("."), [a, b, c], ["classify", "x"]))
    assert [r[1] for r in t.rows] == [3, 2, 1]
    assert [r[-1] for r in t.rows] == [1, 1, ""]
    assert [r[2:5] for r in t.rows] == [[0, 0, 0]] * 3  # nothing recorded


def test_cohort_flow_studies_series_files_and_input_files() -> None:
    from brainmets.catalog import PatientCounts
    from brainmets.cohort.tables import file_reason_category, input_files

    a = _patient("A", {})
    c = PatientRecord(id="C", has_sequences=False, included=False, reason="classify: lacks t1")
    counts = {"A": PatientCounts("A", 2, 9, 700), "C": PatientCounts("C", 1, 3, 120)}
    files = [
        ("deidentified", None, 820),
        ("duplicate", "same SOPInstanceUID as /in/DOE^JOHN/1.dcm", 2),
        ("quarantined", "quarantined: BurnedInAnnotation=YES; not written to the workspace", 3),
        ("quarantined", "quarantined: secondary capture (SC Image Storage); not written", 1),
        ("rejected", "not a DICOM file", 4),
        ("rejected", "unreadable DICOM (InvalidDicomError: /in/x/IM1 truncated)", 1),
    ]
    cohort = Cohort(Path("."), [a, c], ["classify"], counts=counts, files=files)
    t = cohort_flow(cohort)
    assert t.columns[:5] == ["Step", "Patients", "Studies", "Series", "Files"]
    assert [r[:5] for r in t.rows] == [
        ["Patients found", 2, 3, 12, 820],
        ["With all four pretreatment sequences (T1, T1c, T2, FLAIR)", 1, 2, 9, 700],
        ["Included in the dataset (every stage complete)", 1, 2, 9, 700],
    ]
    f = input_files(cohort)
    got = {r[0].strip(): r[1] for r in f.rows}
    assert got["Input files found"] == 831
    assert got["De-identified (written to the workspace)"] == "820 (98.7%)"
    assert got["Quarantined (not written: pixels may show identifying text)"] == "4 (0.5%)"
    assert got["BurnedInAnnotation=YES"] == 3 and got["secondary capture (SC Image Storage)"] == 1
    assert got["Rejected (not a usable DICOM instance)"] == "5 (0.6%)"
    assert got["not a DICOM file"] == 4 and got["unreadable DICOM"] == 1
    assert got["Duplicate (same SOPInstanceUID as another file)"] == "2 (0.2%)"
    assert got["copy of a kept file"] == 2
    assert "DOE" not in str(f.rows) and "/in/" not in str(f.rows)  # no path is shown
    assert file_reason_category("rejected", None) == ""
    empty = input_files(Cohort(Path("."), [a], ["classify"]))
    assert empty.rows[0] == ["Input files found", 0] and "No input file" in empty.note


def test_sampling_is_deterministic() -> None:
    pts = [_patient(f"P{i:02d}", {}) for i in range(20)]
    a = sample_patients(pts, 5, "random", seed=3)
    assert a == sample_patients(list(reversed(pts)), 5, "random", seed=3)
    assert len(a) == 5 and [p.id for p in a] == sorted(p.id for p in a)
    assert [p.id for p in sample_patients(pts, 2, "first")] == ["P00", "P01"]
    assert len(sample_patients(pts, 0)) == 20
    with pytest.raises(ValueError):
        sample_patients(pts, 2, "best")


def test_renderers_escape_and_embed() -> None:
    from brainmets.cohort.render import Figure
    from brainmets.cohort.tables import Table

    t = Table("t", "A <b> table", ["x|y", "n"], [["<script>", 1], ["  indented", 2.5]], "n & m")
    doc = Document("T", "sub", [Section("S", ["p <i>"], [t], [Figure("f", "cap", b"\x89PNG")])])
    html = render_html(doc)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'src="data:image/png;base64,iVBORw==' in html
    md = render_markdown(doc)
    assert "x\\|y" in md and "![cap](figures/f.png)" in md
    assert table_csv(t).splitlines() == ["x|y,n", "<script>,1", "indented,2.5"]


def test_caption_repeating_the_heading_is_not_shown() -> None:
    from brainmets.cohort.tables import Table

    same = Table("scanners", "Scanners", ["Scanner", "Patients"], [["  3 T", 1]])
    other = Table("other", "Field strength", ["a"], [[1]])
    doc = Document("T", "sub", [Section("Scanners", tables=[same, other])])
    html = render_html(doc)
    assert "<h3>Scanners</h3>" not in html and "<h3>Field strength</h3>" in html
    md = render_markdown(doc)
    assert "### Scanners" not in md and "### Field strength" in md


def test_median_iqr_and_kaplan_meier() -> None:
    from brainmets.cohort.tables import kaplan_meier_median, median_iqr

    assert median_iqr([1, 2, 3, 4, 5, None]) == "3 [2-4]"
    assert median_iqr([7.0]) == "7 [7-7]" and median_iqr([None]) == NA
    # deaths at 2 and 6, censored at 4: S = 2/3 after 2, 0 after 6 -> median 6
    assert kaplan_meier_median([2, 4, 6], [True, False, True]) == 6
    assert kaplan_meier_median([1, 2, 3, 4], [True, True, False, False]) == 2
    assert kaplan_meier_median([5, 8], [False, False]) is None  # not reached
    # no censoring: the sample median (0.5 exactly between 2 and 3)
    assert kaplan_meier_median([1, 2, 3, 4], [True] * 4) == 2.5
    assert kaplan_meier_median([1, 2, 3], [True] * 3) == 2


def test_clinical_characteristics_without_vital_status() -> None:
    from brainmets.cohort.tables import clinical_characteristics

    pts = [_patient(f"P{i}", {}) for i in range(3)]
    cohort = Cohort(Path("."), pts, ["classify"])
    rows = {
        "P0": {"Sex": 0, "Ethnicity": 4, "Smoke": 0.0, "Survival": 10.0},
        "P1": {"Sex": 1, "Ethnicity": None, "Smoke": 30.0, "Survival": 20.0},
        "P2": {"Sex": 1, "Ethnicity": 4, "Smoke": 10.0, "Survival": None},
    }
    t = clinical_characteristics(cohort, rows)
    assert t.lookup("  Asian/Pacific Islander") == "2 (66.7%)"
    assert t.lookup("  N/A") != "" and t.lookup("  Never smoked (0 pack-years), n (%)") == (
        "1 (33.3%)"
    )
    assert t.lookup("Smoking history (pack-years), median [IQR]") == "10 [5-20]"
    assert t.lookup("Survival time (months), median [IQR]") == "15 [12.5-17.5]"
    assert t.lookup("  Survival N/A") == "1 (33.3%)"
    assert "censored is not known" in t.note
    assert not any("Kaplan" in str(r[0]) for r in t.rows)


def test_clinical_problems_say_what_and_where() -> None:
    from brainmets.cohort.tables import clinical_characteristics, clinical_problems

    problems = [
        (1, "Weight", "warning", "column not used (not part of the dataset)"),
        (5, "Ethnicity", "error", "not an allowed code (0 White, 1 White Hispanic)"),
        (7, "MRN", "error", "same MRN as row 3: both rows skipped"),
        (8, "Smoke", "warning", "missing value (left empty)"),
    ]
    t = clinical_problems(problems, "clinical.xlsx")
    assert t.columns == ["Sheet row", "Column", "Severity", "Message", "Effect"]
    assert t.column("Effect") == [
        "column ignored",
        "cell left empty (N/A in the tables)",
        "row not used",
        "cell empty (N/A in the tables)",
    ]
    assert "2 error(s) — (1) sheet row 5, column Ethnicity: not an allowed code" in t.note
    assert "Hispanic) -> cell left empty (N/A in the tables); (2) sheet row 7" in t.note
    assert "(2) sheet row 7, column MRN: same MRN as row 3: both rows skipped -> row not used" in (
        t.note
    )
    assert "clinical_problems.csv" in t.note and "(cell left empty)" not in t.note
    anon = clinical_problems(problems, "clinical.xlsx", anonymous=True)
    assert ["error", "row not used", 1] in anon.rows and "Ethnicity" not in str(anon.rows)
    cohort = Cohort(Path("."), [_patient("P0", {})], ["classify"])
    note = clinical_characteristics(cohort, {"P0": {}}, problems).note
    assert "2 error(s) and 2 warning(s): see Clinical sheet problems (clinical_problems)" in note
