"""Geometry helpers: rotations, image grids, LPS/RAS conversion and resampling.

Conventions used throughout :mod:`brainmets.synth`:

* Volumes are numpy arrays indexed ``[i, j, k]`` with a 4x4 *RAS* voxel-to-world affine
  (the NIfTI/nibabel convention). For a DICOM series ``i`` is the column index (along the
  first ImageOrientationPatient vector), ``j`` the row index (along the second vector) and
  ``k`` the instance order of the slices.
* DICOM patient coordinates are LPS; ``LPS_FROM_RAS`` (its own inverse) converts.
* "template world" is the world space of the anatomy template (SRI24 or MNI152) and
  "scanner world" the patient coordinate system of one series, both expressed in RAS mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: diag(-1, -1, 1, 1): converts RAS <-> LPS (points and affines, applied on the left).
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Base slice orientations as (row direction, column direction) in DICOM LPS.
BASE_ORIENTATIONS_LPS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "AX": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "SAG": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "COR": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}


def rotation_xyz(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """3x3 rotation: about x (pitch, nodding), then y (roll), then z (yaw), in degrees."""
    ax, ay, az = np.deg2rad([rx_deg, ry_deg, rz_deg])
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def rotation_angle_deg(r: np.ndarray) -> float:
    """Total rotation angle of a 3x3 rotation matrix, in degrees."""
    c = (np.trace(r[:3, :3]) - 1.0) / 2.0
    return float(np.rad2deg(np.arccos(np.clip(c, -1.0, 1.0))))


def homogeneous(linear: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    """4x4 matrix from a 3x3 linear part and a translation."""
    m = np.eye(4)
    m[:3, :3] = linear
    if translation is not None:
        m[:3, 3] = translation
    return m


def apply_affine(aff: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 4x4 affine to points of shape (..., 3)."""
    pts = np.asarray(pts, dtype=float)
    return pts @ aff[:3, :3].T + aff[:3, 3]


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape ``(ni, nj, nk)`` and RAS voxel-to-world affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def affine_lps(self) -> np.ndarray:
        return LPS_FROM_RAS @ self.affine

    def directions_lps(self) -> np.ndarray:
        """Unit vectors (columns) of the i, j, k axes in LPS."""
        a = self.affine_lps[:3, :3]
        return a / np.linalg.norm(a, axis=0)

    def slice_position_lps(self, k: int) -> np.ndarray:
        """ImagePositionPatient (LPS centre of voxel (0, 0, k))."""
        return apply_affine(self.affine_lps, np.array([0.0, 0.0, float(k)]))


def make_grid(
    orientation: str,
    directions_rotation: np.ndarray,
    centre_ras: np.ndarray,
    matrix: tuple[int, int],
    pixel_spacing: tuple[float, float],
    n_slices: int,
    slice_spacing: float,
    reverse_slices: bool = False,
) -> Grid:
    """Grid of a series centred on ``centre_ras``.

    ``matrix`` is (columns, rows); ``pixel_spacing`` is (column spacing, i.e. along the
    row direction; row spacing, along the column direction) in mm. The base orientation
    (``AX``, ``SAG``, ``COR``) is rotated by ``directions_rotation`` (3x3, RAS) to model
    the operator's angulation of the slice stack.
    """
    row_lps, col_lps = (np.array(v) for v in BASE_ORIENTATIONS_LPS[orientation])
    normal_lps = np.cross(row_lps, col_lps)
    to_ras = LPS_FROM_RAS[:3, :3]
    dirs = directions_rotation @ (to_ras @ np.column_stack([row_lps, col_lps, normal_lps]))
    if reverse_slices:
        dirs[:, 2] = -dirs[:, 2]
    spacing = np.array([pixel_spacing[0], pixel_spacing[1], slice_spacing])
    lin = dirs * spacing
    n = np.array([matrix[0], matrix[1], n_slices], dtype=float)
    origin = np.asarray(centre_ras, dtype=float) - lin @ ((n - 1.0) / 2.0)
    return Grid(
        shape=(int(matrix[0]), int(matrix[1]), int(n_slices)), affine=homogeneous(lin, origin)
    )


def voxel_map(src_affine: np.ndarray, grid: Grid, grid_to_src_world: np.ndarray) -> np.ndarray:
    """4x4 map from grid voxel indices to source voxel indices."""
    return np.linalg.inv(src_affine) @ grid_to_src_world @ grid.affine


def _slab_offsets(grid: Grid, thickness: float | None, n_sub: int) -> list[float]:
    if thickness is None or n_sub <= 1:
        return [0.0]
    dk = float(grid.spacing[2])
    frac = thickness / dk
    return [frac * ((m + 0.5) / n_sub - 0.5) for m in range(n_sub)]


def resample(
    volume: np.ndarray,
    src_affine: np.ndarray,
    grid: Grid,
    grid_to_src_world: np.ndarray,
    order: int = 1,
    thickness: float | None = None,
    n_sub: int = 1,
    cval: float = 0.0,
    box: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None,
    src_origin: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Resample ``volume`` onto ``grid`` (or onto a box of it).

    ``grid_to_src_world`` maps grid world (scanner RAS) to the source's world (template
    RAS). With ``thickness`` and ``n_sub > 1`` the result averages ``n_sub`` samples across
    the slice thickness (a box slice profile), as a thick 2D slice integrates signal.
    ``box`` restricts the output to ``[(i0, i1), (j0, j1), (k0, k1)]`` of the grid and
    ``src_origin`` says where ``volume[0, 0, 0]`` sits in the source's full voxel grid, so a
    small crop of the source can be resampled cheaply.
    """
    m = voxel_map(src_affine, grid, grid_to_src_world)
    if box is None:
        box = ((0, grid.shape[0]), (0, grid.shape[1]), (0, grid.shape[2]))
    start = np.array([b[0] for b in box], dtype=float)
    out_shape = tuple(int(b[1] - b[0]) for b in box)
    lin = m[:3, :3]
    base = m[:3, 3] - np.asarray(src_origin, dtype=float)
    offsets = _slab_offsets(grid, thickness, n_sub)
    acc: np.ndarray | None = None
    for d in offsets:
        out = _affine_linear(volume, lin, base + lin[:, 2] * d, start, out_shape, order, cval)
        acc = out if acc is None else acc + out
    assert acc is not None
    if len(offsets) > 1:
        acc /= len(offsets)
    return acc


_THREADS = [1]
_IMAGES: list[tuple[np.ndarray, object]] = []


def _sitk_image(volume: np.ndarray):
    """SimpleITK image of ``volume`` (float32), cached for the few most recent volumes."""
    import SimpleITK as sitk

    for arr, img in _IMAGES:
        if arr is volume:
            return img
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume, dtype=np.float32))
    _IMAGES.insert(0, (volume, img))
    del _IMAGES[3:]
    return img


def set_resample_threads(n: int) -> None:
    """Threads SimpleITK may use per resampling call (1 inside a process pool)."""
    _THREADS[0] = max(1, int(n))


def _affine_linear(
    volume: np.ndarray,
    lin: np.ndarray,
    offset: np.ndarray,
    start: np.ndarray,
    out_shape: tuple[int, ...],
    order: int,
    cval: float,
) -> np.ndarray:
    """out[v] = volume(lin @ (start + v) + offset), linear (order 1) or nearest (order 0).

    SimpleITK does the work (several times faster than scipy.ndimage.affine_transform);
    arrays are handed over without copies by reversing the axis order (SimpleITK's x is the
    last numpy axis), so the matrix is conjugated by the axis reversal."""
    import SimpleITK as sitk

    rev = lin[::-1, ::-1]
    src = _sitk_image(volume)
    tr = sitk.AffineTransform(3)
    tr.SetMatrix(rev.ravel().tolist())
    tr.SetTranslation(offset[::-1].tolist())
    f = sitk.ResampleImageFilter()
    f.SetSize([int(v) for v in out_shape[::-1]])
    f.SetOutputOrigin([float(v) for v in start[::-1]])
    f.SetOutputSpacing([1.0, 1.0, 1.0])
    f.SetOutputDirection([1, 0, 0, 0, 1, 0, 0, 0, 1])
    f.SetTransform(tr)
    f.SetInterpolator(sitk.sitkLinear if order == 1 else sitk.sitkNearestNeighbor)
    f.SetDefaultPixelValue(float(cval))
    f.SetOutputPixelType(sitk.sitkFloat32)
    f.SetNumberOfThreads(_THREADS[0])
    return sitk.GetArrayFromImage(f.Execute(src))


def grid_box_of_source_box(
    src_affine: np.ndarray,
    grid: Grid,
    grid_to_src_world: np.ndarray,
    src_lo: np.ndarray,
    src_hi: np.ndarray,
    margin: int = 2,
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    """Bounding box on ``grid`` of the source voxel box ``[src_lo, src_hi)``; None if outside."""
    m = np.linalg.inv(voxel_map(src_affine, grid, grid_to_src_world))
    lo = np.asarray(src_lo, dtype=float)
    hi = np.asarray(src_hi, dtype=float) - 1.0
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    g = apply_affine(m, corners)
    g_lo = np.floor(g.min(axis=0)).astype(int) - margin
    g_hi = np.ceil(g.max(axis=0)).astype(int) + margin + 1
    g_lo = np.maximum(g_lo, 0)
    g_hi = np.minimum(g_hi, np.array(grid.shape))
    if np.any(g_hi <= g_lo):
        return None
    return (
        (int(g_lo[0]), int(g_hi[0])),
        (int(g_lo[1]), int(g_hi[1])),
        (int(g_lo[2]), int(g_hi[2])),
    )


def exact_reorient(
    data: np.ndarray, affine: np.ndarray, target_affine: np.ndarray, target_shape: tuple[int, ...]
) -> np.ndarray | None:
    """Reorder ``data`` onto a target grid that differs only by axis permutation/flips.

    Returns None when the two grids are not related by an exact permutation/flip with
    integer offsets (then resample instead).
    """
    vox = np.linalg.inv(affine) @ target_affine
    lin = vox[:3, :3]
    if not np.allclose(np.abs(lin).sum(axis=0), 1.0) or not np.allclose(
        np.abs(lin), np.round(np.abs(lin))
    ):
        return None
    if not np.allclose(vox[:3, 3], np.round(vox[:3, 3]), atol=1e-4):
        return None
    perm = [int(np.argmax(np.abs(lin[:, c]))) for c in range(3)]
    out = np.transpose(data, perm)
    idx = []
    for c in range(3):
        sign = int(np.round(lin[perm[c], c]))
        start = int(np.round(vox[perm[c], 3]))
        n = target_shape[c]
        stop = start + sign * n
        if sign > 0:
            if start < 0 or stop > data.shape[perm[c]]:
                return None
            idx.append(slice(start, stop))
        else:
            if start >= data.shape[perm[c]] or stop < -1:
                return None
            idx.append(slice(start, stop if stop >= 0 else None, -1))
    return np.ascontiguousarray(out[tuple(idx)])
