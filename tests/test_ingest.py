"""Ingest accounts for every input file and groups instances by pseudonymous patient."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom

from bm_testutil import run_cli
from brainmets.ids import patient_pseudonym
from brainmets.workspace import Workspace


def _source_tree(testdata: Path, dest: Path) -> Path:
    """A small messy export: two real series, a text file, an empty file, a truncated one."""
    src = dest / "export"
    tcia = testdata / "dicom" / "tcia_vs_seg_t1_mprage_3slices"
    (src / "a").mkdir(parents=True)
    for f in sorted(tcia.glob("*.dcm")):
        shutil.copy(f, src / "a" / f.name)
    philips = testdata / "dicom" / "philips_elition_3d_t1_mprage" / "dicom"
    (src / "b").mkdir()
    for f in sorted(p for p in philips.rglob("*") if p.is_file())[:5]:
        shutil.copy(f, src / "b" / f.name)
    (src / "notes.txt").write_text("scanner notes\n")
    (src / "empty.dcm").write_bytes(b"")
    first = src / "a" / "1-001.dcm"
    (src / "truncated.dcm").write_bytes(first.read_bytes()[:200])
    shutil.copy(first, src / "copy_of_first.dcm")
    return src


def test_ingest_accounts_for_every_file(tmp_path: Path, testdata: Path) -> None:
    src = _source_tree(testdata, tmp_path)
    n_files = sum(1 for p in src.rglob("*") if p.is_file())
    ws = Workspace.init(tmp_path / "ws")
    r = run_cli("ingest", "-w", str(ws.root), str(src))
    assert r.returncode == 0, r.stderr
    with ws.catalog(readonly=True) as cat:
        rows = cat.source_files()
        patients = cat.patient_ids()
    assert len(rows) == n_files
    by_status: dict[str, list] = {}
    for row in rows:
        by_status.setdefault(row.status, []).append(row)
    reasons = {Path(r.path).name: r.reason for r in rows if r.status != "pending"}
    assert reasons["notes.txt"] == "not a DICOM file"
    assert "empty.dcm" in reasons and "truncated.dcm" in reasons
    (dup,) = by_status["duplicate"]
    assert dup.reason.startswith("same SOPInstanceUID as")
    pair = {Path(dup.path).name, Path(dup.reason.split(" as ", 1)[1]).name}
    assert pair == {"copy_of_first.dcm", "1-001.dcm"}
    # patients are pseudonymous, computed with the workspace key
    key = ws.key()
    originals = set()
    for row in by_status["pending"]:
        originals.add(pydicom.dcmread(row.path, stop_before_pixels=True).PatientID)
    assert sorted(patients) == sorted(patient_pseudonym(key, o) for o in originals)
    for o in originals:  # no original identifier in the catalog
        assert o.encode() not in ws.catalog_path.read_bytes()

    # a second ingest reads nothing again and changes nothing
    r2 = run_cli("ingest", "-w", str(ws.root))
    assert r2.returncode == 0, r2.stderr
    with ws.catalog(readonly=True) as cat:
        assert cat.stage_run("*", "ingest").attempts == 1
        assert len(cat.source_files()) == n_files

    # a new file is picked up
    (src / "more.txt").write_text("x")
    assert run_cli("ingest", "-w", str(ws.root)).returncode == 0
    with ws.catalog(readonly=True) as cat:
        assert len(cat.source_files()) == n_files + 1


def test_ingest_of_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    r = run_cli("ingest", "-w", str(ws.root), str(tmp_path / "nowhere"))
    assert r.returncode == 2
    assert "nowhere" in r.stderr
