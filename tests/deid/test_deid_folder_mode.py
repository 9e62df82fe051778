"""Folder mode (`brainmets deid IN OUT --key K`) names every file it did not de-identify, says
why in words that fit, refuses an output folder made with another key, and reads the key
file as the workspace does (issue 18)."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pydicom
import pytest
from deid_helpers import copy_files
from typer.testing import CliRunner

from bm_testutil import run_cli
from brainmets.cli import app
from brainmets.deid import verify_tree
from brainmets.deid.cli import REPORT_COLUMNS, default_report_path, deid_folder
from brainmets.deid.tree import OUTPUT_MARKER
from brainmets.ids import key_fingerprint

pytest_plugins = ["deid_helpers"]  # shared fixtures (see deid_helpers.py)


def _key_file(path: Path, key: bytes) -> Path:
    path.write_bytes(key)
    os.chmod(path, 0o600)
    return path


def _series(prisma_hfs: Path, n: int) -> list[Path]:
    return sorted(p for p in prisma_hfs.iterdir() if p.is_file())[:n]


@pytest.fixture
def mixed_tree(tmp_path: Path, prisma_hfs: Path) -> Path:
    """Three good MR files and a copy of one, a text file, a file cut in half, an intact MR
    file without Pixel Data, and a burned-in one."""
    src = tmp_path / "in"
    files = _series(prisma_hfs, 3)
    copy_files(files, src / "good")
    shutil.copy(files[0], src / "good" / "copy.dcm")
    (src / "notes.txt").write_text("not a DICOM file")
    data = files[1].read_bytes()
    (src / "truncated.dcm").write_bytes(data[: len(data) // 2])
    ds = pydicom.dcmread(files[2])
    del ds.PixelData
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.save_as(src / "nopixels.dcm")
    ds = pydicom.dcmread(files[2])
    ds.BurnedInAnnotation = "YES"
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".7"
    ds.save_as(src / "burned.dcm")
    return src


def _read_report(path: Path) -> dict[str, dict[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == REPORT_COLUMNS == ["input", "outcome", "reason", "output"]
        return {row["input"]: row for row in reader}


def test_rejected_and_quarantined_files_are_named_and_fail_the_command(
    tmp_path: Path, mixed_tree: Path, key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = deid_folder(mixed_tree, out, _key_file(tmp_path / "k", key), 1, None)
    assert rc == 1
    report = default_report_path(out)
    assert report == tmp_path / "out.deid-report.csv"  # beside OUT, not in it
    assert os.stat(report).st_mode & 0o077 == 0  # it names the input files
    rows = _read_report(report)
    n_inputs = sum(1 for p in mixed_tree.rglob("*") if p.is_file())
    assert len(rows) == n_inputs == 8
    assert rows["notes.txt"]["outcome"] == "rejected" and rows["notes.txt"]["reason"] == "not DICOM"
    assert rows["truncated.dcm"]["outcome"] == "rejected"
    assert rows["truncated.dcm"]["reason"].startswith("truncated")
    assert rows["burned.dcm"]["outcome"] == "quarantined"
    assert rows["burned.dcm"]["reason"] == "BurnedInAnnotation=YES"
    nopix = rows["nopixels.dcm"]
    assert nopix["outcome"] == "rejected"
    assert nopix["reason"].startswith("no Pixel Data (7FE0,0010) in an image instance (MR Image")
    assert "truncated" not in nopix["reason"] and "incomplete" not in nopix["reason"]
    for name in ("notes.txt", "truncated.dcm", "burned.dcm", "nopixels.dcm"):
        assert rows[name]["output"] == ""
    good = [r for r in rows.values() if r["outcome"] == "deidentified"]
    assert len(good) == 4
    for r in good:
        assert r["input"].startswith("good/") and (out / r["output"]).is_file()
        assert r["output"].startswith("BM-")
    assert rows["good/copy.dcm"]["reason"].startswith("duplicate: the same instance as good/")
    first = next(r for name, r in rows.items() if name.startswith("good/0000_"))
    assert rows["good/copy.dcm"]["output"] == first["output"]  # the copy of files[0]
    printed = " ".join(capsys.readouterr().err.split())
    for name in ("notes.txt", "truncated.dcm", "burned.dcm", "nopixels.dcm"):
        assert name in printed
    assert "4 of 8 file(s) not de-identified (1 quarantined, 3 rejected)" in printed
    assert str(report) in printed
    # verify does not take the intact file without pixels for a cut-off one either
    check = verify_tree(mixed_tree, out, workers=1)
    reasons = {u.file: u.reason for u in check.unchecked if u.what == "file"}
    assert "no Pixel Data (7FE0,0010)" in reasons["nopixels.dcm"]
    assert "truncated" not in reasons["nopixels.dcm"]


def test_a_clean_tree_exits_0_with_a_complete_report(
    tmp_path: Path, prisma_hfs: Path, key: bytes
) -> None:
    src = copy_files(_series(prisma_hfs, 2), tmp_path / "in")
    report = tmp_path / "reports" / "r.json"
    kf = _key_file(tmp_path / "k", key)
    assert deid_folder(src, tmp_path / "out", kf, 1, None, report_path=report) == 0
    rows = json.loads(report.read_text())
    assert [r["outcome"] for r in rows] == ["deidentified"] * 2
    assert sorted(r["input"] for r in rows) == sorted(p.name for p in src.iterdir())
    assert all((tmp_path / "out" / r["output"]).is_file() and r["reason"] == "" for r in rows)


def test_a_report_inside_the_output_is_refused(tmp_path: Path, prisma_hfs: Path, key: bytes):
    src = copy_files(_series(prisma_hfs, 1), tmp_path / "in")
    out = tmp_path / "out"
    kf = _key_file(tmp_path / "k", key)
    assert deid_folder(src, out, kf, 1, None, report_path=out / "report.csv") == 2
    assert not (out / "report.csv").exists()


def test_command_line_report_and_exit_code(tmp_path: Path, mixed_tree: Path, key: bytes) -> None:
    out, report = tmp_path / "out", tmp_path / "report.json"
    kf = _key_file(tmp_path / "k", key)
    r = run_cli("deid", str(mixed_tree), str(out), "--key", str(kf), "--report", str(report))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "nopixels.dcm" in r.stderr and "notes.txt" in r.stderr
    rows = {row["input"]: row for row in json.loads(report.read_text())}
    assert rows["nopixels.dcm"]["outcome"] == "rejected" and len(rows) == 8
    res = CliRunner().invoke(app, ["deid", "--help"], env={"COLUMNS": "200"})
    help_text = " ".join(res.output.split())
    assert "--report" in help_text
    assert "1 when any was rejected or quarantined" in help_text


# ----------------------------------------------------------------------------- key file
def test_a_key_folder_or_a_short_key_gets_its_own_message(
    tmp_path: Path, prisma_hfs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = copy_files(_series(prisma_hfs, 1), tmp_path / "in")
    folder = tmp_path / "private"
    folder.mkdir(mode=0o755)
    assert deid_folder(src, tmp_path / "out", folder, 1, None) == 3
    printed = " ".join(capsys.readouterr().err.split())
    assert "is a folder, not a key file" in printed and "chmod" not in printed
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    short.chmod(0o644)
    assert deid_folder(src, tmp_path / "out", short, 1, None) == 3
    printed = " ".join(capsys.readouterr().err.split())
    assert "too short (3 bytes" in printed and "chmod" not in printed
    assert not (tmp_path / "out").exists()
    r = run_cli("deid", str(src), str(tmp_path / "out"), "--key", str(folder))
    assert r.returncode == 3 and "is a folder" in r.stderr, r.stderr


# ------------------------------------------------------------- the output folder's key
def _patients(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.is_dir())


def test_an_output_folder_made_with_another_key_is_refused(
    tmp_path: Path,
    prisma_hfs: Path,
    key: bytes,
    other_key: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = copy_files(_series(prisma_hfs, 2), tmp_path / "in")
    out = tmp_path / "out"
    kf, other = _key_file(tmp_path / "k", key), _key_file(tmp_path / "k2", other_key)
    assert deid_folder(src, out, kf, 1, None) == 0
    marker = out / OUTPUT_MARKER
    doc = json.loads(marker.read_text())
    assert doc["key_fingerprints"] == [key_fingerprint(key)]
    assert key.hex() not in marker.read_text()
    assert deid_folder(src, out, kf, 1, None) == 0  # the same key again: fine
    (patient,) = _patients(out)
    check = verify_tree(src, out, workers=1)  # the marker is not taken for an output
    assert check.ok and check.complete and check.outputs == 2, check.findings
    capsys.readouterr()

    assert deid_folder(src, out, other, 1, None) == 2
    printed = " ".join(capsys.readouterr().err.split())
    assert "holds output made with another key" in printed and "--allow-other-key" in printed
    assert key_fingerprint(key)[:12] in printed and "second pseudonym" in printed
    assert _patients(out) == [patient]  # nothing added
    assert json.loads(marker.read_text())["key_fingerprints"] == [key_fingerprint(key)]

    r = run_cli("deid", str(src), str(out), "--key", str(other), "-j", "1")
    assert r.returncode == 2 and "another key" in r.stderr, r.stderr
    r = run_cli("deid", str(src), str(out), "--key", str(other), "-j", "1", "--force")
    assert r.returncode == 2 and "--allow-other-key" in r.stderr, r.stderr  # not its meaning
    r = run_cli("deid", str(src), str(out), "--key", str(other), "-j", "1", "--allow-other-key")
    assert r.returncode == 0, r.stderr
    assert len(_patients(out)) == 2  # what it allows: two pseudonyms, one patient
    fps = json.loads(marker.read_text())["key_fingerprints"]
    assert fps == [key_fingerprint(key), key_fingerprint(other_key)]


def test_an_output_folder_with_files_of_unknown_key_is_refused_unless_allowed(
    tmp_path: Path, prisma_hfs: Path, key: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    src = copy_files(_series(prisma_hfs, 1), tmp_path / "in")
    out = tmp_path / "out"
    (out / "BM-OLDOUTPUT").mkdir(parents=True)
    (out / "BM-OLDOUTPUT" / "x.dcm").write_bytes(b"made before the marker")
    kf = _key_file(tmp_path / "k", key)
    assert deid_folder(src, out, kf, 1, None) == 2
    printed = " ".join(capsys.readouterr().err.split())
    assert "already holds 1 file(s) but no record of the key" in printed
    assert not (out / OUTPUT_MARKER).exists()
    assert deid_folder(src, out, kf, 1, None, allow_other_key=True) == 0
    assert json.loads((out / OUTPUT_MARKER).read_text())["key_fingerprints"] == [
        key_fingerprint(key)
    ]
    assert deid_folder(src, out, kf, 1, None) == 0  # recorded now
