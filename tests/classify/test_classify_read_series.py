"""`brainmets.classify.read_series`: the public, recursive reader of a folder of series."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from brainmets.classify import classify_study, read_series


def _copy_dicom(src: Path, dest: Path) -> int:
    dest.mkdir(parents=True)
    n = 0
    for p in sorted(src.iterdir()):
        if (
            p.is_file()
            and p.suffix not in (".json", ".gz", ".nii", ".md", ".txt")
            and p.name != "LICENSE"
        ):
            shutil.copy(p, dest / p.name)
            n += 1
    return n


def test_reads_series_in_nested_folders_and_reports_non_dicom(
    dicom_dir: Path, tmp_path: Path
) -> None:
    a = dicom_dir / "tcia_vs_seg_t1_mprage_3slices"
    b = dicom_dir / "philips_elition_2d_t1_tse_ffe/dicom/201_T1W_TSE_Sno_CSno_CSAIno"
    if not (a.is_dir() and b.is_dir()):
        pytest.skip("shared test DICOM absent")
    na = _copy_dicom(a, tmp_path / "patient" / "study1" / "series_a")
    _copy_dicom(b, tmp_path / "patient" / "study2" / "deeper" / "series_b")
    (tmp_path / "patient" / "notes.txt").write_text("not DICOM")

    found = read_series(tmp_path / "patient")
    assert len(found.series) == 2
    by_maker = {h.manufacturer: h for h in found.series}
    assert by_maker["Philips"].n_frames == 12
    assert sum(h.n_instances for h in found.series if h.manufacturer != "Philips") == na
    assert [p.name for p, _ in found.skipped] == ["notes.txt"]
    assert found.skipped[0][1]  # the reason is given
    calls = classify_study(found.series)
    assert set(calls) == {h.uid for h in found.series}

    flat = read_series(tmp_path / "patient", recursive=False)
    assert flat.series == [] and [p.name for p, _ in flat.skipped] == ["notes.txt"]


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="not a folder"):
        read_series(tmp_path / "nope")
