"""Left stays left: scans acquired in axial, sagittal, coronal and prone orientation.

Each test input is the SRI24 head (a real head image) with a bright marker in the left
hemisphere, resliced into a differently oriented grid (array order, flips, obliquity, slice
thickness) and moved a little in the world. Registration to the template and resampling go
through world coordinates only, so the marker must come back to the left hemisphere, at
its place.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainmets.preprocess.images import Grid, Volume, reorient
from brainmets.preprocess.registration import RegistrationOptions, register, resample_array
from brainmets.preprocess.transforms import apply

#: marker centre in SRI24 world (RAS mm): x < 0 is the subject's left
MARKER = np.array([-45.0, 110.0, 95.0])


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m = np.eye(4)
    m[i, i] = m[j, j] = c
    m[i, j], m[j, i] = -s, s
    return m


def _grid(axes: list[list[float]], spacing: tuple[float, float, float], shape, centre):
    lin = np.asarray(axes, dtype=float).T * np.asarray(spacing)
    aff = np.eye(4)
    aff[:3, :3] = _rot(0, 4.0)[:3, :3] @ lin  # slightly oblique
    aff[:3, 3] = centre - aff[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    return Grid(tuple(shape), aff)


# array axes (columns: where i, j, k point in RAS world) of typical acquisitions
ORIENTATIONS = {
    "axial": [[-1, 0, 0], [0, -1, 0], [0, 0, 1]],  # DICOM LPS rows/cols, slices foot->head
    "sagittal": [[0, -1, 0], [0, 0, -1], [1, 0, 0]],
    "coronal": [[1, 0, 0], [0, 0, -1], [0, 1, 0]],
    # prone: the patient lies face down, so rows run anterior->posterior and columns
    # left->right in the scanner; DICOM's patient coordinates keep the anatomy's world
    "prone": [[1, 0, 0], [0, 1, 0], [0, 0, -1]],
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_marker_stays_left(orientation: str, head_4mm: Volume) -> None:
    head = head_4mm
    ijk = np.indices(head.data.shape).reshape(3, -1).T.astype(float)
    world = apply(head.affine, ijk)
    marked = head.data.copy().ravel()
    in_marker = np.linalg.norm(world - MARKER, axis=1) < 12
    marked[in_marker] = marked.max() * 1.5
    marked = marked.reshape(head.data.shape)
    # the subject's head sits 6 mm right, 4 mm forward and turned 7 degrees in the scanner
    motion = _rot(2, 7.0)
    motion[:3, 3] = (6.0, 4.0, -3.0)
    centre = apply(head.affine, (np.array(head.data.shape)[None] - 1) / 2)[0]
    spacing = (3.0, 3.0, 5.0) if orientation != "sagittal" else (3.0, 3.0, 4.0)
    grid = _grid(ORIENTATIONS[orientation], spacing, (70, 70, 45), centre)
    # scan value at scanner point q = head value at template point motion^-1 q
    scan = resample_array(marked, head.affine, grid, np.linalg.inv(motion))
    marker = in_marker.reshape(head.data.shape).astype(np.float32)
    scan_marker = resample_array(marker, head.affine, grid, np.linalg.inv(motion))
    vol = reorient(Volume(scan, grid.affine, role="t1c"), "RAS")
    vol_marker = reorient(Volume(scan_marker, grid.affine), "RAS")
    assert np.array_equal(vol.affine, vol_marker.affine)
    opts = RegistrationOptions(dof=6, iterations=(60, 30, 0), threads=1)
    res = register((head.data, head.affine), (vol.data, vol.affine), opts)
    assert np.abs(res.matrix[:3, 3] - motion[:3, 3]).max() < 3.0
    back = resample_array(vol_marker.data, vol.affine, head.grid, res.matrix)
    bright = back > 0.5
    assert bright.sum() > 10, "marker lost"
    got = apply(head.affine, np.argwhere(bright).mean(axis=0)[None])[0]
    assert got[0] < -20, f"marker moved to the right ({got})"
    assert np.linalg.norm(got - MARKER) < 5.0
