"""Files that carry the same SOP Instance UID: ingest keeps the copy that reads completely,
sets aside conflicting copies, and says which file was kept (issue 18, item 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest

from brainmets import api
from brainmets.catalog import SourceFile
from brainmets.ingest import scan
from brainmets.workspace import Workspace

SLICES = "tcia_vs_seg_t1_mprage_3slices"


def _slices(testdata: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in sorted((testdata / "dicom" / SLICES).glob("*.dcm")):
        out.append(Path(shutil.copy(f, folder / f.name)))
        out[-1].chmod(0o644)
    return out


def _truncated_copy(src: Path, dest: Path, cut: int = 1000) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(src.read_bytes()[:-cut])
    return dest


def _files(ws: Workspace) -> dict[str, SourceFile]:
    with ws.catalog(readonly=True) as cat:
        return {f.path: f for f in cat.source_files()}


def _instances(ws: Workspace) -> int:
    with ws.catalog(readonly=True) as cat:
        return len(cat.instances())


@pytest.mark.parametrize("truncated_first", [True, False])
def test_the_complete_copy_is_kept_and_deidentified(
    tmp_path: Path, testdata: Path, truncated_first: bool
) -> None:
    src = tmp_path / "src"
    good = _slices(testdata, src / "series")
    # the scan lists a folder's files before its subfolders: "0" comes first, "z/" last
    name = "0-copy.dcm" if truncated_first else "z/copy.dcm"
    bad = _truncated_copy(good[1], src / name)
    # the header of the cut copy still reads: it is not rejected before the comparison
    assert scan.classify_file(bad, b"k" * 32).status == "pending"

    ws = Workspace.open(api.init(tmp_path / "ws").root)
    assert api.ingest(ws, [src]).ok
    files = _files(ws)
    assert files[str(good[1])].status == "pending"
    dup = files[str(bad)]
    assert dup.status == "duplicate"
    assert dup.reason is not None
    assert dup.reason.startswith(f"same SOPInstanceUID as {good[1]}, which is kept")
    assert "does not read completely (truncated" in dup.reason
    st = api.status(ws)
    assert [(Path(f.path).name, f.status) for f in st.not_taken] == [(bad.name, "duplicate")]

    rep = api.run(ws, ["deid"])
    assert rep.ok, rep.failures
    assert _instances(ws) == 3  # no slice lost
    with ws.catalog(readonly=True) as cat:
        (series,) = cat.series()
        assert series.n_instances == 3
    statuses = sorted(f.status for f in _files(ws).values())
    assert statuses == ["deidentified"] * 3 + ["duplicate"]


def test_conflicting_copies_are_both_set_aside_until_one_is_removed(
    tmp_path: Path, testdata: Path
) -> None:
    src = tmp_path / "src"
    good = _slices(testdata, src / "a")
    other = src / "b" / "other.dcm"
    other.parent.mkdir()
    ds = pydicom.dcmread(good[2])
    pixels = bytearray(ds.PixelData)
    pixels[100] ^= 0xFF  # a complete file, same SOPInstanceUID, different image
    ds.PixelData = bytes(pixels)
    ds.save_as(other)

    ws = Workspace.open(api.init(tmp_path / "ws").root)
    assert api.ingest(ws, [src]).ok
    files = _files(ws)
    a, b = files[str(good[2])], files[str(other)]
    assert a.status == b.status == "duplicate"
    assert a.reason is not None and b.reason is not None
    assert str(other) in a.reason and str(good[2]) in b.reason
    assert "different content: none of the copies is kept" in a.reason
    assert files[str(good[0])].status == files[str(good[1])].status == "pending"
    assert api.run(ws, ["deid"]).ok
    assert _instances(ws) == 2  # neither copy reached the dataset

    other.unlink()  # a person decides: the copy in b/ was wrong
    assert api.ingest(ws).ok
    files = _files(ws)
    assert files[str(good[2])].status == "pending" and files[str(good[2])].reason is None
    assert files[str(other)].status == "vanished"
    assert api.run(ws, ["deid"]).ok
    assert _instances(ws) == 3


def test_a_rewritten_identical_copy_is_a_plain_duplicate(tmp_path: Path, testdata: Path) -> None:
    src = tmp_path / "src"
    good = _slices(testdata, src / "a")
    again = src / "b" / "resaved.dcm"
    again.parent.mkdir()
    ds = pydicom.dcmread(good[0])
    ds.file_meta.ImplementationVersionName = "OTHER_TOOL_1"  # other bytes, same data set
    ds.save_as(again)
    assert again.read_bytes() != good[0].read_bytes()

    ws = Workspace.open(api.init(tmp_path / "ws").root)
    assert api.ingest(ws, [src]).ok
    files = _files(ws)
    assert files[str(good[0])].status == "pending"
    assert files[str(again)].status == "duplicate"
    assert files[str(again)].reason == f"same SOPInstanceUID as {good[0]}"


def test_only_colliding_files_are_read_past_their_header(
    tmp_path: Path, testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    good = _slices(testdata, src / "a")
    bad = _truncated_copy(good[0], src / "0-copy.dcm")
    calls: list[str] = []
    real = scan.read_complete

    def counting(path):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(scan, "read_complete", counting)
    key = b"k" * 32
    changed, counts = scan.scan_sources([src], key, {})
    assert sorted(calls) == sorted([str(bad), str(good[0])])
    assert counts == {"accepted": 3, "duplicate": 1}
    # the next scan of the same files reads nothing past the headers, and changes nothing
    calls.clear()
    known = {e.path: e for e in changed}
    again, counts2 = scan.scan_sources([src], key, known)
    assert calls == [] and again == [] and counts2 == counts
    # the kept file removed: its truncated copy is all there is, and is taken again
    good[0].unlink()
    known[str(good[0])] = SourceFile(str(good[0]), 1, 1, status="vanished")
    again, _ = scan.scan_sources([src], key, known)
    assert [(e.path, e.status, e.reason) for e in again] == [(str(bad), "pending", None)]


def test_an_earlier_decision_that_kept_the_truncated_copy_is_undone(
    tmp_path: Path, testdata: Path
) -> None:
    # what the earlier ingest recorded: the cut copy (first in scan order) kept, then rejected
    # by de-identification (which drops its UID); the complete file set aside as its duplicate
    src = tmp_path / "src"
    good = _slices(testdata, src / "a")
    bad = _truncated_copy(good[0], src / "0-copy.dcm")
    key = b"k" * 32
    first, _ = scan.scan_sources([src], key, {})
    known = {e.path: e for e in first}
    st_bad, st_good = bad.stat(), good[0].stat()
    known[str(bad)] = SourceFile(
        str(bad), st_bad.st_size, st_bad.st_mtime_ns, "rejected", "cannot de-identify", None, None
    )
    known[str(good[0])] = SourceFile(
        str(good[0]),
        st_good.st_size,
        st_good.st_mtime_ns,
        "duplicate",
        f"same SOPInstanceUID as {bad}",
        known[str(good[0])].patient_id,
        known[str(good[0])].sop_uid,
    )
    changed, counts = scan.scan_sources([src], key, known)
    assert [(e.path, e.status, e.reason) for e in changed] == [(str(good[0]), "pending", None)]
    assert counts == {"accepted": 3, "rejected": 1}
