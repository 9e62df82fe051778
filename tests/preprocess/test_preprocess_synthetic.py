"""Preprocessing of synthetic patients against their ground truth (issue 6's accuracy
evidence): the generator records every series' true SRI24 -> scanner transform and the
tumour label map, so the test checks

* registration error of brain voxels (rigid atlas step vs the closest rigid fit of the true,
  scaled transform): median over patients <= 1 mm, worst <= 2 mm; co-registration <= 1 mm;
* no tumour, necrosis or oedema voxel outside the brain mask (lesion protection);
* both co-registration directions (``fixed_image``) give the same transform within 0.5 mm.

Uses the cached 3-patient cohort of the classify tests (2 included patients); each case
takes about a minute on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bm_testutil import cached_synthetic_cohort
from brainmets.atlas import atlas_file
from brainmets.preprocess import PreprocessOptions, preprocess_case
from brainmets.preprocess.evaluation import (
    brain_points,
    registration_errors,
    synthetic_inputs,
    synthetic_truth,
    tumour_outside_mask,
)
from brainmets.preprocess.transforms import mean_displacement

pytestmark = pytest.mark.slow
N_PATIENTS, SEED = 3, 11


@pytest.fixture(scope="module")
def cohort(request: pytest.FixtureRequest) -> Path:
    out = cached_synthetic_cohort(request, N_PATIENTS, SEED)
    truth = json.loads((out / "truth.json").read_text())
    if truth["template"]["name"] != "SRI24":
        pytest.skip("the cohort was not generated on SRI24 anatomy")
    return out


@pytest.fixture(scope="module")
def cases(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    truth = json.loads((cohort / "truth.json").read_text())
    mrns = [p["mrn"] for p in truth["patients"] if p["expected_included"]]
    assert mrns
    tmp = tmp_path_factory.mktemp("pp-synth")
    pts = brain_points(atlas_file("t1_brain.nii.gz"))
    out: dict[str, dict] = {}
    for mrn in mrns:
        inputs = synthetic_inputs(cohort, mrn, tmp / "nifti" / mrn)
        res = preprocess_case(inputs, tmp / "out" / mrn, mrn, PreprocessOptions())
        assert res.transforms is not None
        mask = np.asarray(nib.load(str(res.outputs["mask"])).dataobj) > 0
        out[mrn] = {
            "inputs": inputs,
            "result": res,
            "errors": registration_errors(res.transforms, synthetic_truth(cohort, mrn), pts),
            "tumour": tumour_outside_mask(cohort, mrn, res.transforms, mask),
        }
    return out


def test_registration_error_within_limits(cases: dict[str, dict]) -> None:
    atlas = [c["errors"]["atlas_mean"] for c in cases.values()]
    assert float(np.median(atlas)) <= 1.0, atlas
    assert max(atlas) <= 2.0, atlas
    for c in cases.values():
        for s in ("t1", "t2", "flair"):
            assert c["errors"][f"coreg_{s}"] <= 1.0, (s, c["errors"])


def test_no_tumour_voxel_outside_the_brain_mask(cases: dict[str, dict]) -> None:
    for mrn, c in cases.items():
        total, outside = c["tumour"]
        assert total > 0, mrn
        assert outside == 0, (mrn, total, outside, c["result"].qc["skull_stripper"])


def test_coregistration_directions_agree(cohort: Path, cases: dict[str, dict]) -> None:
    """``fixed_image="reference"`` (the CaPTk direction) and the default ``"auto"`` (the
    smaller image fixed, optimum inverted) find the same T1c -> sequence transform."""
    from brainmets.preprocess.images import load_volume, reorient
    from brainmets.preprocess.registration import RegistrationOptions, n4_array, register

    mrn, c = next(iter(cases.items()))
    tr = c["result"].transforms
    fixed = dict(tr.details["fixed_image"])
    assert fixed.pop("t1c") in ("t1c", "template")
    assert set(fixed) == {"t1", "t2", "flair"}
    assert all(fixed[s] in (s, "t1c") for s in fixed)
    vols = {s: reorient(load_volume(c["inputs"][s]), "RAS") for s in ("t1c", "flair")}
    est = {s: (n4_array(v.data, v.affine), v.affine) for s, v in vols.items()}
    r = register(est["t1c"], est["flair"], RegistrationOptions())
    pts = np.argwhere(vols["t1c"].data > np.percentile(vols["t1c"].data, 75))[::50]
    world = (vols["t1c"].affine[:3, :3] @ pts.T).T + vols["t1c"].affine[:3, 3]
    assert mean_displacement(r.matrix, tr.t1c_to["flair"], world) < 0.5


def test_atlas_extractor_keeps_tumour_too(cohort: Path, cases: dict[str, dict]) -> None:
    """The classical extractor (no deep-learning framework) with the same lesion protection,
    on the same registered images: no tumour voxel outside its mask either."""
    from brainmets.preprocess.images import load_volume, reorient
    from brainmets.preprocess.pipeline import AtlasImages
    from brainmets.preprocess.registration import resample_array
    from brainmets.preprocess.skullstrip import extract_brain

    atlas = AtlasImages.load(None)
    assert atlas.head is not None
    for mrn, c in cases.items():
        tr = c["result"].transforms
        images = {}
        for s in ("t1", "t1c", "t2", "flair"):
            v = reorient(load_volume(c["inputs"][s]), "RAS")
            images[s] = resample_array(v.data, v.affine, atlas.grid, tr.atlas_to[s])
        ex = extract_brain(
            images,
            atlas.grid,
            "atlas",
            (atlas.head.data, atlas.head.affine),
            (atlas.brain.data, atlas.brain.affine),
            ("t1c",),
        )
        total, outside = tumour_outside_mask(cohort, mrn, tr, ex.mask)
        assert total > 0 and outside == 0, (mrn, total, outside)
