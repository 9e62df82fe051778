"""World transforms and label-preserving resampling onto the template grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainmets.segment import (
    ItkTransform,
    TransformError,
    WorldTransform,
    read_transform,
    resample_full,
    resample_nearest,
)

TEMPLATE = np.diag([-1.0, 1.0, 1.0, 1.0])  # SRI24-like: x = -i
SHAPE = (60, 60, 40)


def rot(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    m = np.eye(4)
    m[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return m


def test_lps_and_direction_conversions() -> None:
    lps = np.eye(4)
    lps[:3, 3] = [10.0, 20.0, 30.0]
    t = WorldTransform.from_matrix(lps, "LPS")
    assert np.allclose(t.matrix[:3, 3], [-10.0, -20.0, 30.0])
    back = WorldTransform.from_matrix(t.matrix, "RAS", "native_to_template")
    assert np.allclose(back.matrix @ t.matrix, np.eye(4))
    with pytest.raises(TransformError, match="4x4"):
        WorldTransform.from_matrix(np.eye(3))
    with pytest.raises(TransformError, match="singular"):
        WorldTransform.from_matrix(np.diag([1.0, 0, 1, 1]))
    with pytest.raises(TransformError, match="convention"):
        WorldTransform.from_matrix(np.eye(4), "XYZ")


def test_read_transform_formats(tmp_path: Path) -> None:
    m = rot(10)
    m[:3, 3] = [1, 2, 3]
    (tmp_path / "t.json").write_text(json.dumps({"matrix": m.tolist(), "convention": "RAS"}))
    np.savetxt(tmp_path / "t.txt", m)
    np.save(tmp_path / "t.npy", m)
    for name in ("t.json", "t.txt", "t.npy"):
        t = read_transform(tmp_path / name)
        assert isinstance(t, WorldTransform) and np.allclose(t.matrix, m), name
    (tmp_path / "bad.json").write_text(json.dumps({"matrix": [[1, 2]]}))
    with pytest.raises(TransformError, match="bad.json"):
        read_transform(tmp_path / "bad.json")
    with pytest.raises(TransformError, match="not found"):
        read_transform(tmp_path / "missing.json")


def test_same_world_flipped_grid_is_exact() -> None:
    """A label map stored flipped front-to-back with a compensating header (the BraTS toolkit
    layout) comes back voxel for voxel."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, SHAPE).astype(np.uint8)
    flipped = labels[:, ::-1, :].copy()
    aff = TEMPLATE.copy()
    aff[1, 1] = -1.0
    aff[1, 3] = SHAPE[1] - 1
    out = resample_full(flipped, aff, SHAPE, TEMPLATE)
    assert np.array_equal(out, labels)


def _ball_world(points: np.ndarray, centre: np.ndarray, r: float) -> np.ndarray:
    return ((points - centre) ** 2).sum(-1) <= r * r


def _centres(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    idx = np.indices(shape).reshape(3, -1).T
    return idx @ affine[:3, :3].T + affine[:3, 3]


def test_native_mask_to_template_through_a_transform() -> None:
    """A ball drawn on a rotated, anisotropic native grid lands where it is in the template."""
    centre = np.array([-30.0, 30.0, 20.0])  # template world
    r = 9.0
    to_native = rot(12)
    to_native[:3, 3] = [5.0, -3.0, 7.0]  # template world -> native world
    native_aff = np.diag([0.9, 0.9, 3.0, 1.0])
    native_aff[:3, 3] = [-70.0, -10.0, -20.0]
    nshape = (90, 90, 25)
    pts_native = _centres(nshape, native_aff)
    pts_template = pts_native @ np.linalg.inv(to_native)[:3, :3].T + np.linalg.inv(to_native)[:3, 3]
    mask = _ball_world(pts_template, centre, r).reshape(nshape).astype(np.uint8)
    assert mask.sum() > 100
    t = WorldTransform.from_matrix(to_native)
    box, vals = resample_nearest(mask, native_aff, SHAPE, TEMPLATE, t)
    assert box is not None
    out = np.zeros(SHAPE, np.uint8)
    out[box] = vals
    truth = _ball_world(_centres(SHAPE, TEMPLATE), centre, r).reshape(SHAPE)
    dice = 2 * (truth & (out > 0)).sum() / (truth.sum() + (out > 0).sum())
    assert dice > 0.85
    assert set(np.unique(out)) <= {0, 1}
    # the box is tight: every value outside it is zero
    assert out.sum() == vals.sum()


def test_itk_transform_files(tmp_path: Path) -> None:
    """ITK files (LPS, fixed = template): linear ones become matrices, others are resampled
    through SimpleITK; both give the same labels as the RAS matrix."""
    sitk = pytest.importorskip("SimpleITK")
    to_native = rot(90)
    to_native[:3, 3] = [4.0, -6.0, 2.0]
    lps = np.diag([-1.0, -1, 1, 1]) @ to_native @ np.diag([-1.0, -1, 1, 1])
    itk = sitk.AffineTransform(3)
    itk.SetMatrix(lps[:3, :3].ravel().tolist())
    itk.SetTranslation(lps[:3, 3].tolist())
    itk.SetCenter([0.0, 0.0, 0.0])
    sitk.WriteTransform(itk, str(tmp_path / "t.tfm"))
    linear = read_transform(tmp_path / "t.tfm")
    assert isinstance(linear, WorldTransform) and np.allclose(linear.matrix, to_native)
    # the preprocess stage's text form (<ID>-t1c-to-sri24.txt)
    params = " ".join(repr(float(v)) for v in [*lps[:3, :3].ravel(), *lps[:3, 3]])
    (tmp_path / "p.txt").write_text(
        "#Insight Transform File V1.0\n#Transform 0\nTransform: AffineTransform_double_3_3\n"
        f"Parameters: {params}\nFixedParameters: 0 0 0\n"
    )
    as_text = read_transform(tmp_path / "p.txt")
    assert isinstance(as_text, WorldTransform) and np.allclose(as_text.matrix, to_native)
    half = sitk.AffineTransform(3)
    half.SetTranslation([0.0, 0.0, 0.0])
    sitk.WriteTransform(sitk.CompositeTransform([itk, half]), str(tmp_path / "c.h5"))
    composite = read_transform(tmp_path / "c.h5")
    assert isinstance(composite, ItkTransform)
    rng = np.random.default_rng(3)
    data = np.zeros((30, 30, 20), np.uint8)
    data[5:20, 8:25, 3:15] = rng.integers(1, 4, (15, 17, 12))
    native_aff = np.eye(4)
    native_aff[:3, 3] = [-40.0, -50.0, 5.0]
    a = resample_full(data, native_aff, SHAPE, TEMPLATE, WorldTransform.from_matrix(to_native))
    b = resample_full(data, native_aff, SHAPE, TEMPLATE, composite)
    assert a.sum() > 0
    assert np.array_equal(a, b)


def test_preprocess_case_transforms(tmp_path: Path) -> None:
    from brainmets.segment.transform import transforms_from_case_json

    m = rot(5)
    (tmp_path / "x-transforms.json").write_text(
        json.dumps(
            {
                "format": "brainmets.preprocess.transforms/1",
                "atlas_to": {"t1c": m.tolist(), "flair": np.eye(4).tolist()},
            }
        )
    )
    got = transforms_from_case_json(tmp_path / "x-transforms.json")
    assert set(got) == {"t1c", "t2f"} and np.allclose(got["t1c"].matrix, m)
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(TransformError, match="not a preprocess transforms file"):
        transforms_from_case_json(tmp_path / "other.json")


def test_nothing_on_the_grid() -> None:
    data = np.ones((4, 4, 4), np.uint8)
    aff = np.eye(4)
    aff[:3, 3] = [1000.0, 0, 0]
    box, vals = resample_nearest(data, aff, SHAPE, TEMPLATE)
    assert box is None and vals.size == 0


def test_mask_interpolation_between_thick_slices() -> None:
    from brainmets.segment.transform import resample_mask

    # two slices 4 mm apart; the mask shrinks from 9 to 3 voxels wide between them
    src = np.zeros((12, 12, 2), bool)
    src[1:10, 1:10, 0] = True
    src[4:7, 4:7, 1] = True
    aff = np.diag([1.0, 1.0, 4.0, 1.0])
    shape = (12, 12, 5)
    near_box, near = resample_mask(src, aff, shape, np.eye(4), None, "nearest")
    lin_box, lin = resample_mask(src, aff, shape, np.eye(4), None, "linear")
    n = np.zeros(shape, bool)
    n[near_box] = near
    li = np.zeros(shape, bool)
    li[lin_box] = lin
    assert near.dtype == bool and lin.dtype == bool
    assert n[:, :, 0].sum() == li[:, :, 0].sum() == 81
    assert n[:, :, 4].sum() == li[:, :, 4].sum() == 9
    # 1 mm from a slice both follow that slice; linear weighs the two slices
    assert li[:, :, 1].sum() == n[:, :, 1].sum() == 81
    assert li[:, :, 3].sum() == n[:, :, 3].sum() == 9
    with pytest.raises(ValueError, match="nearest"):
        resample_mask(src, aff, shape, np.eye(4), None, "cubic")


def _ball_mask(n: int, r: float, centre: float) -> np.ndarray:
    idx = np.indices((n, n, n)).astype(float)
    return ((idx - centre) ** 2).sum(0) <= r * r


def test_volume_resampling_keeps_the_drawn_volume_of_a_small_lesion() -> None:
    from brainmets.segment.transform import WorldTransform, resample_mask

    mask = _ball_mask(20, 2.6, 9.5)  # a ~5 mm lesion on a 1 mm grid
    shift = np.eye(4)
    shift[:3, 3] = [0.3, 0.7, 0.4]  # off the target grid by a fraction of a voxel
    t = WorldTransform(shift)
    drawn = int(mask.sum())
    _, lin = resample_mask(mask, np.eye(4), (20, 20, 20), np.eye(4), t, "linear")
    _, vol = resample_mask(mask, np.eye(4), (20, 20, 20), np.eye(4), t, "volume")
    assert abs(int(vol.sum()) - drawn) <= 0.05 * drawn
    assert abs(int(vol.sum()) - drawn) < abs(int(lin.sum()) - drawn)


def test_a_mask_smaller_than_a_voxel_keeps_its_best_voxel_and_thick_slices_their_volume() -> None:
    from brainmets.segment.transform import resample_mask

    tiny = np.zeros((10, 10, 10), bool)
    tiny[5, 5, 5] = True
    small = np.diag([0.4, 0.4, 0.4, 1.0])  # a 0.064 mm^3 voxel
    box, vals = resample_mask(tiny, small, (10, 10, 10), np.eye(4), None, "linear")
    assert box is not None and int(vals.sum()) >= 1
    from brainmets.segment.transform import partial_volume

    thick = np.diag([1.0, 1.0, 6.0, 1.0])
    thick[2, 3] = 2.5
    ball = _ball_mask(40, 9.0, 19.3)  # an 18 mm lesion, drawn on 6 mm slices
    drawn_mask = partial_volume(ball, np.eye(4), (40, 40, 7), thick) >= 0.5
    drawn = int(drawn_mask.sum()) * 6
    target = np.eye(4)
    target[:3, 3] = [0.3, 0.2, 0.4]
    _, lin = resample_mask(drawn_mask, thick, (40, 40, 40), target, None, "linear")
    _, vol = resample_mask(drawn_mask, thick, (40, 40, 40), target, None, "volume")
    assert abs(int(vol.sum()) - drawn) <= 0.02 * drawn  # thick slices keep their volume too
    assert abs(int(lin.sum()) - drawn) > 0.02 * drawn  # the 0.5 threshold cuts inside them
