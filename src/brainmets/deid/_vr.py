"""Value-representation helpers that work on raw (not yet decoded) data elements."""

from __future__ import annotations

from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "UR", "AE"})
DATE_VRS = frozenset({"DA", "DT"})
BINARY_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN", "OB or OW", "US or OW"})
NUMERIC_VRS = frozenset(
    {"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD", "US or SS", "US or SS or OW", "AT"}
)


@lru_cache(maxsize=4096)
def dictionary_vr(tag: int) -> str:
    """The dictionary VR of a standard tag, or ``UN`` when unknown (incl. private tags)."""
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


# VRs whose value is never split on backslash (single-valued by definition).
_SINGLE_VALUED = frozenset({"ST", "LT", "UT", "UR"})


def raw_vr(raw: DataElement | RawDataElement) -> str:
    """VR of an element as read (dictionary VR for implicit VR or ``UN`` on standard tags)."""
    vr = raw.VR
    if vr is None or vr == "UN":
        tag = int(raw.tag)
        return dictionary_vr(tag) if not tag & 0x10000 else (vr or "UN")
    return vr


def string_values(
    ds: Dataset, raw: DataElement | RawDataElement, vr: str, *, strict: bool = False
) -> list[str] | None:
    """The string values of a text, name, date or UID element.

    Raw ASCII values are decoded directly (the common case, and much faster than pydicom's
    conversion); anything else goes through pydicom, which applies the Specific Character
    Set. Returns None for a value that is not text, and for a value pydicom cannot decode
    unless ``strict`` (then its exception propagates: the verifier reports what it could not
    read).
    """
    value = raw.value
    if isinstance(value, bytes):
        if value.isascii() and b"\x1b" not in value:
            text = value.decode("ascii").rstrip("\x00 ")
            if vr not in ("ST", "LT", "UT", "UR"):
                text = text.lstrip(" ")
            if not text:
                return []
            return [text] if vr in _SINGLE_VALUED else text.split("\\")
        try:
            value = ds[raw.tag].value
        except Exception:
            if strict:
                raise
            return None
    if value is None:
        return []
    if isinstance(value, str):
        if not value:
            return []
        return [value] if vr in _SINGLE_VALUED else value.split("\\")
    if isinstance(value, bytes):
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        return [str(v) for v in value]
    text = str(value)  # PersonName, UID, numbers
    if not text:
        return []
    return [text] if vr in _SINGLE_VALUED else text.split("\\")
