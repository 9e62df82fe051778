"""Against the synthetic cohort's ground truth (``brainmets.synth``): the features of the
template-space label maps equal ``truth.json`` exactly; importing the native-grid masks and
the DICOM SEGs reproduces the label maps; the planted clinical defects are reported.

Generates 2 patients (about a minute); set ``BRAINMETS_SYNTH_COHORT`` to an existing
cohort folder to reuse one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmets.atlas import AtlasError
from brainmets.features import load_clinical, read_sheet
from brainmets.lesions import analyse, load_atlas_labels, load_label_map
from brainmets.lesions.atlas import AtlasLabels
from brainmets.segment import ImportOptions, annotation_transforms, import_annotations

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def atlas() -> AtlasLabels:
    try:
        return load_atlas_labels()
    except AtlasError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, atlas: AtlasLabels) -> tuple[Path, dict]:
    given = os.environ.get("BRAINMETS_SYNTH_COHORT")
    if given:
        out = Path(given)
    else:
        synth = pytest.importorskip("brainmets.synth")
        out = tmp_path_factory.mktemp("synth")
        synth.generate_cohort(out, 2, seed=11, workers=2)
    truth = json.loads((out / "truth.json").read_text())
    if truth["template"]["name"] != "SRI24":
        pytest.skip("the cohort was not generated on SRI24 anatomy")
    return out, truth


def _match(lesions: list, truth: list[dict]) -> list[tuple]:
    """Pair each truth lesion with the analysed lesion nearest its centre."""
    pairs = []
    for t in truth:
        c = np.array(t["centre_template_mm"])
        best = min(
            lesions,
            key=lambda x: np.linalg.norm(
                [x.centroid_x_mm - c[0], x.centroid_y_mm - c[1], x.centroid_z_mm - c[2]]
            ),
        )
        pairs.append((t, best))
    return pairs


def test_features_equal_the_truth(cohort: tuple[Path, dict], atlas: AtlasLabels) -> None:
    out, truth = cohort
    for p in truth["patients"]:
        lm = load_label_map(out / p["truth_files"]["label_map"])
        a = analyse(lm, atlas=atlas)
        s = p["summary"]
        row = a.features.row()
        for col in (
            "ET_num",
            "Nec_num",
            "Edema_num",
            "ET_vol",
            "Nec_vol",
            "Edema_vol",
            "Infratentorial",
        ):
            assert row[col] == s[col], (p["index"], col)
        for col in ("Nec_ET_ratio", "Edema_ET_ratio"):
            assert row[col] == pytest.approx(s[col], abs=1e-4), (p["index"], col)
        touching = {n for g in p["merged_edema_groups"] for n in g}
        if not any(t["placed_next_to"] for t in p["lesions"]):
            assert a.features.n_lesions == s["n_lesions"]
        for t, les in _match(a.lesions, p["lesions"]):
            if t["id"] in touching or t["placed_next_to"]:
                continue
            v = t["volume_voxels"]
            assert (les.voxels, les.et_voxels, les.nec_voxels) == (
                v["core"],
                v["enhancing"],
                v["necrosis"],
            )
            assert les.infratentorial == t["infratentorial"]
            assert les.max_diameter_mm == pytest.approx(t["max_diameter_mm"], abs=0.01)
            assert les.has_necrosis == t["has_necrosis"]
            assert les.region == t["region"]


def _thickness(p: dict, kind: str) -> float:
    for series in p["studies"][0]["series"]:
        if series["kind"] == kind:
            return float(series["slice_thickness"])
    return 0.0


@pytest.mark.parametrize(
    ("fmt", "interpolation"), [("masks", "nearest"), ("dicom-seg", "nearest"), ("masks", "linear")]
)
def test_native_annotations_reproduce_the_label_map(
    cohort: tuple[Path, dict], atlas: AtlasLabels, fmt: str, interpolation: str
) -> None:
    """Masks drawn on the native T1c / FLAIR grids, brought back to the template: close to
    the truth (how close depends on the slice thickness they were drawn with)."""
    out, truth = cohort
    for p in truth["patients"]:
        if not p["truth_files"]["masks"]:
            continue
        folder = out / "truth" / p["mrn"]
        ref = nib.load(str(out / p["truth_files"]["label_map"]))
        options = ImportOptions(format=fmt, mask_interpolation=interpolation)
        result = import_annotations(
            folder, ref.shape, ref.affine, options, annotation_transforms(folder)
        )
        expected = np.asarray(ref.dataobj)
        drawn = {m["region"] for m in p["truth_files"]["masks"].values()}
        if "whole" not in drawn:  # no FLAIR: the edema was never drawn
            expected = np.where(expected == 2, 0, expected)
        for label, kind in ((1, "T1c"), (2, "FLAIR"), (3, "T1c")):
            t, s = expected == label, result.labels == label
            if t.sum() == 0:
                continue
            dice = 2 * (t & s).sum() / (t.sum() + s.sum())
            minimum = 0.9 if _thickness(p, kind) <= 1.5 else 0.65
            assert dice > minimum, (p["index"], fmt, label, dice)
        got = analyse(result.labels, ref.affine, atlas=atlas).features
        assert got.infratentorial == p["summary"]["Infratentorial"]
        assert got.n_lesions == analyse(expected, ref.affine).features.n_lesions


def test_planted_clinical_defects_are_reported(cohort: tuple[Path, dict]) -> None:
    out, truth = cohort
    sheet = out / truth["clinical_sheet"]
    header, rows = read_sheet(sheet)
    row_of = {str(values[0]): n for n, values in rows}
    table = load_clinical(sheet)
    found = {(p.row, p.column) for p in table.problems}
    for d in truth["clinical_defects"]:
        assert (row_of[d["mrn"]], d["column"]) in found, d
    assert all(p.value != "<MRN withheld>" or p.column == "MRN" for p in table.problems)
    mrns = {p["mrn"] for p in truth["patients"]}
    assert all(not any(m in p.value for m in mrns) for p in table.problems)
