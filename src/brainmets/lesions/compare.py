"""Comparing two dataset workbooks (sheet ``Data``) patient by patient.

Rows are matched on ``BraTS_MET_ID``; IDs are normalised so that ``86``, ``86.0``, ``"86"``
and ``"BraTS-MET-00086-000"`` are the same patient. Every column present in both workbooks
is compared: numbers within an absolute tolerance (default ``1e-6``; integers exactly), text
after trimming, and an empty cell only equals an empty cell.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainmets.ids import normalise_id

ID_COLUMN = "BraTS_MET_ID"


def read_data_sheet(
    path: str | os.PathLike[str], sheet: str = "Data"
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Columns and rows (keyed by normalised ``BraTS_MET_ID``) of a workbook's data sheet."""
    from openpyxl import load_workbook

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such workbook")
    try:
        wb = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as .xlsx ({type(exc).__name__}: {exc})") from exc
    try:
        ws = wb[sheet] if sheet in wb.sheetnames else wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise ValueError(f"{path}: sheet '{ws.title}' is empty")
        columns = [str(h).strip() if h is not None else "" for h in header]
        if ID_COLUMN not in columns:
            raise ValueError(f"{path}: sheet '{ws.title}' has no {ID_COLUMN} column")
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row is None or all(v is None for v in row):
                continue
            rec = {c: v for c, v in zip(columns, row, strict=False) if c}
            key = normalise_id(rec.get(ID_COLUMN))
            if not key:
                continue
            if key in out:
                raise ValueError(f"{path}: {ID_COLUMN} {key} appears more than once")
            out[key] = rec
    finally:
        wb.close()
    return columns, out


@dataclass
class Difference:
    patient: str
    column: str
    a: Any
    b: Any

    @property
    def delta(self) -> float | None:
        try:
            return float(self.b) - float(self.a)
        except (TypeError, ValueError):
            return None


@dataclass
class Comparison:
    a: str
    b: str
    only_a: list[str] = field(default_factory=list)
    only_b: list[str] = field(default_factory=list)
    common: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    columns_only_a: list[str] = field(default_factory=list)
    columns_only_b: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (self.only_a or self.only_b or self.differences)

    def by_column(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.differences:
            out[d.column] = out.get(d.column, 0) + 1
        return out


def _empty(v: Any) -> bool:
    return (
        v is None
        or (isinstance(v, str) and not v.strip())
        or (isinstance(v, float) and math.isnan(v))
    )


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(str(v).strip())
    except ValueError:
        return None


def values_equal(a: Any, b: Any, tol: float) -> bool:
    """Equality used by the comparison (see the module docstring)."""
    if _empty(a) or _empty(b):
        return _empty(a) and _empty(b)
    fa, fb = _number(a), _number(b)
    if fa is not None and fb is not None:
        return abs(fa - fb) <= tol
    return str(a).strip() == str(b).strip()


def compare_workbooks(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    columns: Iterable[str] | None = None,
    tolerance: float = 1e-6,
    column_tolerance: Mapping[str, float] | None = None,
) -> Comparison:
    """Per-patient differences between the ``Data`` sheets of two workbooks."""
    cols_a, rows_a = read_data_sheet(a)
    cols_b, rows_b = read_data_sheet(b)
    shared = [c for c in cols_a if c in cols_b and c and c != ID_COLUMN]
    if columns is not None:
        wanted = list(columns)
        missing = [c for c in wanted if c not in shared]
        if missing:
            raise ValueError(f"column(s) {missing} are not in both workbooks")
        shared = wanted
    cmp = Comparison(
        str(a),
        str(b),
        only_a=sorted(set(rows_a) - set(rows_b), key=_sort_key),
        only_b=sorted(set(rows_b) - set(rows_a), key=_sort_key),
        common=sorted(set(rows_a) & set(rows_b), key=_sort_key),
        columns=shared,
        columns_only_a=[c for c in cols_a if c and c not in cols_b],
        columns_only_b=[c for c in cols_b if c and c not in cols_a],
    )
    per_col = dict(column_tolerance or {})
    for pid in cmp.common:
        ra, rb = rows_a[pid], rows_b[pid]
        for c in shared:
            if not values_equal(ra.get(c), rb.get(c), per_col.get(c, tolerance)):
                cmp.differences.append(Difference(pid, c, ra.get(c), rb.get(c)))
    return cmp


def _sort_key(k: str) -> tuple[int, int, str]:
    return (0, int(k), "") if k.isdigit() else (1, 0, k)
