"""ingest -> deid -> classify -> convert on a synthetic cohort, against its ground truth.

The cohort (``brainmets.synth.generate_cohort``) writes ``truth.json``: every series with its
true kind, and which patients lack a sequence (``expected_included``). Every series of the
cohort is classified from its original headers; then two patients (one complete, one
planted without a sequence) go through the real pipeline runner (inline executor), which
checks that

* every de-identified series is classified correctly (100 %),
* exactly the patients planted without a sequence are excluded, with the reason,
* the four NIfTI volumes of each included patient occupy the same place in the scanner's
  world as the true grid of the chosen series (all eight corners within 0.01 mm).

Generating the cohort takes about a minute, hence the ``slow`` mark; it is kept in pytest's
cache directory, keyed by the generator's source, so that later runs reuse it. Set
``BRAINMETS_SYNTH_COHORT`` to use an existing cohort folder instead.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bm_testutil import cached_synthetic_cohort
from brainmets.classify.classifier import classify_study
from brainmets.classify.header import index_series, read_headers
from brainmets.pipeline import InlineExecutor, Pipeline, Runner
from brainmets.workspace import Workspace

pytestmark = pytest.mark.slow
KIND = {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}
N_PATIENTS, SEED = 3, 11  # patients 0-2 are forced: complete, follow-up + SUB/MPR, no FLAIR


@pytest.fixture(scope="module")
def cohort(request: pytest.FixtureRequest) -> Path:
    return cached_synthetic_cohort(request, N_PATIENTS, SEED)


@pytest.fixture(scope="module")
def pipeline_ws(cohort: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from brainmets.classify.stage import STAGE as CLASSIFY
    from brainmets.convert.stage import STAGE as CONVERT
    from brainmets.deid.stage import STAGE as DEID
    from brainmets.ingest import STAGE as INGEST

    truth = json.loads((cohort / "truth.json").read_text())
    complete = next(p for p in truth["patients"] if p["expected_included"])
    lacking = next(p for p in truth["patients"] if not p["expected_included"])
    ws = Workspace.init(tmp_path_factory.mktemp("synth-ws") / "ws")
    for patient in (complete, lacking):
        ws.config.add_source(cohort / "dicom" / patient["mrn"])
    ws.save_config()
    pipeline = Pipeline((INGEST, DEID, CLASSIFY, CONVERT))
    with ws.lock():
        summary = Runner(ws, pipeline, InlineExecutor(), progress=False).run()
    assert not summary.failures, summary.failures
    return ws


def _corners(affine: np.ndarray, shape: list[int]) -> np.ndarray:
    idx = np.array(list(itertools.product(*[(0, n - 1) for n in shape[:3]])), dtype=float)
    world = (np.c_[idx, np.ones(len(idx))] @ np.asarray(affine).T)[:, :3]
    return world[np.lexsort(world.T[::-1])]


def test_every_series_of_the_cohort_is_classified_correctly(cohort: Path) -> None:
    truth = json.loads((cohort / "truth.json").read_text())
    checked, wrong = 0, []
    for patient in truth["patients"]:
        for study in patient["studies"]:
            headers, true = [], {}
            for se in study["series"]:
                read = read_headers(sorted((cohort / se["dir"]).iterdir()))
                h = index_series([ds for _, ds in read], uid=se["series_instance_uid"])
                headers.append(h)
                true[h.uid] = (KIND.get(se["kind"], "other"), se["kind"], se["description"])
            for uid, c in classify_study(headers).items():
                checked += 1
                if c.cls != true[uid][0]:
                    wrong.append((patient["mrn"], *true[uid], c.cls, c.reason))
    assert checked >= 25
    assert not wrong, wrong


def test_classification_inclusion_and_conversion_match_the_truth(
    cohort: Path, pipeline_ws: Workspace
) -> None:
    truth = json.loads((cohort / "truth.json").read_text())
    ws = pipeline_ws
    with ws.catalog(readonly=True) as cat:
        files = {
            Path(r.path).resolve(): (r.patient_id, r.sop_uid, r.status) for r in cat.source_files()
        }
        series_of = {r.sop_uid: r.series_uid for r in cat.instances()}
        header = {r.uid: r for r in cat.indexed_series()}
        status = {r.id: (r.status, r.excluded_reason) for r in cat.patients()}

    checked, wrong = 0, []
    for patient in truth["patients"]:
        if (cohort / "dicom" / patient["mrn"]) not in ws.config.sources:
            continue
        pid = None
        truth_of: dict[str, dict] = {}  # de-identified series UID -> truth series
        for study in patient["studies"]:
            for se in study["series"]:
                first = sorted((cohort / se["dir"]).iterdir())[0].resolve()
                pid, sop, state = files[first]
                if se["kind"] == "SC":
                    assert state == "quarantined"  # screenshots never reach the workspace
                    continue
                uid = series_of[sop]
                truth_of[uid] = se
                got = header[uid].classification
                checked += 1
                if got["cls"] != KIND.get(se["kind"], "other"):
                    wrong.append((patient["mrn"], se["kind"], se["description"], got))
        # inclusion rule
        state, reason = status[pid]
        if patient["expected_included"]:
            assert state == "active", (patient["mrn"], reason)
        else:
            assert state == "excluded", patient["mrn"]
            for seq in patient["missing_sequences"]:
                assert f"lacks {KIND[seq]}" in reason or f", {KIND[seq]}" in reason, reason
            continue
        # conversion: the volume lies where the true grid of the chosen series lies
        sel = json.loads(
            (ws.config.path("derivatives") / pid / "classify/selection.json").read_text()
        )
        for role in ("t1", "t1c", "t2", "flair"):
            se = truth_of[sel["selected"][role]["series_uid"]]
            assert KIND[se["kind"]] == role
            img = nib.load(ws.config.path("derivatives") / pid / "convert" / f"{role}.nii.gz")
            (grid,) = se["grids"]
            assert sorted(img.shape) == sorted(grid["shape"]), (role, img.shape, grid["shape"])
            np.testing.assert_allclose(
                _corners(img.affine, list(img.shape)),
                _corners(np.asarray(grid["affine_ras"]), grid["shape"]),
                atol=0.01,
                err_msg=f"{patient['mrn']} {role}",
            )
    assert checked >= 12
    assert not wrong, wrong
