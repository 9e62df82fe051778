"""Array utilities shared by every package that handles masks and label maps (library layer).

Small, dependency-free (NumPy only) helpers: bounding boxes of masks and the overlap of two
voxel grids. Used by segmentation import, lesion analysis and the review/annotation tools.
"""

from __future__ import annotations

import numpy as np


def nonzero_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Tight bounding box (slices) of the non-zero voxels, or ``None`` when all are zero."""
    out = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        line = np.any(mask, axis=other)
        nz = np.flatnonzero(line)
        if not len(nz):
            return None
        out.append(slice(int(nz[0]), int(nz[-1]) + 1))
    return tuple(out)


def grid_overlap(m: np.ndarray, shape: tuple[int, ...], atlas_shape: tuple[int, ...]) -> float:
    """Fraction of the grid's bounding box (mapped by ``m``) inside the atlas grid's box."""
    corners = np.array(
        [
            [i, j, k]
            for i in (0, shape[0] - 1)
            for j in (0, shape[1] - 1)
            for k in (0, shape[2] - 1)
        ],
        float,
    )
    mapped = corners @ m[:3, :3].T + m[:3, 3]
    lo, hi = mapped.min(axis=0) - 0.5, mapped.max(axis=0) + 0.5
    alo, ahi = np.full(3, -0.5), np.asarray(atlas_shape[:3], float) - 0.5
    inter = np.clip(np.minimum(hi, ahi) - np.maximum(lo, alo), 0, None)
    vol = np.prod(hi - lo)
    return float(np.prod(inter) / vol) if vol > 0 else 0.0


#: the bounds of the level :func:`volume_level` may choose
VOLUME_LEVELS = (0.25, 0.75)


def volume_level(
    fraction: np.ndarray, want: int, bounds: tuple[float, float] = VOLUME_LEVELS
) -> float:
    """The level at which ``fraction >= level`` keeps ``want`` voxels, bounded to
    ``bounds`` (0.5 when nothing is wanted or there is nothing to keep): the threshold that
    gives an interpolated (partial-volume) mask a known volume."""
    flat = np.asarray(fraction)[np.asarray(fraction) > 0].ravel()
    if want <= 0 or flat.size == 0:
        return 0.5
    if want >= flat.size:
        return bounds[0]
    level = float(np.partition(flat, flat.size - want)[flat.size - want])
    above = flat[flat > level]
    if above.size:  # ties: the next level up may come closer to the wanted count
        higher = float(above.min())
        if abs(int(above.size) - want) < abs(int((flat >= level).sum()) - want):
            level = higher
    return min(max(level, bounds[0]), bounds[1])
