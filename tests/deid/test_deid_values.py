"""Pseudonyms, date shifting, age capping and text cleaning."""

from __future__ import annotations

import re

import pytest

from brainmets.deid.dates import InvalidDate, cap_age, shift_da, shift_dt, shift_multi
from brainmets.deid.text import Identifiers, TextCleaner, birth_date_forms
from brainmets.deid.uids import is_class_uid_attribute, is_well_known
from brainmets.ids import (
    accession_pseudonym,
    date_offset_days,
    patient_pseudonym,
    uid_pseudonym,
)

pytest_plugins = ["deid_helpers"]  # shared fixtures (see deid_helpers.py)


def test_pseudonyms_are_keyed_stable_and_well_formed(key: bytes, other_key: bytes) -> None:
    pid = patient_pseudonym(key, "021234567")
    assert re.fullmatch(r"BM-[A-Z2-7]{8}", pid)
    assert pid == patient_pseudonym(key, "021234567")
    assert pid != patient_pseudonym(other_key, "021234567")
    assert pid != patient_pseudonym(key, "021234568")
    acc = accession_pseudonym(key, "8000000000330109")
    assert len(acc) <= 16 and acc == accession_pseudonym(key, "8000000000330109")
    uid = uid_pseudonym(key, "1.2.3.4")
    assert re.fullmatch(r"2\.25\.[1-9]\d*", uid) and len(uid) <= 64
    assert uid != uid_pseudonym(other_key, "1.2.3.4")
    offsets = {date_offset_days(key, f"P{i}") for i in range(200)}
    assert min(offsets) >= -365 and max(offsets) <= -30 and len(offsets) > 50
    assert date_offset_days(key, "P1", -10, -10) == -10


def test_shift_dates_keeps_precision_time_and_offset() -> None:
    assert shift_da("20240301", -1) == "20240229"
    assert shift_da("2024.03.01", -1) == "20240229"  # ACR-NEMA form
    assert shift_da("", -5) == ""
    assert shift_dt("20240301101500.123456+0100", -1) == "20240229101500.123456+0100"
    assert shift_dt("202403", -1) == "202402"
    assert shift_dt("2024", -1) == "2023"
    assert shift_multi("20240101\\20240102", 1, "DA") == "20240102\\20240103"
    for bad in ("20241301", "2024-01-01", "abc"):
        with pytest.raises(InvalidDate):
            shift_da(bad, 1)


def test_intervals_are_preserved(key: bytes) -> None:
    off = date_offset_days(key, "PAT-1")
    a, b = shift_da("20230115", off), shift_da("20230401", off)
    import datetime as dt

    d = dt.date.fromisoformat
    delta = d(f"{b[:4]}-{b[4:6]}-{b[6:]}") - d(f"{a[:4]}-{a[4:6]}-{a[6:]}")
    assert delta.days == (dt.date(2023, 4, 1) - dt.date(2023, 1, 15)).days


def test_ages_over_89_are_capped() -> None:
    assert cap_age("058Y") == "058Y"
    assert cap_age("089Y") == "089Y"
    assert cap_age("090Y") == "090Y"
    assert cap_age("102Y") == "090Y"
    assert cap_age("999M") == "999M"  # 83 years: unchanged
    assert cap_age("999W") == "999W"


def test_cleaner_removes_identifying_tokens_and_patterns() -> None:
    ids = Identifiers()
    ids.add_name("SIMPSON^HOMER^J")
    ids.add("00007041776")
    ids.add_birth_date("19560512")
    cleaner = TextCleaner(ids.finish())
    assert cleaner.clean("t1_mprage_SIMPSON_sag") == "t1_mprage__sag"
    assert cleaner.clean("Homer Simpson follow-up") == "follow-up"
    assert cleaner.clean("MRN 00007041776, born 12.05.1956") == "MRN , born"
    text = "seen 2023-01-05, call +43 1 4040 0 or john.doe@example.org, http://x.org/a"
    cleaned = cleaner.clean(text)
    for leak in ("2023-01-05", "+43", "example.org", "http"):
        assert leak not in cleaned
    # descriptors the pipeline needs are untouched
    for desc in ("t1_mprage_sag_p2_iso", "AX T2 FLAIR", "T1W_3D_TFE+C", "ep2d_diff b1000"):
        assert cleaner.clean(desc) == desc
    assert cleaner.clean("20230105", patterns=False) == "20230105"


def test_generic_and_code_values_are_not_identifying() -> None:
    ids = Identifiers()
    ids.add("UNKNOWN")
    ids.add("12")  # short numbers (series numbers) are not identifying
    ids.add_name("HFS")
    ids.codes.add("hfs")
    assert ids.finish().values == set()
    assert "1956-05-12" in birth_date_forms("19560512")
    assert "12.05.1956" in birth_date_forms("19560512")


def test_well_known_uids_are_kept() -> None:
    assert is_well_known("1.2.840.10008.5.1.4.1.1.4")  # MR Image Storage
    assert is_well_known("1.2.840.10008.1.2.1")  # transfer syntax
    assert is_well_known("2.16.840.1.113883.6.96")  # SNOMED CT coding scheme
    assert not is_well_known("1.3.12.2.1107.5.2.30.25641.30010005113009191059300000189")
    assert is_class_uid_attribute(0x00081150)  # Referenced SOP Class UID
    assert not is_class_uid_attribute(0x00081155)  # Referenced SOP Instance UID
