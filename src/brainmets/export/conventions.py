"""Array orientation and header of exported NIfTI files: one convention per layout.

Every image and label map of the dataset lies on the SRI24 grid (240 x 240 x 155, 1 mm).
Two headers are in use for that grid (``shared/docs/conventions.md``, "a known trap"):

* ``sri24`` — the header of the SRI24 distribution's ``t1_brain.nii.gz``: affine
  ``diag(-1, 1, 1)``, origin (0, 0, 0), qform = sform code 1 (scanner). Array index i runs
  to the patient's left, j to anterior, k to superior. This is what ``preprocess`` writes.
* ``brats-met`` — the header of the published Pretreat-MetsToBrain-Masks / BraTS-METS files:
  affine ``diag(1, 1, 1)``, origin (0, 239, 0), qform = sform code 1. Their arrays are
  **identical by index** to the SRI24 template (same array order as ``sri24``); only the header
  differs, and it does not put the images on the template in world coordinates (it also
  states that i runs to the patient's right).

Conventions of the layouts (default ``sri24`` for every NIfTI layout, parameter ``header``):

* the **array order is always the SRI24 template's** (= the published collection's), so
  exported arrays overlay the published cases and feed BraTS-trained models voxel for voxel;
* with ``header = "sri24"`` the files also overlay the SRI24 atlas and any file with a
  correct header (e.g. BraTS-GLI ``brats_gli_00001_000``, LPS with a flipped array) in world
  coordinates; against the published METS files they agree by index only;
* with ``header = "brats-met"`` the files are byte-compatible in header with the published
  collection and overlay its cases both by index and by world coordinates, at the price of
  not overlaying the atlas in world coordinates.

:func:`conform` puts any image that lies on the SRI24 grid in world coordinates (whatever
its array order, e.g. an LPS file) into the template's array order and writes the chosen
header; an image already in that order is kept byte for byte when its header matches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE: tuple[int, int, int] = (240, 240, 155)
#: the SRI24 distribution's affine (t1_brain.nii.gz)
SRI24_AFFINE = np.diag([-1.0, 1.0, 1.0, 1.0])
#: the published Pretreat-MetsToBrain-Masks / BraTS-METS affine
BRATS_MET_AFFINE = np.array(
    [[1.0, 0, 0, 0], [0, 1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]], dtype=float
)
HEADERS: dict[str, np.ndarray] = {"sri24": SRI24_AFFINE, "brats-met": BRATS_MET_AFFINE}


class ConventionError(ValueError):
    """An image is not on the SRI24 grid (so no header convention can place it)."""


@dataclass(frozen=True)
class Conformed:
    """The result of :func:`conform`: the image to write, or None when the source file can be
    used as is (linked or copied)."""

    image: nib.Nifti1Image | None
    how: str  # "as is", "header replaced", "reordered", "reordered, header replaced"


def header_affine(header: str) -> np.ndarray:
    try:
        return HEADERS[header].copy()
    except KeyError:
        raise ValueError(f"header must be one of {sorted(HEADERS)}, not {header!r}") from None


def _signed_permutation(m: np.ndarray) -> bool:
    r = m[:3, :3]
    ok = np.allclose(np.abs(r).sum(axis=0), 1) and np.allclose(np.abs(r).sum(axis=1), 1)
    return bool(ok and np.allclose(np.abs(r), np.round(np.abs(r))))


def template_order(img: nib.Nifti1Image, atol: float = 1e-3) -> tuple[list[int], list[int]]:
    """How to put the array of ``img`` into the SRI24 template's array order, through world
    coordinates: ``(axes, flips)`` for ``np.transpose`` then ``np.flip`` (identity: ``[0, 1,
    2], []``). A file with the published collection's header (:data:`BRATS_MET_AFFINE`) is in
    template order by definition (it matches the template by index, not by world).

    Raises :class:`ConventionError` when ``img`` is not the SRI24 grid up to an axis
    permutation / flip (e.g. another voxel size or a shifted grid).
    """
    if img.ndim != 3 or tuple(img.shape) not in {
        tuple(SHAPE[i] for i in p) for p in ((0, 1, 2), (1, 0, 2), (2, 1, 0), (0, 2, 1))
    }:
        raise ConventionError(f"shape {img.shape} is not the SRI24 grid {SHAPE}")
    if _close(img.affine, BRATS_MET_AFFINE):
        return [0, 1, 2], []
    m = np.linalg.inv(img.affine) @ SRI24_AFFINE  # template voxel -> this image's voxel
    if not _signed_permutation(m):
        raise ConventionError(
            "not on the SRI24 grid (1 mm, axis-aligned with the template): affine "
            + np.array2string(img.affine[:3], precision=3)
        )
    r = np.round(m[:3, :3]).astype(int)
    t = m[:3, 3]
    if not np.allclose(t, np.round(t), atol=atol):
        raise ConventionError("the grid is shifted from the SRI24 grid by a fraction of a voxel")
    corners = np.array([[0, 0, 0], [s - 1 for s in SHAPE]], dtype=float)
    mapped = corners @ r.T + np.round(t)
    lo, hi = mapped.min(axis=0), mapped.max(axis=0)
    if not (np.allclose(lo, 0) and np.allclose(hi, np.array(img.shape) - 1)):
        raise ConventionError(
            f"does not cover the SRI24 grid {SHAPE} in world coordinates (affine "
            + np.array2string(img.affine[:3], precision=3)
            + ")"
        )
    # template axis a reads image axis axes[a], flipped where the sign is negative
    axes = [int(np.flatnonzero(r[:, a])[0]) for a in range(3)]
    flips = [a for a in range(3) if r[axes[a], a] < 0]
    return axes, flips


def reorder(data: np.ndarray, order: tuple[list[int], list[int]]) -> np.ndarray:
    """Apply :func:`template_order`'s ``(axes, flips)`` to an array."""
    axes, flips = order
    out = np.transpose(data, axes) if axes != [0, 1, 2] else data
    return np.ascontiguousarray(np.flip(out, axis=tuple(flips))) if flips else out


def template_array(img: nib.Nifti1Image) -> np.ndarray:
    """The (scaled) voxel values of ``img`` in the SRI24 template's array order."""
    return reorder(np.asanyarray(img.dataobj), template_order(img))


def conform(path: str | os.PathLike[str], header: str = "sri24") -> Conformed:
    """The file at ``path`` in the template's array order with the ``header`` convention.

    Data type, scaling (``scl_slope``/``scl_inter``) and stored values are kept; qform and
    sform (code 1) both carry the convention's affine; units mm. Returns ``image=None`` when
    the file already follows the convention (it may then be linked or copied unchanged).
    """
    target = header_affine(header)
    img = nib.load(str(path))
    if not isinstance(img, nib.Nifti1Image):
        raise ConventionError(f"{Path(path).name}: not a NIfTI-1 image")
    if follows(img, header):
        return Conformed(None, "as is")
    order = template_order(img)
    moved = order != ([0, 1, 2], [])
    raw = np.asanyarray(img.dataobj.get_unscaled())  # type: ignore[attr-defined]
    dtype = img.get_data_dtype()
    out = nib.Nifti1Image(reorder(raw, order).astype(dtype, copy=False), target)
    out.header.set_data_dtype(dtype)
    out.header.set_qform(target, code=1)
    out.header.set_sform(target, code=1)
    out.header.set_xyzt_units("mm", "sec")
    # nibabel keeps a loaded file's scaling in the proxy (the loaded header's is reset)
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    if slope != 1.0 or inter != 0.0:
        out.header.set_slope_inter(slope, inter)
    return Conformed(out, "array reordered, header set" if moved else "header set")


def _close(a: np.ndarray, b: np.ndarray, atol: float = 1e-4) -> bool:
    return bool(np.allclose(a, b, atol=atol))


def follows(img: nib.Nifti1Image, header: str) -> bool:
    """Whether ``img`` already has the convention's shape, affines (qform and sform, code >
    0) and millimetre units."""
    target = header_affine(header)
    h = img.header
    if tuple(img.shape) != SHAPE:
        return False
    q, qcode = h.get_qform(coded=True)
    s, scode = h.get_sform(coded=True)
    if not qcode or not scode or q is None or s is None:
        return False
    return _close(q, target) and _close(s, target) and h.get_xyzt_units()[0] == "mm"
