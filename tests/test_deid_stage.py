"""The deid pipeline stage: ingest -> deid on real files, accounting and re-runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom

from bm_testutil import run_cli
from brainmets.workspace import Workspace


def _tree(testdata: Path, dest: Path) -> tuple[Path, list[str]]:
    src = dest / "src"
    tcia = testdata / "dicom" / "tcia_vs_seg_t1_mprage_3slices"
    prisma = (
        testdata
        / "dicom"
        / "siemens_prisma_t1_fl2d_patient_position"
        / "dicom"
        / "HFS"
        / "3_t1_fl2d_sag"
    )
    (src / "a").mkdir(parents=True)
    for f in sorted(tcia.glob("*.dcm")):
        shutil.copy(f, src / "a" / f.name)
    (src / "b").mkdir()
    for f in sorted(p for p in prisma.iterdir() if p.suffix != ".txt")[:4]:
        shutil.copy(f, src / "b" / f.name)
    # an instance with burned-in annotation must be quarantined, never written
    shot = pydicom.dcmread(src / "b" / sorted(p.name for p in (src / "b").iterdir())[0])
    shot.BurnedInAnnotation = "YES"
    shot.SOPInstanceUID = shot.SOPInstanceUID + ".9"
    shot.save_as(src / "b" / "screenshot.dcm")
    (src / "readme.txt").write_text("not dicom")
    identifiers = []
    for f in src.rglob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        for kw in ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "SeriesInstanceUID"):
            v = str(ds.get(kw, "") or "")
            if len(v) >= 6:
                identifiers.append(v)
        name = str(ds.get("PatientName", "") or "")
        if len(name) >= 6:
            identifiers.append(name)
    return src, sorted(set(identifiers))


def test_ingest_then_deid_accounts_for_every_file(tmp_path: Path, testdata: Path) -> None:
    src, identifiers = _tree(testdata, tmp_path)
    n_files = sum(1 for p in src.rglob("*") if p.is_file())
    ws = Workspace.init(tmp_path / "ws")
    assert run_cli("ingest", "-w", str(ws.root), str(src)).returncode == 0
    r = run_cli("deid", "-w", str(ws.root), "--workers", "2")
    assert r.returncode == 0, r.stderr
    with ws.catalog(readonly=True) as cat:
        rows = cat.source_files()
        instances = cat.instances()
        series = cat.series()
    assert len(rows) == n_files
    status = {Path(x.path).name: x.status for x in rows}
    assert status["readme.txt"] == "rejected"
    assert status["screenshot.dcm"] == "quarantined"
    assert sum(1 for s in status.values() if s == "deidentified") == n_files - 2 == len(instances)
    assert sum(s.n_instances for s in series) == len(instances)

    written = [p for p in ws.config.path("dicom").rglob("*") if p.is_file()]
    assert len(written) == len(instances)
    blob = b"".join(p.read_bytes() for p in written)
    for ident in identifiers:
        assert ident.encode() not in blob, f"identifier {ident!r} leaked"
    for p in written:
        ds = pydicom.dcmread(p)
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.PatientID.startswith("BM-")
        assert p.parts[-4] == ds.PatientID
    # the workspace holds no copy of the quarantined original anywhere
    shot_uid = pydicom.dcmread(src / "b" / "screenshot.dcm").SOPInstanceUID.encode()
    for p in ws.root.rglob("*"):
        if p.is_file() and p.suffix == ".dcm":
            assert shot_uid not in p.read_bytes()

    # up to date: nothing redone; a parameter change redoes deid
    again = run_cli("deid", "-w", str(ws.root))
    assert again.returncode == 0
    with ws.catalog(readonly=True) as cat:
        assert {r.attempts for r in cat.stage_runs() if r.stage == "deid"} == {1}
    assert (
        run_cli(
            "config", "set", "-w", str(ws.root), "--", "stages.deid.max_offset_days", "-40"
        ).returncode
        == 0
    )
    assert run_cli("deid", "-w", str(ws.root)).returncode == 0
    with ws.catalog(readonly=True) as cat:
        assert {r.attempts for r in cat.stage_runs() if r.stage == "deid"} == {2}
        assert len(cat.instances()) == len(instances)
    assert len([p for p in ws.config.path("dicom").rglob("*.dcm")]) == len(instances)


def test_folder_mode_and_verify_from_the_command_line(tmp_path: Path, testdata: Path) -> None:
    src, _ = _tree(testdata, tmp_path)
    key = tmp_path / "k.key"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    out = tmp_path / "out"
    r = run_cli("deid", str(src), str(out), "--key", str(key))
    # exit 1 since issue 18: readme.txt is rejected and screenshot.dcm quarantined, each named
    assert r.returncode == 1, r.stderr
    assert "readme.txt" in r.stderr and "screenshot.dcm" in r.stderr
    assert len(list(out.rglob("*.dcm"))) == sum(1 for _ in src.rglob("*.dcm")) - 1
    v = run_cli("deid", "verify", str(src), str(out))
    assert v.returncode == 0, v.stdout + v.stderr
    # plant a leak: the verifier must fail
    victim = next(out.rglob("*.dcm"))
    ds = pydicom.dcmread(victim)
    orig = pydicom.dcmread(next(src.rglob("1-001.dcm")))
    ds.ImageComments = f"scan of {orig.PatientID}"
    ds.save_as(victim)
    v = run_cli("deid", "verify", str(src), str(out))
    assert v.returncode == 1


def test_source_changed_or_vanished_between_ingest_and_deid(tmp_path: Path, testdata: Path) -> None:
    """Issue 15: a file removed after ingest is recorded ``vanished``; a file rewritten
    after ingest (another size or modification time) is not read as what ingest classified:
    it stays ``pending`` with the reason, and the next run takes in its new content. The
    patient's other files are de-identified either way."""
    import os

    src, _ = _tree(testdata, tmp_path)
    ws = Workspace.init(tmp_path / "ws")
    assert run_cli("ingest", "-w", str(ws.root), str(src)).returncode == 0
    b_files = sorted(p for p in (src / "b").iterdir() if p.name != "screenshot.dcm")
    gone, changed = b_files[0], b_files[1]
    gone.unlink()
    ds = pydicom.dcmread(changed)
    ds.SeriesDescription = "rewritten after ingest"
    ds.save_as(changed)
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))

    r = run_cli("deid", "-w", str(ws.root), "--workers", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    with ws.catalog(readonly=True) as cat:
        rows = {Path(x.path).name: x for x in cat.source_files()}
        n_instances = len(cat.instances())
    assert rows[gone.name].status == "vanished"
    assert "removed from the source folder after ingest" in str(rows[gone.name].reason)
    assert rows[changed.name].status == "pending"
    assert "changed since ingest" in str(rows[changed.name].reason)
    others = [p.name for p in b_files[2:]]
    assert others and all(rows[n].status == "deidentified" for n in others)
    assert n_instances == sum(1 for x in rows.values() if x.status == "deidentified")
    written = [p for p in ws.config.path("dicom").rglob("*.dcm")]
    assert len(written) == n_instances
    assert not any(
        str(pydicom.dcmread(p, stop_before_pixels=True).get("SeriesDescription", ""))
        == "rewritten after ingest"
        for p in written
    )

    # the next run (ingest, then deid) takes the new content in; the vanished stays so
    assert run_cli("ingest", "-w", str(ws.root)).returncode == 0
    r = run_cli("deid", "-w", str(ws.root), "--workers", "1")
    assert r.returncode == 0, r.stderr + r.stdout
    with ws.catalog(readonly=True) as cat:
        rows = {Path(x.path).name: x for x in cat.source_files()}
    assert rows[changed.name].status == "deidentified"
    assert rows[gone.name].status == "vanished"
    assert any(
        str(pydicom.dcmread(p, stop_before_pixels=True).get("SeriesDescription", ""))
        == "rewritten after ingest"
        for p in ws.config.path("dicom").rglob("*.dcm")
    )
