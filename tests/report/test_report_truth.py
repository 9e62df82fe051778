"""The report's check against the synthetic truth: a section and ``truth_check.csv`` when the
workspace's source is a synthetic cohort with a ``truth.json``; nothing (and no error) when
there is no truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from rx_workspace import ATLAS_TO_T1C, LESIONS, MRNS, SHAPE, ball_labels, save_sri24

from brainmets.report.truth import find_truth

SECTION = "Check against the synthetic truth"


def _report_dir(root: Path) -> Path:
    return root / "data" / "derivatives" / "_cohort" / "report"


def _csv(root: Path, name: str) -> list[list[str]]:
    with open(_report_dir(root) / "tables" / f"{name}.csv", newline="") as fh:
        return list(csv.reader(fh))


def _instances(lesions: list[tuple[tuple[int, int, int], float, float, float]]) -> np.ndarray:
    inst = np.zeros(SHAPE, np.uint16)
    ii, jj, kk = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for n, ((ci, cj, ck), r_et, _, r_ed) in enumerate(lesions, start=1):
        d2 = (ii - ci) ** 2 + (jj - cj) ** 2 + (kk - ck) ** 2
        inst[(d2 <= max(r_et, r_ed) ** 2) & (inst == 0)] = n
    return inst


def write_truth(cohort: Path, features: dict[str, dict], wrong_et: str) -> None:
    """A ``truth.json`` for patients a and b of the small workspace: the truth is what was
    measured, except patient ``wrong_et``'s ET_num (one more), and patient c (no FLAIR) is
    not expected."""
    patients = []
    for letter in ("a", "b", "c"):
        rec: dict = {
            "mrn": MRNS[letter],
            "expected_included": letter != "c",
            "studies": [{"series": [{"kind": "T1"}]}],
        }
        if letter != "c":
            lab = ball_labels(LESIONS[letter])
            save_sri24(cohort / "truth" / f"{letter}-label.nii.gz", lab, np.uint8)
            save_sri24(
                cohort / "truth" / f"{letter}-inst.nii.gz", _instances(LESIONS[letter]), np.uint16
            )
            f = features[letter]
            summary = {k: int(f[k]) for k in ("ET_num", "Nec_num", "Edema_num", "Infratentorial")}
            if letter == wrong_et:
                summary["ET_num"] += 1
            rec |= {
                "summary": summary,
                "truth_files": {
                    "label_map": f"truth/{letter}-label.nii.gz",
                    "instance_map": f"truth/{letter}-inst.nii.gz",
                },
                "lesions": [
                    {"id": n, "max_diameter_mm": 2 * les[1]}
                    for n, les in enumerate(LESIONS[letter], start=1)
                ],
                "studies": [
                    {"series": [{"kind": "T1c", "template_to_scanner": ATLAS_TO_T1C.tolist()}]}
                ],
            }
        patients.append(rec)
    (cohort / "dicom").mkdir(parents=True, exist_ok=True)
    (cohort / "truth.json").write_text(json.dumps({"patients": patients}))


@pytest.fixture(scope="module")
def truth_ws(tmp_path_factory: pytest.TempPathFactory, sri24_atlas: Path):
    from rx_workspace import make_workspace

    base = tmp_path_factory.mktemp("truth")
    rx = make_workspace(base)
    feats = {}
    for letter in ("a", "b"):
        path = rx.root / f"data/derivatives/{rx.pids[letter]}/features/features.json"
        feats[letter] = json.loads(path.read_text())["features"]
    write_truth(base / "cohort", feats, wrong_et="b")
    from brainmets.workspace import Workspace

    ws = Workspace.open(rx.root)
    ws.config.add_source(base / "cohort" / "dicom")  # as brainmets demo registers it
    ws.save_config()
    summary = rx.run(["report"])
    assert summary.counts["report"]["done"] == 1  # the truth is an input of the report
    return rx


def test_no_truth_no_section(rx) -> None:
    html = (_report_dir(rx.root) / "report.html").read_text()
    assert SECTION not in html
    assert not (_report_dir(rx.root) / "tables" / "truth_check.csv").exists()
    assert find_truth(rx.root, [rx.root / "nowhere"]) is None


def test_truth_section_and_csv(truth_ws) -> None:
    rows = _csv(truth_ws.root, "truth_check")
    head = rows[0]
    assert head[:5] == [
        "Patient",
        "Label",
        "Components (truth)",
        "Components (measured)",
        "Count",
    ]
    body = {(r[0], r[1]): dict(zip(head, r, strict=True)) for r in rows[1:]}
    a, b = truth_ws.pids["a"], truth_ws.pids["b"]
    assert len(body) == 6 and truth_ws.pids["c"] not in {r[0] for r in rows}
    for label in ("enhancing (ET_num)", "necrosis (Nec_num)", "edema (Edema_num)"):
        assert body[(a, label)]["Count"] == "pass"
        assert body[(a, label)]["Volumes"] == "pass"  # the same map as truth and measurement
        assert body[(a, label)]["Volume truth (cm^3)"] == body[(a, label)]["Volume measured (cm^3)"]
    assert body[(a, "enhancing (ET_num)")]["Components (truth)"] == "2"
    bad = body[(b, "enhancing (ET_num)")]
    assert (bad["Components (truth)"], bad["Components (measured)"], bad["Count"]) == (
        "2",
        "1",
        "fail",
    )
    assert float(body[(a, "edema (Edema_num)")]["Core Dice (median over lesions)"]) == 1.0
    targets = {r[0]: r for r in _csv(truth_ws.root, "truth_check_targets")[1:]}
    counts = targets["Component counts exact (patient x label cells)"]
    assert counts[1:] == ["83.3%", ">= 95%", "fail"]
    assert targets["Median per-lesion core Dice"][1:] == ["1.000", ">= 0.9", "pass"]
    html = (_report_dir(truth_ws.root) / "report.html").read_text()
    assert f"<h2>{SECTION}</h2>" in html and "counts exact: 5/6 patient x label cells" in html
    assert "Targets not met: Component counts exact" in html


def test_truth_can_be_turned_off(truth_ws) -> None:
    truth_ws.set("report", synthetic_truth="none")
    try:
        truth_ws.run(["report"])
        assert SECTION not in (_report_dir(truth_ws.root) / "report.html").read_text()
        assert not (_report_dir(truth_ws.root) / "tables" / "truth_check.csv").exists()
    finally:
        truth_ws.set("report", synthetic_truth="")
