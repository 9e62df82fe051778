"""An evaluation kept in the workspace (``brainmets evaluate --workspace --name``) appears in
the report: its section, tables and figure; the report re-runs when one is added."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from bm_testutil import run_cli

SHAPE = (40, 40, 40)


def ball(c: tuple[int, int, int], r: float) -> np.ndarray:
    g = np.indices(SHAPE)
    return sum((g[i] - c[i]) ** 2 for i in range(3)) <= r * r


def save(path: Path, data: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


@pytest.fixture(scope="module")
def rx_eval(tmp_path_factory: pytest.TempPathFactory, sri24_atlas: Path):
    from rx_workspace import make_workspace

    return make_workspace(tmp_path_factory.mktemp("rx-eval"))


def _folders(tmp: Path) -> tuple[Path, Path]:
    ref = np.zeros(SHAPE, np.uint8)
    ref[ball((10, 10, 10), 6)] = 3  # ~12 mm: found
    ref[ball((30, 30, 30), 1.5)] = 3  # ~3.5 mm: missed
    pred = ref.copy()
    pred[ball((30, 30, 30), 2)] = 0
    pred[ball((30, 8, 30), 1.5)] = 3  # a false positive
    for i in (1, 2):
        save(tmp / "ref" / f"case-0000{i}-000.nii.gz", ref)
        save(tmp / "pred" / f"case-0000{i}-000.nii.gz", pred)
    return tmp / "pred", tmp / "ref"


def test_a_kept_evaluation_is_in_the_report(rx_eval, tmp_path: Path) -> None:
    pred, ref = _folders(tmp_path)
    bad = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), "--workspace",
                  str(rx_eval.root), "--name", "../escape")  # fmt: skip
    assert bad.returncode == 2 and "--name" in bad.stderr
    out = run_cli("evaluate", "--pred", str(pred), "--ref", str(ref), "--definition",
                  "brats2025", "--workspace", str(rx_eval.root), "--name", "model-a")  # fmt: skip
    assert out.returncode == 0, out.stderr
    kept = rx_eval.ws.config.evaluations_dir / "model-a"
    detail = json.loads((kept / "metrics.detail.json").read_text())
    assert detail["name"] == "model-a" and detail["definition"] == "brats2025"
    assert (kept / "metrics.json").is_file() and (kept / "sizes.csv").is_file()
    assert str(tmp_path) not in (kept / "metrics.detail.json").read_text()  # no paths kept

    summary = rx_eval.run(["report"])
    assert summary.counts["report"]["done"] == 1  # a new evaluation redoes the report
    rep = rx_eval.root / "data" / "derivatives" / "_cohort" / "report"
    html = (rep / "report.html").read_text()
    assert "Evaluation of segmentation models" in html and "model-a" in html
    assert "case-00001-000" not in html  # aggregates only
    with open(rep / "tables" / "evaluation_sizes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    et = {r["Size"]: r for r in rows if r["Region"] == "ET"}
    want = {b["label"]: b for b in detail["size_bins"] if b["region"] == "ET"}
    for label, row in et.items():
        assert int(row["Lesions"]) == want[label]["n_ref"]
        assert int(row["Found"]) == want[label]["n_detected"]
    assert et["3-5 mm"]["Lesions"] == "2" and et["3-5 mm"]["Found"] == "0"
    assert et["10-20 mm"]["Found"] == "2"
    # the figure: sensitivity bars in the ET colour, not a blank image
    png = (rep / "figures" / "evaluation_model-a.png").read_bytes()
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    red = (abs(img[..., 0] - 0xD6) < 12) & (abs(img[..., 1] - 0x27) < 12) & (img[..., 2] < 60)
    assert red.sum() > 500
    assert rx_eval.run(["report"]).counts["report"]["skipped"] == 1
