"""Verify a de-identified tree against its original: nothing identifying may survive.

The verifier needs no key and trusts nothing the de-identifier says. It reads both trees:

* from the originals, the identifying values (identity attributes and every person name, see
  :mod:`brainmets.deid.text`), every instance UID and every date, with the MD5 of each
  instance's Pixel Data;
* from every output file, its bytes (Pixel Data excluded: it is never altered and may hold
  any byte pattern) and every decoded value of every element at any depth, private or not.

Findings:

* ``identifier``: an identifying value of any original patient occurs in an output file, in
  any element or in the raw bytes, in ASCII/Latin-1, UTF-8 or UTF-16 encoding,
  case-insensitively (a value of another patient is a leak too);
* ``uid``: an original instance UID occurs in an output file (not remapped);
* ``date``: a date element of an output holds the same non-empty value as the same element
  of its original instance (paired by Pixel Data, or for instances without pixels by
  attributes de-identification keeps: see :func:`pairing_signature`) (not shifted);
* ``pixels``: an output's Pixel Data matches no original's;
* ``attribute``: Patient Identity Removed is not YES, private elements are present,
  Burned In Annotation is YES, or the output is not readable DICOM.

What it could not check is reported too, never skipped in silence (:class:`Unchecked`, in
``VerifyReport.unchecked``): an original that is DICOM but cannot be read completely (cut
off, unreadable: its identifying values are unknown), and a sequence or a text value of an
original or an output that cannot be decoded (its values are not compared; the raw bytes of
an output still are). Files of the original tree that are not DICOM at all are only counted
(``not_dicom``): the de-identifier rejects them, so they have no output.

Messages never show a found value in clear: it is masked (first and last character).
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from brainmets.deid._parallel import parallel_map
from brainmets.deid._vr import DATE_VRS, raw_vr, string_values
from brainmets.deid.engine import (
    ALL_METHOD_CODES,
    DEID_METHOD,
    DEID_METHOD_CODES,
    IMPLEMENTATION_VERSION_NAME,
    DeidOptions,
)
from brainmets.deid.text import IDENTITY_TAGS, Identifiers, collect_identifiers
from brainmets.deid.tree import (
    NoPixelDataError,
    TruncatedError,
    output_files,
    read_instance,
    tree_files,
)
from brainmets.deid.uids import is_class_uid_attribute, is_well_known
from brainmets.fsutil import default_workers
from brainmets.ids import patient_key

PIXEL_DATA = 0x7FE00010
MIN_NEEDLE_LEN = 3
MIN_UID_LEN = 8  # shorter "UIDs" ("1", "1.2.3") are test placeholders, not identifiers
ENCODINGS = ("latin-1", "utf-8", "utf-16-le", "utf-16-be")
DEID_CODES_PATH = f"{DEID_METHOD_CODES:08X}["
TEXT_LIKE_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC", "UR", "PN", "AE", "CS"})


@dataclass(frozen=True)
class Finding:
    """One problem found in the de-identified tree."""

    kind: str  # identifier | uid | date | pixels | attribute
    file: str  # output file, relative to the de-identified root
    detail: str


@dataclass(frozen=True)
class Unchecked:
    """Something the verifier could not check, so the report cannot vouch for it."""

    tree: str  # original | output
    file: str  # relative to that tree's root
    what: str  # "file", or the path of the element (tags, [item] indices)
    reason: str

    def __str__(self) -> str:
        return f"{self.tree} {self.file}: {self.what}: {self.reason}"


@dataclass
class VerifyReport:
    """Result of :func:`verify_tree`; ``ok`` when there is no finding, ``complete`` when
    nothing was left unchecked."""

    originals: int = 0
    outputs: int = 0
    paired: int = 0
    identifiers_checked: int = 0
    uids_checked: int = 0
    not_dicom: int = 0  # files of the original tree that are not DICOM (no output expected)
    findings: list[Finding] = field(default_factory=list)
    unchecked: list[Unchecked] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def complete(self) -> bool:
        return not self.unchecked

    def by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = defaultdict(int)
        for f in self.findings:
            counts[f.kind] += 1
        return dict(counts)


def mask(value: str) -> str:
    """``Simpson`` -> ``S*****n`` (never print an identifying value in clear)."""
    v = value.strip()
    if len(v) <= 2:
        return "*" * len(v)
    return v[0] + "*" * (len(v) - 2) + v[-1]


# -- scanning originals -----------------------------------------------------------------------
@dataclass
class _Original:
    path: str
    patient: str  # the original patient key (Patient ID, or its fallbacks)
    needles: dict[str, str]  # value -> what it is
    codes: set[str]  # Code String values (lower case)
    uids: set[str]
    dates: dict[str, str]  # element path -> DA/DT value
    pixel_md5: str | None
    signature: str  # pairs an original with its output (see pairing_signature)
    unchecked: list[tuple[str, str]]  # (element path, reason)


@dataclass
class _Unreadable:
    """An original that is DICOM but could not be read (``not_dicom``: not DICOM at all)."""

    path: str
    reason: str
    not_dicom: bool = False


Visitor = Callable[[Dataset, "RawDataElement | DataElement", int, str, str], None]


def _walk_values(
    ds: Dataset, prefix: str, visit: Visitor, unchecked: list[tuple[str, str]]
) -> None:
    """Call ``visit(ds, raw, tag, vr, path)`` for every non-sequence element, at any depth;
    a sequence that cannot be decoded goes to ``unchecked`` as ``(path, reason)``."""
    for raw in list(ds.values()):
        tag = int(raw.tag)
        vr = raw_vr(raw)
        path = f"{prefix}{tag:08X}"
        if vr == "SQ":
            try:
                items = ds[tag].value
            except Exception as exc:
                unchecked.append((path, f"sequence cannot be decoded ({type(exc).__name__})"))
                continue
            for i, item in enumerate(items or ()):
                _walk_values(item, f"{path}[{i}].", visit, unchecked)
            continue
        visit(ds, raw, tag, vr, path)


def _undecodable(exc: Exception) -> str:
    # the exception's type only: a message may quote the (identifying) value
    return f"value cannot be decoded ({type(exc).__name__})"


def pixel_md5(ds: Dataset) -> str | None:
    """MD5 of the top-level Pixel Data bytes as stored (None when absent)."""
    if PIXEL_DATA not in ds:
        return None
    value = ds.get_item(PIXEL_DATA).value
    if not isinstance(value, bytes):
        value = ds.PixelData
    return hashlib.md5(value).hexdigest()


def pairing_signature(ds: Dataset, md5: str | None) -> str:
    """What an original and its de-identified output have in common, without the key.

    The MD5 of the Pixel Data (never altered); for instances without pixels, a digest of
    attributes de-identification leaves unchanged (SOP class, modality, series and instance
    numbers, and the times of day, which a whole-day date shift keeps).
    """
    if md5 is not None:
        return f"pixels:{md5}"
    parts = [str(ds.get(k, "") or "") for k in ("SOPClassUID", "Modality")]
    parts += [str(ds.get(k, "") or "") for k in ("SeriesNumber", "InstanceNumber")]
    # sequences are not decoded here (one that cannot be is reported by the element walk)
    elements = (ds[raw.tag] for raw in list(ds.values()) if raw_vr(raw) != "SQ")
    parts += sorted(str(e.value) for e in elements if e.VR == "TM" and e.value)
    return "attrs:" + hashlib.md5("|".join(parts).encode("utf-8", "replace")).hexdigest()


def _scan_original(path_str: str) -> _Original | _Unreadable:
    try:
        ds = read_instance(Path(path_str))
    except InvalidDicomError:
        return _Unreadable(path_str, "not DICOM", not_dicom=True)
    except TruncatedError as exc:
        return _Unreadable(path_str, f"cannot be read completely: {exc}")
    except NoPixelDataError as exc:  # it may end just before its pixels: values may be missing
        return _Unreadable(path_str, f"cannot be checked as a complete instance: {exc}")
    except Exception as exc:
        return _Unreadable(path_str, f"cannot be read ({type(exc).__name__}: {str(exc)[:200]})")
    ids = collect_identifiers(ds, Identifiers())
    needles: dict[str, str] = {}
    for v in ids.values:
        if len(v) >= MIN_NEEDLE_LEN:
            needles[v] = "identifying value"
    uids: set[str] = set()
    dates: dict[str, str] = {}
    unchecked: list[tuple[str, str]] = []

    def visit(d: Dataset, raw: RawDataElement | DataElement, tag: int, vr: str, path: str) -> None:
        public = not tag & 0x10000
        uid = vr == "UI" and not is_class_uid_attribute(tag)
        date = vr in DATE_VRS and public
        # what collect_identifiers reads: a value it cannot decode is an unknown identifier
        identifying = public and (vr == "PN" or tag in IDENTITY_TAGS)
        if not (uid or date or identifying):
            return
        try:
            values = string_values(d, raw, vr, strict=True)
        except Exception as exc:
            unchecked.append((path, _undecodable(exc)))
            return
        if uid:
            for u in values or ():
                u = u.strip("\x00 ")
                if len(u) >= MIN_UID_LEN and not is_well_known(u):
                    uids.add(u)
        elif date and values:
            dates[path] = "\\".join(v.strip() for v in values)

    _walk_values(ds, "", visit, unchecked)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        u = str(meta.get("MediaStorageSOPInstanceUID", "") or "").strip("\x00 ")
        if len(u) >= MIN_UID_LEN and not is_well_known(u):
            uids.add(u)
    md5 = pixel_md5(ds)
    return _Original(
        path_str,
        patient_key(ds),
        needles,
        ids.codes,
        uids,
        dates,
        md5,
        pairing_signature(ds, md5),
        unchecked,
    )


# -- scanning outputs -------------------------------------------------------------------------
@dataclass
class _Output:
    path: str
    patient_id: str | None  # the output's (pseudonymous) Patient ID
    findings: list[Finding]
    hits: set[str]  # identifying values (lower case) of any original found in the file
    dates: dict[str, str]
    pixel_md5: str | None
    signature: str  # pairs an original with its output (see pairing_signature)
    unchecked: list[tuple[str, str]]  # (element path, reason)


@dataclass
class _ScanState:
    root: Path
    allow_private: bool
    needles: dict[str, str]
    needle_regexes: list[re.Pattern[bytes]]
    text_regex: re.Pattern[str] | None
    short_number_regex: re.Pattern[str] | None
    uid_regex: re.Pattern[bytes] | None


_STATE: list[_ScanState] = []  # the current process's state (set by _init_output_scan)


def _init_output_scan(
    root: str,
    needles: dict[str, str],
    uids: set[str],
    allow_private: bool,
) -> None:
    # Short all-digit values (a 4-digit ID) are searched only in text values: as raw bytes
    # they would also match numbers such as a Window Center of 1234.
    everywhere = {k: v for k, v in needles.items() if not (k.isdigit() and len(k) < 6)}
    _STATE[:] = [
        _ScanState(
            root=Path(root),
            allow_private=allow_private,
            needles=needles,
            needle_regexes=_byte_regexes(everywhere),
            text_regex=_text_regex(list(everywhere)),
            short_number_regex=_text_regex([k for k in needles if k not in everywhere]),
            uid_regex=_uid_regex(uids),
        )
    ]


# Token boundaries: a needle must not continue a word; an all-digit needle must not be part
# of a longer number (1234 in 0.1234 or 12345 is not the ID 1234).
_B_WORD = (rb"(?<![a-z0-9])", rb"(?![a-z0-9])")
_B_NUM = (rb"(?<![0-9.+-])", rb"(?![0-9]|\.[0-9])")
_T_WORD = (r"(?<![^\W_])", r"(?![^\W_])")
_T_NUM = (r"(?<![0-9.+-])", r"(?![0-9]|\.[0-9])")


def _byte_regexes(needles: dict[str, str]) -> list[re.Pattern[bytes]]:
    """Case-insensitive regexes (per encoding) matching any needle as a whole token."""
    out = []
    for enc in ENCODINGS:
        for numeric in (False, True):
            alts: set[bytes] = set()
            for n in needles:
                if n.isdigit() != numeric:
                    continue
                try:
                    alts.add(re.escape(n.lower().encode(enc)))
                except UnicodeEncodeError:
                    continue
            if not alts:
                continue
            longest_first: list[bytes] = sorted(alts, key=len, reverse=True)
            body = b"|".join(longest_first)
            if enc.startswith("utf-16"):
                out.append(re.compile(body))
            else:
                left, right = _B_NUM if numeric else _B_WORD
                out.append(re.compile(left + b"(?:" + body + b")" + right))
    return out


def _text_regex(needles: list[str]) -> re.Pattern[str] | None:
    parts = []
    for numeric in (False, True):
        alts = sorted((n for n in needles if n.isdigit() == numeric), key=len, reverse=True)
        if alts:
            left, right = _T_NUM if numeric else _T_WORD
            parts.append(left + "(?:" + "|".join(re.escape(n) for n in alts) + ")" + right)
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _own_text() -> list[bytes]:
    """Text the de-identifier itself writes (method description, code meanings)."""
    values = set(DeidOptions().method_text())
    values |= {meaning for _, meaning in ALL_METHOD_CODES}
    values.add(IMPLEMENTATION_VERSION_NAME)
    return sorted((v.encode("ascii") for v in values), key=len, reverse=True)


def _uid_regex(uids: set[str]) -> re.Pattern[bytes] | None:
    if not uids:
        return None
    body = b"|".join(re.escape(u.encode("ascii", "replace")) for u in sorted(uids, key=len)[::-1])
    return re.compile(rb"(?<![0-9.])(?:" + body + rb")(?![0-9.])")


def _pixel_span(ds: Dataset, size: int) -> tuple[int, int] | None:
    """Byte range of the top-level Pixel Data element in the file (tag to end of value)."""
    if PIXEL_DATA not in ds:
        return None
    raw = ds.get_item(PIXEL_DATA)
    tell = getattr(raw, "value_tell", None)
    if tell is None:
        return None
    value = raw.value if isinstance(raw.value, bytes) else b""
    start = max(0, tell - 12)
    end = tell + len(value) + 8  # encapsulated data ends with a sequence delimiter
    return start, min(end, size)


_OWN_TEXT = _own_text()


def _scan_output(path_str: str) -> _Output:
    state = _STATE[0]
    rel = str(Path(path_str).relative_to(state.root))
    findings: list[Finding] = []
    data = Path(path_str).read_bytes()
    ds: Dataset | None
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, Exception):
        ds = None
        findings.append(Finding("attribute", rel, "not a readable DICOM file"))
    scan = data
    if ds is not None:
        span = _pixel_span(ds, len(data))
        if span is not None:
            scan = data[: span[0]] + b"\x00" + data[span[1] :]
    for own in _OWN_TEXT:
        scan = scan.replace(own, b" ")
    low = scan.lower()
    hits: set[str] = set()
    for rx in state.needle_regexes:
        for m in rx.finditer(low):
            hits.add(_decode_hit(m.group(0)))
    uid_rx = state.uid_regex
    uid_hits = (
        {m.group(0).decode("ascii", "replace") for m in uid_rx.finditer(scan)} if uid_rx else set()
    )
    dates: dict[str, str] = {}
    md5 = None
    patient_id = None
    unchecked: list[tuple[str, str]] = []
    if ds is not None:
        patient_id = str(ds.get("PatientID", "") or "")
        text_rx, short_rx = state.text_regex, state.short_number_regex
        private: list[str] = []

        def visit(
            d: Dataset, raw: RawDataElement | DataElement, tag: int, vr: str, path: str
        ) -> None:
            if tag & 0x10000:
                private.append(path)
            if tag == PIXEL_DATA or vr in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
                return
            if tag == DEID_METHOD or path.startswith(DEID_CODES_PATH):
                return  # the de-identifier's own description
            try:
                values = string_values(d, raw, vr, strict=True)
            except Exception as exc:
                unchecked.append((path, _undecodable(exc)))
                return
            if not values:
                return
            if vr in DATE_VRS and not tag & 0x10000:
                dates[path] = "\\".join(v.strip() for v in values)
            for rx in (text_rx, short_rx if vr in TEXT_LIKE_VRS else None):
                if rx is None:
                    continue
                for v in values:
                    for m in rx.finditer(v):
                        hits.add(m.group(0))

        _walk_values(ds, "", visit, unchecked)
        if private and not state.allow_private:
            findings.append(Finding("attribute", rel, f"{len(private)} private element(s) kept"))
        if str(ds.get("PatientIdentityRemoved", "")).strip().upper() != "YES":
            findings.append(Finding("attribute", rel, "Patient Identity Removed is not YES"))
        if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            findings.append(Finding("attribute", rel, "Burned In Annotation is YES"))
        md5 = pixel_md5(ds)
        signature = pairing_signature(ds, md5)
    else:
        signature = ""
    for u in sorted(uid_hits):
        findings.append(Finding("uid", rel, f"original UID {mask(u)} not remapped"))
    hits_lower = {h.lower() for h in hits}
    return _Output(path_str, patient_id, findings, hits_lower, dates, md5, signature, unchecked)


def _decode_hit(b: bytes) -> str:
    if b"\x00" in b:
        for enc in ("utf-16-le", "utf-16-be"):
            try:
                return b.decode(enc).strip("\x00")
            except UnicodeDecodeError:
                continue
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _init_noop() -> None:
    return None


# -- driver -----------------------------------------------------------------------------------
def verify_tree(
    original: Path,
    deidentified: Path,
    *,
    workers: int | None = None,
    progress: bool = False,
    allow_private: bool = False,
    expect_shifted_dates: bool = True,
) -> VerifyReport:
    """Compare an original tree and its de-identified tree; see the module docstring.

    ``allow_private``: do not report kept private elements (``keep_private`` runs).
    ``expect_shifted_dates``: report dates equal to the original's (modified-dates runs).
    """
    original = Path(original).resolve()
    deidentified = Path(deidentified).resolve()
    n = workers if workers is not None else default_workers()
    orig_files = [str(p) for p in tree_files(original)]
    scanned = parallel_map(
        _scan_original,
        orig_files,
        workers=n,
        initializer=_init_noop,
        initargs=(),
        progress=progress,
        label="reading originals",
    )
    originals = [o for o in scanned if isinstance(o, _Original)]
    unreadable = [o for o in scanned if isinstance(o, _Unreadable)]
    needles: dict[str, str] = {}
    codes: set[str] = set()
    uids: set[str] = set()
    by_signature: dict[str, list[_Original]] = defaultdict(list)
    for o in originals:
        needles.update(o.needles)
        codes |= o.codes
        uids |= o.uids
        by_signature[o.signature].append(o)
    # A value equal to a code string anywhere in the originals (a test patient named "HFS")
    # cannot be told apart from that code in the output.
    needles = {k: v for k, v in needles.items() if k.lower() not in codes}
    pooled = {k.lower() for k in needles}
    out_files = [str(p) for p in output_files(deidentified)]  # without folder mode's marker
    outputs = parallel_map(
        _scan_output,
        out_files,
        workers=n,
        initializer=_init_output_scan,
        initargs=(str(deidentified), needles, uids, allow_private),
        progress=progress,
        label="checking outputs",
    )
    _STATE.clear()
    report = VerifyReport(
        originals=len(originals),
        outputs=len(outputs),
        identifiers_checked=len(needles),
        uids_checked=len(uids),
        not_dicom=sum(1 for u in unreadable if u.not_dicom),
    )
    for u in unreadable:
        if not u.not_dicom:
            rel = str(Path(u.path).relative_to(original))
            report.unchecked.append(Unchecked("original", rel, "file", u.reason))
    for o in originals:
        rel = str(Path(o.path).relative_to(original))
        report.unchecked.extend(Unchecked("original", rel, what, why) for what, why in o.unchecked)
    # Any original's identifying value in any output is a finding, whichever patient it
    # belongs to: a leak across patients is still a leak.
    for out in outputs:
        report.findings.extend(out.findings)
        rel = str(Path(out.path).relative_to(deidentified))
        report.unchecked.extend(Unchecked("output", rel, what, why) for what, why in out.unchecked)
        for hit in sorted(out.hits & pooled):
            report.findings.append(
                Finding("identifier", rel, f"original identifying value {mask(hit)}")
            )
        matches = by_signature.get(out.signature)
        if not matches:
            if out.pixel_md5 is not None:
                report.findings.append(Finding("pixels", rel, "Pixel Data matches no original"))
            continue
        report.paired += 1
        if not expect_shifted_dates:
            continue
        unshifted = set()
        for orig in matches:
            for path, value in out.dates.items():
                if value and orig.dates.get(path) == value:
                    unshifted.add(path)
        for path in sorted(unshifted):
            report.findings.append(Finding("date", rel, f"date element {path} not shifted"))
    return report
