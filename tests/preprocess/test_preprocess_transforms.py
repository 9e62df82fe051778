"""Transforms: composition, persistence, ITK interchange, label-preserving resampling."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from brainmets.preprocess.images import Grid, Volume, from_sitk, reorient, to_sitk
from brainmets.preprocess.qc import dice
from brainmets.preprocess.transforms import (
    CaseTransforms,
    apply,
    closest_rigid,
    compose,
    itk_transform_text,
    map_to_atlas,
    map_to_native,
    read_itk_transform,
    resample_labels,
)


def rigid(angles_deg: tuple[float, float, float], t: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = t
    return m


def test_compose_applies_right_to_left() -> None:
    a, b = rigid((10, 0, 0), (1, 2, 3)), rigid((0, 5, 0), (-4, 0, 1))
    p = np.array([[10.0, -20.0, 30.0]])
    assert np.allclose(apply(compose(a, b), p), apply(a, apply(b, p)))


def test_closest_rigid_of_scaled_rigid() -> None:
    r = rigid((8, -3, 4), (5, -7, 2))
    scaled = r @ np.diag([1.05, 0.95, 1.0, 1.0])
    pts = np.random.default_rng(0).uniform(-60, 60, (500, 3))
    assert np.allclose(closest_rigid(r, pts), r, atol=1e-8)
    near = closest_rigid(scaled, pts)
    assert np.allclose(near[:3, :3] @ near[:3, :3].T, np.eye(3), atol=1e-8)


def test_itk_text_round_trip(tmp_path: Path) -> None:
    m = rigid((12, -4, 7), (3.5, -10, 22)) @ np.diag([1.02, 0.98, 1.01, 1.0])
    p = tmp_path / "t.txt"
    p.write_text(itk_transform_text(m))
    assert np.allclose(read_itk_transform(p), m, atol=1e-9)


def test_sitk_bridge_keeps_world_and_reorient_keeps_world() -> None:
    aff = np.array([[0, 0, -1.2, 90], [0.9, 0, 0, -100], [0, -0.9, 0, 80], [0, 0, 0, 1.0]])
    data = np.random.default_rng(1).random((7, 8, 9)).astype(np.float32)
    d2, a2 = from_sitk(to_sitk(data, aff))
    assert np.allclose(a2, aff) and np.array_equal(d2, data)
    v = reorient(Volume(data, aff), "RAS")
    assert np.allclose(np.sign(np.diag(v.affine[:3, :3])), 1)
    # the voxel at world point w has the same value in both
    ijk = np.array([2, 3, 4])
    w = apply(aff, ijk[None].astype(float))
    ijk2 = np.round(apply(np.linalg.inv(v.affine), w)).astype(int)[0]
    assert data[tuple(ijk)] == v.data[tuple(ijk2)]


def test_label_resampling_keeps_labels() -> None:
    lab = np.zeros((40, 40, 40), np.uint8)
    lab[10:30, 10:30, 10:30] = 2
    lab[15:20, 15:20, 15:25] = 1
    lab[24:27, 24:27, 12:28] = 3
    aff = np.eye(4)
    grid = Grid((40, 40, 40), np.eye(4))
    m = rigid((7, 0, 0), (20, 20, 20)) @ np.array(
        [[1, 0, 0, -20], [0, 1, 0, -20], [0, 0, 1, -20], [0, 0, 0, 1.0]]
    )
    for method in ("linear", "nearest"):
        out = resample_labels(lab, aff, grid, m, method)
        assert set(np.unique(out)) <= {0, 1, 2, 3}
        for v in (1, 2, 3):
            assert abs(int((out == v).sum()) - int((lab == v).sum())) < 0.25 * (lab == v).sum()


def test_case_transforms_round_trip_and_native_mapping(tmp_path: Path) -> None:
    atlas = Grid((60, 60, 40), np.diag([-2.0, 2.0, 2.0, 1.0]) @ _shift(-30, -30, -20))
    native = Grid(
        (50, 60, 20), np.array([[0, 2.2, 0, -60], [-2.2, 0, 0, 50], [0, 0, 3, -30], [0, 0, 0, 1.0]])
    )
    m = rigid((6, -4, 9), (3, -2, 5))
    tr = CaseTransforms(
        "X1", atlas, {"t1c": m}, {"t1c": np.eye(4)}, {"t1c": native}, {"t1c": "in.nii.gz"}
    )
    p = tr.save(tmp_path / "X1-transforms.json")
    back = CaseTransforms.load(p)
    assert np.allclose(back.atlas_to["t1c"], m) and back.native_grids["t1c"].same_as(native)
    # a ball drawn in native space lands at the mapped position and comes back
    ijk = np.indices(native.shape).reshape(3, -1).T.astype(float)
    w = apply(native.affine, ijk)
    centre = apply(native.affine, np.array([[25.0, 30.0, 10.0]]))[0]
    ball = (np.linalg.norm(w - centre, axis=1) < 15).reshape(native.shape).astype(np.uint8)
    img = nib.Nifti1Image(ball, native.affine)
    in_atlas = np.asarray(map_to_atlas(img, back, "t1c", kind="mask").dataobj)
    got = apply(atlas.affine, np.argwhere(in_atlas > 0).mean(axis=0)[None])[0]
    assert np.linalg.norm(apply(m, got[None])[0] - centre) < 1.0
    atlas_img = nib.Nifti1Image(in_atlas, atlas.affine)
    native_again = np.asarray(map_to_native(atlas_img, back, "t1c").dataobj) > 0
    assert dice(native_again, ball > 0) > 0.9


def _shift(x: float, y: float, z: float) -> np.ndarray:
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m
