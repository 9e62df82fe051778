"""The export stage on a small workspace: layouts, round trip through ``validate``, the
content scan (no key, mapping, identifier or excluded patient), IDs, links, DICOM SEG."""

from __future__ import annotations

import base64
import csv
import gzip
import json
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from rx_workspace import MRNS, NAMES, read_dicom_uids

from brainmets.export.cli import export_command, run_validate
from brainmets.export.ids import assign_ids, brats_id
from brainmets.export.manifest import MANIFEST_NAME, read_manifest
from brainmets.export.validate import validate
from brainmets.fsutil import sha256_file
from brainmets.ids import normalise_id


def _files(root: Path) -> Iterator[tuple[str, bytes]]:
    """Every file's bytes, plus the decompressed content of .gz files and zip members."""
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        data = p.read_bytes()
        yield str(p), data
        if p.name.endswith(".gz"):
            yield f"{p} (decompressed)", gzip.decompress(data)
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                for name in z.namelist():
                    yield f"{p}!{name}", z.read(name)


def _forbidden(rx) -> dict[str, bytes]:
    key = rx.ws.key()
    out = {
        "key": key,
        "key hex": key.hex().encode(),
        "key HEX": key.hex().upper().encode(),
        "key b64": base64.b64encode(key),
        "key b64url": base64.urlsafe_b64encode(key).rstrip(b"="),
    }
    for letter, mrn in MRNS.items():
        out[f"MRN {letter}"] = mrn.encode()
        out[f"name {letter}"] = NAMES[letter].encode()
    for letter in "cd":  # not included: neither named nor present
        out[f"excluded pseudonym {letter}"] = rx.pids[letter].encode()
    return out


def scan_export(rx, root: Path, also: dict[str, bytes] | None = None) -> None:
    """Fail on any key material, original identifier, excluded patient or mapping file."""
    forbidden = {**_forbidden(rx), **(also or {})}
    names = [p.name for p in root.rglob("*")]
    assert not [n for n in names if n in ("deid.key", "ids.json", "export.json")]
    assert not [n for n in names if "private" in n.lower() or n.endswith(".key")]
    for where, data in _files(root):
        for what, needle in forbidden.items():
            assert needle not in data, f"{what} found in {where}"


def test_collection_round_trip(rx) -> None:
    root = rx.root / "exports" / "collection"
    rep = validate(root)
    assert rep.ok and not rep.warnings, [str(p) for p in rep.problems]
    included = sorted(rx.pids[k] for k in "ab")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "report")
    assert folders == included
    for pid in included:
        assert sorted(f.name for f in (root / pid).iterdir()) == sorted(
            f"{pid}-{s}.nii.gz" for s in ("seg", "t1c", "t1n", "t2f", "t2w")
        )
        seg = nib.load(str(root / pid / f"{pid}-seg.nii.gz"))
        assert seg.get_data_dtype() == np.uint8
        assert np.allclose(seg.affine, np.diag([-1.0, 1, 1, 1]))
    assert (root / "report" / "report.html").is_file()
    readme = (root / "README.md").read_text()
    for heading in ("## Content", "## Labels", "## Conventions", "## Licence", "## How to cite"):
        assert heading in readme
    assert "SRI24" in readme and "CC BY-SA 3.0" in readme
    assert "Table 1. Acquisition parameters" in readme
    books = list(root.glob("*_clin_*.xlsx"))
    assert len(books) == 1
    from openpyxl import load_workbook

    wb = load_workbook(books[0], read_only=True)
    ids = [r[0] for r in wb["Data"].iter_rows(min_row=2, values_only=True)]
    wb.close()
    assert sorted(ids) == included
    export_doc = json.loads(
        (rx.root / "data" / "derivatives" / "_cohort" / "export" / "export.json").read_text()
    )
    assert export_doc["patients"] == 2 and export_doc["layout"] == "collection"


def test_report_tables_in_the_export_include_clinical_problems(rx) -> None:
    root = rx.root / "exports" / "collection"
    ws_tables = rx.root / "data" / "derivatives" / "_cohort" / "report" / "tables"
    exported = sorted(p.name for p in (root / "report" / "tables").glob("*.csv"))
    assert "clinical_problems.csv" in exported
    assert exported == sorted(p.name for p in ws_tables.glob("*.csv"))  # every report table
    with open(root / "report" / "tables" / "clinical_problems.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    # counts only in the export (the sheet: b's Smoke empty, one MRN of no patient)
    assert rows[0] == ["Severity", "Effect", "Count"]
    assert sorted(rows[1:]) == [
        ["warning", "cell empty (N/A in the tables)", "1"],
        ["warning", "row not used", "1"],
    ]
    listed, _ = read_manifest(root / MANIFEST_NAME)
    rel = "report/tables/clinical_problems.csv"
    assert listed[rel] == sha256_file(root / rel)
    assert "Clinical sheet problems" in (root / "report" / "report.html").read_text()


def test_export_scan_finds_no_key_identifier_or_excluded_patient(rx) -> None:
    scan_export(rx, rx.root / "exports" / "collection")
    # and the scan would notice: the workspace itself holds them
    with pytest.raises(AssertionError):
        scan_export(rx, rx.root / "private")


def test_corrupted_export_is_caught(rx, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(rx.root / "exports" / "collection", copy)
    pid = rx.pids["a"]
    f = copy / pid / f"{pid}-t1c.nii.gz"
    data = bytearray(f.read_bytes())
    data[-50] ^= 0x01
    f.write_bytes(bytes(data))
    rep = validate(copy)
    assert not rep.ok
    assert {p.path for p in rep.errors} == {f"{pid}/{pid}-t1c.nii.gz"}
    assert run_validate(copy) == 1


def test_brats_ids_stable_and_no_pseudonym(rx, tmp_path: Path) -> None:
    out = tmp_path / "brats"
    assert export_command(rx.root, "collection", out, ids="brats", header="brats-met") == 0
    a, b = sorted(rx.pids[k] for k in "ab")
    assert sorted(p.name for p in out.iterdir() if p.is_dir() and p.name != "report") == [
        brats_id(1),
        brats_id(2),
    ]
    table = json.loads(
        (rx.root / "data" / "derivatives" / "_cohort" / "export" / "ids.json").read_text()
    )
    assert table["numbers"] == {a: 1, b: 2}
    rep = validate(out)
    assert rep.ok and not rep.warnings, [str(p) for p in rep.problems]
    img = nib.load(str(out / brats_id(1) / f"{brats_id(1)}-t1c.nii.gz"))
    assert np.allclose(img.affine, [[1, 0, 0, 0], [0, 1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
    # the mapping is private: no pseudonym in a BraTS-numbered export
    scan_export(rx, out, {f"pseudonym {k}": rx.pids[k].encode() for k in "ab"})
    # exporting again keeps the numbers
    assert export_command(rx.root, "collection", out, ids="brats") == 0
    assert (out / brats_id(2)).is_dir() and not (out / brats_id(3)).exists()


def test_id_assignment_is_stable() -> None:
    t = assign_ids(["P3", "P1", "P2"], "brats", start=86)
    assert t.ids == {"P1": brats_id(86), "P2": brats_id(87), "P3": brats_id(88)}
    # P2 leaves, P0 and P9 arrive: old numbers kept, the freed number never reused
    t2 = assign_ids(["P0", "P1", "P3", "P9"], "brats", previous=t.numbers, start=86)
    assert t2.ids == {
        "P0": brats_id(89),
        "P1": brats_id(86),
        "P3": brats_id(88),
        "P9": brats_id(90),
    }
    assert t2.numbers["P2"] == 87
    assert t2.workbook_ids() == {"P0": 89, "P1": 86, "P3": 88, "P9": 90}
    assert normalise_id(brats_id(86)) == "86"
    assert assign_ids(["B", "A"]).ids == {"A": "A", "B": "B"}
    with pytest.raises(ValueError):
        assign_ids(["A"], "numbers")


def test_nnunet_export(rx) -> None:
    assert export_command(rx.root, "nnunet", None) == 0
    ds = rx.root / "exports" / "nnunet" / "Dataset801_BrainMets"
    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "T1", "1": "T1c", "2": "T2", "3": "FLAIR"}
    assert meta["labels"] == {
        "background": 0,
        "whole tumor": [1, 2, 3],
        "tumor core": [1, 3],
        "enhancing tumor": [3],
    }
    assert meta["regions_class_order"] == [2, 1, 3]
    assert meta["numTraining"] == 2 and meta["file_ending"] == ".nii.gz"
    a = rx.pids["a"]
    assert sorted(p.name for p in (ds / "imagesTr").iterdir() if p.name.startswith(a)) == [
        f"{a}_000{c}.nii.gz" for c in range(4)
    ]
    # channel 1 is the T1c, hard-linked to the preprocessed file (same disk)
    src = rx.root / "data" / "derivatives" / a / "preprocess" / f"{a}-t1c.nii.gz"
    assert os.stat(ds / "imagesTr" / f"{a}_0001.nii.gz").st_ino == os.stat(src).st_ino
    assert (ds / "labelsTr" / f"{a}.nii.gz").is_file()
    rep = validate(ds)
    assert rep.layout == "nnunet" and rep.ok and not rep.warnings, [str(p) for p in rep.problems]
    assert validate(ds.parent).layout == "nnunet"
    scan_export(rx, ds)
    # a region label outside dataset.json is caught
    lab = nib.load(str(src.parent.parent / "segment" / f"{a}-seg.nii.gz"))
    bad = np.asarray(lab.dataobj).copy()
    bad[0, 0, 0] = 4
    os.unlink(ds / "labelsTr" / f"{a}.nii.gz")  # a hard link: never write through it
    nib.save(nib.Nifti1Image(bad, lab.affine), str(ds / "labelsTr" / f"{a}.nii.gz"))
    msgs = [str(p) for p in validate(ds).errors]
    assert any("labels [4] not in dataset.json" in m for m in msgs), msgs
    assert any("SHA-256 differs" in m for m in msgs), msgs


def test_symlink_mode(rx, tmp_path: Path) -> None:
    out = tmp_path / "nn"
    assert export_command(rx.root, "nnunet", out, link="symlink") == 0
    ds = out / "Dataset801_BrainMets"
    f = ds / "imagesTr" / f"{rx.pids['b']}_0003.nii.gz"
    assert f.is_symlink() and f.resolve().name == f"{rx.pids['b']}-t2f.nii.gz"
    assert validate(ds).ok


def test_dicom_seg_export(rx, tmp_path: Path) -> None:
    out = tmp_path / "dseg"
    assert export_command(rx.root, "dicom-seg", out) == 0
    a = rx.pids["a"]
    seg_file = out / a / f"{a}-seg.dcm"
    seg = hd.seg.segread(str(seg_file))
    series = sorted((rx.root / "data" / "derivatives" / a / "classify" / "dicom").glob("*.dcm"))
    src = [pydicom.dcmread(str(p), stop_before_pixels=True) for p in series]
    assert seg.PatientID == a == src[0].PatientID
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID
    assert seg.PatientIdentityRemoved == "YES"
    refs = {
        r.ReferencedSOPInstanceUID
        for s in seg.ReferencedSeriesSequence
        for r in s.ReferencedInstanceSequence
    }
    assert [x.SeriesInstanceUID for x in seg.ReferencedSeriesSequence] == [src[0].SeriesInstanceUID]
    assert refs <= read_dicom_uids(series)
    assert [int(x.SegmentNumber) for x in seg.SegmentSequence] == [1, 2, 3]
    order = sorted(src, key=lambda d: float(d.ImagePositionPatient[2]))
    px = seg.get_pixels_by_source_instance(
        [d.SOPInstanceUID for d in order], combine_segments=True, skip_overlap_checks=True
    )
    # the lesion centre lies at slice 6, row 24, column 20 (2 mm pixels, see rx_workspace)
    assert px[6, 24, 20] == 1  # necrosis (radius 3 mm)
    assert px[6, 24, 23] == 3  # 6 mm: enhancing (radius 7 mm)
    assert px[6, 24, 25] == 2  # 10 mm: edema (radius 12 mm)
    assert px[6, 24, 27] == 0  # 14 mm: outside
    assert px[6, 27, 20] == 3  # along the rows too
    assert (out / MANIFEST_NAME).is_file() and (out / "README.md").is_file()
    scan_export(rx, out)
    # the SEG must carry the pseudonym of its series: no BraTS numbering for this layout
    assert export_command(rx.root, "dicom-seg", tmp_path / "dseg2", ids="brats") == 1


def test_destination_safety(rx, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("keep me")
    assert export_command(rx.root, "collection", foreign) == 1
    assert [p.name for p in foreign.iterdir()] == ["thesis.txt"]
    assert export_command(rx.root, "collection", rx.root / "private" / "x") == 1
    assert export_command(rx.root, "collection", rx.root) == 1
    assert (rx.root / "catalog.sqlite").is_file()


def test_nobody_included_exports_nothing(tmp_path: Path) -> None:
    from brainmets.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    ws.config.data["runner"]["pipeline"] = "rx_workspace:enrol_report_export"
    ws.save_config()
    ws = Workspace.open(ws.root)
    from rx_workspace import enrol_report_export

    from brainmets.pipeline import InlineExecutor, Runner

    with ws.lock():
        summary = Runner(ws, enrol_report_export(), InlineExecutor(), progress=False).run()
    assert summary.ok and summary.count("export", "done") == 1  # `brainmets run` goes on
    assert not (ws.root / "exports" / "collection").exists()
    md = (ws.root / "data/derivatives/_cohort/report/report.md").read_text()
    assert "0 patients found, 0 with all four pretreatment sequences, 0 included" in md
    assert export_command(ws.root, "collection", None) == 1  # an explicit export says so
