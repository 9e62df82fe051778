"""The images the annotation tools work on: one case's preprocessed sequences on the SRI24
grid (240 x 240 x 155, 1 mm), intensity-normalised inside the brain.

:class:`CaseImages` holds ``t1c`` (required), ``t1``, ``flair`` (optional) and the brain mask
as float32 / bool arrays in voxel order ``(i, j, k)`` of the preprocessed grid, each
sequence as a robust z-score: ``(x - median) / (IQR / 1.349)`` over the brain's voxels, so
that thresholds mean the same on every scanner. ``enhancement`` is T1c minus T1 (both
normalised) where a T1 exists, else the normalised T1c: contrast uptake, which is what an
enhancing lesion is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np

__all__ = ["SMOOTH_SIGMA", "CaseImages", "load_case_images", "robust_z"]

#: the smoothing (voxels) of the enhancement map where the tools look for peaks
SMOOTH_SIGMA = 0.7


def robust_z(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``data`` as a robust z-score over ``mask``'s voxels (median, IQR / 1.349); 0 outside
    the mask. A constant image gives zeros."""
    vals = data[mask]
    out = np.zeros(data.shape, np.float32)
    if vals.size == 0:
        return out
    q1, med, q3 = np.percentile(vals, [25, 50, 75])
    scale = (q3 - q1) / 1.349
    if not np.isfinite(scale) or scale <= 0:
        scale = float(vals.std()) or 1.0
    out[mask] = ((vals - med) / scale).astype(np.float32)
    return out


@dataclass
class CaseImages:
    """One case's normalised images (see the module docstring).

    Attributes:
        t1c: T1 post-contrast, robust z.
        brain: the brain mask (True inside).
        t1: native T1, robust z (None when the case has none).
        flair: FLAIR, robust z (None when the case has none).
        affine: voxel -> world (mm) of the grid.
    """

    t1c: np.ndarray
    brain: np.ndarray
    t1: np.ndarray | None = None
    flair: np.ndarray | None = None
    affine: np.ndarray = field(default_factory=lambda: np.eye(4))
    _enhancement: np.ndarray | None = field(default=None, repr=False)
    _smooth: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_arrays(
        cls,
        t1c: np.ndarray,
        brain: np.ndarray | None = None,
        t1: np.ndarray | None = None,
        flair: np.ndarray | None = None,
        affine: np.ndarray | None = None,
    ) -> CaseImages:
        """Normalise raw intensities; ``brain`` defaults to the voxels where T1c > 0 (the
        preprocessed images are skull stripped)."""
        t1c = np.asarray(t1c, np.float32)
        mask = np.asarray(brain, bool) if brain is not None else t1c > 0
        for name, a in (("t1", t1), ("flair", flair), ("brain", brain)):
            if a is not None and np.shape(a) != t1c.shape:
                raise ValueError(f"{name} has shape {np.shape(a)}, T1c {t1c.shape}")
        return cls(
            t1c=robust_z(t1c, mask),
            brain=mask,
            t1=robust_z(np.asarray(t1, np.float32), mask) if t1 is not None else None,
            flair=robust_z(np.asarray(flair, np.float32), mask) if flair is not None else None,
            affine=np.asarray(affine if affine is not None else np.eye(4), float),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.t1c.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def enhancement(self) -> np.ndarray:
        """T1c - T1 (normalised; 0 outside the brain), or T1c without a T1."""
        if self._enhancement is None:
            e = self.t1c - self.t1 if self.t1 is not None else self.t1c.copy()
            e[~self.brain] = 0
            self._enhancement = e.astype(np.float32)
        return self._enhancement

    @property
    def smooth_enhancement(self) -> np.ndarray:
        """The enhancement map lightly smoothed (Gaussian, sigma 0.7 voxel), computed once:
        where the tools look for a lesion's peak."""
        if self._smooth is None:
            from scipy import ndimage

            self._smooth = ndimage.gaussian_filter(self.enhancement, SMOOTH_SIGMA)
        return self._smooth

    def world(self, voxel: tuple[float, float, float]) -> tuple[float, float, float]:
        """A voxel position in world coordinates (mm)."""
        x = self.affine @ np.array([*voxel, 1.0])
        return (float(x[0]), float(x[1]), float(x[2]))


def load_case_images(files: Mapping[str, Path]) -> CaseImages:
    """Read a case from the preprocessed files: ``files`` maps ``t1c`` (required), ``t1n``,
    ``t2f`` and ``mask`` to NIfTI paths on one grid."""
    import nibabel as nib

    if "t1c" not in files:
        raise ValueError("the case has no T1c image")

    def read(role: str) -> np.ndarray | None:
        p = files.get(role)
        if p is None:
            return None
        img = cast(nib.Nifti1Image, nib.load(str(p)))
        return np.asarray(img.dataobj, dtype=np.float32)

    ref = cast(nib.Nifti1Image, nib.load(str(files["t1c"])))
    mask = read("mask")
    return CaseImages.from_arrays(
        np.asarray(ref.dataobj, np.float32),
        mask > 0 if mask is not None else None,
        read("t1n"),
        read("t2f"),
        ref.affine,
    )
