"""The clinical sheet: reading (CSV or XLSX), cell-by-cell validation, mapping MRNs to
pseudonymous patient IDs.

The hospital's sheet is keyed by the original MRN (or, for the published collection's own
sheet, by ``BraTS_MET_ID``). Each cell is checked against :data:`COLUMNS` (type, range,
allowed codes, required). Every problem is reported with its sheet row (as a spreadsheet
shows it: the header is row 1), column and value; a bad cell is left empty (or, with
``on_invalid="drop_row"``, its whole row is left out) and the other rows go on. MRN values are
never echoed in problems, and :func:`map_to_pseudonyms` replaces them by the pseudonymous IDs
(``brainmets.deid.pseudonym.patient_pseudonym`` with the workspace key) so that the original
MRN never reaches an output.

Codes (``docs/conventions.md``): Sex 0 male / 1 female; Ethnicity 0 White, 1 White Hispanic,
2 White/Black, 3 Black, 4 Asian/Pacific Islander; Primary 1 breast, 2 GI, 3 SCLC, 4 melanoma,
5 NSCLC, 6 RCC, 7 other; Extranodal and Death 0/1. Age in years (days/365), Survival in
months (days/30), Smoke in pack-years (may be empty). A code typed as its exact name (e.g.
``"NSCLC"``, ``"female"``; case and surrounding spaces ignored) is converted, with a warning;
anything else (``"NCSLC"``, the letter ``O`` for 0) is an error.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brainmets.ids import normalise_id
from brainmets.problems import Problems
from brainmets.vocab import DEATH, ETHNICITY, NO_YES, PRIMARY, SEX

if TYPE_CHECKING:
    from brainmets.cohort.model import Cohort

MISSING_TEXT = {"", "na", "n/a", "nan", "none", "null", ".", "-", "missing", "unknown"}
MRN_WITHHELD = "<MRN withheld>"


@dataclass(frozen=True)
class ColumnSpec:
    """What one clinical column may hold."""

    name: str
    kind: str  # "key", "number", "code", "date"
    description: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    codes: Mapping[int, str] | None = None
    aliases: Mapping[str, int] | None = None
    required: bool = False
    output: bool = True  # written to the dataset workbook


COLUMNS: dict[str, ColumnSpec] = {
    c.name: c
    for c in [
        ColumnSpec(
            "MRN", "key", "hospital medical record number (replaced by the pseudonym)", output=False
        ),
        ColumnSpec(
            "Age", "number", "age at diagnosis of brain metastases (days/365)", "years", 0, 120
        ),
        ColumnSpec("Sex", "code", "sex", codes=SEX, aliases={"m": 0, "f": 1}),
        ColumnSpec("Ethnicity", "code", "ethnicity", codes=ETHNICITY),
        ColumnSpec("Smoke", "number", "smoking history (may be empty)", "pack-years", 0, 300),
        ColumnSpec(
            "Primary",
            "code",
            "primary tumour",
            codes=PRIMARY,
            aliases={
                "gastrointestinal": 2,
                "small cell lung cancer": 3,
                "non-small cell lung cancer": 5,
                "renal cell": 6,
                "renal cell carcinoma": 6,
            },
        ),
        ColumnSpec(
            "Extranodal", "code", "extranodal (extracranial) metastases at diagnosis", codes=NO_YES
        ),
        ColumnSpec(
            "Survival",
            "number",
            "from diagnosis to death or last follow-up (days/30)",
            "months",
            0,
            600,
        ),
        ColumnSpec(
            "Death",
            "code",
            "vital status at last follow-up",
            codes=DEATH,
            aliases={"alive": 0, "dead": 1},
        ),
        ColumnSpec(
            "Diagnosis_date", "date", "date of diagnosis (used for checks only)", output=False
        ),
        ColumnSpec(
            "Last_contact_date", "date", "death or last follow-up (checks only)", output=False
        ),
        ColumnSpec("Birth_date", "date", "date of birth (checks only)", output=False),
    ]
}
#: the clinical columns of the dataset workbook, in order
OUTPUT_COLUMNS = [c.name for c in COLUMNS.values() if c.output]


@dataclass
class Problem:
    """One problem found in the sheet."""

    row: int  # sheet row (header = 1); 0 for the sheet as a whole
    column: str
    value: str
    message: str
    severity: str = "error"  # "error" (cell/row not used) or "warning" (used as stated)

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "sheet"
        col = f", column {self.column}" if self.column else ""
        val = f", value {self.value}" if self.value != "" else ""
        return f"{self.severity}: {where}{col}{val}: {self.message}"


@dataclass
class ClinicalTable(Problems[Problem]):
    """Validated clinical rows keyed by patient (MRN, pseudonym or collection ID); ``errors``
    and ``warnings``: see :class:`Problems`."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    source_rows: dict[str, int] = field(default_factory=dict)  # key -> sheet row
    key_column: str = "MRN"
    n_rows: int = 0


# -------------------------------------------------------------------- reading
def read_sheet(
    path: str | os.PathLike[str], sheet: str | None = None
) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    """Header and ``(sheet row, values)`` of a CSV or XLSX clinical sheet.

    XLSX: the sheet ``sheet``, else ``Data``, else the first. CSV: comma, semicolon or tab
    separated (sniffed), UTF-8 (a BOM is accepted); every value is text.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: clinical sheet not found")
    name = path.name.lower()
    if name.endswith((".xlsx", ".xlsm")):
        from openpyxl import load_workbook

        try:
            wb = load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: cannot read as .xlsx ({type(exc).__name__}: {exc})") from exc
        try:
            if sheet:
                if sheet not in wb.sheetnames:
                    raise ValueError(f"{path}: no sheet {sheet!r} (sheets: {wb.sheetnames})")
                ws = wb[sheet]
            else:
                ws = wb["Data"] if "Data" in wb.sheetnames else wb.worksheets[0]
            rows = [list(r) for r in ws.iter_rows(values_only=True)]
        finally:
            wb.close()
    elif name.endswith((".csv", ".tsv", ".txt")):
        text = path.read_text(encoding="utf-8-sig")
        try:
            dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        rows = [list(r) for r in csv.reader(text.splitlines(), dialect)]
    else:
        raise ValueError(f"{path}: clinical sheet must be .csv or .xlsx")
    if not rows:
        raise ValueError(f"{path}: the clinical sheet is empty")
    header = ["" if h is None else str(h).strip() for h in rows[0]]
    body = [(i + 2, r) for i, r in enumerate(rows[1:]) if any(not _is_missing(v) for v in r)]
    return header, body


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and v.strip().lower() in MISSING_TEXT


def _show(v: Any) -> str:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return repr(v) if isinstance(v, str) else str(v)


# ----------------------------------------------------------------- validation
def _parse_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    text = str(v).strip()
    try:
        return float(text)
    except ValueError:
        return None


def _parse_date(v: Any) -> dt.date | None:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    text = str(v).strip()
    for fmt in ("%Y-%m-%d", "%Y%m%d", "%d.%m.%Y", "%Y/%m/%d", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _key_text(v: Any) -> str | None:
    if _is_missing(v) or isinstance(v, bool):
        return None
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else None
    if isinstance(v, int):
        return str(v)
    text = str(v).strip()
    return text or None


def validate_cell(spec: ColumnSpec, value: Any) -> tuple[Any, str | None, str | None]:
    """``(parsed value or None, error, warning)`` for one cell of column ``spec``."""
    if _is_missing(value):
        if spec.required:
            return None, "required value is missing", None
        return None, None, "missing value (left empty)"
    if spec.kind == "number":
        x = _parse_number(value)
        if x is None or not math.isfinite(x):
            return None, f"not a number (expected {spec.unit or 'a number'})", None
        if (
            spec.minimum is not None
            and x < spec.minimum
            or spec.maximum is not None
            and x > spec.maximum
        ):
            return (
                None,
                f"out of range [{spec.minimum:g}, {spec.maximum:g}] {spec.unit}".rstrip(),
                None,
            )
        return x, None, None
    if spec.kind == "code":
        assert spec.codes is not None
        allowed = ", ".join(f"{k} {v}" for k, v in spec.codes.items())
        x = _parse_number(value)
        if x is not None:
            if x.is_integer() and int(x) in spec.codes:
                return int(x), None, None
            return None, f"not an allowed code ({allowed})", None
        text = str(value).strip().lower()
        names = {v.lower(): k for k, v in spec.codes.items()}
        names.update({k.lower(): v for k, v in (spec.aliases or {}).items()})
        if text in names:
            code = names[text]
            return code, None, f"text converted to code {code} ({spec.codes[code]})"
        return None, f"not an allowed code ({allowed})", None
    if spec.kind == "date":
        d = _parse_date(value)
        if d is None:
            return None, "not a date (YYYY-MM-DD)", None
        return d, None, None
    raise AssertionError(spec.kind)


def validate_rows(
    header: list[str],
    rows: Iterable[tuple[int, list[Any]]],
    key_column: str = "MRN",
    on_invalid: str = "blank_cell",
    columns: Mapping[str, ColumnSpec] = COLUMNS,
    survival_tolerance_months: float = 1.0,
) -> ClinicalTable:
    """Validate every cell; see the module docstring. ``key_column`` is ``"MRN"`` (hospital
    sheet) or ``"BraTS_MET_ID"`` (the collection's own sheet)."""
    if on_invalid not in ("blank_cell", "drop_row"):
        raise ValueError("on_invalid must be 'blank_cell' or 'drop_row'")
    table = ClinicalTable(key_column=key_column)
    lower = {h.lower(): i for i, h in enumerate(header) if h}
    key_idx = lower.get(key_column.lower())
    if key_idx is None:
        table.problems.append(Problem(1, key_column, "", f"the sheet has no {key_column} column"))
        return table
    col_idx: dict[str, int] = {}
    for name, spec in columns.items():
        if spec.kind == "key":
            continue
        if name.lower() in lower:
            col_idx[name] = lower[name.lower()]
    from brainmets.lesions.analysis import FEATURE_COLUMNS

    # the collection's own sheet also carries the imaging features: not clinical, not a problem
    known = {n.lower() for n in (*columns, *FEATURE_COLUMNS, key_column)}
    for h in header:
        if h and h.lower() not in known:
            table.problems.append(
                Problem(1, h, "", "column not used (not part of the dataset)", "warning")
            )
    for name, spec in columns.items():
        if spec.output and name not in col_idx:
            table.problems.append(
                Problem(1, name, "", "column missing: left empty for every patient", "warning")
            )
    first_row: dict[str, int] = {}
    duplicates: set[str] = set()
    withhold = key_column.upper() == "MRN"
    for rownum, values in rows:
        table.n_rows += 1
        raw_key = values[key_idx] if key_idx < len(values) else None
        key = _key_text(raw_key) if withhold else (normalise_id(raw_key) or None)
        if key is None:
            table.problems.append(
                Problem(
                    rownum,
                    key_column,
                    "" if withhold else _show(raw_key),
                    f"missing or invalid {key_column}: row skipped",
                )
            )
            continue
        if key in first_row:
            duplicates.add(key)
            table.problems.append(
                Problem(
                    rownum,
                    key_column,
                    MRN_WITHHELD if withhold else key,
                    f"same {key_column} as row {first_row[key]}: both rows skipped",
                )
            )
            continue
        first_row[key] = rownum
        rec: dict[str, Any] = {}
        bad = False
        for name, idx in col_idx.items():
            spec = columns[name]
            value = values[idx] if idx < len(values) else None
            parsed, error, warning = validate_cell(spec, value)
            if error:
                bad = True
                table.problems.append(Problem(rownum, name, _show(value), error))
            elif warning:
                table.problems.append(
                    Problem(
                        rownum, name, "" if _is_missing(value) else _show(value), warning, "warning"
                    )
                )
            rec[name] = parsed
        bad |= _cross_checks(rownum, rec, table.problems, survival_tolerance_months)
        if bad and on_invalid == "drop_row":
            table.problems.append(Problem(rownum, "", "", "row left out (on_invalid = drop_row)"))
            continue
        table.rows[key] = rec
        table.source_rows[key] = rownum
    for key in duplicates:
        table.rows.pop(key, None)
        table.source_rows.pop(key, None)
    return table


def _cross_checks(rownum: int, rec: dict[str, Any], problems: list[Problem], tol: float) -> bool:
    """Consistency between dates, Age and Survival; returns whether an error was found."""
    bad = False
    diag, last, birth = (
        rec.get("Diagnosis_date"),
        rec.get("Last_contact_date"),
        rec.get("Birth_date"),
    )
    if diag and last:
        if last < diag:
            problems.append(
                Problem(rownum, "Last_contact_date", last.isoformat(), "before Diagnosis_date")
            )
            bad = True
        else:
            months = (last - diag).days / 30.0
            if rec.get("Survival") is None:
                rec["Survival"] = round(months, 2)
                problems.append(
                    Problem(
                        rownum,
                        "Survival",
                        "",
                        f"computed from the dates: {months:.2f} months",
                        "warning",
                    )
                )
            elif abs(rec["Survival"] - months) > tol:
                problems.append(
                    Problem(
                        rownum,
                        "Survival",
                        f"{rec['Survival']:g}",
                        f"differs from the dates ({months:.2f} months = days/30)",
                        "warning",
                    )
                )
    if diag and birth:
        years = (diag - birth).days / 365.0
        if rec.get("Age") is None:
            rec["Age"] = round(years, 2)
            problems.append(
                Problem(rownum, "Age", "", f"computed from the dates: {years:.2f} years", "warning")
            )
        elif abs(rec["Age"] - years) > 0.1:
            problems.append(
                Problem(
                    rownum,
                    "Age",
                    f"{rec['Age']:g}",
                    f"differs from the dates ({years:.2f} years)",
                    "warning",
                )
            )
    return bad


def load_clinical(
    path: str | os.PathLike[str],
    key_column: str = "MRN",
    sheet: str | None = None,
    on_invalid: str = "blank_cell",
) -> ClinicalTable:
    """Read and validate a clinical sheet (rows keyed by the raw ``key_column`` value)."""
    header, rows = read_sheet(path, sheet)
    return validate_rows(header, rows, key_column, on_invalid)


def map_to_pseudonyms(
    table: ClinicalTable,
    key: bytes,
    known_patients: Iterable[str] | None = None,
    pseudonym: Callable[[bytes, str], str] | None = None,
) -> ClinicalTable:
    """Re-key an MRN-keyed table by pseudonymous patient ID. Rows whose pseudonym is not a
    patient of the workspace are reported (by sheet row) and left out."""
    if pseudonym is None:
        from brainmets.ids import patient_pseudonym

        pseudonym = patient_pseudonym
    known = set(known_patients) if known_patients is not None else None
    out = ClinicalTable(key_column="patient", problems=list(table.problems), n_rows=table.n_rows)
    for mrn, rec in table.rows.items():
        pid = pseudonym(key, mrn)
        row = table.source_rows.get(mrn, 0)
        if known is not None and pid not in known:
            out.problems.append(
                Problem(
                    row,
                    table.key_column,
                    MRN_WITHHELD,
                    "no patient of the workspace has this MRN: row not used",
                    "warning",
                )
            )
            continue
        out.rows[pid] = rec
        out.source_rows[pid] = row
    return out


def problems_csv(problems: Iterable[Problem]) -> str:
    """The problems as CSV text (row, column, value, severity, message)."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "column", "value", "severity", "message"])
    for p in problems:
        w.writerow([p.row, p.column, p.value, p.severity, p.message])
    return buf.getvalue()


# ----------------------------------------------------------------- workspace level
def workspace_clinical(
    root: str | os.PathLike[str], sheet: str | os.PathLike[str], patients: list[str]
) -> ClinicalTable:
    """Read, validate and pseudonymise the hospital's clinical sheet for a workspace."""
    from brainmets.workspace import Workspace

    ws = Workspace.open(root)
    table = load_clinical(sheet, key_column="MRN")
    return map_to_pseudonyms(table, ws.key(), patients)


@dataclass
class Clinical:
    """Validated clinical rows of the workspace's patients, keyed by pseudonym, and a summary
    of the sheet's problems (row, column, message; values withheld)."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[tuple[int, str, str, str]] = field(default_factory=list)  # row, col, sev, msg
    source: str = ""


def sheet_path(root: Path, value: str | os.PathLike[str]) -> Path | None:
    """The configured clinical sheet, resolved against the workspace root, or None."""
    text = str(value or "").strip()
    if not text:
        return None
    p = Path(text).expanduser()
    return p if p.is_absolute() else root / p


def load_workspace_clinical(
    root: Path, sheet: str | os.PathLike[str], patients: list[str]
) -> Clinical:
    """Read, validate and pseudonymise the clinical sheet ."""
    path = sheet_path(root, sheet)
    if path is None:
        return Clinical()
    table = workspace_clinical(root, path, patients)
    return Clinical(
        rows={k: dict(v) for k, v in table.rows.items()},
        problems=[(p.row, p.column, p.severity, p.message) for p in table.problems],
        source=path.name,
    )


def clinical_for(root: Path, params: Mapping[str, Any], cohort: Cohort) -> Clinical | None:
    """The configured clinical sheet (``params["clinical_sheet"]``), validated and keyed by
    pseudonym; None when none is configured."""
    if sheet_path(root, params.get("clinical_sheet") or "") is None:
        return None
    return load_workspace_clinical(root, params["clinical_sheet"], [p.id for p in cohort.found])
