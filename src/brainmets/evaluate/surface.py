"""Surface distances between two binary masks, weighted by surface area.

The surface of a mask is represented by its *border cubes*: the 2x2x2 voxel cubes of the grid
whose corners are partly inside and partly outside the mask. Each border cube carries the area
of the marching-cubes surface inside it (``surfels.json``, made by
``scripts/make_surfel_table.py``) and the Euclidean distance (in mm, with the voxel spacing)
from it to the nearest border cube of the other mask. This is the representation of the
surface-distance measures used by the BraTS 2023 lesion-wise evaluation, so percentile
distances computed here are directly comparable with that program's HD95.

Everything is computed in the bounding box of the two masks (plus one voxel), and the
distances between border cubes are nearest-neighbour queries (a k-d tree: exact Euclidean
distances, like a distance transform, at a cost that follows the surface, not the volume).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from scipy.spatial import cKDTree


@lru_cache(maxsize=1)
def _area_vectors() -> list[np.ndarray]:
    text = resources.files("brainmets.evaluate").joinpath("surfels.json").read_text()
    table = json.loads(text)["area_vectors"]
    return [np.asarray(v, dtype=float).reshape(-1, 3) for v in table]


@lru_cache(maxsize=16)
def surfel_areas(spacing: tuple[float, float, float]) -> np.ndarray:
    """The surface area (mm²) in a border cube, for each of the 256 cube configurations."""
    s0, s1, s2 = spacing
    scale = np.array([s1 * s2, s0 * s2, s0 * s1], dtype=float)
    return np.array(
        [float(np.linalg.norm(v * scale, axis=1).sum()) if len(v) else 0.0 for v in _area_vectors()]
    )


def _cube_codes(mask: np.ndarray) -> np.ndarray:
    """Configuration code of every 2x2x2 cube of ``mask`` padded by one voxel each side."""
    p = np.pad(mask.astype(np.uint8), 1)
    codes = np.zeros(tuple(n - 1 for n in p.shape), dtype=np.uint8)
    for bit in range(8):
        i, j, k = (bit >> 2) & 1, (bit >> 1) & 1, bit & 1
        codes |= p[
            i : i + codes.shape[0], j : j + codes.shape[1], k : k + codes.shape[2]
        ] << np.uint8(bit)
    return codes


@dataclass(frozen=True)
class SurfaceDistances:
    """Distances (mm) from each border cube of one mask to the other's surface, sorted
    ascending, with the surface area (mm²) of each cube."""

    ref_to_pred: np.ndarray
    ref_areas: np.ndarray
    pred_to_ref: np.ndarray
    pred_areas: np.ndarray


def surface_distances(
    ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> SurfaceDistances:
    """Area-weighted surface distances between two boolean masks of the same shape.

    A mask without a surface (empty) has no distances; distances *to* an empty mask are
    infinite.
    """
    if ref.shape != pred.shape:
        raise ValueError(f"masks differ in shape: {ref.shape} vs {pred.shape}")
    union = ref | pred
    empty = np.zeros(0)
    if not union.any():
        return SurfaceDistances(empty, empty, empty, empty)
    idx = np.nonzero(union)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in idx)
    areas = surfel_areas((float(spacing[0]), float(spacing[1]), float(spacing[2])))
    scale = np.asarray(spacing, dtype=float)
    codes = [_cube_codes(ref[box]), _cube_codes(pred[box])]
    borders = [(c != 0) & (c != 255) for c in codes]
    points = [np.argwhere(b) * scale for b in borders]
    out: list[np.ndarray] = []
    for me, other in ((0, 1), (1, 0)):
        if not len(points[me]):
            out.extend([empty, empty])
            continue
        if len(points[other]):
            d, _ = cKDTree(points[other]).query(points[me], k=1)
            d = np.asarray(d, dtype=float)
        else:
            d = np.full(len(points[me]), np.inf)
        a = areas[codes[me][borders[me]]]
        order = np.argsort(d, kind="stable")
        out.extend([d[order], a[order]])
    return SurfaceDistances(out[0], out[1], out[2], out[3])


def _percentile(distances: np.ndarray, areas: np.ndarray, percent: float) -> float:
    if distances.size == 0:
        return float("inf")
    cum = np.cumsum(areas) / np.sum(areas)
    i = int(np.searchsorted(cum, percent / 100.0))
    return float(distances[min(i, distances.size - 1)])


def robust_hausdorff(sd: SurfaceDistances, percent: float = 95.0) -> float:
    """The larger of the two directed area-weighted ``percent``-th percentile distances
    (HD95 for 95); infinite when either mask is empty."""
    return max(
        _percentile(sd.ref_to_pred, sd.ref_areas, percent),
        _percentile(sd.pred_to_ref, sd.pred_areas, percent),
    )


def dice(ref: np.ndarray, pred: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty."""
    a = int(np.count_nonzero(ref))
    b = int(np.count_nonzero(pred))
    if a + b == 0:
        return float("nan")
    return 2.0 * int(np.count_nonzero(ref & pred)) / (a + b)


# ------------------------------------------------------------------ voxel borders
def _border(mask: np.ndarray) -> np.ndarray:
    """``mask & ~binary_erosion(mask)`` with the 6-neighbourhood, outside the array being
    outside the mask."""
    p = np.pad(mask, 1)
    inner = p[1:-1, 1:-1, 1:-1]
    eroded = (
        inner
        & p[:-2, 1:-1, 1:-1]
        & p[2:, 1:-1, 1:-1]
        & p[1:-1, :-2, 1:-1]
        & p[1:-1, 2:, 1:-1]
        & p[1:-1, 1:-1, :-2]
        & p[1:-1, 1:-1, 2:]
    )
    return inner & ~eroded


def _box(mask: np.ndarray) -> tuple[slice, ...] | None:
    box = []
    for ax in range(mask.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != ax)))
        if not hit.size:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def border_voxels(mask: np.ndarray) -> np.ndarray:
    """Indices (n, 3) of the border voxels of a boolean mask: mask voxels with at least one
    of their six face neighbours outside it (outside the array counts as outside), i.e.
    ``mask & ~binary_erosion(mask)`` with the 6-neighbourhood."""
    box = _box(mask)
    if box is None:
        return np.zeros((0, 3), dtype=np.int64)
    lo = np.asarray([s.start for s in box], dtype=np.int64)
    return np.argwhere(_border(mask[box])) + lo


def voxel_border_distances(
    ref: np.ndarray, pred: np.ndarray, spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each border voxel of ``ref`` to the nearest border voxel of
    ``pred``, and the other way round: the voxel-based surface distances of medpy and of
    panoptica (a distance transform of the other mask's border read at this mask's border).
    Both masks non-empty; see :func:`border_distances`."""
    if not ref.any() or not pred.any():
        raise ValueError("surface distances need two non-empty masks")
    return border_distances(border_voxels(ref), border_voxels(pred), spacing)


def border_distances(
    a: np.ndarray, b: np.ndarray, spacing: tuple[float, ...] = (1.0, 1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each voxel index of ``a`` (n, 3) to the nearest of ``b`` and
    back: exact nearest-neighbour queries (a k-d tree) for the voxels the two sets do not
    share, 0 without a query for those they share. The order of the distances is not the
    voxels' order (percentiles and counts do not depend on it)."""
    if not len(a) or not len(b):
        raise ValueError("surface distances need two non-empty borders")
    hi = np.maximum(a.max(axis=0), b.max(axis=0)) + 1
    dims = (int(hi[0]), int(hi[1]), int(hi[2]))
    ka = np.ravel_multi_index(a.T, dims)
    kb = np.ravel_multi_index(b.T, dims)
    in_b = np.isin(ka, kb)
    in_a = np.isin(kb, ka)
    shared = int(np.count_nonzero(in_b))
    scale = np.asarray(spacing, dtype=float)
    out: list[np.ndarray] = []
    for me, mine_shared, other in ((a, in_b, b), (b, in_a, a)):
        rest = me[~mine_shared]
        if len(rest):
            d, _ = cKDTree(other * scale, balanced_tree=False).query(rest * scale, k=1)
            d = np.asarray(d, dtype=float)
        else:
            d = np.zeros(0)
        out.append(np.concatenate([np.zeros(shared), d]))
    return out[0], out[1]
