"""Loading, checking and reorienting the input images; the SRI24 reference grid.

Every geometric operation of the preprocessing step goes through world coordinates
(RAS millimetres, as in the NIfTI affine): an image is a voxel array plus the 4x4 affine that
maps its voxel indices to world points. Reorienting changes only the array order (and the
affine with it), never where a voxel is in the world, so laterality is kept by construction.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from brainmets.preprocess.errors import PreprocessError
from brainmets.spatial import Grid
from brainmets.vocab import SUFFIX

#: input sequences (the convert stage's roles), in processing order
SEQUENCES: tuple[str, ...] = ("t1c", "t1", "t2", "flair")
#: input role -> output suffix of the reference collection (BraTS-METS naming)
OUTPUT_SUFFIX: dict[str, str] = dict(SUFFIX)
#: human-readable names
SEQUENCE_NAMES: dict[str, str] = {
    "t1": "T1 (pre-contrast)",
    "t1c": "T1 post-contrast",
    "t2": "T2",
    "flair": "FLAIR",
}

#: accepted voxel size range (mm) of an input series
VOXEL_MM = (0.1, 10.0)
#: a head image spans at least this much (mm) along its two longest axes ...
MIN_EXTENT_MM = 90.0
#: ... and at most this much along any axis
MAX_EXTENT_MM = 600.0


@dataclass
class Volume:
    """One 3D image: float32 voxel array and its affine, with where it came from."""

    data: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    role: str = ""
    header: nib.Nifti1Header | None = None

    @property
    def grid(self) -> Grid:
        return Grid(tuple(int(s) for s in self.data.shape), self.affine)  # type: ignore[arg-type]

    @property
    def spacing(self) -> np.ndarray:
        return self.grid.spacing


def load_volume(path: str | os.PathLike[str], role: str = "", patient: str | None = None) -> Volume:
    """Read a NIfTI image as float32 (scale slope applied); a trailing singleton axis is
    dropped. Raises :class:`PreprocessError` naming patient and file when it cannot be used."""
    p = Path(path)
    if not p.is_file():
        raise PreprocessError(f"{role or 'image'} file does not exist", patient=patient, file=p)
    try:
        img = cast(nib.Nifti1Image, nib.load(str(p)))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise PreprocessError(
            f"cannot read {role or 'image'} as NIfTI ({type(exc).__name__}: {exc})",
            patient=patient,
            file=p,
        ) from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise PreprocessError(
            f"{role or 'image'} must be one 3D volume, got shape {data.shape}",
            patient=patient,
            file=p,
        )
    affine = np.asarray(img.affine, dtype=float)
    return Volume(data, affine, p, role, img.header.copy() if hasattr(img, "header") else None)


def check_volume(vol: Volume, patient: str | None = None) -> None:
    """Refuse images that cannot be a head scan: non-finite, empty or constant voxels, a
    degenerate affine, voxel sizes or a field of view no head scan has."""
    what = SEQUENCE_NAMES.get(vol.role, vol.role or "image")

    def fail(reason: str) -> None:
        raise PreprocessError(f"{what}: {reason}", patient=patient, file=vol.path)

    d = vol.data
    if min(d.shape) < 2:
        fail(f"not a volume (shape {d.shape})")
    if not np.isfinite(d).all():
        fail("contains NaN or infinite values")
    lo, hi = float(d.min()), float(d.max())
    if hi == lo:
        fail(f"image is {'empty' if hi == 0 else 'constant'} (every voxel is {hi:g})")
    nonzero = np.count_nonzero(d)
    if nonzero < 0.001 * d.size:
        fail(f"image is almost empty ({nonzero} non-zero voxels of {d.size})")
    a = vol.affine[:3, :3]
    if not np.isfinite(a).all() or abs(np.linalg.det(a)) < 1e-9:
        fail("the image's affine (orientation/voxel size) is degenerate")
    sp = vol.spacing
    if sp.min() < VOXEL_MM[0] or sp.max() > VOXEL_MM[1]:
        fail(
            f"voxel size {np.round(sp, 4).tolist()} mm is outside the plausible range "
            f"{VOXEL_MM[0]}-{VOXEL_MM[1]} mm"
        )
    extent = np.sort(sp * np.array(d.shape))
    if extent[1] < MIN_EXTENT_MM or extent[-1] > MAX_EXTENT_MM:
        fail(
            f"field of view {np.round(extent, 1).tolist()} mm cannot hold a head (two axes "
            f">= {MIN_EXTENT_MM:g} mm, none > {MAX_EXTENT_MM:g} mm): wrong voxel size?"
        )


def reorient(vol: Volume, codes: str = "RAS") -> Volume:
    """The same image with its array axes permuted/flipped to the closest ``codes``
    orientation. World positions of all voxels are unchanged."""
    current = nib.orientations.io_orientation(vol.affine)
    target = nib.orientations.axcodes2ornt(tuple(codes))
    transform = nib.orientations.ornt_transform(current, target)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return vol
    data = nib.orientations.apply_orientation(vol.data, transform)
    inv = nib.orientations.inv_ornt_aff(transform, vol.data.shape)
    return Volume(np.ascontiguousarray(data), vol.affine @ inv, vol.path, vol.role, vol.header)


# ------------------------------------------------------------------------- SimpleITK bridge
_LPS = np.diag([-1.0, -1.0, 1.0])


def to_sitk(data: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK image (ITK's LPS world) of a voxel array with a RAS affine."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(data, np.float32).T))
    lin = _LPS @ affine[:3, :3]
    spacing = np.sqrt((lin**2).sum(axis=0))
    img.SetSpacing([float(s) for s in spacing])
    img.SetDirection([float(v) for v in (lin / spacing).ravel()])
    img.SetOrigin([float(v) for v in _LPS @ affine[:3, 3]])
    return img


def from_sitk(img: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """(voxel array [i, j, k], RAS affine) of a SimpleITK image."""
    data = sitk.GetArrayFromImage(img).T
    direction = np.asarray(img.GetDirection(), dtype=float).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = _LPS @ direction @ np.diag(img.GetSpacing())
    affine[:3, 3] = _LPS @ np.asarray(img.GetOrigin(), dtype=float)
    return data, affine


def save_nifti(
    path: str | os.PathLike[str],
    data: np.ndarray,
    affine: np.ndarray,
    dtype: np.dtype | type = np.float32,
    template_header: nib.Nifti1Header | None = None,
) -> None:
    """Write ``data`` as NIfTI-1 with ``affine`` as both qform and sform (code 1/2 kept from
    ``template_header`` when given), casting to ``dtype``; integer outputs are rounded."""
    arr = np.asarray(data)
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        arr = np.clip(np.rint(arr), info.min, info.max)
    img = nib.Nifti1Image(arr.astype(dt), affine)
    qcode = sform_code = 1
    if template_header is not None:
        qcode = int(template_header["qform_code"]) or 1
        sform_code = int(template_header["sform_code"]) or 1
    img.header.set_qform(affine, code=qcode)
    img.header.set_sform(affine, code=sform_code)
    img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(dt)
    nib.save(img, str(path))
