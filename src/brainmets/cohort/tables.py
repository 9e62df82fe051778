"""The descriptor's tables, computed from a :class:`~brainmets.cohort.model.Cohort`.

Each function returns a :class:`Table` (title, columns, rows of text or numbers, note) that
the renderers write as HTML, Markdown and CSV. Percentages use the included patients (or, for
lesion counts, the lesions) as denominator and one decimal, as in the reference paper;
"median (min-max)" keeps up to two decimals.

Units: the indexed DICOM header stores times in milliseconds and lengths in millimetres; the
dcm2niix BIDS sidecars store ``EchoTime``/``RepetitionTime``/``InversionTime`` in **seconds**.
Table 1 reads the DICOM header of the selected series and falls back to the sidecar only for a
value the header lacks (seconds x 1000).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from brainmets.cohort.model import Cohort, PatientRecord, reason_category
from brainmets.vocab import ETHNICITY

#: Table 1 sequences: classify class -> column title (the reference paper's two sequences
#: first, then T1 and T2)
TABLE1_SEQUENCES: dict[str, str] = {
    "flair": "FLAIR",
    "t1c": "T1 post-contrast",
    "t1": "T1",
    "t2": "T2",
}
#: field strength rows always shown (the reference paper's)
FIELD_STRENGTHS: tuple[float, ...] = (1.0, 1.5, 3.0)
PRIMARY_NAMES: dict[int, str] = {
    1: "Breast",
    2: "Gastrointestinal",
    3: "Small cell lung cancer",
    4: "Melanoma",
    5: "Non-small cell lung cancer",
    6: "Renal cell carcinoma",
    7: "Other",
}
SEX_NAMES: dict[int, str] = {0: "Male", 1: "Female"}
ETHNICITY_NAMES: dict[int, str] = dict(ETHNICITY)
NA = "N/A"
#: caption of the patient characteristics table (not the section's title: no doubled heading)
CLINICAL_TITLE = "Characteristics of the included patients"

_VENDORS: tuple[tuple[str, str], ...] = (
    ("siemens", "Siemens"),
    ("ge ", "GE"),
    ("ge medical", "GE"),
    ("gehc", "GE"),
    ("ge healthcare", "GE"),
    ("general electric", "GE"),
    ("philips", "Philips"),
    ("hitachi", "Hitachi"),
    ("fujifilm", "Fujifilm"),
    ("toshiba", "Canon (Toshiba)"),
    ("canon", "Canon (Toshiba)"),
    ("esaote", "Esaote"),
    ("united imaging", "United Imaging"),
    ("uih", "United Imaging"),
)


@dataclass
class Table:
    """A table of the report (also written as ``<name>.csv``)."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    note: str = ""

    def column(self, name: str) -> list[Any]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def lookup(self, first: str, column: str | int = 1) -> Any:
        """The cell of the first row whose first cell is ``first`` (``column``: name or index)."""
        i = self.columns.index(column) if isinstance(column, str) else column
        for r in self.rows:
            if r[0] == first:
                return r[i]
        raise KeyError(f"{self.name}: no row {first!r}")


# ------------------------------------------------------------------------ formatting
def fmt_num(v: float | int | None, decimals: int = 2) -> str:
    """A number with at most ``decimals`` decimals, trailing zeros dropped; N/A for None."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return NA
    text = f"{float(v):.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def n_pct(n: int, total: int) -> str:
    """``n (x.x%)`` (the reference paper's form)."""
    return f"{n} ({100.0 * n / total:.1f}%)" if total else f"{n} (-)"


def median_range(values: Iterable[float | None], decimals: int = 2) -> str:
    """``median (min-max)`` of the values present, N/A when none is."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return NA
    med = statistics.median(vals)
    return (
        f"{fmt_num(med, decimals)} ({fmt_num(min(vals), decimals)}-{fmt_num(max(vals), decimals)})"
    )


def _finite(values: Iterable[Any]) -> list[float]:
    out = []
    for v in values:
        x = _num(v)
        if x is not None:
            out.append(x)
    return out


def median_iqr(values: Iterable[float | None], decimals: int = 1) -> str:
    """``median [Q1-Q3]`` (quartiles by linear interpolation) of the values present, N/A
    when none is."""
    vals = sorted(_finite(values))
    if not vals:
        return NA
    if len(vals) == 1:
        q1 = q3 = vals[0]
    else:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    med = statistics.median(vals)
    return f"{fmt_num(med, decimals)} [{fmt_num(q1, decimals)}-{fmt_num(q3, decimals)}]"


def kaplan_meier_median(times: Sequence[float], events: Sequence[bool]) -> float | None:
    """The Kaplan-Meier median survival time: the first time at which the estimated survival
    falls below 0.5; where it is exactly 0.5 on an interval, the middle of that interval (as
    R's ``survfit``; without censoring this is the sample median). None: not reached.
    ``events[i]`` True for a death, False for a time censored at last follow-up (a death and a
    censoring at the same time: the death first)."""
    at_risk = len(times)
    surv = 1.0
    half_at: float | None = None
    for t in sorted(set(times)):
        deaths = sum(1 for x, e in zip(times, events, strict=True) if x == t and e)
        if deaths and at_risk:
            surv *= 1.0 - deaths / at_risk
            if half_at is not None:
                return (half_at + t) / 2.0
            if abs(surv - 0.5) < 1e-12:
                half_at = t
            elif surv < 0.5:
                return t
        at_risk -= sum(1 for x in times if x == t)
    return half_at


def _display(ids: Mapping[str, str] | None) -> Callable[[str], str]:
    return (lambda p: str(ids.get(p, p))) if ids else (lambda p: p)


# -------------------------------------------------------------------- cohort flow
def processed(cohort: Cohort) -> list[PatientRecord]:
    """The patients whose every required stage is complete (included, or kept out by the
    review only)."""
    return [p for p in cohort.patients if p.included or p.stopped_stage == "review"]


def review_matters(cohort: Cohort) -> bool:
    """Whether the review decides membership here: only approved cases are taken, or a
    reviewer kept a patient out."""
    return cohort.review.require_review or any(p.stopped_stage == "review" for p in cohort.patients)


def cohort_flow(cohort: Cohort) -> Table:
    """Patients found -> with all four pretreatment sequences -> included, with their
    studies, series and de-identified files (instances) at each step. When the review
    decides membership (:func:`review_matters`) the step "every stage complete" comes before
    "included", and the patients the review keeps out are counted there."""
    found = len(cohort.found)
    seq = len(cohort.with_sequences)
    inc = len(cohort.included)
    steps: list[tuple[str, list[PatientRecord], int | str]]
    if review_matters(cohort):
        done = processed(cohort)
        kept = "approved by review" if cohort.review.require_review else "not excluded by review"
        steps = [
            ("Patients found", cohort.found, found - seq),
            (
                "With all four pretreatment sequences (T1, T1c, T2, FLAIR)",
                cohort.with_sequences,
                seq - len(done),
            ),
            ("Every stage complete", done, len(done) - inc),
            (f"Included in the dataset ({kept})", cohort.included, ""),
        ]
    else:
        steps = [
            ("Patients found", cohort.found, found - seq),
            (
                "With all four pretreatment sequences (T1, T1c, T2, FLAIR)",
                cohort.with_sequences,
                seq - inc,
            ),
            ("Included in the dataset (every stage complete)", cohort.included, ""),
        ]
    rows: list[list[Any]] = []
    for label, patients, lost in steps:
        t = cohort.totals(patients)
        rows.append([label, len(patients), t.studies, t.series, t.instances, lost])
    review_note = " Cases a reviewer excluded are never included" + (
        "; only approved cases are (require_review)." if cohort.review.require_review else "."
    )
    return Table(
        "cohort_flow",
        "Cohort flow",
        ["Step", "Patients", "Studies", "Series", "Files", "Patients not carried to the next step"],
        rows,
        note=(
            f"Inclusion requires the stages {', '.join(cohort.required_stages)}; every patient "
            "who is not included is listed with the reason below."
            + review_note
            + " Studies, series and files: "
            "all of those patients' recorded studies and series (not only the selected "
            "pretreatment ones) and their de-identified DICOM files; what became of every "
            "input file is under Input files."
        ),
    )


#: review state -> how the review table names it, in table order
REVIEW_LABELS: dict[str, str] = {
    "approved": "Approved",
    "pending": "Pending (not reviewed, approvals missing, or revised since)",
    "needs revision": "Sent back for revision",
    "excluded": "Excluded by a reviewer",
}


def review_outcome(cohort: Cohort) -> Table:
    """The review outcome (``review_outcome``): the patients whose every stage is complete,
    by review state, with the approval rule."""
    done = processed(cohort)
    counts = cohort.review_counts(done)
    rows: list[list[Any]] = [["Patients with every stage complete", len(done)]]
    rows += [
        [f"  {label}", n_pct(counts.get(state, 0), len(done))]
        for state, label in REVIEW_LABELS.items()
    ]
    rule = cohort.review.rule
    who = " by different users" if rule.distinct_users and rule.approvals > 1 else ""
    return Table(
        "review_outcome",
        "Review outcome",
        ["Review state", "Patients"],
        rows,
        note=(
            f"A case is approved with {rule.approvals} approval(s){who} of the label map it "
            "has now (an approval of an earlier label map is stale and counts as pending); "
            + (
                "the dataset takes approved cases only."
                if cohort.review.require_review
                else "the dataset takes every case that is not excluded (require_review is off)."
            )
        ),
    )


#: source-file status -> how the input-files table names it, in table order
FILE_OUTCOMES: dict[str, str] = {
    "deidentified": "De-identified (written to the workspace)",
    "received": "Received de-identified (DICOM receiver)",
    "quarantined": "Quarantined (not written: pixels may show identifying text)",
    "rejected": "Rejected (not a usable DICOM instance)",
    "duplicate": "Duplicate (same SOPInstanceUID as another file)",
    "pending": "Pending (not de-identified yet)",
    "vanished": "Vanished (gone from the source before de-identification)",
}


def file_reason_category(status: str, reason: str | None) -> str:
    """A short, path-free category of an input file's recorded reason (the reasons of
    duplicates name other files' paths, which a report never shows).

    ``quarantined: BurnedInAnnotation=YES; not written ...`` -> ``BurnedInAnnotation=YES``;
    ``unreadable DICOM (InvalidDicomError: ...)`` -> ``unreadable DICOM``.
    """
    text = " ".join(str(reason or "").split())
    if not text:
        return ""
    if status == "duplicate":
        if "different content" in text or "differ in content" in text:
            return "copies differ in content: none kept"
        if "read completely" in text or "incomplete" in text:
            return "incomplete copy of a kept file"
        return "copy of a kept file"
    for prefix in ("received instance quarantined: ", "quarantined: "):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("; not written", 1)[0]
    if status == "rejected":
        text = text.split(" (", 1)[0].split(": ", 1)[0]
    return text.strip()


def input_files(cohort: Cohort) -> Table:
    """What became of the input files (``input_files``): de-identified, quarantined (e.g.
    burned-in annotation), rejected and duplicate files, each by reason."""
    by_status: dict[str, Counter[str]] = {}
    for status, reason, n in cohort.files:
        by_status.setdefault(status, Counter())[file_reason_category(status, reason)] += n
    total = sum(sum(c.values()) for c in by_status.values())
    rows: list[list[Any]] = [["Input files found", total]]
    order = [*FILE_OUTCOMES, *sorted(k for k in by_status if k not in FILE_OUTCOMES)]
    for status in order:
        reasons = by_status.get(status)
        if reasons is None and status not in (
            "deidentified",
            "quarantined",
            "rejected",
            "duplicate",
        ):
            continue
        reasons = reasons or Counter()
        rows.append([f"  {FILE_OUTCOMES.get(status, status)}", n_pct(sum(reasons.values()), total)])
        if status in ("deidentified", "received"):
            continue
        for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
            if why:
                rows.append([f"    {why}", n])
    return Table(
        "input_files",
        "Input files (ingest and de-identification)",
        ["Outcome", "Files"],
        rows,
        note=(
            "Every file found in the sources, by what ingest and de-identification recorded "
            "(catalog source_files); reasons are grouped (paths are never shown)."
            if total
            else "No input file is recorded (the workspace's pipeline did not ingest any)."
        ),
    )


def exclusion_reasons(cohort: Cohort) -> Table:
    """Reasons for not being included, counted by category."""
    counts = Counter((_step(cohort, p), reason_category(p.reason)) for p in cohort.not_included)
    rows = [[step, cat, n] for (step, cat), n in sorted(counts.items())]
    return Table(
        "exclusion_reasons",
        "Exclusions by reason",
        ["Lost at", "Reason", "Patients"],
        rows,
        note="" if rows else "No patient was excluded.",
    )


def _step(cohort: Cohort, p: PatientRecord) -> str:
    if not p.has_sequences:
        return "sequences"
    return "review" if p.stopped_stage == "review" else "processing"


def exclusions(cohort: Cohort, anonymous: bool = False) -> Table:
    """Every patient who is not included, with the stage and the full reason.

    ``anonymous``: leave the patient column out (the export's copy of the report never names
    a patient who is not in the dataset).
    """
    cols = ["Lost at", "Stage", "Reason"]
    rows: list[list[Any]] = []
    for p in cohort.not_included:
        row = [_step(cohort, p), p.stopped_stage or "", p.reason or ""]
        rows.append(row if anonymous else [p.id, *row])
    return Table(
        "exclusions",
        "Patients not included",
        cols if anonymous else ["Patient", *cols],
        rows,
        note="" if rows else "Every patient found is included.",
    )


# ----------------------------------------------------------------------- clinical
def clinical_characteristics(
    cohort: Cohort,
    clinical: Mapping[str, Mapping[str, Any]] | None,
    problems: Sequence[tuple[int, str, str, str]] = (),
) -> Table:
    """Characteristics of the included patients from the clinical sheet: primary tumour, sex
    (n, %), age (median, range), ethnicity (n, %), extranodal metastases (n, %), smoking
    (pack-years, median [IQR], never smoked), survival (months, median [IQR]; with the vital
    status ``Death``: deaths, censored patients and the Kaplan-Meier median). ``problems``:
    the sheet's (row, column, severity, message), counted in the note."""
    included = cohort.included
    total = len(included)
    rows: list[list[Any]] = []
    if clinical is None:
        return Table(
            "clinical",
            CLINICAL_TITLE,
            ["Characteristic", "Value"],
            rows,
            note="No clinical sheet is configured ([stages.report] clinical_sheet).",
        )
    recs = [clinical.get(p.id) or {} for p in included]
    missing_rows = sum(1 for p in included if p.id not in clinical)

    def coded(column: str, names: Mapping[int, str], label: str) -> None:
        counts = Counter(r.get(column) for r in recs)
        rows.append([label, ""])
        for code, name in names.items():
            rows.append([f"  {name}", n_pct(counts.get(code, 0), total)])
        if counts.get(None):
            rows.append([f"  {NA}", n_pct(counts[None], total)])

    def absent(column: str, label: str) -> None:
        n = sum(1 for r in recs if _num(r.get(column)) is None)
        if n:
            rows.append([f"  {label} {NA}", n_pct(n, total)])

    coded("Primary", PRIMARY_NAMES, "Primary tumour origin, n (%)")
    coded("Sex", SEX_NAMES, "Sex, n (%)")
    ages = [r.get("Age") for r in recs]
    rows.append(["Age (years), median (range)", median_range(ages, 1)])
    absent("Age", "Age")
    coded("Ethnicity", ETHNICITY_NAMES, "Ethnicity, n (%)")
    if any("Extranodal" in r for r in recs):
        n_extra = sum(1 for r in recs if r.get("Extranodal") == 1)
        rows.append(["Extranodal metastases at diagnosis, n (%)", n_pct(n_extra, total)])
        absent("Extranodal", "Extranodal")
    smoke = [r.get("Smoke") for r in recs]
    rows.append(["Smoking history (pack-years), median [IQR]", median_iqr(smoke, 1)])
    rows.append(
        ["  Never smoked (0 pack-years), n (%)", n_pct(sum(1 for x in smoke if x == 0), total)]
    )
    absent("Smoke", "Smoking")
    survival_note = _survival_rows(recs, total, rows)
    note = f"{total} included patients."
    if missing_rows:
        note += f" {missing_rows} included patient(s) have no row in the clinical sheet."
    note += (
        " Age: median (range), years (days/365); smoking and survival: median [interquartile "
        "range]; N/A: the cell is empty or was not valid. " + survival_note
    )
    n_err = sum(1 for x in problems if x[2] == "error")
    if problems:
        note += (
            f" The clinical sheet has {n_err} error(s) and {len(problems) - n_err} warning(s): "
            "see Clinical sheet problems (clinical_problems) below."
        )
    return Table("clinical", CLINICAL_TITLE, ["Characteristic", "Value"], rows, note)


def _survival_rows(recs: Sequence[Mapping[str, Any]], total: int, rows: list[list[Any]]) -> str:
    """The survival rows (months, days/30) and how censoring is shown (the table's note)."""
    has_status = any("Death" in r for r in recs)
    times = [r.get("Survival") for r in recs]
    rows.append(["Survival time (months), median [IQR]", median_iqr(times, 1)])
    n_na = sum(1 for t in times if _num(t) is None)
    if not has_status:
        if n_na:
            rows.append([f"  Survival {NA}", n_pct(n_na, total)])
        return (
            "Survival: months (days/30) from diagnosis to death or last follow-up; the sheet has "
            "no vital status (Death), so which times are censored is not known."
        )
    deaths = sum(1 for r in recs if r.get("Death") == 1)
    alive = sum(1 for r in recs if r.get("Death") == 0)
    rows.append(["  Deceased (Death = 1), n (%)", n_pct(deaths, total)])
    rows.append(["  Alive at last follow-up (Death = 0, censored), n (%)", n_pct(alive, total)])
    if total - deaths - alive:
        rows.append([f"  Vital status {NA}", n_pct(total - deaths - alive, total)])
    if n_na:
        rows.append([f"  Survival {NA}", n_pct(n_na, total)])
    pairs = [
        (float(t), r.get("Death") == 1)
        for r in recs
        if (t := _num(r.get("Survival"))) is not None and r.get("Death") in (0, 1)
    ]
    km = kaplan_meier_median([t for t, _ in pairs], [e for _, e in pairs]) if pairs else None
    rows.append(
        [
            "Overall survival (months), Kaplan-Meier median",
            NA if not pairs else ("not reached" if km is None else fmt_num(km, 1)),
        ]
    )
    return (
        "Survival: months (days/30) from diagnosis to death (Death = 1) or to the last "
        "follow-up (Death = 0: censored at that time); the median [IQR] is of the recorded "
        "times, deaths and censored times together; the Kaplan-Meier median accounts for "
        "censoring (patients with a time and a vital status)."
    )


def problem_effect(row: int, severity: str, message: str) -> str:
    """What a problem of the clinical sheet did to the data (the ``Effect`` column)."""
    text = message.lower()
    if "the sheet has no" in text:
        return "sheet not used"
    if any(k in text for k in ("row skipped", "rows skipped", "row not used", "row left out")):
        return "row not used"
    if severity == "error":
        return "cell left empty (N/A in the tables)"
    if "column not used" in text:
        return "column ignored"
    if "left empty" in text:
        return "cell empty (N/A in the tables)"
    return "value used"


def _where(row: int, column: str) -> str:
    where = f"sheet row {row}" if row > 1 else ("header" if row == 1 else "sheet")
    return f"{where}, column {column}" if column else where


def clinical_problems(
    problems: Sequence[tuple[int, str, str, str]],
    source: str,
    anonymous: bool = False,
    listed: int = 5,
) -> Table:
    """The clinical sheet's problems (``clinical_problems``): sheet row (the header is row 1,
    as a spreadsheet shows it), column, severity, message and effect; cell values are never
    shown. The note says what each error was and where (the first ``listed``).

    ``anonymous`` (the export's copy): counts by severity and effect only.
    """
    errors = [p for p in problems if p[2] == "error"]
    n_warn = len(problems) - len(errors)
    if anonymous:
        counts = Counter((sev, problem_effect(row, sev, msg)) for row, _, sev, msg in problems)
        return Table(
            "clinical_problems",
            "Clinical sheet problems",
            ["Severity", "Effect", "Count"],
            [[sev, eff, n] for (sev, eff), n in sorted(counts.items())],
            note=(
                f"The clinical sheet had {len(errors)} error(s) and {n_warn} warning(s); the "
                "rows and columns are listed in the workspace's report (clinical_problems)."
                if problems
                else "The clinical sheet had no problem."
            ),
        )
    rows = [[row, col, sev, msg, problem_effect(row, sev, msg)] for row, col, sev, msg in problems]
    if not problems:
        return Table(
            "clinical_problems",
            "Clinical sheet problems",
            ["Sheet row", "Column", "Severity", "Message", "Effect"],
            [],
            note=f"{source}: no problem found.",
        )
    if errors:
        shown = "; ".join(
            f"({i}) {_where(row, col)}: {msg} -> {problem_effect(row, sev, msg)}"
            for i, (row, col, sev, msg) in enumerate(errors[:listed], start=1)
        )
        more = f"; and {len(errors) - listed} more" if len(errors) > listed else ""
        what = f"{len(errors)} error(s) — {shown}{more}"
    else:
        what = "no error"
    return Table(
        "clinical_problems",
        "Clinical sheet problems",
        ["Sheet row", "Column", "Severity", "Message", "Effect"],
        rows,
        note=(
            f"{source}: {what}. {n_warn} warning(s) (the value was used, or converted as "
            "stated). Every problem is listed in this table (tables/clinical_problems.csv); "
            "sheet rows count the header as row 1; cell values are not shown."
        ),
    )


# ----------------------------------------------------------------------- scanners
def normalise_field_strength(v: Any) -> float | None:
    """Field strength in tesla (a value above 20 is taken as gauss, as some old headers)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x) or x <= 0:
        return None
    return x / 10000.0 if x > 20 else x


def field_strength_label(v: Any) -> str:
    """``1 T``, ``1.5 T``, ``3 T`` (within 0.2 T, e.g. Siemens' 2.89 T), else ``<x> T``."""
    x = normalise_field_strength(v)
    if x is None:
        return NA
    for nominal in FIELD_STRENGTHS:
        if abs(x - nominal) <= 0.2:
            return f"{fmt_num(nominal, 1)} T"
    return f"{fmt_num(x, 2)} T"


def vendor_name(manufacturer: Any) -> str:
    """The vendor from a DICOM Manufacturer value (``SIEMENS`` -> ``Siemens``...)."""
    if manufacturer is None or not str(manufacturer).strip():
        return NA
    text = " ".join(str(manufacturer).lower().split()) + " "
    for key, name in _VENDORS:
        if text.startswith(key) or f" {key.strip()} " in f" {text}":
            return name
    return str(manufacturer).strip()


def scanner_of(p: PatientRecord) -> dict[str, Any]:
    """Field strength, vendor and model of the scanner of the patient's selected study
    (header of the T1c series, else of another selected series, else the sidecar)."""
    for cls in ("t1c", "flair", "t1", "t2"):
        h = p.selected.get(cls) or {}
        s = p.sidecars.get(cls) or {}
        fs = h.get("field_strength")
        if fs is None:
            fs = s.get("MagneticFieldStrength")
        man = h.get("manufacturer") or s.get("Manufacturer")
        if fs is not None or man:
            return {
                "field_strength": normalise_field_strength(fs),
                "vendor": vendor_name(man),
                "model": h.get("model") or s.get("ManufacturersModelName"),
            }
    return {"field_strength": None, "vendor": NA, "model": None}


def _model_label(info: Mapping[str, Any]) -> str:
    """``<vendor> <model>`` (ManufacturerModelName), N/A when no model is recorded."""
    model = " ".join(str(info.get("model") or "").split())
    if not model:
        return NA
    vendor = str(info.get("vendor") or "")
    if vendor and vendor != NA and not model.lower().startswith(vendor.lower()):
        return f"{vendor} {model}"
    return model


def scanners(cohort: Cohort) -> Table:
    """Field strength (1 T, 1.5 T, 3 T: n, %), vendor (n, %) and scanner model (n, %) of the
    included patients."""
    included = cohort.included
    total = len(included)
    info = [scanner_of(p) for p in included]
    fs = Counter(field_strength_label(i["field_strength"]) for i in info)
    vendors = Counter(i["vendor"] for i in info)
    rows: list[list[Any]] = [["Field strength, n (%)", ""]]
    labels = [f"{fmt_num(x, 1)} T" for x in FIELD_STRENGTHS]
    others = sorted(k for k in fs if k not in labels and k != NA)
    for label in [*labels, *others]:
        rows.append([f"  {label}", n_pct(fs.get(label, 0), total)])
    if fs.get(NA):
        rows.append([f"  {NA}", n_pct(fs[NA], total)])
    rows.append(["Vendor, n (%)", ""])
    for name, n in sorted(vendors.items(), key=lambda kv: (kv[0] == NA, -kv[1], kv[0])):
        rows.append([f"  {name}", n_pct(n, total)])
    models = Counter(_model_label(i) for i in info)
    rows.append(["Scanner model, n (%)", ""])
    for name, n in sorted(models.items(), key=lambda kv: (kv[0] == NA, -kv[1], kv[0])):
        rows.append([f"  {name}", n_pct(n, total)])
    return Table(
        "scanners",
        "Field strength, vendor and model",
        ["Scanner", "Patients"],
        rows,
        note="Scanner of the selected pretreatment study (header of its T1 post-contrast series).",
    )


# ------------------------------------------------------------------------- Table 1
@dataclass(frozen=True)
class Acquisition:
    """Acquisition parameters of one selected series (ms, mm) and where each came from."""

    acquisition: str  # "2D", "3D" or N/A
    echo_time_ms: float | None
    repetition_time_ms: float | None
    slice_thickness_mm: float | None
    slice_spacing_mm: float | None
    sources: tuple[tuple[str, str], ...] = ()  # (parameter, "dicom" | "sidecar")
    inversion_time_ms: float | None = None
    flip_angle_deg: float | None = None
    pixel_spacing_mm: float | None = None  # in-plane, the coarser of rows and columns
    matrix_rows: float | None = None
    matrix_columns: float | None = None
    contrast_agent: str | None = None  # ContrastBolusAgent as recorded


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def acquisition_of(p: PatientRecord, cls: str) -> Acquisition:
    """The Table 1 parameters of the patient's selected series of class ``cls``.

    DICOM header first (TE/TR in ms); the BIDS sidecar (TE/TR in seconds, converted to ms)
    only for a value the header lacks.
    """
    h = p.selected.get(cls) or {}
    s = p.sidecars.get(cls) or {}
    sources: list[tuple[str, str]] = []

    def pick(name: str, dicom_key: str, sidecar_key: str, scale: float = 1.0) -> float | None:
        v = _num(h.get(dicom_key))
        if v is not None:
            sources.append((name, "dicom"))
            return v
        v = _num(s.get(sidecar_key))
        if v is not None:
            sources.append((name, "sidecar"))
            return v * scale
        return None

    te = pick("echo_time", "echo_time", "EchoTime", 1000.0)
    tr = pick("repetition_time", "repetition_time", "RepetitionTime", 1000.0)
    thick = pick("slice_thickness", "slice_thickness", "SliceThickness")
    spacing = pick("slice_spacing", "spacing_between_slices", "SpacingBetweenSlices")
    ti = pick("inversion_time", "inversion_time", "InversionTime", 1000.0)
    flip = pick("flip_angle", "flip_angle", "FlipAngle")
    acq_raw = h.get("mr_acquisition_type") or s.get("MRAcquisitionType")
    acq = str(acq_raw).strip().upper() if acq_raw else ""
    spacing_xy = [x for x in (_num(v) for v in (h.get("pixel_spacing") or [])) if x is not None]
    agent = " ".join(str(h.get("contrast_agent") or "").split())
    return Acquisition(
        acquisition=acq if acq in ("2D", "3D") else NA,
        echo_time_ms=te,
        repetition_time_ms=tr,
        slice_thickness_mm=thick,
        slice_spacing_mm=spacing,
        sources=tuple(sources),
        inversion_time_ms=ti,
        flip_angle_deg=flip,
        pixel_spacing_mm=max(spacing_xy) if spacing_xy else None,
        matrix_rows=_num(h.get("rows")),
        matrix_columns=_num(h.get("columns")),
        contrast_agent=agent or None,
    )


TABLE1_ROWS: tuple[tuple[str, str], ...] = (
    ("Echo time (ms)", "echo_time_ms"),
    ("Repetition time (ms)", "repetition_time_ms"),
    ("Slice thickness (mm)", "slice_thickness_mm"),
    ("Slice spacing (mm)", "slice_spacing_mm"),
)
#: rows after the reference paper's, from the same series headers (inversion time: only the
#: inversion-recovery series have one, so its absence is not counted as missing)
TABLE1_EXTRA_ROWS: tuple[tuple[str, str], ...] = (
    ("Inversion time (ms)", "inversion_time_ms"),
    ("Flip angle (deg)", "flip_angle_deg"),
    ("In-plane pixel spacing, coarser axis (mm)", "pixel_spacing_mm"),
    ("Matrix rows (px)", "matrix_rows"),
    ("Matrix columns (px)", "matrix_columns"),
)
#: the most frequent contrast agents listed per sequence (the others: "other")
CONTRAST_AGENTS_SHOWN = 5


def table1(cohort: Cohort, sequences: Mapping[str, str] = TABLE1_SEQUENCES) -> Table:
    """Table 1 of the reference paper: per sequence (FLAIR, T1 post-contrast, then T1 and T2),
    acquisition 2D / 3D / N/A (n, %) and median (range) of echo time, repetition time, slice
    thickness and slice spacing; then inversion time, flip angle, in-plane pixel spacing and
    matrix (median, range) and the recorded contrast agent (n, %)."""
    included = cohort.included
    total = len(included)
    acqs = {cls: [acquisition_of(p, cls) for p in included] for cls in sequences}
    rows: list[list[Any]] = [["Acquisition, n (%)", *["" for _ in sequences]]]
    for kind in ("2D", "3D", NA):
        rows.append(
            [
                f"  {kind}",
                *[n_pct(sum(a.acquisition == kind for a in acqs[c]), total) for c in sequences],
            ]
        )
    for label, attr in (*TABLE1_ROWS, *TABLE1_EXTRA_ROWS):
        rows.append(
            [
                f"{label}, median (range)",
                *[median_range(getattr(a, attr) for a in acqs[c]) for c in sequences],
            ]
        )
    agents = Counter(a.contrast_agent for c in sequences for a in acqs[c] if a.contrast_agent)
    shown = [name for name, _ in agents.most_common(CONTRAST_AGENTS_SHOWN)]
    rows.append(["Contrast agent recorded (ContrastBolusAgent), n (%)", *["" for _ in sequences]])
    for name in shown:
        rows.append(
            [
                f"  {name}",
                *[n_pct(sum(a.contrast_agent == name for a in acqs[c]), total) for c in sequences],
            ]
        )
    if len(agents) > len(shown):
        rows.append(
            [
                "  other",
                *[
                    n_pct(
                        sum(
                            1 for a in acqs[c] if a.contrast_agent and a.contrast_agent not in shown
                        ),
                        total,
                    )
                    for c in sequences
                ],
            ]
        )
    rows.append(
        [
            "  none recorded",
            *[n_pct(sum(a.contrast_agent is None for a in acqs[c]), total) for c in sequences],
        ]
    )
    missing = []
    for label, attr in (*TABLE1_ROWS, *TABLE1_EXTRA_ROWS[1:]):
        per = [
            f"{title} {n}"
            for cls, title in sequences.items()
            if (n := sum(getattr(a, attr) is None for a in acqs[cls]))
        ]
        if per:
            missing.append(f"{label.split(' (')[0].split(',')[0].lower()} ({', '.join(per)})")
    side = sum(1 for c in sequences for a in acqs[c] for _, src in a.sources if src == "sidecar")
    note = (
        f"{total} included patients; values of the selected pretreatment series from their DICOM "
        "headers (times in ms)"
        + (f", {side} value(s) from the BIDS sidecars (seconds converted to ms)" if side else "")
        + ". N/A: the value is absent from every series (inversion time: no series of that "
        "sequence is an inversion-recovery acquisition, or none records it). In-plane pixel "
        "spacing: the coarser of the two PixelSpacing values; matrix: the stored image's Rows "
        "and Columns. Contrast agent: ContrastBolusAgent of the series as recorded."
        + (
            " Absent values (series without it, per sequence): " + "; ".join(missing) + "."
            if missing
            else ""
        )
    )
    return Table(
        "table1", "Table 1. Acquisition parameters", ["Parameter", *sequences.values()], rows, note
    )


# -------------------------------------------------------------------------- lesions
def lesion_summary(cohort: Cohort) -> Table:
    """Lesion totals of the included patients (from the recorded features)."""
    included = [p for p in cohort.included if p.features is not None]
    total_p = len(included)
    lesions = [les for p in included for les in p.lesions]
    total_l = len(lesions)
    feats = [p.features or {} for p in included]

    def f(key: str) -> list[float]:
        return [float(x[key]) for x in feats if x.get(key) is not None]

    n_les = [len(p.lesions) for p in included]
    rows: list[list[Any]] = [
        ["Patients with a label map", total_p],
        ["Patients with at least one lesion", n_pct(sum(1 for n in n_les if n), total_p)],
        ["Lesions (tumour-core components, labels 1+3)", total_l],
        ["Enhancing lesions (components of label 3, ET_num)", int(sum(f("ET_num")))],
        [
            "Sub-centimetre lesions (core < 10 mm)",
            n_pct(sum(1 for les in lesions if les.get("subcentimetre")), total_l),
        ],
        [
            "Lesions with necrosis",
            n_pct(sum(1 for les in lesions if les.get("has_necrosis")), total_l),
        ],
        ["Patients with necrosis", n_pct(sum(1 for v in f("Nec_vol") if v > 0), total_p)],
        ["Lesions with edema", n_pct(sum(1 for les in lesions if les.get("has_edema")), total_l)],
        [
            "Infratentorial lesions",
            n_pct(sum(1 for les in lesions if les.get("infratentorial")), total_l),
        ],
        [
            "Patients with infratentorial involvement",
            n_pct(sum(1 for x in feats if x.get("Infratentorial") == 1), total_p),
        ],
        ["Lesions per patient, median (range)", median_range(n_les, 1)],
        [
            "Lesion core volume (cm^3), median (range)",
            median_range((les.get("volume_cm3") for les in lesions), 3),
        ],
        ["Enhancing volume per patient (cm^3), median (range)", median_range(f("ET_vol"), 3)],
        ["Necrosis volume per patient (cm^3), median (range)", median_range(f("Nec_vol"), 3)],
        ["Edema volume per patient (cm^3), median (range)", median_range(f("Edema_vol"), 3)],
    ]
    return Table(
        "lesions",
        "Lesion totals",
        ["Measure", "Value"],
        rows,
        note=(
            "Lesion = connected component of the tumour core (necrosis + enhancing), counted by "
            "the features stage with its recorded parameters; percentages of lesions use all "
            "lesions, of patients the included patients with a label map."
        ),
    )


def per_patient(cohort: Cohort, ids: Mapping[str, str] | None = None) -> Table:
    """One row per included patient: scanner, acquisition, lesion features, QC flags."""
    show = _display(ids)
    cols = [
        "Patient",
        "Field strength",
        "Vendor",
        "FLAIR",
        "T1c",
        "Lesions",
        "ET_num",
        "Nec_num",
        "Edema_num",
        "ET_vol",
        "Nec_vol",
        "Edema_vol",
        "Infratentorial",
        "QC flags",
    ]
    rows = []
    for p in cohort.included:
        sc = scanner_of(p)
        f = p.features or {}
        rows.append(
            [
                show(p.id),
                field_strength_label(sc["field_strength"]),
                sc["vendor"],
                acquisition_of(p, "flair").acquisition,
                acquisition_of(p, "t1c").acquisition,
                len(p.lesions),
                f.get("ET_num", ""),
                f.get("Nec_num", ""),
                f.get("Edema_num", ""),
                f.get("ET_vol", ""),
                f.get("Nec_vol", ""),
                f.get("Edema_vol", ""),
                f.get("Infratentorial", ""),
                " ".join(p.qc_flags),
            ]
        )
    return Table("patients", "Included patients", cols, rows)


# ------------------------------------------------------------------------------ QC
def qc_table(
    cohort: Cohort,
    review: Mapping[str, str] | None = None,
    ids: Mapping[str, str] | None = None,
) -> Table:
    """Preprocessing QC values and flags of the included patients, with the review status
    (``[stages.report] qc_review``: patient -> status; else *pending* when flagged)."""
    show = _display(ids)
    review = dict(review or {})
    rows = []
    for p in cohort.included:
        qc = p.qc
        flags = p.qc_flags
        status = review.get(p.id) or ("pending" if flags else "not needed")
        rows.append(
            [
                show(p.id),
                qc.get("skull_stripper", ""),
                fmt_num(_num(qc.get("brain_volume_cm3")), 1) if qc else "",
                fmt_num(_num(qc.get("mask_template_dice")), 3) if qc else "",
                fmt_num(_num(qc.get("similarity_t1c")), 3) if qc else "",
                ", ".join(flags) if flags else "none",
                status,
            ]
        )
    n_flag = sum(1 for p in cohort.included if p.qc_flags)
    pending = sum(1 for r in rows if r[-1] == "pending")
    return Table(
        "qc",
        "Preprocessing QC values, flags and review",
        [
            "Patient",
            "Skull stripper",
            "Brain volume (cm^3)",
            "Mask Dice vs template",
            "T1c similarity (NMI)",
            "Flags",
            "Review",
        ],
        rows,
        note=(
            f"{n_flag} included patient(s) flagged by preprocessing QC, {pending} pending review "
            "(flags and thresholds: docs/preprocessing.md)."
        ),
    )


def sample_patients(
    patients: Sequence[PatientRecord], n: int, selection: str = "random", seed: int = 0
) -> list[PatientRecord]:
    """The patients that get a figure: all when ``n`` <= 0 or there are at most ``n``; else
    ``first`` (by ID), ``largest`` (total tumour-core volume) or a seeded ``random`` sample
    (sorted by ID)."""
    pts = sorted(patients, key=lambda p: p.id)
    if n <= 0 or len(pts) <= n:
        return pts
    if selection == "first":
        return pts[:n]
    if selection == "largest":

        def core(p: PatientRecord) -> float:
            f = p.features or {}
            return float(f.get("ET_vol") or 0) + float(f.get("Nec_vol") or 0)

        return sorted(sorted(pts, key=core, reverse=True)[:n], key=lambda p: p.id)
    if selection != "random":
        raise ValueError(f"figure_selection must be random, first or largest, not {selection!r}")
    import random

    return sorted(random.Random(seed).sample(pts, n), key=lambda p: p.id)
