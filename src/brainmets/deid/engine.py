"""De-identification of one DICOM instance, in memory, by PS3.15 Annex E (Table E.1-1).

Profile and options (the reference dataset's): Basic Application Level Confidentiality
Profile + Clean Descriptors + Clean Structured Content + Retain Longitudinal Temporal
Information with Modified Dates. Each attribute's action comes from the committed Table E.1-1
(:mod:`brainmets.deid.table`); an enabled option's action overrides the Basic Profile's.

Replacement values are keyed pseudonyms (HMAC-SHA256 with the workspace key,
:mod:`brainmets.deid.pseudonym`): the same input and key always give the same output, in any
run or batch, without a database.

* Patient ID and (top-level) Patient's Name: ``BM-`` + 8 characters.
* Accession Number: a 16-character pseudonym (still Z in spirit: it names nothing).
* Every instance UID, at any depth, file meta included: ``2.25.<integer>``; well-known UIDs
  (SOP classes, transfer syntaxes, coding schemes ...) are kept (:mod:`brainmets.deid.uids`).
* Dates (DA, DT and the date part of DT), at any depth: moved by one offset per patient.

Rules for what the table does not list (documented in ``docs/deidentification.md``):

* private elements (odd groups) are removed, unless ``keep_private`` (then cleaned like
  public ones; binary private values holding an identifying value are removed);
* curves (50xx) are removed; overlays (60xx) are removed whole, since the table removes their
  Overlay Data (and Overlay Comments) and an overlay without its data is not valid;
* group lengths are removed (they would be wrong after editing);
* standard elements of unknown tag and VR UN are removed (their content cannot be checked);
* PN values are emptied; DA/DT shifted; TM kept; UI remapped unless class-like or well known;
  AS capped at 090Y above 89 years; text (SH, LO, ST, LT, UT, UC, UR, AE) cleaned;
  CS, numbers, binary and sequences kept (sequences after applying all rules inside).

Instances whose pixels may show identifying text are not de-identified but quarantined:
Burned In Annotation YES, secondary-capture SOP classes, Image Type containing SCREEN SAVE.
Pixel Data is never read or altered.
"""

from __future__ import annotations

import dataclasses
import io
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydicom
from pydicom import config
from pydicom.dataelem import DataElement, RawDataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from brainmets import __version__
from brainmets.deid import table as _table
from brainmets.deid._vr import BINARY_VRS, DATE_VRS, TEXT_VRS, raw_vr, string_values
from brainmets.deid.dates import InvalidDate, cap_age, shift_multi
from brainmets.deid.text import (
    BIRTH_DATE_TAG,
    IDENTITY_TAGS,
    Identifiers,
    TextCleaner,
    collect_identifiers,
)
from brainmets.deid.uids import is_class_uid_attribute, is_well_known
from brainmets.ids import (
    accession_pseudonym,
    date_offset_days,
    patient_key,
    patient_pseudonym,
    uid_pseudonym,
)

# A fixed UID naming this implementation (derived once from a UUID, PS3.5 B.2).
IMPLEMENTATION_CLASS_UID = f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, 'brainmets/deid').int}"
IMPLEMENTATION_VERSION_NAME = f"BRAINMETS_{__version__}".replace(".", "_")[:16]

MIN_KEY_BYTES = 16
MAP_PATIENT, MAP_ACCESSION, MAP_UID = "patient", "accession", "uid"

# Tags handled specially.
PATIENT_NAME = 0x00100010
PATIENT_ID = 0x00100020
ACCESSION_NUMBER = 0x00080050
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
DEID_METHOD = 0x00120063
DEID_METHOD_CODES = 0x00120064
# Coded values: cleaned of identifying values only, never of date/phone-like patterns.
CODED_TEXT_TAGS = frozenset(
    {0x00080100, 0x00080102, 0x00080103, 0x00080105, 0x0008010F, 0x00080119, 0x00080120}
)

SECONDARY_CAPTURE_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.7.1",  # Multi-frame Single Bit SC
        "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
        "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
        "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color SC
    }
)

# CID 7050 De-identification Method (DCM codes), checked against pydicom's CID 7050 in tests.
CODE_BASIC = ("113100", "Basic Application Confidentiality Profile")
CODE_CLEAN_STRUCTURED = ("113104", "Clean Structured Content Option")
CODE_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
CODE_FULL_DATES = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
CODE_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_PATIENT_CHARS = ("113108", "Retain Patient Characteristics Option")
CODE_DEVICE = ("113109", "Retain Device Identity Option")
CODE_UIDS = ("113110", "Retain UIDs Option")
CODE_SAFE_PRIVATE = ("113111", "Retain Safe Private Option")
CODE_INSTITUTION = ("113112", "Retain Institution Identity Option")
ALL_METHOD_CODES = (
    CODE_BASIC,
    CODE_CLEAN_STRUCTURED,
    CODE_CLEAN_DESCRIPTORS,
    CODE_FULL_DATES,
    CODE_MODIFIED_DATES,
    CODE_PATIENT_CHARS,
    CODE_DEVICE,
    CODE_UIDS,
    CODE_SAFE_PRIVATE,
    CODE_INSTITUTION,
)

# Non-empty dummy values ("D") by VR.
_DUMMY_TEXT = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "UR": "urn:anonymized",
}


class NotAnInstanceError(ValueError):
    """The data set is not a composite instance (no SOP Class / SOP Instance UID)."""


@dataclass(frozen=True)
class DeidOptions:
    """Profile options and run parameters.

    The defaults are the reference dataset's: Basic Profile + Clean Descriptors + Clean
    Structured Content + Retain Longitudinal Temporal Information with Modified Dates.
    """

    #: Range of the per-patient date offset in days (inclusive).
    min_offset_days: int = -365
    max_offset_days: int = -30
    #: Keep private elements, cleaned (Retain Safe Private Option); default: remove them.
    keep_private: bool = False
    #: Clean Descriptors Option: keep descriptions, cleaned, instead of removing them.
    clean_descriptors: bool = True
    #: Clean Structured Content Option: keep SR content / acquisition context, cleaned.
    clean_structured_content: bool = True
    #: Retain Longitudinal Temporal Information with Modified Dates: shift dates.
    retain_modified_dates: bool = True
    #: Retain Longitudinal Temporal Information Full Dates: keep dates (exclusive of the above).
    retain_full_dates: bool = False
    #: Retain Patient Characteristics (sex, age capped at 090Y, size, weight ...).
    retain_patient_characteristics: bool = False
    #: Retain Device Identity (station name, serial numbers ...).
    retain_device_identity: bool = False
    #: Retain Institution Identity.
    retain_institution_identity: bool = False
    #: Retain UIDs (no remapping). Breaks the guarantee that UIDs do not identify.
    retain_uids: bool = False
    #: Quarantine instances with Burned In Annotation YES.
    quarantine_burned_in: bool = True
    #: Quarantine secondary captures and Image Type SCREEN SAVE.
    quarantine_secondary_capture: bool = True

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The options' defaults as stage parameters (``[stages.deid]``)."""
        return {f.name: f.default for f in dataclasses.fields(cls) if not f.name.startswith("_")}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> DeidOptions:
        """Options from stage parameters; unknown names are an error naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(
                f"unknown de-identification option(s) {unknown}; known: {sorted(names)}"
            )
        return cls(**dict(params))

    def __post_init__(self) -> None:
        if self.min_offset_days > self.max_offset_days:
            raise ValueError("min_offset_days must be <= max_offset_days")
        if self.retain_modified_dates and self.retain_full_dates:
            raise ValueError("retain_modified_dates and retain_full_dates exclude each other")

    def option_columns(self) -> frozenset[str]:
        """Table E.1-1 option columns enabled by these options."""
        cols = {
            _table.OPTION_SAFE_PRIVATE: self.keep_private,
            _table.OPTION_UIDS: self.retain_uids,
            _table.OPTION_DEVICE: self.retain_device_identity,
            _table.OPTION_INSTITUTION: self.retain_institution_identity,
            _table.OPTION_PATIENT_CHARS: self.retain_patient_characteristics,
            _table.OPTION_FULL_DATES: self.retain_full_dates,
            _table.OPTION_MODIFIED_DATES: self.retain_modified_dates,
            _table.OPTION_CLEAN_DESCRIPTORS: self.clean_descriptors,
            _table.OPTION_CLEAN_STRUCTURED: self.clean_structured_content,
        }
        return frozenset(c for c, on in cols.items() if on)

    def method_codes(self) -> list[tuple[str, str]]:
        """CID 7050 codes (value, meaning) of the profile and the enabled options."""
        codes = [CODE_BASIC]
        flags = [
            (self.clean_structured_content, CODE_CLEAN_STRUCTURED),
            (self.clean_descriptors, CODE_CLEAN_DESCRIPTORS),
            (self.retain_full_dates, CODE_FULL_DATES),
            (self.retain_modified_dates, CODE_MODIFIED_DATES),
            (self.retain_patient_characteristics, CODE_PATIENT_CHARS),
            (self.retain_device_identity, CODE_DEVICE),
            (self.retain_uids, CODE_UIDS),
            (self.keep_private, CODE_SAFE_PRIVATE),
            (self.retain_institution_identity, CODE_INSTITUTION),
        ]
        codes += [code for on, code in flags if on]
        return codes

    def method_text(self) -> list[str]:
        """Values of De-identification Method (LO, each at most 64 characters)."""
        return [
            f"brainmets {__version__} DICOM PS3.15 {_table.EDITION} Table E.1-1",
            *(meaning for _, meaning in self.method_codes()),
            "Keyed HMAC-SHA256 pseudonyms for IDs, UIDs and date offset",
        ]


@dataclass
class DeidResult:
    """Outcome of de-identifying one instance.

    ``status`` is ``"deidentified"`` (``dataset`` holds the de-identified data set, with
    new file meta information, and the new identifiers are set) or ``"quarantined"``
    (``reason`` says why; ``dataset`` is None and the input was left unchanged).
    ``mapping`` (kind -> original -> pseudonym, kinds ``patient``, ``accession`` and ``uid``)
    is filled only when asked for; it holds identifying values: never log it.
    """

    status: Literal["deidentified", "quarantined"]
    dataset: Dataset | None = None
    reason: str | None = None
    patient_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None
    sop_class_uid: str | None = None
    date_offset_days: int | None = None
    mapping: dict[str, dict[str, str]] | None = field(default=None, repr=False)
    #: Where the instance was written, when a caller (tree, receiver) wrote it.
    path: Path | None = None
    #: The receiver already held this instance (same SOP Instance UID and content) at
    #: ``path``: it was not written again.
    duplicate: bool = False

    @property
    def deidentified(self) -> bool:
        return self.status == "deidentified"

    @property
    def quarantined(self) -> bool:
        return self.status == "quarantined"

    def relative_path(self) -> Path:
        """Non-identifying output path: ``<patient>/<study>/<series>/<sop>.dcm``."""
        if not self.deidentified:
            raise ValueError("only a de-identified instance has an output path")
        study = self.study_uid or "no-study"
        series = self.series_uid or "no-series"
        return Path(str(self.patient_id), study, series) / f"{self.sop_uid}.dcm"

    def to_bytes(self) -> bytes:
        """The de-identified instance as a DICOM Part 10 file."""
        if self.dataset is None:
            raise ValueError("no de-identified data set")
        return dataset_to_bytes(self.dataset)


def dataset_to_bytes(ds: Dataset) -> bytes:
    """Encode a data set with file meta information as a DICOM Part 10 file."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


class Deidentifier:
    """De-identifies instances with a secret key (see the module docstring).

    Thread-compatible but not thread-safe (it caches pseudonyms); use one per thread or
    process. The key is never printed: ``repr`` omits it.
    """

    def __init__(self, key: bytes, options: DeidOptions | None = None) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the de-identification key must be at least {MIN_KEY_BYTES} bytes")
        self._key = bytes(key)
        self.options = options or DeidOptions()
        self.table = _table.action_table(self.options.option_columns())
        self._uid_cache: dict[str, str] = {}
        self._patient_cache: dict[str, tuple[str, int]] = {}

    def __repr__(self) -> str:
        return f"Deidentifier(options={self.options!r})"

    # -- pseudonyms ---------------------------------------------------------------------------
    def uid(self, uid: str) -> str:
        """Pseudonym of an instance UID (well-known UIDs unchanged)."""
        u = uid.strip().rstrip("\x00").strip()
        if not u or is_well_known(u) or self.options.retain_uids:
            return u
        new = self._uid_cache.get(u)
        if new is None:
            if len(self._uid_cache) > 500_000:
                self._uid_cache.clear()
            new = self._uid_cache[u] = uid_pseudonym(self._key, u)
        return new

    def patient(self, key: str) -> tuple[str, int]:
        """(pseudonymous Patient ID, date offset in days) for a patient key."""
        hit = self._patient_cache.get(key)
        if hit is None:
            if len(self._patient_cache) > 100_000:
                self._patient_cache.clear()
            o = self.options
            hit = (
                patient_pseudonym(self._key, key),
                date_offset_days(self._key, key, o.min_offset_days, o.max_offset_days),
            )
            self._patient_cache[key] = hit
        return hit

    def accession(self, value: str) -> str:
        return accession_pseudonym(self._key, value)

    # -- quarantine ---------------------------------------------------------------------------
    def quarantine_reason(self, ds: Dataset) -> str | None:
        """Why ``ds`` must not be de-identified into the output (None: it may)."""
        o = self.options
        if o.quarantine_burned_in:
            burned = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
            if burned == "YES":
                return "BurnedInAnnotation=YES"
        if o.quarantine_secondary_capture:
            sop_class = str(ds.get("SOPClassUID", "") or "").strip()
            if sop_class in SECONDARY_CAPTURE_CLASSES:
                return f"secondary capture ({UID(sop_class).name})"
            image_type = ds.get("ImageType", None)
            values = [image_type] if isinstance(image_type, str) else list(image_type or [])
            if any(str(v).strip().upper() == "SCREEN SAVE" for v in values):
                return "ImageType contains SCREEN SAVE"
        return None

    # -- main entry points --------------------------------------------------------------------
    def deidentify(self, ds: Dataset, *, collect_mapping: bool = False) -> DeidResult:
        """De-identify ``ds`` in place (in memory) and return the result.

        A quarantined instance is returned unchanged with the reason. Raises
        :class:`NotAnInstanceError` for a data set without SOP Class and Instance UIDs.
        """
        sop_class = str(ds.get("SOPClassUID", "") or "").strip()
        sop_uid = str(ds.get("SOPInstanceUID", "") or "").strip()
        if not sop_class or not sop_uid:
            raise NotAnInstanceError("no SOP Class UID / SOP Instance UID")
        reason = self.quarantine_reason(ds)
        if reason is not None:
            return DeidResult(status="quarantined", reason=reason, sop_class_uid=sop_class)
        run = _Run(self, ds, sop_class, collect_mapping)
        run.execute()
        new_sop = self.uid(sop_uid)
        _finish(ds, self.options, sop_class, new_sop)
        return DeidResult(
            status="deidentified",
            dataset=ds,
            patient_id=run.new_patient_id,
            study_uid=str(ds.get("StudyInstanceUID", "") or "") or None,
            series_uid=str(ds.get("SeriesInstanceUID", "") or "") or None,
            sop_uid=new_sop,
            sop_class_uid=sop_class,
            date_offset_days=run.offset if self.options.retain_modified_dates else None,
            mapping=run.mapping,
        )


def _finish(ds: Dataset, options: DeidOptions, sop_class: str, new_sop: str) -> None:
    """Add the de-identification attributes and replace file meta information and preamble."""
    ds.PatientIdentityRemoved = "YES"
    method = list(options.method_text())
    if DEID_METHOD in ds:
        old = ds[DEID_METHOD].value
        olds = [old] if isinstance(old, str) else list(old or [])
        method = [str(v) for v in olds if str(v).strip() and str(v) not in method] + method
    ds.DeidentificationMethod = method
    items = list(ds[DEID_METHOD_CODES].value) if DEID_METHOD_CODES in ds else []
    have = {(str(i.get("CodeValue", "")), str(i.get("CodingSchemeDesignator", ""))) for i in items}
    for value, meaning in options.method_codes():
        if (value, "DCM") in have:
            continue
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if options.retain_modified_dates:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    elif options.retain_full_dates:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
    old_meta = getattr(ds, "file_meta", None)
    ts = None
    if old_meta is not None:
        ts = old_meta.get("TransferSyntaxUID", None)
    if ts is None:
        ts = _transfer_syntax_of(ds)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(new_sop)
    meta.TransferSyntaxUID = UID(ts)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128


def _transfer_syntax_of(ds: Dataset) -> str:
    implicit, little = ds.original_encoding
    if implicit is None:
        implicit, little = False, True
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


def _elem(tag: int, vr: str, value: object) -> DataElement:
    """A new element built from values this module made (valid by construction)."""
    return DataElement(tag, vr, value, validation_mode=config.IGNORE)


def _concrete_vr(ds: Dataset, tag: int, vr: str) -> str:
    """A single VR for dictionary VRs such as ``US or SS`` (as pydicom resolves them)."""
    if " or " not in vr:
        return vr
    try:
        resolved = ds[tag].VR
    except Exception:
        resolved = vr
    return resolved.split(" or ")[0]


class _Run:
    """De-identification of one instance (state: the patient's identifiers and offset)."""

    def __init__(self, deid: Deidentifier, ds: Dataset, sop_class: str, collect: bool) -> None:
        self.deid = deid
        self.options = deid.options
        self.table = deid.table
        self.ds = ds
        self.sop_class = sop_class
        self.new_patient_id, self.offset = deid.patient(patient_key(ds))
        # Identifying values are gathered during the walk (before each element is changed);
        # kept text is cleaned after it, once all of them are known.
        self.identifiers = Identifiers()
        self.pending_text: list[tuple[Dataset, int, str, bool]] = []
        self.mapping: dict[str, dict[str, str]] | None = None
        if collect:
            self.mapping = {MAP_PATIENT: {}, MAP_ACCESSION: {}, MAP_UID: {}}
        self.original_uids: set[str] = set()
        self.original_dates: set[str] = set()
        self.private_blobs: list[tuple[Dataset, int]] = []
        if self.mapping is not None:
            pk = str(ds.get("PatientID", "") or "").strip()
            if pk:
                self.mapping[MAP_PATIENT][pk] = self.new_patient_id

    def execute(self) -> None:
        self.walk(self.ds, 0, 0)
        self.identifiers.finish()
        if self.pending_text:
            clean = TextCleaner(self.identifiers).clean
            for ds, tag, vr, patterns in self.pending_text:
                self._clean_text_now(ds, tag, vr, patterns, clean)
        if self.private_blobs:
            self._check_private_blobs()

    # -- traversal ----------------------------------------------------------------------------
    def walk(self, ds: Dataset, parent: int, depth: int) -> None:
        for raw in list(ds.values()):
            self.element(ds, raw, parent, depth)

    def element(
        self, ds: Dataset, raw: RawDataElement | DataElement, parent: int, depth: int
    ) -> None:
        btag = raw.tag  # BaseTag: the fastest key for pydicom's own lookups
        tag = int(btag)
        if tag in PIXEL_TAGS:
            return
        vr = raw_vr(raw)
        group = tag >> 16
        if group & 1:
            if self.options.keep_private and group > 0x0008:
                self.private(ds, tag, parent, depth)
            else:
                del ds[btag]
            return
        if (tag & 0xFFFF) == 0 or group < 0x0008:
            # Group lengths (wrong after editing) and command / file meta / directory elements
            # misplaced in a data set (Table E.1-1 lists the identifying ones): none is valid
            # in a stored instance's data set.
            del ds[btag]
            return
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
            # Curves: (50xx,xxxx) X. Overlays: Overlay Data and Comments are X, and an overlay
            # plane without its data is invalid, so the whole overlay group goes.
            del ds[btag]
            return
        if vr == "PN" or vr == "CS" or tag in IDENTITY_TAGS:
            self._note_identifying(ds, raw, tag, vr)
        code = self.table.code_for(tag)
        if code is None:
            self.unlisted(ds, tag, vr, parent, depth)
            return
        action = self.table.resolve(tag, code, self.sop_class, parent)
        if vr == "SQ" and action in ("X", "Z"):
            self._note_removed_sequence(ds, tag)
        if tag == PATIENT_ID and action != "X":
            self._set_patient_id(ds, depth)
            return
        if tag == PATIENT_NAME and depth == 0 and action != "X":
            ds[tag] = _elem(tag, "PN", self.new_patient_id)
            return
        if tag == ACCESSION_NUMBER and action != "X":
            self._set_accession(ds)
            return
        self.apply(ds, tag, vr, action, parent, depth)

    # -- actions ------------------------------------------------------------------------------
    def apply(self, ds: Dataset, tag: int, vr: str, action: str, parent: int, depth: int) -> None:
        if action == "X":
            del ds[tag]
        elif action == "Z":
            self._empty(ds, tag, vr)
        elif action == "D":
            self._dummy(ds, tag, vr, depth)
        elif action == "U":
            if vr == "UI":
                self._remap_uids(ds, tag)
            elif vr == "SQ":
                self._recurse(ds, tag, depth)
            else:
                self._dummy(ds, tag, vr, depth)
        elif action == "K":
            self._keep(ds, tag, vr, depth)
        elif action == "C":
            self._clean(ds, tag, vr, parent, depth)
        else:  # pragma: no cover - resolve() only returns simple codes
            raise ValueError(f"unresolved action {action!r}")

    def unlisted(self, ds: Dataset, tag: int, vr: str, parent: int, depth: int) -> None:
        """Rule for standard attributes that Table E.1-1 does not list (module docstring)."""
        o = self.options
        if vr == "SQ":
            self._recurse(ds, tag, depth)
        elif vr == "PN":
            self._empty(ds, tag, vr)
        elif vr in DATE_VRS:
            if o.retain_modified_dates:
                self._shift_dates(ds, tag, vr)
            elif not o.retain_full_dates:
                self._empty(ds, tag, vr)
        elif vr == "TM":
            if not (o.retain_modified_dates or o.retain_full_dates):
                self._empty(ds, tag, vr)
        elif vr == "UI":
            if not is_class_uid_attribute(tag):
                self._remap_uids(ds, tag)
        elif vr == "AS":
            self._cap_age(ds, tag)
        elif vr in TEXT_VRS:
            self._clean_text(ds, tag, vr, patterns=tag not in CODED_TEXT_TAGS)
        elif vr == "UN":
            del ds[tag]  # unknown standard tag: the content cannot be checked

    def private(self, ds: Dataset, tag: int, parent: int, depth: int) -> None:
        """Keep a private element, cleaned (``keep_private``)."""
        if 0x0010 <= (tag & 0xFFFF) <= 0x00FF:
            return  # private creator
        try:
            elem = ds[tag]
        except Exception:
            del ds[tag]
            return
        vr = elem.VR
        if vr in BINARY_VRS:
            self.private_blobs.append((ds, tag))
        else:
            self.unlisted(ds, tag, vr, parent, depth)

    # -- value operations ---------------------------------------------------------------------
    def _recurse(self, ds: Dataset, tag: int, depth: int) -> None:
        try:
            items = ds[tag].value
        except Exception:
            del ds[tag]
            return
        for item in items or ():
            self.walk(item, tag, depth + 1)

    def _keep(self, ds: Dataset, tag: int, vr: str, depth: int) -> None:
        if vr == "SQ":
            self._recurse(ds, tag, depth)
        elif vr == "AS":
            self._cap_age(ds, tag)

    def _clean(self, ds: Dataset, tag: int, vr: str, parent: int, depth: int) -> None:
        o = self.options
        if vr == "SQ":
            self._recurse(ds, tag, depth)
        elif vr in DATE_VRS:
            if o.retain_modified_dates:
                self._shift_dates(ds, tag, vr)
        elif vr == "TM":
            return  # a whole-day shift keeps the time of day
        elif vr == "AS":
            self._cap_age(ds, tag)
        elif vr == "PN":
            self._empty(ds, tag, vr)
        elif vr == "UI":
            self._remap_uids(ds, tag)
        elif vr in TEXT_VRS:
            self._clean_text(ds, tag, vr, patterns=tag not in CODED_TEXT_TAGS)

    @staticmethod
    def _empty(ds: Dataset, tag: int, vr: str) -> None:
        vr = _concrete_vr(ds, tag, vr)
        if vr == "SQ":
            ds[tag] = _elem(tag, "SQ", Sequence())
        else:
            ds[tag] = _elem(tag, vr, empty_value_for_VR(vr))

    def _dummy(self, ds: Dataset, tag: int, vr: str, depth: int) -> None:
        vr = _concrete_vr(ds, tag, vr)
        if vr == "SQ":
            self._recurse(ds, tag, depth)  # keep the items, every rule applied inside
        elif vr == "UI":
            self._remap_uids(ds, tag)
        elif vr in _DUMMY_TEXT:
            ds[tag] = _elem(tag, vr, _DUMMY_TEXT[vr])
        elif vr in BINARY_VRS:
            ds[tag] = _elem(tag, vr if vr != "UN" else "OB", b"\x00\x00")
        else:
            ds[tag] = _elem(tag, vr, 0)

    @staticmethod
    def _values(ds: Dataset, tag: int, vr: str) -> list[str] | None:
        return string_values(ds, ds.get_item(tag), vr)

    def _remap_uids(self, ds: Dataset, tag: int) -> None:
        values = self._values(ds, tag, "UI")
        if values is None:
            return
        new = []
        for v in values:
            v = v.strip("\x00 ")
            n = self.deid.uid(v)
            if n != v:
                self.original_uids.add(v)
                if self.mapping is not None:
                    self.mapping[MAP_UID][v] = n
            new.append(n)
        if not new:
            return
        ds[tag] = _elem(tag, "UI", new[0] if len(new) == 1 else new)

    def _shift_dates(self, ds: Dataset, tag: int, vr: str) -> None:
        values = self._values(ds, tag, vr)
        if not values:
            return
        joined = "\\".join(v.strip() for v in values)
        try:
            shifted = shift_multi(joined, self.offset, vr)
        except (InvalidDate, OverflowError):
            self._empty(ds, tag, vr)  # an unreadable date cannot be shifted: remove its value
            return
        for v in values:
            if v.strip():
                self.original_dates.add(v.strip()[:8])
        ds[tag] = _elem(tag, vr, shifted)

    def _cap_age(self, ds: Dataset, tag: int) -> None:
        values = self._values(ds, tag, "AS")
        if not values:
            return
        capped = [cap_age(v) for v in values]
        if capped != [v.strip() for v in values]:
            ds[tag] = _elem(tag, "AS", capped[0] if len(capped) == 1 else capped)

    def _clean_text(self, ds: Dataset, tag: int, vr: str, patterns: bool) -> None:
        self.pending_text.append((ds, tag, vr, patterns))

    def _clean_text_now(
        self, ds: Dataset, tag: int, vr: str, patterns: bool, clean: Callable[[str, bool], str]
    ) -> None:
        if tag not in ds:
            return
        values = self._values(ds, tag, vr)
        if values is None:
            del ds[tag]  # undecodable text cannot be checked
            return
        new = [clean(v, patterns) for v in values]
        if new != values:
            ds[tag] = _elem(tag, vr, new[0] if len(new) == 1 else new)

    def _note_identifying(
        self, ds: Dataset, raw: RawDataElement | DataElement, tag: int, vr: str
    ) -> None:
        values = string_values(ds, raw, vr)
        if not values:
            return
        ids = self.identifiers
        if vr == "CS":
            ids.codes.update(v.strip().lower() for v in values)
        elif vr == "PN":
            for v in values:
                ids.add_name(v)
        elif tag == BIRTH_DATE_TAG:
            for v in values:
                ids.add_birth_date(v)
        else:
            for v in values:
                ids.add(v)

    def _note_removed_sequence(self, ds: Dataset, tag: int) -> None:
        """Identifying values inside a sequence that is removed must still be cleaned away."""
        try:
            items = ds[tag].value
        except Exception:
            return
        for item in items or ():
            collect_identifiers(item, self.identifiers)

    def _set_patient_id(self, ds: Dataset, depth: int) -> None:
        if depth == 0:
            ds[PATIENT_ID] = _elem(PATIENT_ID, "LO", self.new_patient_id)
            return
        old = "\\".join(self._values(ds, PATIENT_ID, "LO") or []).strip()
        new = self.deid.patient(old)[0] if old else ""
        ds[PATIENT_ID] = _elem(PATIENT_ID, "LO", new)

    def _set_accession(self, ds: Dataset) -> None:
        old = "\\".join(self._values(ds, ACCESSION_NUMBER, "SH") or []).strip()
        new = self.deid.accession(old) if old else ""
        if old and self.mapping is not None:
            self.mapping[MAP_ACCESSION][old] = new
        ds[ACCESSION_NUMBER] = _elem(ACCESSION_NUMBER, "SH", new)

    def _check_private_blobs(self) -> None:
        """Remove kept binary private values that contain an identifying value."""
        needles: set[bytes] = set()
        for v in self.identifiers.values:
            if len(v) >= 4:
                for enc in ("latin-1", "utf-8", "utf-16-le"):
                    try:
                        needles.add(v.lower().encode(enc))
                    except UnicodeEncodeError:
                        continue
        needles |= {u.encode("ascii") for u in self.original_uids if u}
        needles |= {d.encode("ascii") for d in self.original_dates if len(d) == 8}
        for ds, tag in self.private_blobs:
            if tag not in ds:
                continue
            value = ds[tag].value
            if not isinstance(value, bytes):
                continue
            low = value.lower()
            if any(n in low for n in needles):
                del ds[tag]
