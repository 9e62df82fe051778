"""The verifier reports what it could not check (and fails unless told to accept it)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from bm_testutil import run_cli
from brainmets.deid import verify_tree
from brainmets.deid.cli import run_verify
from brainmets.deid.tree import TruncatedError, read_instance

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
CONTENT_SEQUENCE = 0x0040A730
# a sequence value pydicom cannot parse (3 bytes: not even an item tag)
BROKEN_SEQUENCE = (
    struct.pack("<HH", 0x0040, 0xA730) + b"UN\x00\x00" + struct.pack("<I", 3) + b"\xfe\xff\x00"
)


def _instance(patient_name: str, patient_id: str, uid_root: str, study_date: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = f"{uid_root}.3.1"
    ds.StudyInstanceUID = f"{uid_root}.1"
    ds.SeriesInstanceUID = f"{uid_root}.2"
    ds.Modality = "SR"
    ds.SeriesNumber = 7
    ds.InstanceNumber = 1
    ds.StudyDate = study_date
    ds.StudyTime = "101500"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    return ds


def _write(ds: Dataset, path: Path, tail: bytes = b"") -> Path:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue() + tail)
    return path


def _trees(tmp_path: Path, broken: bool) -> tuple[Path, Path]:
    """An original tree and a de-identified-looking copy; ``broken``: with an undecodable
    sequence in both and an original cut off in the middle of its last element."""
    orig, out = tmp_path / "orig", tmp_path / "out"
    tail = BROKEN_SEQUENCE if broken else b""
    original = _instance("Quimby^Harold", "QH123456", "1.2.826.0.1.3680043.99.1", "20200101")
    _write(original, orig / "p1" / "a.dcm", tail)
    deid = _instance("", "BM-7K2Q9", "2.25.1111111111", "20190417")
    deid.PatientIdentityRemoved = "YES"
    _write(deid, out / "BM-7K2Q9" / "a.dcm", tail)
    (orig / "notes.txt").write_text("not a DICOM file")
    if broken:
        cut = _instance("Quimby^Harold", "QH123456", "1.2.826.0.1.3680043.99.2", "20200101")
        cut.add_new(0x00420011, "OB", b"\x01" * 2000)  # Encapsulated Document
        data = _write(cut, tmp_path / "whole.dcm").read_bytes()
        (orig / "p1" / "cut.dcm").write_bytes(data[:-1000])
    return orig, out


def test_the_broken_files_are_what_they_claim(tmp_path: Path) -> None:
    orig, out = _trees(tmp_path, broken=True)
    with pytest.raises(TruncatedError):
        read_instance(orig / "p1" / "cut.dcm")
    ds = pydicom.dcmread(out / "BM-7K2Q9" / "a.dcm")
    with pytest.raises(Exception):  # noqa: B017 - whatever pydicom raises
        _ = ds[CONTENT_SEQUENCE].value


def test_a_clean_pair_of_trees_is_complete(tmp_path: Path) -> None:
    orig, out = _trees(tmp_path, broken=False)
    report = verify_tree(orig, out, workers=1)
    assert report.ok and report.complete, (report.findings, report.unchecked)
    assert (report.originals, report.outputs, report.paired, report.not_dicom) == (1, 1, 1, 1)
    assert run_verify(orig, out) == 0


def test_unreadable_original_and_undecodable_sequence_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    orig, out = _trees(tmp_path, broken=True)
    report = verify_tree(orig, out, workers=1)
    assert report.ok, report.findings  # nothing leaked in what could be checked
    assert not report.complete
    got = {(u.tree, u.file, u.what) for u in report.unchecked}
    assert got == {
        ("original", "p1/cut.dcm", "file"),
        ("original", "p1/a.dcm", f"{CONTENT_SEQUENCE:08X}"),
        ("output", "BM-7K2Q9/a.dcm", f"{CONTENT_SEQUENCE:08X}"),
    }
    reasons = {u.file: u.reason for u in report.unchecked if u.what == "file"}
    assert reasons["p1/cut.dcm"].startswith("cannot be read completely")
    assert all(
        "sequence cannot be decoded" in u.reason for u in report.unchecked if u.what != "file"
    )
    assert report.not_dicom == 1  # notes.txt: counted, not "unchecked"
    assert report.originals == 1  # the cut-off file is not counted as read

    capsys.readouterr()
    assert run_verify(orig, out) == 1
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert "could not check" in text and "p1/cut.dcm" in text and "0040A730" in text
    assert "--allow-unchecked" in text
    assert run_verify(orig, out, allow_unchecked=True) == 0
    printed = capsys.readouterr()
    assert "p1/cut.dcm" in printed.out + printed.err  # still listed
    assert "Quimby" not in printed.out + printed.err


def test_command_line_exit_codes(tmp_path: Path) -> None:
    orig, out = _trees(tmp_path, broken=True)
    r = run_cli("deid", "verify", str(orig), str(out))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "could not check" in r.stdout and "p1/cut.dcm" in r.stdout
    r = run_cli("deid", "verify", str(orig), str(out), "--allow-unchecked")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "could not check" in r.stdout
