"""Orthogonal planes of NIfTI volumes in world coordinates, for the descriptor's figures.

A :class:`Volume` is an image reoriented to RAS (through its affine, never by array index)
and read once; :meth:`Volume.plane` cuts the axial, coronal or sagittal plane through a
world point (mm). :func:`show_plane` draws a plane on a matplotlib axes in world millimetres
and :func:`set_view` frames it in the display convention of every figure of the report:

* axial (seen from the feet) and coronal (seen from the front): radiological, the patient's
  right on the left of the panel, anterior / superior up; marked R and L;
* sagittal: anterior on the left, superior up; marked A and P.

Because panels are drawn in world millimetres, images on different grids (a label map, the
SRI24 template, an image) overlay correctly wherever they lie on the same anatomy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import nibabel as nib
import numpy as np

AXIAL, CORONAL, SAGITTAL = "axial", "coronal", "sagittal"
#: the planes, in the order the figures show them
PLANES: tuple[str, ...] = (AXIAL, CORONAL, SAGITTAL)
#: plane -> (fixed RAS axis, horizontal RAS axis, vertical RAS axis)
PLANE_AXES: dict[str, tuple[int, int, int]] = {
    AXIAL: (2, 0, 1),
    CORONAL: (1, 0, 2),
    SAGITTAL: (0, 1, 2),
}
#: plane -> (marker on the panel's left, on its right)
MARKERS: dict[str, tuple[str, str]] = {AXIAL: ("R", "L"), CORONAL: ("R", "L"), SAGITTAL: ("A", "P")}
#: RAS axis -> letter of the world coordinate
AXIS_NAMES = ("x", "y", "z")
#: a world point (mm) or voxel coordinates
Point = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Plane:
    """One plane of a volume.

    Attributes:
        name: ``axial``, ``coronal`` or ``sagittal``.
        data: ``[vertical, horizontal]`` array; both indices increase with the world
            coordinate (draw with ``origin="lower"``).
        extent: world limits of the pixel edges, ``(h_min, h_max, v_min, v_max)`` in mm.
        coord_mm: world coordinate of the slice along the fixed axis.
    """

    name: str
    data: np.ndarray
    extent: tuple[float, float, float, float]
    coord_mm: float

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """World coordinates (mm) of the pixel centres: ``(horizontal, vertical)``."""
        nv, nh = self.data.shape
        h0, h1, v0, v1 = self.extent
        dh, dv = (h1 - h0) / nh, (v1 - v0) / nv
        return h0 + dh * (np.arange(nh) + 0.5), v0 + dv * (np.arange(nv) + 0.5)


class Volume:
    """A 3D image reoriented to RAS, its voxels read once."""

    def __init__(self, image: nib.Nifti1Image, source: str = "") -> None:
        #: the affine of the image as stored (its voxel indices are the features')
        self.stored_affine: np.ndarray = np.asarray(image.affine, dtype=float)
        can = nib.as_closest_canonical(image)
        data = np.asanyarray(can.dataobj)
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise ValueError(f"{source or 'image'}: not a 3D image (shape {data.shape})")
        self.data: np.ndarray = data
        self.affine: np.ndarray = np.asarray(can.affine, dtype=float)
        self.source = source

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Volume:
        return cls(cast(nib.Nifti1Image, nib.load(str(path))), str(path))

    @property
    def shape(self) -> tuple[int, int, int]:
        return cast(tuple[int, int, int], tuple(int(s) for s in self.data.shape))

    def world(self, ijk: Point) -> np.ndarray:
        """World (RAS mm) of voxel coordinates of this (canonical) volume."""
        return (self.affine @ np.array([*map(float, ijk), 1.0]))[:3]

    def stored_world(self, ijk: Point) -> np.ndarray:
        """World (RAS mm) of voxel coordinates of the image as stored on disk (before the
        reorientation to RAS), e.g. a lesion centroid of ``features.json``."""
        return (self.stored_affine @ np.array([*map(float, ijk), 1.0]))[:3]

    def plane(self, name: str, point_mm: Point) -> Plane | None:
        """The plane ``name`` through world point ``point_mm``, or None outside the volume."""
        fixed, h, v = PLANE_AXES[name]
        ijk = np.linalg.inv(self.affine) @ np.array([*map(float, point_mm), 1.0])
        k = int(round(float(ijk[fixed])))
        if not 0 <= k < self.shape[fixed]:
            return None
        index: list[Any] = [slice(None)] * 3
        index[fixed] = k
        data = np.asarray(self.data[tuple(index)], dtype=np.float32).T  # [v, h]
        first = [0, 0, 0]
        last = [s - 1 for s in self.shape]
        first[fixed] = last[fixed] = k
        w0, w1 = self.world(first), self.world(last)
        sp_h = float(np.linalg.norm(self.affine[:3, h]))
        sp_v = float(np.linalg.norm(self.affine[:3, v]))
        extent = (
            float(w0[h]) - sp_h / 2,
            float(w1[h]) + sp_h / 2,
            float(w0[v]) - sp_v / 2,
            float(w1[v]) + sp_v / 2,
        )
        return Plane(name, data, extent, float(w0[fixed]))


def as_volume(image: str | os.PathLike[str] | Volume) -> Volume:
    """A :class:`Volume` from a path (read) or a volume (as is)."""
    return image if isinstance(image, Volume) else Volume.load(image)


def window(values: np.ndarray) -> tuple[float, float]:
    """Grey-level window of an image: 0.5th-99.5th percentile of the non-zero values."""
    nz = values[values != 0]
    if nz.size < 10:
        lo, hi = float(values.min()), float(values.max())
        return lo, hi if hi > lo else lo + 1.0
    lo, hi = np.percentile(nz, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def show_plane(ax: Any, plane: Plane, **imshow: Any) -> None:
    """Draw ``plane`` on ``ax`` in world mm (nearest-neighbour: voxels stay voxels)."""
    ax.imshow(plane.data, origin="lower", extent=plane.extent, interpolation="nearest", **imshow)


def set_view(ax: Any, centre: Point, half_mm: float) -> None:
    """Frame ``ax`` on the square of half-width ``half_mm`` around ``centre`` = (horizontal,
    vertical) world mm, the horizontal axis reversed (patient's right / anterior on the
    left), and hide the ticks."""
    ax.set_xlim(float(centre[0]) + half_mm, float(centre[0]) - half_mm)
    ax.set_ylim(float(centre[1]) - half_mm, float(centre[1]) + half_mm)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def mark_sides(ax: Any, name: str, colour: str = "yellow", fontsize: float = 10) -> None:
    """The orientation letters of plane ``name`` at the panel's left and right edges."""
    left, right = MARKERS[name]
    for x, text, ha in ((0.02, left, "left"), (0.98, right, "right")):
        ax.text(
            x,
            0.5,
            text,
            color=colour,
            fontsize=fontsize,
            fontweight="bold",
            transform=ax.transAxes,
            va="center",
            ha=ha,
        )


def nonzero_box(plane: Plane) -> tuple[float, float, float, float] | None:
    """World limits ``(h_min, h_max, v_min, v_max)`` of the plane's non-zero pixels."""
    rows = np.flatnonzero(plane.data.any(axis=1))
    cols = np.flatnonzero(plane.data.any(axis=0))
    if not rows.size or not cols.size:
        return None
    hc, vc = plane.centres()
    return float(hc[cols[0]]), float(hc[cols[-1]]), float(vc[rows[0]]), float(vc[rows[-1]])


def square_around(
    boxes: Sequence[tuple[float, float, float, float] | None], margin_mm: float = 6.0
) -> tuple[tuple[float, float], float] | None:
    """Centre and half-width of the square holding every box (plus a margin), or None."""
    got = [b for b in boxes if b is not None]
    if not got:
        return None
    h0, h1 = min(b[0] for b in got), max(b[1] for b in got)
    v0, v1 = min(b[2] for b in got), max(b[3] for b in got)
    half = max(h1 - h0, v1 - v0) / 2 + margin_mm
    return ((h0 + h1) / 2, (v0 + v1) / 2), half
