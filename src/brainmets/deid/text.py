"""Identifying values of an instance, and cleaning of the free text that is kept.

*Identifying values* are the values of a fixed set of identity attributes (patient names and
IDs, birth date, addresses and telephone numbers, accession number, study ID, order and
procedure IDs, institution, station and device identifiers) and every Person Name (PN) value
of the instance, at any depth, except values equal to a Code String (CS) value of the same
instance (a test patient named "HFS" with Patient Position HFS: the code is not identifying).
The de-identifier removes them from every kept text value (Clean Descriptors / Clean
Structured Content and the rule for text attributes the table does not list); the verifier
searches the output for them.

Cleaning a text value removes, as whole tokens (bounded by non-alphanumeric characters,
case-insensitive):

* every identifying value of the same instance, the components of each name (``^``, ``=`` and
  blank separated) and the birth date in common written formats;
* with ``patterns=True`` (descriptors, comments, structured-content text): any calendar date
  (``20240131``, ``2024-01-31``, ``31.01.2024``, ``01/31/2024`` ...), telephone numbers,
  e-mail addresses and URLs.

Values that are too generic to identify anyone (shorter than two characters, all-digit values
shorter than four digits, or words such as ``UNKNOWN``) are never treated as identifying, so
descriptors the pipeline needs (``t1_mprage_sag``) are not damaged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from brainmets.deid._vr import raw_vr, string_values

# Attributes whose values identify a patient, a person, an institution or a device.
IDENTITY_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "PatientTelecomInformation",
    "MedicalRecordLocator",
    "ResponsiblePerson",
    "ResponsibleOrganization",
    "AccessionNumber",
    "StudyID",
    "AdmissionID",
    "ServiceEpisodeID",
    "RequestedProcedureID",
    "ScheduledProcedureStepID",
    "PerformedProcedureStepID",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "OrderCallbackPhoneNumber",
    "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers",
    "PersonAddress",
    "PersonTelephoneNumbers",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
    "DetectorID",
    "PerformedStationAETitle",
    "ScheduledStationAETitle",
    "PerformedLocation",
    "ScheduledProcedureStepLocation",
    "CurrentPatientLocation",
    "PatientInstitutionResidence",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    "ClinicalTrialSiteName",
    "ClinicalTrialSiteID",
)
IDENTITY_TAGS: frozenset[int] = frozenset(
    t for t in (tag_for_keyword(k) for k in IDENTITY_KEYWORDS) if t is not None
)
BIRTH_DATE_TAG = 0x00100030

# Values that never identify anyone and must not be stripped from descriptors.
GENERIC_VALUES: frozenset[str] = frozenset(
    {
        "",
        "anonymous",
        "anonymized",
        "anon",
        "unknown",
        "none",
        "null",
        "n/a",
        "na",
        "default",
        "other",
        "test",
        "research",
        "patient",
        "doctor",
        "dr",
        "mr",
        "mrs",
        "ms",
        "md",
        "phd",
        "jr",
        "sr",
        "ii",
        "iii",
        "yes",
        "no",
        "dicom",
        "phantom",
        "volunteer",
    }
)
MIN_VALUE_LEN = 2
MIN_NUMBER_LEN = 4  # shorter all-digit values (series numbers, small study IDs) are generic

_DATE_PATTERNS = (
    r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])",  # 20240131
    r"(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])",  # 2024-01-31
    r"(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|1[0-2])[-/.](?:19|20)?\d\d",  # 31.01.2024
    r"(?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:19|20)?\d\d",  # 01/31/2024
    r"(?:0?[1-9]|[12]\d|3[01])[ -]?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)"
    r"[a-z]*[ -]?(?:19|20)\d\d",  # 31 Jan 2024
)
_PHONE_PATTERNS = (
    r"\+\d[\d ()/.-]{6,}\d",  # +43 1 234 5678
    r"\(\d{2,5}\)[ -]?\d{3,4}[ -]?\d{3,5}",  # (555) 123-4567
    r"\d{3}[-. ]\d{3}[-. ]\d{4}",  # 555-123-4567
    r"\d{2,5}[-/]\d{5,9}",  # 0123/4567890
    r"(?:tel|phone|fax|mobile)[.:]?[ ]*[\d ()/+.-]{6,}\d",
)
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_URL = r"(?:https?|ftp)://\S+|www\.\S+"
_BOUNDARY_L = r"(?<![^\W_])"  # start of text or after a non-alphanumeric character
_BOUNDARY_R = r"(?![^\W_])"
PATTERNS_RE = re.compile(
    "|".join(
        [f"{_BOUNDARY_L}(?:{p}){_BOUNDARY_R}" for p in _DATE_PATTERNS + _PHONE_PATTERNS]
        + [_EMAIL, _URL]
    ),
    re.IGNORECASE,
)
_SPACES_RE = re.compile(r"[ \t]{2,}")
_NAME_SPLIT_RE = re.compile(r"[\^=,]+|\s+")


def birth_date_forms(value: str) -> list[str]:
    """A DA birth date written in the common formats (empty when not a full date)."""
    v = value.strip()
    if len(v) != 8 or not v.isdigit():
        return []
    y, m, d = v[:4], v[4:6], v[6:]
    forms = {v, f"{y}-{m}-{d}", f"{y}/{m}/{d}", f"{y}.{m}.{d}"}
    for dd, mm in ((d, m), (d.lstrip("0"), m.lstrip("0"))):
        forms |= {f"{dd}.{mm}.{y}", f"{dd}/{mm}/{y}", f"{dd}-{mm}-{y}", f"{mm}/{dd}/{y}"}
        forms |= {f"{mm}-{dd}-{y}", f"{dd}.{mm}.{y[2:]}", f"{mm}/{dd}/{y[2:]}"}
    return sorted(forms)


def name_parts(value: str) -> list[str]:
    """A person name and its components (family, given, middle ... of each representation)."""
    v = value.strip()
    parts = [p for p in _NAME_SPLIT_RE.split(v) if p]
    out = [v.replace("^", " ").strip(), *parts]
    if len(parts) >= 2:
        out.append(f"{parts[1]} {parts[0]}")  # "Given Family"
    return out


def is_specific(value: str) -> bool:
    """Whether a value is specific enough to be treated as identifying."""
    v = value.strip()
    if v.isdigit():
        return len(v) >= MIN_NUMBER_LEN
    return len(v) >= MIN_VALUE_LEN and v.lower() not in GENERIC_VALUES


@dataclass
class Identifiers:
    """The identifying values found in one instance (see the module docstring)."""

    values: set[str] = field(default_factory=set)
    #: Code String values of the instance (lower case): a value equal to one of them
    #: (a patient called "HFS" with Patient Position HFS) cannot be told apart from the code
    #: and is not treated as identifying.
    codes: set[str] = field(default_factory=set)

    def add(self, value: str) -> None:
        v = value.strip()
        if is_specific(v):
            self.values.add(v)

    def finish(self) -> Identifiers:
        """Drop values equal to a code string of the instance; return self."""
        if self.codes:
            self.values = {v for v in self.values if v.lower() not in self.codes}
        return self

    def add_name(self, value: str) -> None:
        for p in name_parts(value):
            self.add(p)

    def add_birth_date(self, value: str) -> None:
        self.add(value)
        for f in birth_date_forms(value):
            self.add(f)

    def key(self) -> tuple[str, ...]:
        return tuple(sorted({v.lower() for v in self.values}))


def collect_identifiers(ds: Dataset, into: Identifiers | None = None) -> Identifiers:
    """Identifying values of ``ds``: identity attributes and every PN value, at any depth.

    Private elements are not read (they are removed, or cleaned themselves when kept).
    """
    if into is not None:  # the caller finishes
        _collect(ds, into)
        return into
    ids = Identifiers()
    _collect(ds, ids)
    return ids.finish()


def _collect(ds: Dataset, ids: Identifiers) -> None:
    for raw in list(ds.values()):
        tag = int(raw.tag)
        if tag & 0x10000:  # private group
            continue
        vr = raw_vr(raw)
        if vr == "SQ":
            try:
                items = ds[tag].value
            except Exception:  # undecodable sequence: the de-identifier removes it
                continue
            for item in items or ():
                _collect(item, ids)
            continue
        if vr == "CS":
            ids.codes.update(v.strip().lower() for v in string_values(ds, raw, vr) or ())
            continue
        if vr != "PN" and tag not in IDENTITY_TAGS:
            continue
        values = string_values(ds, raw, vr)
        for s in values or ():
            if vr == "PN":
                ids.add_name(s)
            elif tag == BIRTH_DATE_TAG:
                ids.add_birth_date(s)
            else:
                ids.add(s)


@lru_cache(maxsize=256)
def _identifier_regex(key: tuple[str, ...]) -> re.Pattern[str] | None:
    if not key:
        return None
    alternatives = sorted(key, key=len, reverse=True)  # longest first
    body = "|".join(re.escape(v) for v in alternatives)
    return re.compile(f"{_BOUNDARY_L}(?:{body}){_BOUNDARY_R}", re.IGNORECASE)


class TextCleaner:
    """Removes identifying values (and, optionally, obvious identifiers) from text."""

    def __init__(self, identifiers: Identifiers) -> None:
        self._regex = _identifier_regex(identifiers.key())

    def clean(self, text: str, patterns: bool = True) -> str:
        """The cleaned text (blank runs collapsed; stripped when anything was removed)."""
        out = text
        if self._regex is not None:
            out = self._regex.sub("", out)
        if patterns:
            out = PATTERNS_RE.sub("", out)
        if out is not text and out != text:
            out = _SPACES_RE.sub(" ", out).strip()
        return out
