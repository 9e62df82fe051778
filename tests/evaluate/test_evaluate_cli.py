"""``brainmets evaluate``: pairing, bad files, outputs, workers, size bins, FROC, a model run."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bm_testutil import run_cli
from brainmets.evaluate import evaluate_folders, metrics_json, write_csv_dir, write_json
from brainmets.evaluate.pairing import case_id, case_key, pair_folders
from brainmets.evaluate.sizes import froc, parse_bins, size_breakdown

SHAPE = (40, 40, 40)


def ball(c: tuple[int, int, int], r: float) -> np.ndarray:
    g = np.indices(SHAPE)
    return sum((g[i] - c[i]) ** 2 for i in range(3)) <= r * r


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def case_maps() -> tuple[np.ndarray, np.ndarray]:
    ref = np.zeros(SHAPE, np.uint8)
    ref[ball((10, 10, 10), 6)] = 2
    ref[ball((10, 10, 10), 4)] = 3
    ref[ball((10, 10, 10), 1)] = 1
    ref[ball((30, 30, 30), 2)] = 3  # a small lesion (33 voxels, ~4 mm)
    pred = ref.copy()
    pred[ball((30, 30, 30), 3)] = 0  # the small lesion missed
    pred[ball((30, 8, 30), 1.5)] = 3  # a false positive
    return ref, pred


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    ref, pred = case_maps()
    save(tmp_path / "ref" / "BraTS-MET-00001-000-seg.nii.gz", ref)
    save(tmp_path / "pred" / "BraTS-MET-00001-000.nii.gz", pred)
    save(tmp_path / "ref" / "BraTS-MET-00002-000-seg.nii.gz", ref)
    save(tmp_path / "pred" / "BraTS-MET-00002-000.nii.gz", ref)  # perfect
    return tmp_path / "pred", tmp_path / "ref"


def test_case_ids_pair_brats_names_and_stems() -> None:
    assert case_key("BraTS-MET-00012-000-seg.nii.gz") == "00012-000"
    assert case_key("BraTS-MET-00012-000.nii.gz") == "00012-000"
    assert case_key("case_a.nii") == "case_a"
    assert case_key("notes.txt") is None
    assert case_id("BraTS-MET-00012-000-seg.nii.gz") == "BraTS-MET-00012-000"


def test_unpaired_and_duplicate_files_are_reported(tmp_path: Path) -> None:
    ref, pred = case_maps()
    save(tmp_path / "ref" / "a-00001-000.nii.gz", ref)
    save(tmp_path / "ref" / "b-00002-000.nii.gz", ref)
    save(tmp_path / "pred" / "x-00001-000.nii.gz", pred)
    save(tmp_path / "pred" / "x-00003-000.nii.gz", pred)
    save(tmp_path / "pred" / "y-00003-000.nii", pred)  # claims the same id
    (tmp_path / "pred" / "readme.txt").write_text("x")
    p = pair_folders(tmp_path / "pred", tmp_path / "ref")
    assert [c for c, _, _ in p.pairs] == ["a-00001-000"]
    assert [f.name for f in p.unpaired_ref] == ["b-00002-000.nii.gz"]
    assert p.unpaired_pred == []  # the ambiguous id is a problem, not silently paired
    assert any("00003-000" in m and "also claimed" in m for m in p.problems)
    assert any("readme.txt" in m for m in p.problems)


def test_bad_label_maps_fail_alone_with_the_file_named(tmp_path: Path) -> None:
    ref, pred = case_maps()
    save(tmp_path / "ref" / "c-00001-000.nii.gz", ref)
    save(tmp_path / "pred" / "c-00001-000.nii.gz", pred.astype(np.float32) + 0.5)
    save(tmp_path / "ref" / "c-00002-000.nii.gz", ref)
    save(tmp_path / "pred" / "c-00002-000.nii.gz", np.where(pred == 3, 4, pred))
    save(tmp_path / "ref" / "c-00003-000.nii.gz", ref)
    shifted = np.eye(4)
    shifted[0, 3] = 5
    save(tmp_path / "pred" / "c-00003-000.nii.gz", pred, shifted)
    save(tmp_path / "ref" / "c-00004-000.nii.gz", ref)
    save(tmp_path / "pred" / "c-00004-000.nii.gz", pred)
    ev = evaluate_folders(tmp_path / "pred", tmp_path / "ref")
    assert [c.case_id for c in ev.cases] == ["c-00004-000"]
    assert "non-integral" in ev.errors["c-00001-000"]
    assert "c-00001-000.nii.gz" in ev.errors["c-00001-000"]
    assert "[4]" in ev.errors["c-00002-000"]
    assert "grid differs" in ev.errors["c-00003-000"]
    # the old BraTS numbering is read with a mapping
    ev2 = evaluate_folders(
        tmp_path / "pred", tmp_path / "ref", mapping={0: 0, 1: 1, 2: 2, 4: 3, 3: 3}
    )
    assert "c-00002-000" not in ev2.errors


def test_outputs_use_the_official_names_and_json_conventions(
    folders: tuple[Path, Path], tmp_path: Path
) -> None:
    pred, ref = folders
    ev = evaluate_folders(pred, ref, workers=2)
    m = metrics_json(ev)
    assert set(m) == {"BraTS-MET-00001-000", "BraTS-MET-00002-000"}
    et = m["BraTS-MET-00001-000"]["ET"]
    assert list(et) == [
        "Num_TP",
        "Num_FP",
        "Num_FN",
        "Sensitivity",
        "Specificity",
        "Legacy_Dice",
        "Legacy_HD95",
        "GT_Complete_Volume",
        "LesionWise_Score_Dice",
        "LesionWise_Score_HD95",
    ]
    assert (et["Num_TP"], et["Num_FP"], et["Num_FN"]) == (1, 1, 1)
    assert isinstance(et["Num_TP"], int)
    perfect = m["BraTS-MET-00002-000"]["WT"]
    assert perfect["LesionWise_Score_Dice"] == 1.0 and perfect["Legacy_HD95"] == 0.0
    out = write_json(ev, tmp_path / "out" / "m.json", parse_bins("0,3,5,10,20"))
    assert json.loads(out.read_text()) == m
    detail = json.loads((tmp_path / "out" / "m.detail.json").read_text())
    lesions = detail["cases"]["BraTS-MET-00001-000"]["lesions"]
    kinds = sorted(les["kind"] for les in lesions if les["region"] == "ET")
    assert kinds == ["fn", "fp", "tp"]
    fn = next(les for les in lesions if les["region"] == "ET" and les["kind"] == "fn")
    assert fn["dice"] == 0 and fn["hd95"] == 374 and 3 <= fn["diameter_mm"] < 5
    files = write_csv_dir(ev, tmp_path / "csv")
    assert [f.name for f in files] == ["cases.csv", "lesions.csv", "summary.csv", "sizes.csv"]
    cases_csv = (tmp_path / "csv" / "cases.csv").read_text().splitlines()
    assert cases_csv[0].startswith("case_id,region,Num_TP")
    assert len(cases_csv) == 1 + 2 * 3


def test_nan_and_infinity_in_json() -> None:
    from brainmets.evaluate.output import json_value

    assert json_value(float("nan")) is None
    assert json_value(float("inf")) == "inf"
    assert json_value([np.float64(1.5), np.int64(2)]) == [1.5, 2]


def test_size_bins_and_froc(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    prob_dir = tmp_path / "prob"
    _, p = case_maps()
    prob = np.where(p > 0, 0.9, 0.0).astype(np.float32)
    prob[ball((30, 8, 30), 1.5)] = 0.4  # the false positive is less sure
    save(prob_dir / "BraTS-MET-00001-000_prob.nii.gz", prob)
    ev = evaluate_folders(pred, ref, probability_dir=prob_dir)
    bins = {(b.region, b.label): b for b in size_breakdown(ev.cases)}
    small = bins[("ET", "3-5 mm")]
    assert small.n_ref == 2 and small.n_detected == 1 and small.sensitivity == 0.5
    assert small.n_fp == 1 and small.fp_per_case == 0.5  # 19 voxels: 3.3 mm
    assert bins[("ET", "0-3 mm")].n_fp == 0
    curve = froc([ev.cases[0]], "ET")
    assert [(pt.threshold, pt.sensitivity, pt.fp_per_case) for pt in curve] == [
        (pytest.approx(0.9), 0.5, 0.0),
        (pytest.approx(0.4), 0.5, 1.0),
    ]
    with pytest.raises(ValueError):
        parse_bins("5,3")


def test_the_command_line(folders: tuple[Path, Path], tmp_path: Path) -> None:
    pred, ref = folders
    out = tmp_path / "m.json"
    r = run_cli(
        "evaluate", "--pred", str(pred), "--ref", str(ref), "--json", str(out),
        "--csv-dir", str(tmp_path / "csv"), "-j", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "2 case(s) evaluated" in r.stderr
    assert json.loads(out.read_text())["BraTS-MET-00001-000"]["ET"]["Num_FN"] == 1
    (ref / "BraTS-MET-00003-000-seg.nii.gz").write_bytes(
        (ref / "BraTS-MET-00001-000-seg.nii.gz").read_bytes()
    )
    r = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref))
    assert r.returncode == 1
    assert "no prediction" in r.stderr and "BraTS-MET-00003-000-seg.nii.gz" in r.stderr
    r = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), "--definition", "x")
    assert r.returncode == 2


def test_predict_cmd_runs_a_model_on_the_exported_dataset(tmp_path: Path) -> None:
    """A stand-in model: copies each case's reference with enhancing written as 4 (the old
    BraTS numbering) and one case's small lesion dropped."""
    ref, _ = case_maps()
    ds = tmp_path / "Dataset501_Test"
    for case in ("BM-AAAA0001", "BM-AAAA0002"):
        for c in range(4):
            save(ds / "imagesTr" / f"{case}_{c:04d}.nii.gz", np.zeros(SHAPE, np.float32))
        save(ds / "labelsTr" / f"{case}.nii.gz", ref)
    model = tmp_path / "model.py"
    model.write_text(
        textwrap.dedent(
            """
            import sys, pathlib
            import nibabel as nib, numpy as np
            inp, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
            for img in sorted(inp.glob("*_0000.nii.gz")):
                case = img.name[: -len("_0000.nii.gz")]
                lab = nib.load(str(inp.parent / "labelsTr" / f"{case}.nii.gz"))
                a = np.asarray(lab.dataobj).copy()
                if case.endswith("2"):
                    a[25:35, 25:35, 25:35] = 0
                a[a == 3] = 4
                nib.save(nib.Nifti1Image(a, lab.affine), str(out / f"{case}.nii.gz"))
            """
        )
    )
    out = tmp_path / "m.json"
    r = run_cli(
        "evaluate", "--dataset", str(ds), "--pred", str(tmp_path / "preds"),
        "--predict-cmd", f"{sys.executable} {model} {{input_dir}} {{output_dir}}",
        "--label-mapping", "brats-2021", "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert m["BM-AAAA0001"]["ET"]["LesionWise_Score_Dice"] == 1.0
    assert m["BM-AAAA0002"]["ET"]["Num_FN"] == 1
    # without the mapping, label 4 is refused with the file named
    r = run_cli(
        "evaluate", "--dataset", str(ds), "--pred", str(tmp_path / "preds2"),
        "--predict-cmd", f"{sys.executable} {model} {{input_dir}} {{output_dir}}",
    )  # fmt: skip
    assert r.returncode == 1 and "outside the allowed" in r.stderr
    # a failing model is reported, with its output
    fail = f"{sys.executable} -c 'import sys; sys.exit(3)' {{input_dir}} {{output_dir}}"
    r = run_cli(
        "evaluate", "--dataset", str(ds), "--pred", str(tmp_path / "preds3"), "--predict-cmd", fail
    )
    assert r.returncode == 1 and "status 3" in r.stderr
