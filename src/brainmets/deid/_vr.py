"""Value-representation helpers that work on raw (not yet decoded) data elements."""

from __future__ import annotations

from functools import lru_cache

from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

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


def element_vr(ds: Dataset, tag: int) -> str:
    """VR of element ``tag`` of ``ds`` without decoding its value.

    Explicit-VR elements give their own VR; implicit ones (or ``UN`` on a standard tag) take
    the dictionary's. Private tags of implicit-VR data sets come back as ``UN``.
    """
    vr = ds.get_item(tag).VR
    if vr is None or vr == "UN":
        return dictionary_vr(tag) if not tag & 0x10000 else (vr or "UN")
    return vr
