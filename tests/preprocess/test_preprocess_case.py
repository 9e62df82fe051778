"""End to end on the real TCGA case (standalone mode), the pipeline stage, to-native."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmets.preprocess import map_to_atlas, run_standalone, run_to_native
from brainmets.preprocess.qc import dice
from brainmets.preprocess.skullstrip import protect_lesions
from brainmets.preprocess.stage import STAGE


def test_lesion_protection_adds_cut_tumour_only() -> None:
    shape = (60, 60, 60)
    zz = np.indices(shape)
    brain = ((zz - 30) ** 2).sum(axis=0) < 22**2
    flair = np.where(brain, 100.0, 0.0) + np.random.default_rng(0).normal(0, 2, shape)
    tumour = ((zz - np.array([30, 30, 46])[:, None, None, None]) ** 2).sum(axis=0) < 8**2
    flair[tumour] = 300.0
    scalp = (((zz - 30) ** 2).sum(axis=0) > 27**2) & (((zz - 30) ** 2).sum(axis=0) < 29**2)
    flair[scalp] = 400.0  # bright fat beyond a dark skull
    t1 = np.where(brain, 100.0, 0.0)
    t1[scalp] = 500.0
    cut = brain & (zz[2] < 48)
    mask, added = protect_lesions(cut, {"flair": flair, "t1": t1})
    assert added > 0
    assert mask[tumour & brain].all()
    assert not mask[scalp].any()


def test_lesion_protection_keeps_enhancing_anatomy_out() -> None:
    """An enhancing tumour with oedema and a small enhancing nodule without FLAIR signal,
    both cut by the extractor, are added back; an enhancing vessel that is not FLAIR-bright
    (a venous sinus) running out of the brain is not, nor is the fat of the scalp."""
    shape = (64, 64, 64)
    zz = np.indices(shape)
    r = np.sqrt(((zz - 32) ** 2).sum(axis=0))
    brain = r < 22
    rng = np.random.default_rng(1)
    t1 = np.where(brain, 100.0, 0.0) + rng.normal(0, 2, shape)
    t1c = np.where(brain, 100.0, 0.0) + rng.normal(0, 2, shape)
    flair = np.where(brain, 100.0, 0.0) + rng.normal(0, 2, shape)
    rt = np.sqrt(((zz - np.array([32, 32, 48])[:, None, None, None]) ** 2).sum(axis=0))
    tumour = (rt < 8) & brain
    oedema = (rt < 11) & brain & ~tumour
    t1c[tumour & (rt >= 5)] = 260.0  # enhancing rim
    t1c[tumour & (rt < 5)] = 60.0  # necrosis
    t1[tumour] = 90.0
    flair[tumour] = 250.0
    flair[oedema] = 200.0
    # a small solidly enhancing metastasis without FLAIR signal at another edge
    nodule = np.sqrt(((zz - np.array([32, 48, 32])[:, None, None, None]) ** 2).sum(axis=0)) < 5
    nodule &= brain
    t1c[nodule] = 260.0
    vessel = (np.hypot(zz[0] - 32, zz[2] - 32) <= 2) & (zz[1] >= 4) & (zz[1] <= 22)
    t1c[vessel] = 300.0
    flair[vessel] = 60.0  # flow void
    scalp = (r > 26) & (r < 29)
    for img, v in ((t1, 500.0), (t1c, 480.0), (flair, 400.0)):
        img[scalp] = v
    cut = brain & (zz[2] < 50) & ~((zz[1] >= 51) & (abs(zz[0] - 32) < 8) & (abs(zz[2] - 32) < 8))
    assert not cut[nodule].all()
    mask, added = protect_lesions(cut, {"t1": t1, "t1c": t1c, "flair": flair})
    assert added > 0
    assert mask[tumour].all() and mask[oedema].all() and mask[nodule].all()
    assert not mask[vessel & ~brain].any()
    assert not mask[scalp].any()


@pytest.fixture(scope="module")
def tcga_out(tmp_path_factory: pytest.TempPathFactory, tcga: dict[str, Path]) -> Path:
    out = tmp_path_factory.mktemp("tcga")
    code = run_standalone(
        tcga["t1"],
        tcga["t1c"],
        tcga["t2"],
        tcga["flair"],
        out,
        segs=[tcga["mask"]],
        case_id="TCGA-FG-6692",
        iterations="100x50x0",
    )
    assert code == 0
    return out


@pytest.mark.slow
def test_standalone_outputs_and_brain_mask(tcga_out: Path, tcga: dict[str, Path]) -> None:
    cid = "TCGA-FG-6692"
    ref = nib.load(str(Path(tcga_out) / f"{cid}-t1n.nii.gz"))
    assert ref.shape == (240, 240, 155) and ref.get_data_dtype() == np.int16
    tmpl_affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    for suffix in ("t1n", "t1c", "t2w", "t2f"):
        img = nib.load(str(tcga_out / f"{cid}-{suffix}.nii.gz"))
        assert np.allclose(img.affine, tmpl_affine)
    mask = np.asarray(nib.load(str(tcga_out / f"{cid}-mask.nii.gz")).dataobj) > 0
    t1c = np.asarray(nib.load(str(tcga_out / f"{cid}-t1c.nii.gz")).dataobj)
    assert not t1c[~mask].any() and t1c.min() >= 0
    qc = json.loads((tcga_out / f"{cid}-qc.json").read_text())
    assert qc["flags"] == [] or set(qc["flags"]) <= {"low_similarity_t2"}
    assert 1000 < qc["brain_volume_cm3"] < 1900
    # the reference T1c brain mask, carried into atlas space with the saved transforms
    seg = np.asarray(nib.load(str(tcga_out / f"{cid}-seg.nii.gz")).dataobj) > 0
    again = (
        np.asarray(map_to_atlas(tcga["mask"], tcga_out / f"{cid}-transforms.json", "t1c").dataobj)
        > 0
    )
    assert np.array_equal(seg, again)
    assert dice(mask, seg) > 0.93


@pytest.mark.slow
def test_to_native_round_trip(tcga_out: Path, tcga: dict[str, Path], tmp_path: Path) -> None:
    cid = "TCGA-FG-6692"
    dest = tmp_path / "mask_native.nii.gz"
    code = run_to_native(
        tcga_out / f"{cid}-seg.nii.gz", tcga_out / f"{cid}-transforms.json", dest, "t1c", "mask"
    )
    assert code == 0
    back = nib.load(str(dest))
    ref = nib.load(str(tcga["mask"]))
    assert back.shape == ref.shape and np.allclose(back.affine, ref.affine, atol=1e-4)
    assert dice(np.asarray(back.dataobj) > 0, np.asarray(ref.dataobj) > 0) > 0.95


def test_stage_passthrough_case(tmp_path: Path, testdata: Path) -> None:
    """The stage reads the convert stage's roles and returns outputs and QC metrics."""
    from bm_testutil import BRATS_MET_CASE, brats_met_inputs, preprocess_context

    inputs = brats_met_inputs(testdata / BRATS_MET_CASE)
    ctx = preprocess_context(tmp_path, {r: str(p) for r, p in inputs.items()})
    res = STAGE.func(ctx)  # type: ignore[misc]
    for role in ("t1n", "t1c", "t2w", "t2f", "mask", "transforms", "qc"):
        assert res.outputs[role].is_file(), role
        assert res.outputs[role].parent == ctx.out_dir
    assert res.outputs["t2f"].name == "PAT01-t2f.nii.gz"
    assert res.metrics["passthrough"] == "index"
    assert "brain_volume_cm3" in res.metrics


def test_stage_outputs_do_not_depend_on_where_the_workspace_is(
    tmp_path: Path, testdata: Path
) -> None:
    """Issue 15: the same inputs give the same bytes in any workspace folder (the local pool
    and a Dask cluster compare output hashes): transforms.json names its inputs relative to
    the workspace, and qc.json holds no timings."""
    import json
    import shutil

    from bm_testutil import BRATS_MET_CASE, brats_met_inputs, preprocess_context

    digests = []
    for where in ("a", "b/deeper"):
        root = tmp_path / where
        rel = {}
        for role, src in brats_met_inputs(testdata / BRATS_MET_CASE).items():
            dest = root / "data" / "derivatives" / "PAT01" / "convert" / f"{role}.nii.gz"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            rel[role] = str(dest.relative_to(root))
        ctx = preprocess_context(root, rel)
        res = STAGE.func(ctx)  # type: ignore[misc]
        text = res.outputs["transforms"].read_text()
        assert json.loads(text)["inputs"] == rel and str(root) not in text
        assert "timings_s" not in json.loads(res.outputs["qc"].read_text())
        assert "timings_s" in res.metrics
        digests.append({r: p.read_bytes() for r, p in res.outputs.items()})
    assert digests[0] == digests[1]
