"""brainmets.synth.check: the truth comparison finds what is right and what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bm_testutil import cached_synthetic_cohort
from brainmets.ids import patient_pseudonym
from brainmets.labelmaps import LabelMap, load_label_map, save_label_map
from brainmets.lesions import analyse, load_atlas_labels
from brainmets.synth.check import check_truth, load_truth

KEY = b"0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def cohort(request: pytest.FixtureRequest) -> Path:
    return cached_synthetic_cohort(request, 6, 0)


def _publish(cohort: Path, out: Path, edit=None) -> dict[str, dict[str, Path]]:
    """Results as a pipeline would publish them, made from the truth label maps themselves
    (``edit(patient_index, labels)`` changes a copy first)."""
    atlas = load_atlas_labels()
    results = {}
    for i, rec in enumerate(load_truth(cohort)["patients"]):
        if not rec["expected_included"]:
            continue
        lm = load_label_map(cohort / rec["truth_files"]["label_map"])
        data = lm.data.copy()
        if edit is not None:
            edit(i, data)
        pid = patient_pseudonym(KEY, rec["mrn"])
        seg = save_label_map(out / f"{pid}-seg.nii.gz", data, lm.affine)
        feats = out / f"{pid}-features.json"
        feats.write_text(json.dumps(analyse(LabelMap(data, lm.affine), atlas=atlas).to_json()))
        results[pid] = {"seg": seg, "features": feats}
    return results


def test_the_truth_itself_meets_every_target(cohort: Path, tmp_path: Path) -> None:
    check = check_truth(cohort, tmp_path, KEY, _publish(cohort, tmp_path))
    assert len(check.patients) >= 4 and not check.missing
    assert check.counts_exact == check.count_cells
    assert all(v.ok and v.error == 0 for v in check.volume_checks)
    assert check.core_dice_median == 1.0
    assert check.ok, check.summary_lines()
    assert check.summary_lines()[-1] == "all targets met"


def test_an_extra_edema_blob_and_a_missing_patient_are_caught(cohort: Path, tmp_path: Path) -> None:
    def blob(i: int, labels: np.ndarray) -> None:
        if i == 0:
            labels[5:25, 5:25, 5:25] = 2  # 8000 "edema" voxels in a corner: a second component

    results = _publish(cohort, tmp_path, blob)
    check = check_truth(cohort, tmp_path, KEY, results)
    first = check.patients[0]
    assert first.counts_got["Edema_num"] == first.counts_truth["Edema_num"] + 1
    assert check.counts_exact == check.count_cells - 1
    assert any(v.label == "edema" and not v.ok for v in first.volumes)
    assert "counts_exact" in check.failed_targets() and not check.ok
    assert any("->" in c for c in check.table()[1])  # truth -> measured in the table

    gone = dict(results)
    missing = gone.pop(next(iter(gone)))
    assert missing
    check = check_truth(cohort, tmp_path, KEY, gone)
    assert len(check.missing) == 1 and not check.ok
    assert check.table()[-1][1] == "no result"


def test_the_demo_names_expected_exclusions_by_pseudonym() -> None:
    from types import SimpleNamespace

    from rich.console import Console

    from brainmets.synth.cli import cohort_table

    summary = SimpleNamespace(
        template="sri24",
        seed=0,
        mrns=["10000001", "86132584"],
        n_series=9,
        n_files=99,
        excluded=["86132584"],
        out_dir=Path("c"),
        truth_json=Path("c/truth.json"),
        clinical_sheet=Path("c/clinical.xlsx"),
    )
    console = Console(record=True, width=200)
    console.print(cohort_table(summary, 1.0, lambda mrn: patient_pseudonym(KEY, mrn)))  # type: ignore[arg-type]
    text = console.export_text()
    assert patient_pseudonym(KEY, "86132584") in text and "86132584" not in text
    console = Console(record=True, width=200)
    console.print(cohort_table(summary, 1.0))  # type: ignore[arg-type]
    assert "expected exclusions (MRNs)" in console.export_text()
    # at 80 columns the paths are whole lines (never broken inside a table cell)
    from brainmets.synth.cli import print_cohort

    long = Path("/a/rather/long/folder/name/for/the/synthetic/demo/cohort/that/needs/space")
    summary.out_dir = long
    summary.truth_json = long / "truth.json"
    console = Console(record=True, width=80)
    print_cohort(console, summary, 1.0)  # type: ignore[arg-type]
    lines = console.export_text(styles=False).splitlines()
    assert f"ground truth: {long / 'truth.json'}" in lines


def test_the_demo_truth_table_fits_80_columns() -> None:
    from rich.console import Console

    import brainmets.cli as cli
    from brainmets.synth.check import PatientCheck, TruthCheck

    pc = PatientCheck(
        patient_id="BM-NGZXA6R4",
        counts_truth={"ET_num": 13, "Nec_num": 1, "Edema_num": 3},
        counts_got={"ET_num": 12, "Nec_num": 1, "Edema_num": 2},
        infratentorial_truth=1,
        infratentorial_got=1,
    )
    pc.core_dice = {1: 0.98}
    check = TruthCheck()
    check.patients.append(pc)
    old = cli.console
    cli.console = Console(record=True, width=80)
    try:
        cli._print_truth_check(check)
        text = cli.console.export_text(styles=False)
    finally:
        cli.console = old
    row = next(line for line in text.splitlines() if "BM-NGZXA6R4" in line)
    assert row.split() == [
        "BM-NGZXA6R4",
        "13",
        "->",
        "12",
        "1",
        "3",
        "->",
        "2",
        "1",
        "0/0",
        "0.980",
    ]
    assert all(h in text for h in ("ET_num", "Nec_num", "Edema_num", "Infratent.", "Dice"))
