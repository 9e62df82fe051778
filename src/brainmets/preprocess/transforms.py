"""The transforms of one case: composing, saving, loading, mapping to and from native space.

Convention: every matrix is a 4x4 in world coordinates (RAS mm) that maps a point of the
*reference* space to the corresponding point of the *target* image's native world — the
direction in which images are resampled ("pull back"). ``atlas_to["flair"]`` takes an SRI24
world point to the FLAIR scanner world point showing the same anatomy; it is the
composition ``t1c_to["flair"] @ atlas_to["t1c"]`` of the two registrations.

On disk (``<ID>-transforms.json``) the file also records the atlas grid and each native grid
(shape, affine) and the input files, so that results can be mapped back to native space
without the original images. For use in other tools each composed matrix is also written
as an ITK transform (``<ID>-<seq>-to-sri24.txt``, ITK's LPS convention: fixed = SRI24,
moving = the native image; usable with ``antsApplyTransforms``/SimpleITK ``ReadTransform``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, cast

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from brainmets.preprocess.images import Grid, Volume, load_volume
from brainmets.preprocess.registration import resample_array
from brainmets.spatial import CaseTransforms

_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

Kind = Literal["image", "label", "mask"]


def compose(*matrices: np.ndarray) -> np.ndarray:
    """``compose(a, b, c) = a @ b @ c``: apply c first (pull-back chains read right to left)."""
    out = np.eye(4)
    for m in matrices:
        out = out @ np.asarray(m, dtype=float)
    return out


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 3) world points through a 4x4 matrix."""
    p = np.asarray(points, dtype=float)
    return p @ matrix[:3, :3].T + matrix[:3, 3]


def closest_rigid(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The rigid transform closest (least squares over ``points``) to ``matrix``."""
    p = np.asarray(points, dtype=float)
    q = apply(matrix, p)
    pc, qc = p.mean(axis=0), q.mean(axis=0)
    u, _, vt = np.linalg.svd((p - pc).T @ (q - qc))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    out = np.eye(4)
    out[:3, :3] = r
    out[:3, 3] = qc - r @ pc
    return out


def mean_displacement(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> float:
    """Mean distance (mm) between where ``a`` and ``b`` send ``points``."""
    return float(np.linalg.norm(apply(a, points) - apply(b, points), axis=1).mean())


def itk_transform_text(matrix: np.ndarray) -> str:
    """An ITK ``AffineTransform_double_3_3`` text file of a RAS fixed -> moving matrix."""
    lps = _LPS @ matrix @ _LPS
    params = [*lps[:3, :3].ravel(), *lps[:3, 3]]
    return (
        "#Insight Transform File V1.0\n#Transform 0\n"
        "Transform: AffineTransform_double_3_3\n"
        f"Parameters: {' '.join(repr(float(v)) for v in params)}\n"
        "FixedParameters: 0 0 0\n"
    )


def read_itk_transform(path: str | os.PathLike[str]) -> np.ndarray:
    """RAS fixed -> moving 4x4 of an ITK linear transform file."""
    tx = sitk.ReadTransform(str(path))
    aff = sitk.AffineTransform(3)
    try:
        aff = sitk.AffineTransform(tx)
    except (RuntimeError, TypeError):
        aff.SetMatrix(tx.GetMatrix())
        aff.SetTranslation(tx.GetTranslation())
    lin = np.asarray(aff.GetMatrix()).reshape(3, 3)
    c = np.asarray(aff.GetCenter())
    m = np.eye(4)
    m[:3, :3] = lin
    m[:3, 3] = np.asarray(aff.GetTranslation()) + c - lin @ c
    return _LPS @ m @ _LPS


# ------------------------------------------------------------------ resampling helpers
def resample_labels(
    data: np.ndarray,
    src_affine: np.ndarray,
    grid: Grid,
    matrix: np.ndarray,
    method: str = "linear",
) -> np.ndarray:
    """Label-preserving resampling of an integer label map onto ``grid``.

    ``method="linear"``: each label's indicator is interpolated linearly and every output
    voxel takes the label with the largest value (background included), so small or thin
    structures keep their shape better than with nearest neighbour and no new label values
    appear. ``method="nearest"``: nearest neighbour.
    """
    labels = np.asarray(data)
    if method == "nearest":
        return resample_array(labels, src_affine, grid, matrix, order=0).astype(labels.dtype)
    if method != "linear":
        raise ValueError(f"label resampling method must be 'linear' or 'nearest', not {method!r}")
    values = [v for v in np.unique(labels) if v != 0]
    out = np.zeros(grid.shape, dtype=labels.dtype)
    best = resample_array((labels == 0).astype(np.float32), src_affine, grid, matrix, cval=1.0)
    for v in values:
        p = resample_array((labels == v).astype(np.float32), src_affine, grid, matrix)
        win = p > best
        out[win] = v
        best[win] = p[win]
    return out


def _as_volume(image: str | os.PathLike[str] | nib.Nifti1Image | Volume) -> Volume:
    if isinstance(image, Volume):
        return image
    if isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        data = np.asarray(image.dataobj)
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        return Volume(data, np.asarray(image.affine, float), None, "", image.header)
    img = cast(nib.Nifti1Image, nib.load(str(image)))
    data = np.asarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return Volume(data, np.asarray(img.affine, float), Path(image), "", img.header)


def _guess_kind(data: np.ndarray) -> Kind:
    if data.dtype.kind in "iub" or np.array_equal(data, np.round(data)):
        n = len(np.unique(data))
        if n <= 2:
            return "mask"
        if n <= 64:
            return "label"
    return "image"


def _integral_labels(data: np.ndarray, what: str) -> np.ndarray:
    if data.dtype.kind in "iub":
        return data
    if not np.array_equal(data, np.round(data)):
        raise ValueError(f"{what}: label values are not integral")
    return np.round(data).astype(np.int32)


def map_to_atlas(
    image: str | os.PathLike[str] | nib.Nifti1Image | Volume,
    transforms: CaseTransforms | str | os.PathLike[str],
    space: str = "t1c",
    kind: Kind | None = None,
    label_method: str = "linear",
) -> nib.Nifti1Image:
    """Map an image, mask or label map drawn in the native space of ``space`` (``"t1c"`` or
    ``"flair"``, or ``"t1"``/``"t2"``) into the SRI24 output grid of the case.

    The image may lie on any grid of that series' world (usually the series' own grid, as
    written by the converter): only its affine is used. ``kind`` ``"label"``/``"mask"``
    resample label-preserving (``label_method``: per-label linear + argmax, or nearest),
    ``"image"`` linearly; ``None`` guesses from the values (integral with <= 64 values: label).
    Returns a NIfTI image on the atlas grid (uint8/int16 for labels, float32 for images).
    """
    tr = transforms if isinstance(transforms, CaseTransforms) else CaseTransforms.load(transforms)
    vol = _as_volume(image)
    data = np.asarray(vol.data)
    kind = kind or _guess_kind(data)
    grid = tr.atlas_grid
    index_map = tr.index_map(space)
    if index_map is not None and vol.grid.same_as(tr.native_grids.get(space, vol.grid)):
        # index pass-through: the atlas voxel i takes native voxel index_map @ i
        matrix = vol.affine @ index_map @ np.linalg.inv(grid.affine)
    else:
        matrix = tr._atlas_to(space)
    if kind == "image":
        out = resample_array(data.astype(np.float32), vol.affine, grid, matrix, order=1)
        return _nifti(out, grid.affine, np.float32)
    labels = _integral_labels(data, str(vol.path or "image"))
    mapped = resample_labels(labels, vol.affine, grid, matrix, label_method)
    dtype = np.uint8 if mapped.min() >= 0 and mapped.max() <= 255 else np.int16
    return _nifti(mapped, grid.affine, dtype)


def map_to_native(
    image: str | os.PathLike[str] | nib.Nifti1Image | Volume,
    transforms: CaseTransforms | str | os.PathLike[str],
    space: str = "t1c",
    kind: Kind | None = None,
    reference: str | os.PathLike[str] | None = None,
    label_method: str = "linear",
) -> nib.Nifti1Image:
    """Map an image or label map on the SRI24 output grid back to the native grid of
    ``space`` (the grid recorded at preprocessing, or that of ``reference``)."""
    tr = transforms if isinstance(transforms, CaseTransforms) else CaseTransforms.load(transforms)
    vol = _as_volume(image)
    data = np.asarray(vol.data)
    if reference is not None:
        ref = load_volume(reference)
        grid = ref.grid
    elif space in tr.native_grids:
        grid = tr.native_grids[space]
    else:
        raise KeyError(f"{tr.case_id}: no native grid recorded for {space!r}; give a reference")
    kind = kind or _guess_kind(data)
    index_map = tr.index_map(space)
    if index_map is not None and grid.same_as(tr.native_grids.get(space, grid)):
        matrix = vol.affine @ np.linalg.inv(index_map) @ np.linalg.inv(grid.affine)
    else:
        matrix = tr.native_to_atlas_matrix(space)
    if kind == "image":
        out = resample_array(data.astype(np.float32), vol.affine, grid, matrix, order=1)
        return _nifti(out, grid.affine, np.float32)
    labels = _integral_labels(data, str(vol.path or "image"))
    mapped = resample_labels(labels, vol.affine, grid, matrix, label_method)
    dtype = np.uint8 if mapped.min() >= 0 and mapped.max() <= 255 else np.int16
    return _nifti(mapped, grid.affine, dtype)


def _nifti(data: np.ndarray, affine: np.ndarray, dtype: type) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img
