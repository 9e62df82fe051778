"""Identifiers: keyed pseudonyms, the original value they derive from, comparable IDs.

This is the one home of every identifier rule that more than one stage needs (core layer:
it imports no stage).

Keyed, deterministic pseudonyms (HMAC-SHA256 with the workspace secret key).

The same original value and key always give the same pseudonym, in any run or batch and
without any lookup table, so a later study of a patient maps to the same pseudonymous
patient and every UID reference stays consistent. Without the key the mapping can neither
be reversed nor recomputed. Each kind of value has its own domain-separation label so that,
e.g., a PatientID and a UID with the same text do not map to related outputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any, Protocol

PATIENT_PREFIX = "BM-"
_ALPHABET_NO_PAD = base64.b32encode  # A-Z2-7: readable, case-insensitive


def _digest(key: bytes, domain: str, value: str) -> bytes:
    if not key:
        raise ValueError("empty de-identification key")
    msg = domain.encode("ascii") + b"\x00" + value.strip().encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).digest()


def key_fingerprint(key: bytes) -> str:
    """A one-way fingerprint of a key, to recognise it later without storing it.

    The HMAC-SHA256 (with the key) of a label of its own, as 64 hex digits: computable only
    with the key, it reveals nothing of the key, and it is unrelated to every pseudonym (no
    pseudonym domain is ``key-fingerprint``). A workspace's catalog records the fingerprint
    of its key, and folder-mode output records that of the key that made it, so that another
    key is refused instead of silently giving the same patients a second pseudonym.
    """
    return _digest(key, "key-fingerprint", "").hex()


def patient_pseudonym(key: bytes, patient_id: str, length: int = 8) -> str:
    """Readable pseudonymous patient ID, e.g. ``BM-K7Q2ZP4M``."""
    text = _ALPHABET_NO_PAD(_digest(key, "patient", patient_id)).decode("ascii")
    return PATIENT_PREFIX + text[:length]


def accession_pseudonym(key: bytes, accession: str) -> str:
    """Pseudonymous AccessionNumber (16 characters, the SH limit)."""
    return _ALPHABET_NO_PAD(_digest(key, "accession", accession)).decode("ascii")[:16]


def uid_pseudonym(key: bytes, uid: str) -> str:
    """``2.25.<128-bit integer>`` UID derived from the original UID (at most 44 characters)."""
    n = int.from_bytes(_digest(key, "uid", uid)[:16], "big")
    return f"2.25.{n}"


def date_offset_days(key: bytes, patient_id: str, min_days: int = -365, max_days: int = -30) -> int:
    """Per-patient date shift in days, uniform in ``[min_days, max_days]``.

    The default range shifts dates backwards by one month to one year, never zero.
    """
    if max_days < min_days:
        raise ValueError("max_days must be >= min_days")
    span = max_days - min_days + 1
    n = int.from_bytes(_digest(key, "date-offset", patient_id)[:8], "big")
    return min_days + n % span


class _Header(Protocol):
    """What :func:`patient_key` reads of a DICOM dataset (``pydicom.Dataset.get``)."""

    def get(self, key: str, default: Any = ...) -> Any: ...


def patient_key(ds: _Header) -> str:
    """The original value a patient's pseudonym and date offset are derived from.

    The Patient ID; when it is empty, the Patient's Name with the Birth Date; when that is
    empty too, the Study Instance UID (each study then counts as its own patient).
    """
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return pid
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return f"name:{name}|{str(ds.get('PatientBirthDate', '') or '').strip()}"
    return f"study:{str(ds.get('StudyInstanceUID', '') or '').strip()}"


#: the published collection's case IDs (``BraTS-MET-00123-000``)
_CASE = re.compile(r"^BraTS-MET-(\d{5})-000$", re.IGNORECASE)


def normalise_id(value: Any) -> str:
    """A comparable patient key."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    text = str(value).strip()
    m = _CASE.match(text)
    if m:
        return str(int(m.group(1)))
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if f.is_integer() else text
