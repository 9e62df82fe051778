"""De-identification of single instances, in memory, on real files and built data sets."""

from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import DicomDictionary, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brainmets.deid import Deidentifier, DeidOptions, NotAnInstanceError
from brainmets.deid.dates import shift_da
from brainmets.ids import date_offset_days, patient_pseudonym, uid_pseudonym

pytest_plugins = ["deid_helpers"]  # shared fixtures (see deid_helpers.py)

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UNKNOWN_TAG = 0x0018FFF0  # an even (standard) group, not in the data dictionary


def read(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def all_text(ds: Dataset) -> str:
    """Every decoded value at any depth (file meta included), for leak searches."""
    parts = [str(e.value) for e in ds.file_meta.iterall()] if hasattr(ds, "file_meta") else []
    for e in ds.iterall():
        if e.tag == 0x7FE00010:
            continue
        value = e.value
        if isinstance(value, bytes):
            parts.append(value.decode("latin-1"))
        elif e.VR != "SQ":
            parts.append(str(value))
    return "\n".join(parts)


def header_bytes(data: bytes, ds: Dataset) -> bytes:
    """File bytes without the Pixel Data value."""
    pixels = ds.get_item(0x7FE00010)
    if pixels is None:
        return data
    return data.replace(ds.PixelData, b"")


def assert_gone(result_bytes: bytes, values: list[str]) -> None:
    ds = pydicom.dcmread(io.BytesIO(result_bytes))
    text = all_text(ds).lower()
    raw = header_bytes(result_bytes, ds).lower()
    for v in values:
        assert v.lower() not in text, f"{v!r} still in a decoded value"
        for enc in ("latin-1", "utf-8"):
            assert v.lower().encode(enc) not in raw, f"{v!r} still in the file bytes ({enc})"


def test_real_mr_every_identifier_gone(mr_overlays: Path, key: bytes) -> None:
    original = read(mr_overlays)
    pixels_md5 = hashlib.md5(original.PixelData).hexdigest()
    result = Deidentifier(key).deidentify(read(mr_overlays))
    assert result.deidentified
    data = result.to_bytes()
    assert_gone(
        data,
        [
            "Sssssss",
            "Jsssss",
            "021234567",
            "8000000000330109",
            "AKH - WIEN",
            "Waehringer",
            "Weißenkirchen",
            "MRC25641",
            "meduser",
            "11111111",
            "MR_2004V_VB11A",  # implementation version name of the original file meta
            str(original.StudyInstanceUID),
            str(original.SeriesInstanceUID),
            str(original.SOPInstanceUID),
            str(original.FrameOfReferenceUID),
        ],
    )
    out = pydicom.dcmread(io.BytesIO(data))
    assert hashlib.md5(out.PixelData).hexdigest() == pixels_md5
    # private elements, overlays, icon removed
    assert not any(e.tag.is_private for e in out.iterall())
    assert not any(0x6000 <= e.tag.group <= 0x60FF for e in out)
    assert "IconImageSequence" not in out
    # pseudonyms
    pid = patient_pseudonym(key, "021234567")
    assert out.PatientID == pid == result.patient_id
    assert str(out.PatientName) == pid
    assert out.StudyInstanceUID == uid_pseudonym(key, original.StudyInstanceUID)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPClassUID == original.SOPClassUID == MR_STORAGE
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert len(out.AccessionNumber) <= 16 and out.AccessionNumber != original.AccessionNumber
    # dates shifted by the patient's offset, times kept
    offset = date_offset_days(key, "021234567")
    assert out.StudyDate == shift_da(original.StudyDate, offset) != original.StudyDate
    assert out.StudyTime == original.StudyTime
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    # descriptors the pipeline needs are kept (Clean Descriptors)
    assert out.SeriesDescription == original.SeriesDescription
    assert out.ProtocolName == original.ProtocolName
    assert out.RepetitionTime == original.RepetitionTime
    # de-identification attributes
    assert out.PatientIdentityRemoved == "YES"
    assert "2024b" in out.DeidentificationMethod[0]
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == [
        "113100",
        "113104",
        "113105",
        "113107",
    ]


def test_nested_references_stay_consistent(mr_overlays: Path, key: bytes) -> None:
    original = read(mr_overlays)
    out = Deidentifier(key).deidentify(read(mr_overlays)).dataset
    assert out is not None
    orig_uids = {
        str(e.value)
        for e in original.iterall()
        if e.VR == "UI" and not str(e.value).startswith("1.2.840.10008")
    }
    mapped = {uid_pseudonym(key, u) for u in orig_uids}
    for e in out.iterall():
        if e.VR == "UI" and not str(e.value).startswith("1.2.840.10008"):
            assert str(e.value) in mapped or e.tag == 0x00020012


def test_secondary_capture_is_quarantined_unless_allowed(ctbrain1: Path, key: bytes) -> None:
    ds = read(ctbrain1)
    before = ds.to_json_dict(bulk_data_threshold=1 << 30)
    result = Deidentifier(key).deidentify(ds)
    assert result.quarantined and result.dataset is None
    assert "secondary capture" in (result.reason or "")
    assert ds.to_json_dict(bulk_data_threshold=1 << 30) == before  # input untouched

    pixels_md5 = hashlib.md5(ds.PixelData).hexdigest()
    options = DeidOptions(quarantine_secondary_capture=False)
    result = Deidentifier(key, options).deidentify(ds)
    assert result.deidentified
    data = result.to_bytes()
    assert_gone(
        data,
        [
            "SIMPSON",
            "HOMER",
            "00007041776",
            "M1212121",
            "999887722",
            "HIBBARD",
            "JULIUS",
            "RIVERIA",
            "SGH SPRINGFIELD GENERAL HOSPITAL",
            "Evergreen Terrace",
            "SGHCT01A",
            "RADIOLOGY1",
            "CCHS",
            "20200704",
            "E^EMER",
            "SyngoWorkflow",
            "example.com",
        ],
    )
    out = pydicom.dcmread(io.BytesIO(data))
    assert hashlib.md5(out.PixelData).hexdigest() == pixels_md5
    # structured / coded content kept (cleaned, not dropped)
    assert out.ProcedureCodeSequence[0].CodeValue == ds.ProcedureCodeSequence[0].CodeValue
    assert out.StudyDescription == "CT BRAIN WO IVCON"


@pytest.mark.parametrize(
    ("attr", "value", "reason"),
    [
        ("BurnedInAnnotation", "YES", "BurnedInAnnotation=YES"),
        ("ImageType", ["DERIVED", "SECONDARY", "SCREEN SAVE"], "SCREEN SAVE"),
    ],
)
def test_burned_in_and_screen_saves_are_quarantined(
    mr_overlays: Path, key: bytes, attr: str, value: object, reason: str
) -> None:
    ds = read(mr_overlays)
    setattr(ds, attr, value)
    result = Deidentifier(key).deidentify(ds)
    assert result.quarantined and reason in (result.reason or "")
    assert ds.PatientName == "Sssssss^Jsssss"


def test_stable_across_runs_and_key_dependent(mr_overlays: Path, key: bytes, other_key: bytes):
    a = Deidentifier(key).deidentify(read(mr_overlays)).to_bytes()
    b = Deidentifier(key).deidentify(read(mr_overlays)).to_bytes()
    assert a == b
    c = Deidentifier(other_key).deidentify(read(mr_overlays))
    da = pydicom.dcmread(io.BytesIO(a))
    assert c.patient_id != da.PatientID
    assert c.study_uid != da.StudyInstanceUID
    assert c.sop_uid != da.SOPInstanceUID
    assert "key" not in repr(Deidentifier(key)).lower() or key.hex() not in repr(Deidentifier(key))


def _built_instance() -> Dataset:
    """A small MR instance exercising nested sequences, UN, curves, group lengths."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MR_STORAGE
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5.6.7"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITALPACS"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = MR_STORAGE
    ds.SOPInstanceUID = "1.2.3.4.5.6.7"
    ds.StudyInstanceUID = "1.2.3.4.5"
    ds.SeriesInstanceUID = "1.2.3.4.5.6"
    ds.FrameOfReferenceUID = "1.2.3.4.9"
    ds.PatientName = "Müller^Jürgen"
    ds.PatientID = "MRN-778899"
    ds.PatientBirthDate = "19400229"
    ds.PatientAge = "095Y"
    ds.StudyDate = "20200110"
    ds.AcquisitionDateTime = "20200110083000.000000+0100"
    ds.StudyDescription = "Brain Müller 10.01.2020 MRN-778899"
    ds.SeriesDescription = "t1_mprage_sag_p2_iso"
    ds.ImageComments = "call 555-123-4567 or jm@example.org"
    ds.Modality = "MR"
    # a standard sequence not in Table E.1-1, three levels deep, with identifying content
    inner = Dataset()
    inner.ObserverType = "PSN"
    inner.PersonName = "Doe^Jane"  # (0040,A123) in a nested SR-like item
    inner.Date = "20200111"
    inner.UID = "1.2.3.4.5.6.7"
    inner.TextValue = "Jürgen Müller seen 2020-01-11"
    middle = Dataset()
    middle.ContentSequence = Sequence([inner])
    middle.ReferencedSOPInstanceUID = "1.2.3.4.5.6.7"
    middle.ReferencedSOPClassUID = MR_STORAGE
    ds.ReferencedInstanceSequence = Sequence([middle])
    ds.add_new(0x00190010, "LO", "ACME PRIVATE")
    ds.add_new(0x00191010, "LO", "MRN-778899")
    ds.add_new(0x50000010, "US", 2)  # curve
    ds.add_new(0x60000010, "US", 16)  # overlay without data
    ds.add_new(0x00080000, "UL", 1234)  # group length
    ds.PixelData = b"\x01\x02" * 8
    ds.Rows, ds.Columns, ds.BitsAllocated = 4, 4, 16
    return ds


def _reparse(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def test_nested_any_depth_and_special_groups(key: bytes) -> None:
    src = _reparse(_built_instance())
    # a standard attribute stored as UN (explicit VR written by a system that did not know it)
    src[0x00081010] = RawDataElement(Tag(0x00081010), "UN", 8, b"SCANNER1", 0, False, True)
    # an unknown standard tag stored as UN: its content cannot be checked
    assert UNKNOWN_TAG not in DicomDictionary
    src[UNKNOWN_TAG] = RawDataElement(Tag(UNKNOWN_TAG), "UN", 4, b"ABCD", 0, False, True)
    result = Deidentifier(key, DeidOptions(retain_patient_characteristics=True)).deidentify(src)
    data = result.to_bytes()
    assert_gone(
        data,
        [
            "Müller",
            "Jürgen",
            "MRN-778899",
            "Doe",
            "Jane",
            "19400229",
            "555-123-4567",
            "example.org",
            "SCANNER1",
            "HOSPITALPACS",
            "1.2.3.4.5.6.7",
            "ACME",
        ],
    )
    out = pydicom.dcmread(io.BytesIO(data))
    assert out.PatientAge == "090Y"  # HIPAA: ages over 89 aggregated
    offset = date_offset_days(key, "MRN-778899")
    item = out.ReferencedInstanceSequence[0].ContentSequence[0]
    assert item.Date == shift_da("20200111", offset)
    assert out.AcquisitionDateTime == shift_da("20200110", offset) + "083000.000000+0100"
    new_sop = uid_pseudonym(key, "1.2.3.4.5.6.7")
    assert item.UID == out.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == new_sop
    assert out.SOPInstanceUID == out.file_meta.MediaStorageSOPInstanceUID == new_sop
    assert out.ReferencedInstanceSequence[0].ReferencedSOPClassUID == MR_STORAGE
    assert "Brain" in out.StudyDescription and "2020" not in out.StudyDescription
    assert out.SeriesDescription == "t1_mprage_sag_p2_iso"
    assert "seen" in item.TextValue  # structured content cleaned, not dropped
    assert not any(e.tag.group in (0x5000, 0x6000) or e.tag.element == 0 for e in out)
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert UNKNOWN_TAG not in out


def test_type1_attributes_are_never_emptied(testdata: Path, key: bytes) -> None:
    from highdicom._standard_utils import (
        get_iod_module_map,
        get_module_attribute_map,
        get_sop_class_iod_map,
    )

    files = [
        next((testdata / "dicom" / "siemens_xa30_t1_enhanced" / "dicom").rglob("*.dcm"), None),
        next((testdata / "dicom" / "ge_hdxt_3d_t1_irspgr_refaced").rglob("*.dcm"), None),
        next((testdata / "dicom" / "philips_elition_3d_t1_mprage").rglob("*.dcm"), None),
    ]
    files = [f for f in files if f is not None]
    if not files:
        pytest.skip("no test files")
    for f in files:
        original = read(f)
        out = Deidentifier(key).deidentify(read(f)).dataset
        assert out is not None
        iod = get_sop_class_iod_map()[str(original.SOPClassUID)]
        type1 = {
            a["keyword"]
            for m in get_iod_module_map()[iod]
            for a in get_module_attribute_map()[m["key"]]
            if a["type"] in ("1", "1C") and not a["path"] and tag_for_keyword(a["keyword"])
        }
        for kw in type1:
            if kw in original and original[kw].value not in (None, "", b""):
                assert kw in out and out[kw].value not in (None, "", b""), (f.name, kw)


def test_not_an_instance_and_bad_keys(key: bytes) -> None:
    with pytest.raises(NotAnInstanceError):
        Deidentifier(key).deidentify(Dataset())
    with pytest.raises(ValueError):
        Deidentifier(b"short")


def test_in_memory_input_is_not_written(tmp_path: Path, mr_overlays: Path, key: bytes):
    before = set(tmp_path.rglob("*"))
    ds = copy.deepcopy(read(mr_overlays))
    ds.SOPInstanceUID = generate_uid()
    Deidentifier(key).deidentify(ds).to_bytes()
    assert set(tmp_path.rglob("*")) == before
