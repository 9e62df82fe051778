"""Folder mode, batches, the verifier (including that it fails on planted leaks), the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from deid_helpers import copy_files

from brainmets.deid import DeidOptions, deidentify_tree, verify_tree
from brainmets.deid.cli import deid_folder, run_verify
from brainmets.fsutil import TMP_PREFIX
from brainmets.ids import patient_pseudonym

pytest_plugins = ["deid_helpers"]  # shared fixtures (see deid_helpers.py)

DCM2NIIX = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "dcm2niix"


def dicom_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix != ".txt")


@pytest.fixture
def source_tree(tmp_path: Path, prisma_hfs: Path, prisma_hfp: Path, mr_overlays: Path) -> Path:
    src = tmp_path / "src"
    copy_files(dicom_files(prisma_hfs)[:12], src / "patient1" / "hfs")
    copy_files(dicom_files(prisma_hfp)[:6], src / "patient1" / "hfp")
    copy_files([mr_overlays], src / "patient2")
    shot = pydicom.dcmread(mr_overlays)
    shot.BurnedInAnnotation = "YES"
    shot.SOPInstanceUID = shot.SOPInstanceUID + ".7"
    shot.save_as(src / "patient2" / "burned.dcm")
    (src / "notes.txt").write_text("not a DICOM file")
    good = dicom_files(prisma_hfs)[0].read_bytes()
    (src / "truncated.dcm").write_bytes(good[: len(good) // 2])
    return src


def test_folder_mode_accounts_for_every_file_and_verifies(
    tmp_path: Path, source_tree: Path, key: bytes
) -> None:
    dst, quarantine = tmp_path / "out", tmp_path / "quarantine"
    report = deidentify_tree(
        source_tree, dst, key, workers=2, quarantine_dir=quarantine, progress=False
    )
    n_inputs = sum(1 for p in source_tree.rglob("*") if p.is_file())
    assert report.total == n_inputs == 22
    assert report.consistent
    assert (report.deidentified, report.quarantined, report.rejected) == (19, 1, 2)
    assert report.reasons("quarantined") == {"BurnedInAnnotation=YES": 1}
    rejected = set(report.reasons("rejected"))
    assert "not DICOM" in rejected
    assert any(r.startswith(("truncated", "image without")) for r in rejected)
    outputs = sorted(p for p in dst.rglob("*") if p.is_file())
    assert len(outputs) == 19
    assert not list(dst.rglob(f"{TMP_PREFIX}*"))
    for p in outputs:  # dst/<patient>/<study>/<series>/<sop>.dcm, all pseudonyms
        rel = p.relative_to(dst).parts
        assert len(rel) == 4 and rel[0].startswith("BM-") and rel[1].startswith("2.25.")
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert rel[3] == f"{ds.SOPInstanceUID}.dcm" and rel[0] == ds.PatientID
    assert len(report.patients) == 2 and len(report.studies) == 3
    assert patient_pseudonym(key, "crlab") in report.patients
    quarantined = [p for p in quarantine.iterdir() if p.suffix == ".dcm"]
    assert len(quarantined) == 1 and (quarantine / "quarantine.csv").is_file()
    # the verifier finds nothing
    check = verify_tree(source_tree, dst, workers=2)
    assert check.ok, check.findings[:5]
    assert check.paired == 19 and check.identifiers_checked > 10 and check.uids_checked > 30


def test_dates_shift_consistently_per_patient(tmp_path: Path, source_tree: Path, key: bytes):
    dst = tmp_path / "out"
    deidentify_tree(source_tree, dst, key, workers=1, progress=False)

    def study_dates(root: Path, patient_id: str) -> dict[str, str]:
        out = {}
        for p in root.rglob("*.dcm"):
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:
                continue
            if ds.get("PatientID") == patient_id and "BurnedInAnnotation" not in ds:
                out[str(ds.SeriesNumber)] = str(ds.AcquisitionDate) + str(ds.AcquisitionTime)
        return out

    def as_dt(v: str) -> dt.datetime:
        return dt.datetime.strptime(v[:14], "%Y%m%d%H%M%S")

    before = study_dates(source_tree / "patient1", "crlab")
    after = study_dates(dst, patient_pseudonym(key, "crlab"))
    assert before.keys() == after.keys() and len(before) == 2
    a, b = sorted(before)
    assert as_dt(after[b]) - as_dt(after[a]) == as_dt(before[b]) - as_dt(before[a])
    assert after[a] != before[a]


def test_two_batches_give_the_same_pseudonyms(tmp_path: Path, prisma_hfs: Path, key: bytes):
    files = dicom_files(prisma_hfs)[:10]
    copy_files(files[:5], tmp_path / "batch1")
    copy_files(files[5:], tmp_path / "batch2")
    copy_files(files, tmp_path / "all")
    r1 = deidentify_tree(tmp_path / "batch1", tmp_path / "o1", key, workers=1, progress=False)
    r2 = deidentify_tree(tmp_path / "batch2", tmp_path / "o2", key, workers=2, progress=False)
    r3 = deidentify_tree(tmp_path / "all", tmp_path / "o3", key, workers=2, progress=False)
    assert r1.patients == r2.patients == r3.patients
    assert r1.studies == r2.studies and r1.series == r2.series
    names = {p.relative_to(tmp_path / "o1") for p in (tmp_path / "o1").rglob("*.dcm")}
    names |= {p.relative_to(tmp_path / "o2") for p in (tmp_path / "o2").rglob("*.dcm")}
    assert names == {p.relative_to(tmp_path / "o3") for p in (tmp_path / "o3").rglob("*.dcm")}
    for rel in names:  # byte-identical across runs and batches
        other = tmp_path / "o1" / rel if (tmp_path / "o1" / rel).exists() else tmp_path / "o2" / rel
        assert (tmp_path / "o3" / rel).read_bytes() == other.read_bytes()


def test_verifier_fails_on_planted_leaks(tmp_path: Path, source_tree: Path, key: bytes) -> None:
    dst = tmp_path / "out"
    deidentify_tree(source_tree, dst, key, workers=1, progress=False)
    original = pydicom.dcmread(dicom_files(source_tree / "patient1" / "hfs")[0])
    target = next(
        p for p in sorted(dst.rglob("*.dcm")) if pydicom.dcmread(p).PatientID.startswith("BM-")
    )
    out = pydicom.dcmread(dicom_files(dst)[0])
    for p in sorted(dst.rglob("*.dcm")):
        ds = pydicom.dcmread(p)
        if ds.SeriesDescription == original.SeriesDescription:
            target, out = p, ds
            break
    md5 = hashlib.md5(out.PixelData).hexdigest()
    # an identifying value in a kept descriptor, in UTF-16 inside a private blob,
    # an original UID, an unshifted date, and the de-identification flag reset
    out.SeriesDescription = f"t1 {original.InstitutionName}"
    out.add_new(0x00290010, "LO", "LEAKY")
    out.add_new(0x00291010, "OB", str(original.PatientID).encode("utf-16-le"))
    out.add_new(0x00291011, "UN", str(original.StudyInstanceUID).encode("ascii"))
    out.ContentDate = original.ContentDate
    out.PatientIdentityRemoved = "NO"
    out.save_as(target)
    assert hashlib.md5(pydicom.dcmread(target).PixelData).hexdigest() == md5
    report = verify_tree(source_tree, dst, workers=1)
    assert not report.ok
    kinds = report.by_kind()
    assert kinds.get("identifier", 0) >= 2  # institution name, patient ID (UTF-16)
    assert kinds.get("uid", 0) >= 1 and kinds.get("date", 0) >= 1
    assert kinds.get("attribute", 0) >= 2  # private elements, identity-removed flag
    assert all(original.PatientID not in f.detail for f in report.findings)  # masked
    assert run_verify(source_tree, dst) == 1


def test_cli_functions_exit_codes_and_mapping(
    tmp_path: Path, prisma_hfs: Path, key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    src = copy_files(dicom_files(prisma_hfs)[:4], tmp_path / "src")
    key_file = tmp_path / "deid.key"
    key_file.write_bytes(key)
    os.chmod(key_file, 0o600)
    mapping = tmp_path / "mapping"
    assert deid_folder(src, tmp_path / "out", key_file, 2, mapping) == 0
    with open(mapping / "uid_mapping.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["id_old", "id_new"] and len(rows) > 4
    assert all(new.startswith("2.25.") for _, new in rows[1:])
    with open(mapping / "patient_id_mapping.csv", newline="") as fh:
        assert list(csv.reader(fh))[1] == ["crlab", patient_pseudonym(key, "crlab")]
    assert os.stat(mapping / "uid_mapping.csv").st_mode & 0o077 == 0
    assert deid_folder(src, tmp_path / "out2", key_file, 1, tmp_path / "all.csv") == 0
    assert (tmp_path / "all.csv").read_text().startswith("id_old,id_new\n")
    assert run_verify(src, tmp_path / "out") == 0
    printed = capsys.readouterr()
    assert key.hex() not in printed.out + printed.err
    os.chmod(key_file, 0o644)
    assert deid_folder(src, tmp_path / "out3", key_file, 1, None) == 3
    assert not (tmp_path / "out3").exists()


def test_output_converts_with_dcm2niix(tmp_path: Path, prisma_hfs: Path, key: bytes) -> None:
    if not DCM2NIIX.exists() and shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix not installed")
    exe = str(DCM2NIIX) if DCM2NIIX.exists() else "dcm2niix"
    nib = pytest.importorskip("nibabel")
    dst = tmp_path / "out"
    deidentify_tree(prisma_hfs, dst, key, workers=2, progress=False)
    images = {}
    for name, folder in (("orig", prisma_hfs), ("deid", dst)):
        out = tmp_path / f"nii_{name}"
        out.mkdir()
        subprocess.run(
            [exe, "-b", "y", "-z", "n", "-f", "%p_%s", "-o", str(out), str(folder)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        (nii,) = out.glob("*.nii")
        img = nib.load(nii)
        images[name] = (np.asarray(img.dataobj), img.affine)
    assert np.array_equal(images["orig"][0], images["deid"][0])
    assert np.allclose(images["orig"][1], images["deid"][1])


def test_options_change_the_output(tmp_path: Path, prisma_hfs: Path, key: bytes) -> None:
    src = copy_files(dicom_files(prisma_hfs)[:2], tmp_path / "src")
    opts = DeidOptions(keep_private=True, min_offset_days=-10, max_offset_days=-10)
    deidentify_tree(src, tmp_path / "out", key, options=opts, workers=1, progress=False)
    out = pydicom.dcmread(next((tmp_path / "out").rglob("*.dcm")))
    orig = pydicom.dcmread(dicom_files(src)[0])
    assert any(e.tag.is_private for e in out)  # kept, cleaned
    shifted = dt.datetime.strptime(out.StudyDate, "%Y%m%d")
    assert dt.datetime.strptime(orig.StudyDate, "%Y%m%d") - shifted == dt.timedelta(days=10)
    assert "113111" in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    report = verify_tree(src, tmp_path / "out", allow_private=True)
    assert report.ok, report.findings[:5]
