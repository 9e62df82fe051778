"""Date shifting (DA, DT) and age capping (AS).

Dates of a patient are all moved by the same number of days (one offset per patient, see
:func:`brainmets.deid.pseudonym.date_offset_days`), so intervals between the patient's
studies and events are preserved exactly. Times of day are kept: a whole-day shift does not
change them. A DT value keeps its precision, its time part and its UTC offset suffix; a
value of lower precision (``YYYY`` or ``YYYYMM``) is shifted from its first day and written
back with the same precision.
"""

from __future__ import annotations

import datetime as _dt
import re

_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")
_AGE_RE = re.compile(r"^(\d{3})([DWMY])$")
HIPAA_MAX_AGE_YEARS = 89
HIPAA_CAPPED_AGE = "090Y"


class InvalidDate(ValueError):
    """A DA/DT value that cannot be parsed as a calendar date."""


def shift_da(value: str, days: int) -> str:
    """Shift one DA value (``YYYYMMDD``; legacy ``YYYY.MM.DD`` accepted) by ``days``."""
    v = value.strip()
    if not v:
        return v
    if len(v) == 10 and v[4] == "." and v[7] == ".":  # ACR-NEMA style
        v = v.replace(".", "")
    if len(v) != 8 or not v.isdigit():
        raise InvalidDate(value)
    try:
        d = _dt.date(int(v[:4]), int(v[4:6]), int(v[6:]))
    except ValueError as exc:
        raise InvalidDate(value) from exc
    return _format_date(d + _dt.timedelta(days=days), 8)


def shift_dt(value: str, days: int) -> str:
    """Shift the date part of one DT value by ``days``, keeping time, precision and offset."""
    v = value.strip()
    if not v:
        return v
    m = _DT_RE.match(v)
    if m is None:
        raise InvalidDate(value)
    year, month, day, rest = m.groups()
    if rest and not rest[:1].isdigit() and rest[:1] not in "+-.":
        raise InvalidDate(value)
    if month is None and day is not None:
        raise InvalidDate(value)
    precision = 4 + (2 if month else 0) + (2 if day else 0)
    try:
        d = _dt.date(int(year), int(month or 1), int(day or 1))
    except ValueError as exc:
        raise InvalidDate(value) from exc
    return _format_date(d + _dt.timedelta(days=days), precision) + rest


def _format_date(d: _dt.date, precision: int) -> str:
    if d.year < 1:
        raise InvalidDate(str(d))
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"[:precision]


def shift_multi(value: str, days: int, vr: str) -> str:
    """Shift a possibly multi-valued (backslash-separated) DA or DT string."""
    fn = shift_da if vr == "DA" else shift_dt
    return "\\".join(fn(part, days) for part in value.split("\\"))


def cap_age(value: str) -> str:
    """Cap an AS age above 89 years to ``090Y`` (HIPAA Safe Harbor); other values unchanged.

    Ages given in days, weeks or months are converted for the comparison.
    """
    v = value.strip()
    m = _AGE_RE.match(v)
    if m is None:
        return v
    n, unit = int(m.group(1)), m.group(2)
    years = {"D": n / 365.25, "W": n * 7 / 365.25, "M": n / 12, "Y": float(n)}[unit]
    if int(years) > HIPAA_MAX_AGE_YEARS:
        return HIPAA_CAPPED_AGE
    return v
