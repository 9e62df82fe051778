"""The header index on real multi-vendor DICOM, and the accuracy evidence."""

from __future__ import annotations

import csv
import io
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from brainmets.classify.classifier import CLASSES
from brainmets.classify.cli import run_evaluate
from brainmets.classify.evaluation import (
    Evaluation,
    evaluate_real,
    evaluate_rows,
    load_evaluation_set,
    load_real_labels,
    read_folder_series,
)
from brainmets.shared import ENV_SHARED


# --------------------------------------------------------------------- header index
def test_enhanced_philips_values_come_from_the_functional_groups(dicom_dir: Path) -> None:
    folder = dicom_dir / "philips_elition_2d_t1_tse_ffe/dicom/201_T1W_TSE_Sno_CSno_CSAIno"
    (h,) = read_folder_series(folder)
    assert h.enhanced and h.sop_class == "Enhanced MR Image Storage"
    assert h.n_non_image == 1  # the Raw Data Storage object of the same series
    assert h.n_instances == 1 and h.n_frames == 12 and h.n_positions == 12
    assert h.echo_time == pytest.approx(23.056, abs=1e-3)
    assert h.repetition_time == pytest.approx(519.52, abs=1e-2)
    assert h.flip_angle == 90 and h.echo_pulse_sequence == "SPIN"
    assert h.inversion_time is None  # InversionTime 0 means none
    assert h.inversion_recovery is False
    assert h.slice_thickness == 4 and h.spacing_between_slices == 5
    assert h.orientation == "axial" and h.mr_acquisition_type == "2D"
    assert h.acquisition_contrast == "T1"
    assert h.manufacturer == "Philips" and h.field_strength == 3


def test_classic_siemens_header(dicom_dir: Path) -> None:
    (h,) = read_folder_series(dicom_dir / "tcia_vs_seg_t1_mprage_3slices")
    assert (h.scanning_sequence, h.sequence_variant) == (["GR", "IR"], ["SP", "MP", "OSP"])
    assert (h.echo_time, h.repetition_time, h.inversion_time, h.flip_angle) == (
        2.97,
        1900,
        1100,
        15,
    )
    assert h.sequence_name == "*tfl3d1" and h.mr_acquisition_type == "3D"
    assert h.orientation == "axial" and h.n_instances == 3 and h.extent_mm == pytest.approx(3.0)
    assert h.image_type == ["ORIGINAL", "PRIMARY", "M", "ND"]
    assert h.acquisition_datetime is not None and h.acquisition_datetime.startswith("1994-09-04")


def test_xa30_enhanced_3d_header(dicom_dir: Path) -> None:
    (h,) = read_folder_series(dicom_dir / "siemens_xa30_t1_enhanced/dicom/5_anat-T1w_acq-tfl")
    assert h.n_frames == 96 and h.orientation == "sagittal"
    assert h.echo_time == pytest.approx(2.41) and h.inversion_time == 900
    assert h.sequence_name == "*tfl3d1_16ns"
    assert h.to_json()["pixel_spacing"] == [2.0, 2.0]


# ----------------------------------------------------------------- evaluation set
def test_the_evaluation_set_is_large_and_diverse() -> None:
    rows = load_evaluation_set()
    assert len(rows) >= 150
    vendors = Counter(r["vendor"].split()[0].lower() for r in rows)
    for v in ("siemens", "ge", "philips", "hitachi"):
        assert vendors[v] >= 10, vendors
    assert vendors["toshiba"] + vendors["canon_mec"] >= 10
    langs = {r["lang"] for r in rows}
    assert {"en", "de", "fr", "es", "it", "pt", "nl"} <= langs
    labels = Counter(r["label"] for r in rows)
    assert all(labels[c] >= 20 for c in CLASSES), labels
    assert len({(r["exam"]) for r in rows if r["exam"]}) >= 15  # whole exams, in order


def test_accuracy_on_the_evaluation_set() -> None:
    ev = evaluate_rows(load_evaluation_set())
    assert ev.accuracy >= 0.97, ev.errors
    # the target classes are what the dataset is made of: no target leaks into another
    for t in ("t1", "t1c", "t2", "flair"):
        for p in ("t1", "t1c", "t2", "flair"):
            if t != p:
                assert ev.matrix[t][p] == 0, (t, p, ev.errors)


@pytest.fixture(scope="module")
def real(dicom_dir: Path) -> Evaluation:
    return evaluate_real(dicom_dir)


def test_accuracy_on_the_real_series(real: Evaluation) -> None:
    assert real.total >= len(load_real_labels())  # every labelled folder was read
    assert real.accuracy == 1.0, real.errors


def test_a_broken_evaluation_set_is_refused(tmp_path: Path) -> None:
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["exam", "order", "vendor", "description", "label"])
    w.writerow(["", "", "GE", "Ax T1", "t3"])
    p = tmp_path / "set.csv"
    p.write_text(text.getvalue())
    with pytest.raises(ValueError, match="unknown label"):
        load_evaluation_set(p)


def test_run_evaluate_prints_both_confusion_matrices(dicom_dir: Path, tmp_path: Path) -> None:
    # two of the labelled real folders are enough to show the second matrix
    for rel in (
        "tcia_vs_seg_t1_mprage_3slices",
        "dicom2nifti_multivendor_slabs/hitachi/anatomical/001",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).symlink_to(dicom_dir / rel)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    assert run_evaluate(dicom_dir=tmp_path, console=console) == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "evaluation set:" in out and "real DICOM series:" in out
    assert "true \\ predicted" in out and "sensitivity" in out


def test_run_evaluate_without_a_dicom_folder_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No default inside the checkout: without ``dicom_dir`` or ``BRAINMETS_SHARED`` the real
    series are skipped, and the message names the variable."""
    monkeypatch.delenv(ENV_SHARED, raising=False)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    assert run_evaluate(console=console) == 0
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "evaluation set:" in out and "real DICOM series:" not in out
    assert f"set {ENV_SHARED}" in out
