"""``brainmets validate`` on a folder laid out like the published Pretreat-MetsToBrain-Masks
collection (``brats_met_00110_000`` + a generated seg), and the problems it must catch."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmets.cohort.workbook import write_workbook
from brainmets.export.cli import run_validate
from brainmets.export.manifest import MANIFEST_NAME, check_manifest, write_manifest
from brainmets.export.validate import validate, validate_collection

CASE = "BraTS-MET-00110-000"


@pytest.fixture
def published(testdata: Path, tmp_path: Path) -> Path:
    """The reference case's four images in a collection folder, plus a seg generated inside
    its brain (labels 1-3), written like the published files (their header, uint8)."""
    src = testdata / "nifti" / "brats_met_00110_000"
    if not src.is_dir():
        pytest.skip(f"{src} not found")
    root = tmp_path / "Pretreat-MetsToBrain-Masks"
    folder = root / CASE
    folder.mkdir(parents=True)
    for seq in ("t1n", "t1c", "t2w", "t2f"):
        shutil.copyfile(src / f"{CASE}-{seq}.nii.gz", folder / f"{CASE}-{seq}.nii.gz")
    ref = nib.load(str(src / f"{CASE}-t1c.nii.gz"))
    brain = np.asarray(ref.dataobj) > 0
    ii, jj, kk = np.nonzero(brain)
    c = np.array([ii.mean(), jj.mean(), kk.mean()]).round().astype(int)
    gi, gj, gk = np.ogrid[:240, :240, :155]
    d2 = (gi - c[0]) ** 2 + (gj - c[1]) ** 2 + (gk - c[2]) ** 2
    seg = np.zeros(ref.shape, np.uint8)
    seg[(d2 <= 100) & brain] = 2
    seg[d2 <= 25] = 3
    seg[d2 <= 4] = 1
    out = nib.Nifti1Image(seg, ref.affine, ref.header)
    out.set_data_dtype(np.uint8)
    nib.save(out, str(folder / f"{CASE}-seg.nii.gz"))
    return root


def _messages(rep) -> list[str]:
    return [f"{p.path}: {p.message}" for p in rep.errors]


def test_published_layout_passes(published: Path) -> None:
    rep = validate(published)
    assert rep.layout == "collection" and rep.ok, _messages(rep)
    assert rep.patients == 1 and rep.files_checked == 5
    # no manifest and no workbook beside it, as published: warnings only
    assert {p.message.split(":")[0] for p in rep.warnings} == {
        f"no {MANIFEST_NAME}",
        "no workbook (*.xlsx) beside the patient folders",
    }
    assert run_validate(published) == 0


def test_with_manifest_and_workbook_no_warning(published: Path) -> None:
    write_workbook(published / "Dataset_clin_20240101.xlsx", {CASE: {"ET_num": 1}})
    write_manifest(published)
    rep = validate(published)
    assert rep.ok and not rep.warnings, [str(p) for p in rep.problems]
    assert rep.checksums_checked == 6
    if shutil.which("sha256sum"):  # the manifest is sha256sum's format
        res = subprocess.run(
            ["sha256sum", "--quiet", "-c", MANIFEST_NAME], cwd=published, capture_output=True
        )
        assert res.returncode == 0, res.stdout + res.stderr


def test_corrupted_file_is_caught(published: Path) -> None:
    write_manifest(published)
    target = published / CASE / f"{CASE}-t2f.nii.gz"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the compressed stream
    target.write_bytes(bytes(data))
    rep = validate(published)
    assert not rep.ok
    msgs = _messages(rep)
    assert any(m.startswith(f"{CASE}/{CASE}-t2f.nii.gz: SHA-256 differs") for m in msgs), msgs
    assert any("t2f.nii.gz: unreadable" in m for m in msgs), msgs
    assert run_validate(published) == 1


def test_changed_but_readable_file_is_caught_by_the_manifest(published: Path) -> None:
    write_manifest(published)
    p = published / CASE / f"{CASE}-seg.nii.gz"
    img = nib.load(str(p))
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = 1
    nib.save(nib.Nifti1Image(data, img.affine, img.header), str(p))
    rep = validate(published)
    assert [p.path for p in rep.errors] == [f"{CASE}/{CASE}-seg.nii.gz"]
    assert "SHA-256 differs" in rep.errors[0].message


def test_structural_problems(published: Path) -> None:
    folder = published / CASE
    # labels outside 0-3 (the old BraTS 4)
    p = folder / f"{CASE}-seg.nii.gz"
    img = nib.load(str(p))
    seg = np.asarray(img.dataobj).copy()
    seg[seg == 3] = 4
    nib.save(nib.Nifti1Image(seg, img.affine, img.header), str(p))
    # another grid for one image
    p = folder / f"{CASE}-t1n.nii.gz"
    img = nib.load(str(p))
    moved = img.affine.copy()
    moved[0, 3] += 2
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), moved, img.header), str(p))
    # a missing file, an unexpected file, a second folder with a wrong shape
    (folder / f"{CASE}-t2w.nii.gz").unlink()
    (folder / "notes.txt").write_text("x")
    other = published / "BraTS-MET-00111-000"
    other.mkdir()
    for s in ("t1n", "t1c", "t2w", "t2f", "seg"):
        nib.save(
            nib.Nifti1Image(np.zeros((240, 240, 150), np.uint8), np.eye(4)),
            str(other / f"{other.name}-{s}.nii.gz"),
        )
    rep = validate_collection(published)
    msgs = "\n".join(_messages(rep))
    assert "labels [4] outside {0, 1, 2, 3}" in msgs
    assert f"{CASE}-t1n.nii.gz: grid differs" in msgs
    assert f"{CASE}-t2w.nii.gz: missing" in msgs
    assert "shape (240, 240, 150), expected (240, 240, 155)" in msgs
    assert any(p.path.endswith("notes.txt") for p in rep.warnings)


def test_float_seg_is_a_warning_unless_not_integral(published: Path) -> None:
    p = published / CASE / f"{CASE}-seg.nii.gz"
    img = nib.load(str(p))
    seg = np.asarray(img.dataobj).astype(np.float32)
    nib.save(nib.Nifti1Image(seg, img.affine), str(p))
    rep = validate(published)
    assert rep.ok and any("stored as float32" in w.message for w in rep.warnings)
    seg[seg == 2] = 2.5
    nib.save(nib.Nifti1Image(seg, img.affine), str(p))
    assert "label values are not integers" in _messages(validate(published))[0]


def test_workbook_rows_vs_folders(published: Path) -> None:
    write_workbook(
        published / "Dataset_clin_20240101.xlsx",
        {CASE: {"ET_num": 1}, "BraTS-MET-00086-000": {"ET_num": 2}},
    )
    rep = validate(published)
    assert _messages(rep) == ["Dataset_clin_20240101.xlsx: Data row 2: ID 86 has no patient folder"]
    write_workbook(published / "Dataset_clin_20240101.xlsx", {"BraTS-MET-00086-000": {"ET_num": 2}})
    msgs = _messages(validate(published))
    assert f"Dataset_clin_20240101.xlsx: folder {CASE} has no row in sheet Data" in msgs


def test_manifest_listing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    (tmp_path / "y.bin").write_bytes(b"\x00\x01")
    write_manifest(tmp_path)
    text = (tmp_path / MANIFEST_NAME).read_text().splitlines()
    assert [line.split("  ")[1] for line in text] == ["a/x.txt", "y.bin"]
    assert check_manifest(tmp_path).ok
    (tmp_path / "z.txt").write_text("new")
    (tmp_path / "y.bin").unlink()
    res = check_manifest(tmp_path)
    assert res.unlisted == ["z.txt"] and res.missing == ["y.bin"]


def test_gzip_truncation_is_unreadable(published: Path) -> None:
    p = published / CASE / f"{CASE}-t1c.nii.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw)[:-100])
    msgs = _messages(validate(published))
    assert any("t1c.nii.gz: unreadable" in m for m in msgs), msgs
