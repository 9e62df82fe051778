"""The steps :func:`~brainmets.preprocess.pipeline.preprocess_case` is composed of, one by one:
reading, pass-through and real registration, resampling, skull stripping, QC, writing, label
maps. Small synthetic heads (the SRI24 head resliced with a known motion) and the released
BraTS-METS case; a few seconds each."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmets.preprocess.errors import PreprocessError, RegistrationFailed
from brainmets.preprocess.images import OUTPUT_SUFFIX, SEQUENCES, Grid, Volume
from brainmets.preprocess.pipeline import (
    AtlasImages,
    CaseState,
    PreprocessOptions,
    _checked,
    collect_qc,
    map_segmentations,
    read_case,
    register_case,
    register_to_atlas,
    resample_case,
    strip_case,
    write_case,
    write_qc,
)
from brainmets.preprocess.registration import (
    RegistrationOptions,
    RegistrationResult,
    resample_array,
)
from brainmets.preprocess.skullstrip import ExtractionResult
from brainmets.preprocess.transforms import CaseTransforms, apply, mean_displacement

FAST = PreprocessOptions(
    iterations=(40, 20, 0), skull_stripper="atlas", n4_for_registration=False, threads=1
)


@pytest.fixture(scope="module")
def atlas(atlas_dir: Path) -> AtlasImages:
    return AtlasImages.load(atlas_dir)


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m = np.eye(4)
    m[i, i] = m[j, j] = c
    m[i, j], m[j, i] = -s, s
    return m


#: per sequence: the subject's motion in the scanner (SRI24 world -> scanner world)
MOTIONS = {
    "t1c": ((6.0, 4.0, -3.0), 7.0),
    "t1": ((4.0, -3.0, 2.0), 3.0),
    "t2": ((5.0, 2.0, -1.0), -4.0),
    "flair": ((7.0, 3.0, -2.0), 5.0),
}


def _motion(seq: str) -> np.ndarray:
    shift, deg = MOTIONS[seq]
    m = _rot(2, deg)
    m[:3, 3] = shift
    return m


@pytest.fixture(scope="module")
def phantom(atlas: AtlasImages, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four 3 mm scans of the SRI24 head, each moved by its :data:`MOTIONS` entry, with
    different contrasts (the T2 also stored left-right flipped)."""
    assert atlas.head is not None
    head = atlas.head
    d = tmp_path_factory.mktemp("phantom")
    centre = apply(head.affine, (np.array(head.data.shape)[None] - 1) / 2)[0]
    contrast = {
        "t1c": lambda x: x,
        "t1": lambda x: np.sqrt(x) * 20,
        "t2": lambda x: np.log1p(x) * 100,
        "flair": lambda x: x**1.2 / 3,
    }
    paths: dict[str, Path] = {}
    for seq in SEQUENCES:
        shape = np.array((80, 80, 52))
        aff = np.diag([-3.0 if seq == "t2" else 3.0, 3.0, 3.0, 1.0])
        aff[:3, 3] = centre - aff[:3, :3] @ ((shape - 1) / 2)
        grid = Grid(tuple(int(s) for s in shape), aff)  # type: ignore[arg-type]
        scan = resample_array(head.data, head.affine, grid, np.linalg.inv(_motion(seq)))
        data = contrast[seq](np.clip(scan, 0, None)).astype(np.float32)
        paths[seq] = d / f"{seq}.nii.gz"
        nib.save(nib.Nifti1Image(data, aff), str(paths[seq]))
    return paths


def _brats_met(testdata: Path) -> dict[str, Path]:
    d = testdata / "nifti" / "brats_met_00110_000"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    suffix = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}
    return {k: d / f"BraTS-MET-00110-000-{s}.nii.gz" for k, s in suffix.items()}


def _state(atlas: AtlasImages, options: PreprocessOptions = FAST, **kw: object) -> CaseState:
    """A case state on the template grid (images: the template brain, mask: its support)."""
    grid = atlas.grid
    tr = CaseTransforms(
        case_id="S1",
        atlas_grid=grid,
        atlas_to={s: np.eye(4) for s in SEQUENCES},
        t1c_to={s: np.eye(4) for s in SEQUENCES},
        native_grids={s: grid for s in SEQUENCES},
    )
    state = CaseState(
        case_id="S1",
        options=options,
        atlas=atlas,
        volumes={},
        ras={},
        transforms=tr,
        backend="greedy",
        passthrough=None,
        images={s: atlas.brain.data.astype(np.float32) for s in SEQUENCES},
        mask=atlas.brain.data > 0,
        extractor="atlas",
        strip_note="",
    )
    for k, v in kw.items():
        setattr(state, k, v)
    return state


# ------------------------------------------------------------------------------ reading
def test_read_case_reorients_and_records_grids(phantom: dict[str, Path]) -> None:
    case = read_case(phantom, "P1", FAST)
    assert case.passthrough is None  # 3 mm, with skull: not preprocessed
    assert set(case.volumes) == set(case.ras) == set(SEQUENCES)
    t2 = case.volumes["t2"]
    assert t2.affine[0, 0] < 0  # stored left-right flipped ...
    assert case.ras["t2"].affine[0, 0] > 0  # ... reoriented to RAS
    assert np.array_equal(case.ras["t2"].data, t2.data[::-1])
    assert case.transforms.native_grids["t2"].same_as(t2.grid)  # the grid as read
    assert case.transforms.inputs == {s: str(p) for s, p in phantom.items()}
    assert case.backend in ("greedy", "sitk")
    assert case.tools == {"registration": case.backend}
    assert list(case.timings) == ["load_s"]
    assert not case.transforms.atlas_to and case.mask is None


def test_read_case_refuses_missing_sequence(phantom: dict[str, Path]) -> None:
    with pytest.raises(PreprocessError, match=r"patient P2.*missing sequence.*T2"):
        read_case({**phantom, "t2": None}, "P2", FAST)


# ------------------------------------------------------------------------------ pass-through
def test_passthrough_steps_by_index(testdata: Path) -> None:
    """Index-aligned input: transforms through the index map, arrays kept as they are,
    the mask is the images' support, QC says pass-through and no registration backend."""
    case = read_case(_brats_met(testdata), "M1", FAST)
    assert case.passthrough is not None and case.passthrough[0] == "index"
    register_case(case)
    tr = case.transforms
    assert tr.passthrough == "index"
    for s in SEQUENCES:
        expect = case.volumes[s].affine @ np.linalg.inv(case.grid.affine)
        assert np.allclose(tr.atlas_to[s], expect)
        assert tr.details["index_map"][s] == np.eye(4).tolist()
    assert np.allclose(tr.t1c_to["t1c"], np.eye(4))
    assert "n4_s" not in case.timings and "registration_s" in case.timings

    resample_case(case)
    for s in SEQUENCES:
        assert case.images[s].dtype == np.float32
        assert np.array_equal(case.images[s], case.volumes[s].data)

    strip_case(case)
    assert case.mask is not None
    union = np.any([case.images[s] != 0 for s in SEQUENCES], axis=0)
    assert np.array_equal(case.mask, union)
    assert case.extractor == case.tools["skull_stripper"] == "none"

    qc = collect_qc(case)
    assert qc["passthrough"] == "index" and qc["registration_backend"] is None
    assert qc["skull_stripper_note"] == "input already skull stripped"
    assert not any(k.startswith("registration_nmi") for k in qc)


# ------------------------------------------------------------------------------ registration
def test_register_resample_strip_recover_the_motion(
    phantom: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real registrations of the moved phantom; the extractor (the atlas extractor takes
    most of a minute) is replaced by the template's brain mask, checked to get the
    resampled images and the options."""
    case = read_case(phantom, "P1", FAST)
    register_case(case)
    tr = case.transforms
    pts = case.atlas.brain_points(step=50)
    assert mean_displacement(tr.atlas_to["t1c"], _motion("t1c"), pts) < 2.0
    for s in ("t1", "t2", "flair"):
        assert mean_displacement(tr.atlas_to[s], _motion(s), pts) < 2.0, s
        assert np.allclose(tr.atlas_to[s], tr.t1c_to[s] @ tr.atlas_to["t1c"])
    assert tr.details["atlas_target"] == "t1_head"
    # the 3 mm T1c is smaller than the template: the metric ran on its grid; the other
    # scans are as large as the T1c, which stays fixed
    assert tr.details["fixed_image"] == {"t1c": "t1c", "t1": "t1c", "t2": "t1c", "flair": "t1c"}
    assert np.allclose(tr.details["atlas_scales"], 1.0, atol=0.05)
    assert abs(tr.details["atlas_rotation_deg"] - 7.0) < 1.5
    assert set(case.similarity) == {"t1c_to_atlas", "t1_to_t1c", "t2_to_t1c", "flair_to_t1c"}
    assert list(case.timings)[-1] == "registration_s"

    resample_case(case)
    assert case.images["t1c"].shape == case.grid.shape
    assert case.images["t1c"].min() >= 0  # clipped to the non-negative input range
    inside = case.atlas.brain.data > 0
    # the resampled T1c lines up with the template head (same contrast, 3 mm blur), far
    # better than the T1c taken through its header alone (the motion not undone)
    assert case.atlas.head is not None
    head = case.atlas.head.data[inside]
    r = np.corrcoef(case.images["t1c"][inside], head)[0, 1]
    v = case.ras["t1c"]
    moved = resample_array(v.data, v.affine, case.grid, np.eye(4))
    r_moved = np.corrcoef(moved[inside], head)[0, 1]
    assert r > 0.7 and r > r_moved + 0.1, (r, r_moved)
    seen: dict[str, object] = {}

    def fake_extract(images, grid, extractor, head, brain, sequences, protect, threads, log):
        seen.update(images=dict(images), extractor=extractor, sequences=sequences)
        seen.update(protect=protect, head=head)
        return ExtractionResult(inside, "fake", 0.1, "a note", {"protected_cm3": 2.34567})

    monkeypatch.setattr("brainmets.preprocess.pipeline.extract_brain", fake_extract)
    resampled = dict(case.images)
    strip_case(case)
    assert seen["extractor"] == "atlas" and seen["sequences"] == ("t1c",)
    assert seen["protect"] is True and seen["head"] is not None
    assert all(seen["images"][s] is resampled[s] for s in SEQUENCES)  # type: ignore[index]
    assert case.mask is inside and case.extractor == case.tools["skull_stripper"] == "fake"
    for s in SEQUENCES:
        assert not case.images[s][~inside].any(), s
        assert np.array_equal(case.images[s][inside], resampled[s][inside]), s
    qc = collect_qc(case)
    assert qc["registration_backend"] == case.backend and qc["passthrough"] is None
    assert qc["skull_stripper"] == "fake" and qc["skull_stripper_note"] == "a note"
    assert qc["protected_cm3"] == 2.346
    assert qc["registration_nmi_t1c_to_atlas"] == round(case.similarity["t1c_to_atlas"], 4)


def _fake_register(matrices: dict[int, np.ndarray], calls: list[RegistrationOptions]):
    def register(fixed, moving, options: RegistrationOptions) -> RegistrationResult:
        calls.append(options)
        return RegistrationResult(matrices[options.dof].copy(), options.dof, "fake", 1.5)

    return register


def _on_template(atlas: AtlasImages, options: PreprocessOptions) -> CaseState:
    """A 'T1c' that is the template head itself (any registration result is judged by the
    real similarity on the template grid)."""
    assert atlas.head is not None
    state = _state(atlas, options)
    state.transforms.atlas_to.clear()
    state.ras = {"t1c": Volume(atlas.head.data, atlas.head.affine, role="t1c")}
    state.volumes = dict(state.ras)
    return state


def test_register_to_atlas_reduces_a_12_dof_fit_to_rigid(
    atlas: AtlasImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    centre = atlas.brain_points().mean(axis=0)
    scaled = np.diag([1.1, 1.1, 1.1, 1.0])  # about the brain's centre
    scaled[:3, 3] = centre - 1.1 * centre
    calls: list[RegistrationOptions] = []
    monkeypatch.setattr(
        "brainmets.preprocess.pipeline.register", _fake_register({12: scaled}, calls)
    )
    case = _on_template(atlas, FAST)
    est = {"t1c": case.ras["t1c"].data}
    base = RegistrationOptions(dof=12, iterations=(1,), backend="greedy")
    register_to_atlas(case, est, base)
    m = case.transforms.atlas_to["t1c"]
    assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3))  # the closest rigid transform
    assert np.allclose(case.transforms.details["atlas_scales"], 1.1)  # of the 12-dof fit
    assert case.timings["register_t1c_s"] == 1.5
    assert [c.dof for c in calls] == [12] and calls[0].init == "centers"
    assert "atlas_fallback" not in case.transforms.details


def test_register_to_atlas_falls_back_to_6_dof(
    atlas: AtlasImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[RegistrationOptions] = []
    fits = {12: np.diag([1.6, 1.0, 1.0, 1.0]), 6: np.eye(4)}
    monkeypatch.setattr("brainmets.preprocess.pipeline.register", _fake_register(fits, calls))
    logs: list[str] = []
    case = _on_template(atlas, FAST)
    base = RegistrationOptions(dof=12, iterations=(1,), backend="greedy")
    register_to_atlas(case, {"t1c": case.ras["t1c"].data}, base, logs.append)
    assert [c.dof for c in calls] == [12, 6]
    assert case.transforms.details["atlas_fallback"] == "rigid-direct"
    assert np.allclose(case.transforms.atlas_to["t1c"], np.eye(4))
    assert case.timings["register_t1c_s"] == 3.0  # both fits counted
    assert any("12-dof fit implausible" in line for line in logs)
    assert case.similarity["t1c_to_atlas"] > 1.5  # the template on itself


def test_register_to_atlas_refuses_an_implausible_result(
    atlas: AtlasImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    away = np.eye(4)
    away[:3, 3] = (60.0, 0.0, 0.0)
    calls: list[RegistrationOptions] = []
    monkeypatch.setattr("brainmets.preprocess.pipeline.register", _fake_register({6: away}, calls))
    opts = PreprocessOptions(atlas_registration="rigid-direct", threads=1)
    case = _on_template(atlas, opts)
    base = RegistrationOptions(dof=6, iterations=(1,), backend="greedy")
    with pytest.raises(RegistrationFailed, match=r"patient S1.*T1c to the SRI24"):
        register_to_atlas(case, {"t1c": case.ras["t1c"].data}, base)
    assert [c.init for c in calls] == ["centers", "search"]  # retried once


def test_checked_keeps_the_better_attempt() -> None:
    first = RegistrationResult(np.eye(4), 6, "fake", 2.0, similarity=1.05)
    second = RegistrationResult(2 * np.eye(4), 6, "fake", 3.0, similarity=1.12)
    got = _checked(first, 1.09, lambda: second, "test", "C1", None, lambda m: None)
    assert got is second and got.seconds == 5.0
    assert got.attempts == ["centres: NMI 1.0500", "search: NMI 1.1200"]
    good = RegistrationResult(np.eye(4), 6, "fake", 1.0, similarity=1.2)

    def never() -> RegistrationResult:
        raise AssertionError("no retry of a plausible result")

    assert _checked(good, 1.09, never, "test", "C1", None, lambda m: None) is good
    worse = RegistrationResult(np.eye(4), 6, "fake", 1.0, similarity=1.01)
    with pytest.raises(RegistrationFailed, match=r"patient C1.*NMI\) 1.050"):
        _checked(first, 1.09, lambda: worse, "test", "C1", None, lambda m: None)


# ------------------------------------------------------------------------------ QC
def test_collect_qc_copies_details_and_flags_the_head_size(atlas: AtlasImages) -> None:
    case = _state(atlas, strip_details={"protected_cm3": 1.23456})
    case.transforms.details.update(atlas_scales=[1.4, 1.0, 1.0], atlas_target="t1_head")
    case.similarity = {"t1c_to_atlas": 1.2345678}
    qc = collect_qc(case)
    assert qc["atlas_scales"] == [1.4, 1.0, 1.0] and qc["atlas_target"] == "t1_head"
    assert "atlas_rotation_deg" not in qc
    assert "atlas_scale_implausible" in qc["flags"]
    assert qc["protected_cm3"] == 1.235
    assert qc["registration_nmi_t1c_to_atlas"] == 1.2346
    assert qc["skull_stripper"] == "atlas" and qc["atlas_registration"] == "rigid"
    assert qc["mask_template_dice"] == 1.0
    case.transforms.details["atlas_scales"] = [1.1, 1.0, 0.95]
    assert "atlas_scale_implausible" not in collect_qc(case)["flags"]
    case.mask = None
    with pytest.raises(ValueError, match="strip_case"):
        collect_qc(case)


# ------------------------------------------------------------------------------ writing
def test_write_case_outputs(atlas: AtlasImages, atlas_dir: Path, tmp_path: Path) -> None:
    case = _state(atlas)
    case.images["t2"] = case.images["t2"] * 1000.0  # beyond int16: stored scaled
    case.images["flair"] = case.images["flair"] + 0.4  # rounded
    outputs, dtypes = write_case(case, tmp_path, atlas_dir)
    assert dtypes == {"t1": "int16", "t1c": "int16", "t2": "int16-scaled", "flair": "int16"}
    suffixes = [OUTPUT_SUFFIX[s] for s in SEQUENCES]
    assert list(outputs) == [*suffixes, "mask", "transforms"] + [f"transform_{x}" for x in suffixes]
    assert outputs["t2f"] == tmp_path / "S1-t2f.nii.gz"
    for role in ("t1c", "t2w", "t2f", "mask"):
        img = nib.load(str(outputs[role]))
        assert img.get_data_dtype() == (np.uint8 if role == "mask" else np.int16), role
        assert np.allclose(img.affine, case.grid.affine)
    flair = np.asarray(nib.load(str(outputs["t2f"])).dataobj)
    assert np.array_equal(flair, np.rint(case.images["flair"]))
    t2 = nib.load(str(outputs["t2w"])).get_fdata()
    assert np.allclose(t2, case.images["t2"], rtol=1e-3, atol=case.images["t2"].max() / 3e4)
    mask = np.asarray(nib.load(str(outputs["mask"])).dataobj)
    assert np.array_equal(mask > 0, case.mask)
    back = CaseTransforms.load(outputs["transforms"])
    assert np.allclose(back.atlas_to["t1c"], np.eye(4))
    assert outputs["transform_t1c"].read_text().startswith("#Insight Transform File")

    f32 = _state(atlas, PreprocessOptions(output_dtype="float32"))
    f32.images["t1c"] = f32.images["t1c"] + 0.25
    _, dtypes = write_case(f32, tmp_path / "f32", atlas_dir)
    assert set(dtypes.values()) == {"float32"}
    t1c = nib.load(str(tmp_path / "f32" / "S1-t1c.nii.gz"))
    assert t1c.get_data_dtype() == np.float32
    assert np.array_equal(np.asarray(t1c.dataobj), f32.images["t1c"])


def test_write_qc_adds_rounded_timings(tmp_path: Path) -> None:
    qc = {"flags": []}
    p = write_qc(tmp_path / "q.json", qc, {"load_s": 1.23456, "total_s": 9.999})
    assert (
        json.loads(p.read_text())
        == qc
        == {
            "flags": [],
            "timings_s": {"load_s": 1.23, "total_s": 10.0},
        }
    )


# ------------------------------------------------------------------------------ label maps
def _label_on(grid: Grid, path: Path, centre: tuple[int, int, int], value: int = 1) -> Path:
    lab = np.zeros(grid.shape, np.uint8)
    zz = np.indices(grid.shape)
    lab[((zz - np.asarray(centre)[:, None, None, None]) ** 2).sum(axis=0) < 25] = value
    nib.save(nib.Nifti1Image(lab, grid.affine), str(path))
    return path


def test_map_segmentations_names_and_spaces(atlas: AtlasImages, tmp_path: Path) -> None:
    """Label maps on a native grid land where its transform says; one map is ``seg``,
    several are ``seg-<name>``; the space is the sequence whose grid the map shares."""
    case = _state(atlas)
    flair_aff = np.diag([4.0, 4.0, 4.0, 1.0])
    flair_aff[:3, 3] = (-200.0, 20.0, 10.0)
    flair_grid = Grid((60, 60, 40), flair_aff)
    shift = np.eye(4)
    shift[:3, 3] = (8.0, 0.0, 0.0)  # the FLAIR's world is 8 mm along x from the atlas's
    case.transforms.native_grids["flair"] = flair_grid
    case.transforms.atlas_to["flair"] = shift
    seg = _label_on(flair_grid, tmp_path / "lesion.nii.gz", (30, 30, 20), value=2)
    outputs, seg_qc = map_segmentations(case, [seg], tmp_path)
    assert outputs == {"seg": tmp_path / "S1-seg.nii.gz"}
    assert seg_qc == {str(seg): {"space": "flair", "output": "S1-seg.nii.gz", "index": 0}}
    mapped = np.asarray(nib.load(str(outputs["seg"])).dataobj)
    assert set(np.unique(mapped)) == {0, 2}
    centre_world = apply(case.grid.affine, np.argwhere(mapped == 2).mean(axis=0)[None])[0]
    assert np.allclose(centre_world, [-200 + 120 - 8.0, 140.0, 90.0], atol=1.0)

    other = _label_on(case.grid, tmp_path / "brain.nii", (120, 120, 77))
    outputs, seg_qc = map_segmentations(case, [seg, other], tmp_path, "t1c")
    assert list(outputs) == ["seg-lesion", "seg-brain"]
    assert outputs["seg-brain"].name == "S1-seg-brain.nii.gz"
    assert [q["space"] for q in seg_qc.values()] == ["t1c", "t1c"]
    assert [q["index"] for q in seg_qc.values()] == [0, 1]
    assert map_segmentations(case, [], tmp_path) == ({}, {})


def test_map_segmentations_refuses_bad_maps(atlas: AtlasImages, tmp_path: Path) -> None:
    case = _state(atlas)
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(PreprocessError, match=r"broken.nii.gz.*cannot read label map"):
        map_segmentations(case, [bad], tmp_path)
    with pytest.raises(PreprocessError, match=r"unknown seg space 'dwi'"):
        map_segmentations(case, [bad], tmp_path, "dwi")
    fractional = tmp_path / "prob.nii.gz"
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 0.5, np.float32), np.eye(4)), str(fractional))
    with pytest.raises(PreprocessError, match=r"patient S1.*cannot map label map"):
        map_segmentations(case, [fractional], tmp_path)
