"""Property-based fuzzing of the DICOM path: mutated real headers through folder-mode
de-identification (the code ``brainmets deid`` and the ``deid`` stage run).

Properties, for every generated batch of files:

* no unhandled exception;
* every input is accounted for: de-identified, quarantined or rejected, with a reason for
  the last two (``total == deidentified + quarantined + rejected``);
* no output holds a planted identifying value (names, IDs, institution, in Latin-1, UTF-8
  or UTF-16) that its input still declares as identifying, wherever the mutation put copies
  of it: identity attributes, person names at any depth, free-text descriptors and
  comments, private elements, text in sequences;
* the only DICOM files written are the de-identified outputs the report names.

CI runs a fixed number of examples with a fixed seed (``BRAINMETS_FUZZ_EXAMPLES``, default
200); for a longer run with fresh randomness::

    BRAINMETS_FUZZ_EXAMPLES=3000 BRAINMETS_FUZZ_RANDOM=1 \\
        .venv/bin/pytest -q tests/deid/test_fuzz_dicom.py
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from brainmets.deid import deidentify_tree  # noqa: E402
from brainmets.deid.text import collect_identifiers  # noqa: E402
from brainmets.deid.tree import DEIDENTIFIED, QUARANTINED, REJECTED  # noqa: E402

EXAMPLES = int(os.environ.get("BRAINMETS_FUZZ_EXAMPLES", "200"))
RANDOM = os.environ.get("BRAINMETS_FUZZ_RANDOM", "") not in ("", "0")
KEY = bytes(range(32))

#: planted identifying values (each a whole token, so cleaning can find it)
NAME = "Quixotlova^Zebediah"
MRN = "MRNFZ77123"
INSTITUTION = "Saint Fuzzington Hospital"
#: what must never reach an output: a person name's components, the ID, the institution's
#: value (as a whole: its single words, like "Hospital", are not identifying by the rules of
#: brainmets.deid.text)
NEEDLES = ("quixotlova", "zebediah", "mrnfz77123", "saint fuzzington hospital")

#: where a mutation may copy an identifying value: places the profile must clean or remove
TEXT_TARGETS = (
    "StudyDescription",
    "SeriesDescription",
    "ImageComments",
    "AdditionalPatientHistory",
    "PatientComments",
    "RequestingPhysician",
    "PerformingPhysicianName",
    "OperatorsName",
    "ReferringPhysicianName",
    "InstitutionAddress",
    "StationName",
    "DeviceSerialNumber",
    "OtherPatientIDs",
    "ProtocolName",
)


def _seed_files() -> list[bytes]:
    from brainmets.shared import testdata_dir

    hfs = testdata_dir() / "dicom" / "siemens_prisma_t1_fl2d_patient_position" / "dicom" / "HFS"
    if not hfs.is_dir():
        return []
    series = next(d for d in sorted(hfs.iterdir()) if d.is_dir())
    out = []
    for f in sorted(series.glob("*.dcm"))[:3]:
        ds = pydicom.dcmread(f)
        ds.PatientName = NAME
        ds.PatientID = MRN
        ds.InstitutionName = INSTITUTION
        ds.PixelData = ds.PixelData[: 2 * 16 * 16]  # small images keep the examples fast
        ds.Rows = ds.Columns = 16
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_files()
pytestmark = pytest.mark.skipif(not SEEDS, reason="shared DICOM test data not found")

# ---------------------------------------------------------------- mutations
texts = st.one_of(
    st.text(max_size=80),
    st.sampled_from([NAME, MRN, INSTITUTION, f"scan of {NAME} at {INSTITUTION}",
                     f"{MRN}/{NAME}", "", " ", "\x00", "\\\\", "^^^^", "=" * 70]),
)  # fmt: skip


@st.composite
def header_mutation(draw: st.DrawFn) -> tuple:
    kind = draw(
        st.sampled_from(
            [
                "copy_identifier",
                "set_text",
                "delete",
                "private",
                "sequence",
                "bad_date",
                "bad_uid",
                "wrong_vr_value",
                "huge_value",
            ]
        )
    )
    return (kind, draw(st.sampled_from(TEXT_TARGETS)), draw(texts), draw(st.integers(0, 10**6)))


def apply(ds: Dataset, mutation: tuple) -> None:
    kind, target, text, n = mutation
    if kind == "copy_identifier":
        setattr(ds, target, [NAME, MRN, INSTITUTION][n % 3])
    elif kind == "set_text":
        setattr(ds, target, text)
    elif kind == "delete":
        keys = [e.tag for e in ds if e.tag != 0x7FE00010]
        if keys:
            del ds[keys[n % len(keys)]]
    elif kind == "private":
        block = ds.private_block(0x0009 + 2 * (n % 50), "FUZZ CREATOR", create=True)
        block.add_new(n % 256, "LO", f"{text} {NAME}"[:64])
    elif kind == "sequence":
        item = Dataset()
        item.PatientName = NAME
        item.PatientID = MRN
        item.TextValue = f"{text} {INSTITUTION}"
        inner = Dataset()
        inner.PersonName = NAME
        item.ContentSequence = Sequence([inner])
        seq = ["ReferencedPatientSequence", "RequestAttributesSequence", "OtherPatientIDsSequence"]
        setattr(ds, seq[n % 3], Sequence([item]))
    elif kind == "bad_date":
        setattr(ds, ["StudyDate", "SeriesDate", "PatientBirthDate", "AcquisitionDateTime"][n % 4],
                ["20231399", "abcd", "", "1", "99999999999999999"][n % 5])  # fmt: skip
    elif kind == "bad_uid":
        setattr(ds, ["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"][n % 3],
                ["", "not-a-uid", "1." * 40, "1.2.3"][n % 4])  # fmt: skip
    elif kind == "wrong_vr_value":
        setattr(ds, ["Rows", "EchoTime", "SliceThickness", "PatientAge"][n % 4],
                ["x", "1e999", "-0", "999Y"][n % 4])  # fmt: skip
    elif kind == "huge_value":
        ds.ImageComments = (text + " ") * 200 + NAME


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    seed = SEEDS[draw(st.integers(0, len(SEEDS) - 1))]
    ds = pydicom.dcmread(io.BytesIO(seed))
    for m in draw(st.lists(header_mutation(), min_size=0, max_size=4)):
        # pydicom refusing the mutation itself is not a case to test
        with contextlib.suppress(ValueError, TypeError, OverflowError, KeyError):
            apply(ds, m)
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=False)
    except Exception:
        buf = io.BytesIO(seed)
    data = buf.getvalue()
    how = draw(st.sampled_from(["as is", "as is", "truncate", "flip", "garbage"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif how == "flip":
        i = draw(st.integers(0, max(0, min(len(data), 4096) - 1)))
        data = data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    elif how == "garbage":
        data = draw(st.binary(max_size=300))
    return data


def _active_needles(path: Path) -> list[str]:
    """The planted values the input still declares as identifying (identity attributes and
    person names at any depth, :func:`brainmets.deid.text.collect_identifiers`): a value a
    mutation removed from every such place is, for this instance, just text."""
    try:
        ds = pydicom.dcmread(path, force=True)
        values = [v.lower() for v in collect_identifiers(ds).values]
    except Exception:
        return list(NEEDLES)  # unreadable input: nothing of it may reach an output
    return [n for n in NEEDLES if any(n in v for v in values)]


def _leaks(path: Path, needles: list[str]) -> list[str]:
    """Each of ``needles`` found in the output ``path`` as a whole token (bounded by
    non-alphanumeric characters: the unit in which brainmets.deid.text removes identifying
    values), in Latin-1 / UTF-8 or UTF-16 text, with the elements that hold it."""
    data = path.read_bytes()
    texts = {
        "latin-1/utf-8": data.decode("latin-1"),
        "utf-16": data.decode("utf-16-le", errors="replace"),
        "utf-16 (odd)": data[1:].decode("utf-16-le", errors="replace"),
    }
    found = []
    for v in needles:
        token = re.compile(rf"(?<![a-z0-9]){re.escape(v)}(?![a-z0-9])", re.IGNORECASE)
        for enc, text in texts.items():
            if token.search(text):
                found.append(f"{path.name}: {v} ({enc}) in {_holders(path, v)}")
    return found


def _holders(path: Path, needle: str) -> list[str]:
    try:
        ds = pydicom.dcmread(path, force=True)
        return [
            f"{e.tag} {e.keyword or 'private'} {e.VR} {str(e.value)[:80]!r}"
            for e in ds.iterall()
            if needle in str(e.value).lower()
            or (isinstance(e.value, bytes) and needle.encode() in e.value.lower())
        ]
    except Exception as exc:
        return [f"unreadable: {exc}"]


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(file_bytes(), min_size=1, max_size=3))
def test_mutated_headers_never_crash_never_leak_and_are_all_accounted_for(
    files: list[bytes],
) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bm-fuzz-"))
    try:
        src, dst = tmp / "in", tmp / "out"
        src.mkdir()
        for i, data in enumerate(files):
            (src / f"f{i:02d}.dcm").write_bytes(data)
        report = deidentify_tree(src, dst, KEY, workers=1, progress=False)
        assert report.total == len(files)
        assert report.deidentified + report.quarantined + report.rejected == len(files)
        assert len(report.outcomes) == len(files)
        for o in report.outcomes:
            assert o.status in (DEIDENTIFIED, QUARANTINED, REJECTED)
            if o.status != DEIDENTIFIED:
                assert o.reason, o
        leaks = []
        for o in report.outcomes:
            if o.status == DEIDENTIFIED and o.output:
                leaks += _leaks(dst / o.output, _active_needles(src / o.source))
        if leaks and os.environ.get("BRAINMETS_FUZZ_KEEP"):  # keep the inputs to debug
            shutil.copytree(src, Path(os.environ["BRAINMETS_FUZZ_KEEP"]), dirs_exist_ok=True)
        assert not leaks, leaks
        written = {p for p in dst.rglob("*") if p.is_file() and p.suffix == ".dcm"}
        assert written == {dst / o.output for o in report.outcomes if o.output and
                           o.status == DEIDENTIFIED}  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
