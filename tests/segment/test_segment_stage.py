"""The segment and features stages in a workspace, run by the pipeline runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from brainmets.atlas import AtlasError, atlas_file
from brainmets.catalog import utcnow
from brainmets.cohort import workspace_features, write_workspace_workbook
from brainmets.features.stage import STAGE as FEATURES
from brainmets.ids import patient_pseudonym
from brainmets.pipeline import InlineExecutor, Pipeline, Runner, Stage, StageContext, StageResult
from brainmets.segment.stage import STAGE as SEGMENT
from brainmets.workspace import Workspace

MRNS = {"a": "10000001", "b": "10000002", "c": "10000003", "d": "10000004"}


def _enrol(ctx: StageContext) -> StageResult:
    rows = [{"id": p, "created_at": utcnow()} for p in ctx.params["patients"]]
    return StageResult(records={"patients": rows})


TO_NATIVE = np.eye(4)
TO_NATIVE[:3, 3] = [100.0, -110.0, -60.0]  # template world -> native world (patient b)


def _itk_text(m: np.ndarray) -> str:
    lps = np.diag([-1.0, -1, 1, 1]) @ m @ np.diag([-1.0, -1, 1, 1])
    params = " ".join(repr(float(v)) for v in [*lps[:3, :3].ravel(), *lps[:3, 3]])
    return (
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {params}\nFixedParameters: 0 0 0\n"
    )


def _fake_preprocess(ctx: StageContext) -> StageResult:
    """Stands in for the preprocess stage: the reference grid, and for the patients in
    ``with_transforms`` ITK transform files like the real stage records."""
    tpl = nib.load(str(atlas_file("t1_brain.nii.gz")))
    ref = ctx.out_dir / f"{ctx.patient_id}-t1c.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(tpl.shape, np.uint8), tpl.affine, tpl.header), str(ref))
    outputs = {"t1c": ref}
    if ctx.patient_id in ctx.params["outside_brain"]:  # a brain mask the lesions miss
        mask = np.zeros(tpl.shape, np.uint8)
        mask[:20, :20, :20] = 1
        outputs["mask"] = ctx.out_dir / f"{ctx.patient_id}-mask.nii.gz"
        nib.save(nib.Nifti1Image(mask, tpl.affine, tpl.header), str(outputs["mask"]))
    if ctx.patient_id in ctx.params["with_transforms"]:
        for seq in ("t1c", "t2f"):
            p = ctx.out_dir / f"{ctx.patient_id}-{seq}-to-sri24.txt"
            p.write_text(_itk_text(TO_NATIVE))
            outputs[f"transform_{seq}"] = p
    return StageResult(outputs=outputs)


PIPELINE = Pipeline(
    (
        Stage("enrol", _enrol, scope="cohort", defaults={"patients": []}),
        Stage(
            "preprocess", _fake_preprocess, defaults={"with_transforms": [], "outside_brain": []}
        ),
        SEGMENT,
        FEATURES,
    )
)


def ball(shape: tuple[int, ...], affine: np.ndarray, centre: np.ndarray, r: float) -> np.ndarray:
    """Voxels whose centres lie within ``r`` mm of ``centre`` (evaluated in a box around it)."""
    inv = np.linalg.inv(affine)
    c = inv[:3, :3] @ centre + inv[:3, 3]
    ext = np.abs(inv[:3, :3]).sum(axis=1) * r + 1
    lo = np.clip(np.floor(c - ext).astype(int), 0, shape)
    hi = np.clip(np.ceil(c + ext).astype(int) + 1, 0, shape)
    out = np.zeros(shape, bool)
    sub = np.indices(tuple(hi - lo)).reshape(3, -1).T + lo
    pts = sub @ affine[:3, :3].T + affine[:3, 3]
    inside = ((pts - centre) ** 2).sum(1) <= r * r
    out[tuple(sub[inside].T)] = True
    return out


@pytest.fixture(scope="module")
def template() -> nib.Nifti1Image:
    try:
        return nib.load(str(atlas_file("t1_brain.nii.gz")))
    except AtlasError as exc:
        pytest.skip(str(exc))


def _annotations(root: Path, tpl: nib.Nifti1Image) -> dict[str, np.ndarray]:
    ann = root / "annotations"
    shape, aff = tpl.shape, tpl.affine
    # a: combined label map already on the atlas grid
    lab = np.zeros(shape, np.uint8)
    lab[100:110, 150:160, 100:110] = 2
    lab[103:107, 153:157, 103:107] = 3
    lab[60:64, 120:124, 80:84] = 3
    (ann / MRNS["a"]).mkdir(parents=True)
    nib.save(nib.Nifti1Image(lab, aff), str(ann / MRNS["a"] / "seg.nii.gz"))
    # b: native masks (T1c grid 0.9 mm, FLAIR grid 3 mm slices) + transforms.json
    centre = np.array([-100.0, 120.0, 90.0])  # template world
    to_native = TO_NATIVE
    c_native = centre + to_native[:3, 3]
    t1c = np.diag([0.9, 0.9, 0.9, 1.0])
    t1c[:3, 3] = c_native - 20.0
    flair = np.diag([0.9, 0.9, 3.0, 1.0])
    flair[:3, 3] = c_native - 30.0
    d = ann / MRNS["b"]
    d.mkdir()
    for name, grid, shp, r in (
        ("Core1_PGGE", t1c, (45, 45, 45), 7.0),
        ("Necrosis1_PGGE", t1c, (45, 45, 45), 3.0),
        ("Whole1_FLAIR", flair, (67, 67, 20), 15.0),
    ):
        m = ball(shp, grid, c_native, r).astype(np.uint8)
        nib.save(nib.Nifti1Image(m, grid), str(d / f"{name}.nii.gz"))
    spec = {"matrix": to_native.tolist(), "convention": "RAS", "direction": "template_to_native"}
    (d / "transforms.json").write_text(json.dumps({"t1c": spec, "t2f": spec}))
    # d: an empty label map (valid: no lesion)
    (ann / MRNS["d"]).mkdir()
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), aff), str(ann / MRNS["d"] / "seg.nii.gz"))
    truth_b = np.zeros(shape, np.uint8)
    truth_b[ball(shape, aff, centre, 15.0)] = 2
    truth_b[ball(shape, aff, centre, 7.0)] = 3
    truth_b[ball(shape, aff, centre, 3.0)] = 1
    return {"a": lab, "b": truth_b}


def test_segment_and_features_stages(tmp_path: Path, template: nib.Nifti1Image) -> None:
    ws = Workspace.init(tmp_path / "ws")
    key = ws.key()
    pids = {k: patient_pseudonym(key, v) for k, v in MRNS.items()}
    truth = _annotations(ws.root, template)
    ws.config.set_stage_param("enrol", "patients", sorted(pids.values()))
    ws.config.set_stage_param("segment", "annotations_dir", "annotations/{mrn}")
    ws.config.set_stage_param("preprocess", "with_transforms", [pids["b"]])
    ws.save_config()
    ws = Workspace.open(ws.root)
    with ws.lock():
        summary = Runner(ws, PIPELINE, InlineExecutor(), progress=False).run()
    # c has no annotation folder yet: waiting at segment (not a failure), the others go on
    assert summary.ok and summary.failures == []
    assert [(p, s) for p, s, _ in summary.waiting] == [(pids["c"], "segment")]
    msg = summary.waiting[0][2]
    assert msg == (
        f"awaiting annotation: no annotation folder <annotations of {pids['c']}> for {pids['c']}"
    )
    assert summary.count("segment", "waiting") == 1 and summary.count("segment", "done") == 3
    assert summary.count("features", "done") == 3  # not run for c

    deriv = ws.root / "data" / "derivatives"
    seg_a = nib.load(str(deriv / pids["a"] / "segment" / f"{pids['a']}-seg.nii.gz"))
    assert seg_a.get_data_dtype() == np.uint8
    assert np.allclose(seg_a.affine, template.affine)
    assert np.array_equal(np.asarray(seg_a.dataobj), truth["a"])

    seg_b = np.asarray(
        nib.load(str(deriv / pids["b"] / "segment" / f"{pids['b']}-seg.nii.gz")).dataobj
    )
    for label in (1, 2, 3):
        t, s = truth["b"] == label, seg_b == label
        assert 2 * (t & s).sum() / (t.sum() + s.sum()) > 0.8, label
    report = json.loads((deriv / pids["b"] / "segment" / "segment.json").read_text())
    assert report["format"] == "masks" and report["transforms"] == "preprocess"
    assert report["reference_grid"] == "preprocess/t1c"
    assert {s["placement"].split(" via")[0] for s in report["sources"]} == {"native -> template"}
    # per-lesion masks: the instance map beside the label map, read by features
    inst_b = np.asarray(
        nib.load(str(deriv / pids["b"] / "segment" / f"{pids['b']}-lesions.nii.gz")).dataobj
    )
    assert inst_b.dtype == np.uint16 and ((inst_b > 0) == (seg_b > 0)).all()
    assert set(np.unique(inst_b)) - {0} == {int(k) for k in report["instances"]}
    feats_b = json.loads((deriv / pids["b"] / "features" / "features.json").read_text())
    assert sum(les["edema_voxels"] for les in feats_b["lesions"]) == int((seg_b == 2).sum())

    fa = json.loads((deriv / pids["a"] / "features" / "features.json").read_text())
    assert fa["features"] == {
        "Infratentorial": 0,
        "ET_num": 2,
        "Nec_num": 0,
        "Edema_num": 1,
        "ET_vol": 0.128,
        "Nec_vol": 0.0,
        "Edema_vol": 0.936,
        "Nec_ET_ratio": 0.0,
        "Edema_ET_ratio": 7.3125,
    }
    csv_a = (deriv / pids["a"] / "features" / "lesions.csv").read_text().splitlines()
    assert csv_a[0].startswith("lesion,voxels,volume_cm3") and len(csv_a) == 3
    fd = json.loads((deriv / pids["d"] / "features" / "features.json").read_text())
    assert fd["features"]["ET_num"] == 0 and fd["lesions"] == []

    for p in pids.values():
        for f in (deriv / p).rglob("*.json"):
            text = f.read_text()
            assert not any(m in text for m in MRNS.values()), f

    # the cohort workbook from the recorded features + an MRN-keyed clinical sheet
    feats, lesions, params = workspace_features(ws.root)
    assert set(feats) == {pids["a"], pids["b"], pids["d"]} and params["connectivity"] == 26
    sheet = tmp_path / "clinical.csv"
    sheet.write_text(
        "MRN,Age,Sex,Ethnicity,Smoke,Primary,Extranodal,Survival,Death\n"
        f"{MRNS['a']},61.5,1,0,20,5,1,12.3,1\n"
        f"{MRNS['b']},70,0,O,,NCSLC,0,3,0\n"
        "99999999,50,0,0,0,1,0,1,0\n"
    )
    out, table = write_workspace_workbook(ws.root, tmp_path / "dataset.xlsx", sheet)
    assert table is not None
    from openpyxl import load_workbook

    wb = load_workbook(out)
    rows = {r[0]: r for r in wb["Data"].iter_rows(min_row=2, values_only=True)}
    assert set(rows) == {pids["a"], pids["b"], pids["d"]}
    assert rows[pids["a"]][1:9] == (61.5, 1, 0, 20, 5, 1, 12.3, 1)
    assert rows[pids["b"]][3] is None and rows[pids["b"]][5] is None  # invalid -> empty
    problems = {(p.row, p.column) for p in table.problems}
    assert {(3, "Ethnicity"), (3, "Primary"), (4, "MRN")} <= problems
    for sheet_ in wb.worksheets:
        for row in sheet_.iter_rows(values_only=True):
            assert not any(str(v) in MRNS.values() or v == "99999999" for v in row)

    # c's annotations arrive (a folder named by its MRN): the next run takes c on
    with ws.catalog(readonly=True) as cat:
        row = cat.stage_run(pids["c"], "segment")
        assert row is not None and row.status == "waiting" and MRNS["c"] not in (row.error or "")
    (ws.root / "annotations" / MRNS["c"]).mkdir()
    nib.save(
        nib.Nifti1Image(truth["a"], template.affine),
        str(ws.root / "annotations" / MRNS["c"] / "seg.nii.gz"),
    )
    with ws.lock():
        again = Runner(ws, PIPELINE, InlineExecutor(), progress=False).run()
    assert again.ok and again.waiting == []
    assert again.count("segment", "done") == 1 and again.count("features", "done") == 1
    assert (deriv / pids["c"] / "features" / "features.json").is_file()


def test_unreadable_key_with_mrn_folders_is_a_named_failure(
    tmp_path: Path, template: nib.Nifti1Image
) -> None:
    """Annotation folders named by MRN need the workspace key: a key that cannot be used
    fails the patient with the reason (it is never taken as "no key" and skipped)."""
    ws = Workspace.init(tmp_path / "ws")
    pid = patient_pseudonym(ws.key(), MRNS["a"])
    _annotations(ws.root, template)
    ws.config.set_stage_param("enrol", "patients", [pid])
    ws.config.set_stage_param("segment", "annotations_dir", "annotations/{mrn}")
    ws.save_config()
    ws = Workspace.open(ws.root)
    ws.config.key_file.chmod(0o644)
    with ws.lock():
        summary = Runner(ws, PIPELINE, InlineExecutor(), progress=False).run(
            ["enrol", "preprocess", "segment"]
        )
    failed = {(p, s): m for p, s, m in summary.failures}
    assert list(failed) == [(pid, "segment")]
    assert "key file is accessible by other users" in failed[(pid, "segment")]


def test_a_label_map_outside_the_brain_is_an_error_naming_the_annotations(
    tmp_path: Path, template: nib.Nifti1Image
) -> None:
    ws = Workspace.init(tmp_path / "ws")
    pid = patient_pseudonym(ws.key(), MRNS["a"])
    _annotations(ws.root, template)
    ws.config.set_stage_param("enrol", "patients", [pid])
    ws.config.set_stage_param("segment", "annotations_dir", "annotations/{mrn}")
    ws.config.set_stage_param("preprocess", "outside_brain", [pid])
    ws.save_config()
    ws = Workspace.open(ws.root)
    with ws.lock():
        summary = Runner(ws, PIPELINE, InlineExecutor(), progress=False).run(
            ["enrol", "preprocess", "segment"]
        )
    [(p, stage, msg)] = summary.failures
    assert (p, stage) == (pid, "segment")
    assert "0% of the" in msg and "inside the brain mask" in msg
    assert f"<annotations of {pid}>" in msg and MRNS["a"] not in msg


def _statuses(ws: Workspace) -> dict[tuple[str, str], str]:
    with ws.catalog(readonly=True) as cat:
        return {(r.patient_id, r.stage): r.status for r in cat.stage_runs()}


def test_a_patient_without_annotations_waits_at_segment_then_goes_on(
    tmp_path: Path, template: nib.Nifti1Image
) -> None:
    """Issue 18: no annotation folder yet is a state ("awaiting annotation"), not a failure;
    features waits too; once the folder is supplied the next run takes the patient on. A
    folder that exists but holds nothing readable stays an error."""
    from brainmets.cohort import load_cohort, reason_category
    from brainmets.pipeline.states import stage_states

    ws = Workspace.init(tmp_path / "ws")
    lab = np.zeros(template.shape, np.uint8)
    lab[100:110, 150:160, 100:110] = 2
    lab[103:107, 153:157, 103:107] = 3
    (ws.root / "annotations" / "P1").mkdir(parents=True)
    nib.save(nib.Nifti1Image(lab, template.affine), str(ws.root / "annotations/P1/seg.nii.gz"))
    ws.config.set_stage_param("enrol", "patients", ["P1", "P2"])
    ws.save_config()  # default annotations_dir: annotations/{patient}
    ws = Workspace.open(ws.root)

    def run() -> Any:
        with ws.lock():
            return Runner(ws, PIPELINE, InlineExecutor(), progress=False).run()

    s = run()
    reason = "awaiting annotation: no annotation folder annotations/P2 for P2"
    assert s.ok and s.failures == [] and s.waiting == [("P2", "segment", reason)]
    st = _statuses(ws)
    assert st[("P1", "segment")] == st[("P1", "features")] == "done"
    assert st[("P2", "segment")] == "waiting" and ("P2", "features") not in st
    with ws.catalog(readonly=True) as cat:
        shown = stage_states(PIPELINE, cat.stage_runs(), cat.runs())
        cohort = load_cohort(ws.root, cat, ["preprocess", "segment", "features"])
    assert shown[("P2", "segment")].state == "waiting"
    assert shown[("P2", "segment")].reason == reason
    p2 = cohort.get("P2")
    assert not p2.included and p2.stopped_stage == "segment"
    assert p2.reason == f"segment: {reason}"
    assert reason_category(p2.reason) == "segment: awaiting annotation"  # report's count
    assert [p.id for p in cohort.included] == ["P1"]

    (ws.root / "annotations" / "P2").mkdir()  # a folder with nothing readable: an error
    s = run()
    assert [(p, st) for p, st, _ in s.failures] == [("P2", "segment")] and not s.waiting

    nib.save(nib.Nifti1Image(lab, template.affine), str(ws.root / "annotations/P2/seg.nii.gz"))
    s = run()
    assert s.ok and s.waiting == [] and s.count("segment", "done") == 1
    assert s.count("features", "done") == 1 and s.count("features", "skipped") == 1
    assert set(_statuses(ws).values()) == {"done"}
    feats = json.loads((ws.root / "data/derivatives/P2/features/features.json").read_text())
    assert feats["features"]["ET_num"] == 1
