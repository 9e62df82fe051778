"""The SRI24 infratentorial map and how a label map's voxels are placed on the atlas.

Infratentorial brain (cerebellum, brainstem, fourth ventricle) is
``tissues > 0 & suptent == 0`` on the SRI24 grid (``shared/atlas/sri24/README.md``).

Placing a label map on the atlas (``alignment``):

* ``"world"``: through the two affines (scanner/world coordinates). Correct for files whose
  header is right, whatever their array order (e.g. the BraTS toolkit's LPS files).
* ``"array"``: by array index; the label map must have the atlas shape. Released
  BraTS-METS files are array-aligned with SRI24 but carry a header that does not put them on
  the template in world coordinates (``docs/conventions.md``, "a known trap").
* ``"auto"`` (default): ``"world"`` when the label map's grid, mapped through the affines,
  lies within the atlas grid (>= 90 % of its box overlaps the atlas box), else ``"array"``
  when the shapes are equal, else an error.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np

from brainmets.atlas import AtlasError, atlas_file
from brainmets.labelmaps.arrays import grid_overlap

ALIGNMENTS = ("auto", "world", "array")
INFRATENTORIAL_RULE = "SRI24 tissues > 0 & suptent == 0"


@dataclass(frozen=True)
class AtlasLabels:
    """The infratentorial mask on the atlas grid and that grid's affine (RAS mm)."""

    infratentorial: np.ndarray
    affine: np.ndarray
    source: str
    rule: str = INFRATENTORIAL_RULE
    parcels: np.ndarray | None = None  # tzo116plus labels on the same grid (optional)
    parcel_names: dict[int, str] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.infratentorial.shape)  # type: ignore[return-value]


@functools.lru_cache(maxsize=4)
def _load(directory: str | None) -> AtlasLabels:
    sup_path = atlas_file("suptent.nii.gz", directory)
    tis_path = atlas_file("tissues.nii.gz", directory)
    sup = cast(nib.Nifti1Image, nib.load(str(sup_path)))
    tis = cast(nib.Nifti1Image, nib.load(str(tis_path)))
    if sup.shape[:3] != tis.shape[:3] or not np.allclose(sup.affine, tis.affine, atol=1e-3):
        raise AtlasError(f"{sup_path} and {tis_path} are not on the same grid")
    shape = sup.shape[:3]
    tis_d = np.asarray(tis.dataobj).reshape(shape)
    sup_d = np.asarray(sup.dataobj).reshape(shape)
    infra = np.ascontiguousarray((tis_d > 0) & (sup_d == 0))
    infra.setflags(write=False)
    parcels, names = _parcellation(directory, shape, np.asarray(sup.affine, float))
    return AtlasLabels(
        infra,
        np.asarray(sup.affine, float),
        str(sup_path.parent),
        parcels=parcels,
        parcel_names=names,
    )


def _parcellation(
    directory: str | None, shape: tuple[int, ...], affine: np.ndarray
) -> tuple[np.ndarray | None, dict[int, str]]:
    """The tzo116plus parcellation and its names, when the atlas folder has them."""
    try:
        path = atlas_file("tzo116plus.nii.gz", directory)
    except AtlasError:
        return None, {}
    img = cast(nib.Nifti1Image, nib.load(str(path)))
    names_file = path.parent / "tzo116plus_labels.txt"
    if img.shape[:3] != tuple(shape) or not np.allclose(img.affine, affine, atol=1e-3):
        return None, {}
    if not names_file.is_file():
        return None, {}
    names: dict[int, str] = {}
    for line in names_file.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2 and parts[0].strip().isdigit():
            names[int(parts[0])] = parts[1].strip()
    data = np.asarray(img.dataobj).reshape(shape).astype(np.int16)
    data.setflags(write=False)
    return data, names


def load_atlas_labels(atlas_dir: str | os.PathLike[str] | None = None) -> AtlasLabels:
    """The SRI24 infratentorial map (cached per folder); :class:`AtlasError` when missing."""
    return _load(str(Path(atlas_dir).expanduser()) if atlas_dir else None)


@dataclass(frozen=True)
class Placement:
    """How the voxels of one grid map onto the atlas.

    Attributes:
        mode: ``"world"`` or ``"array"`` (what ``"auto"`` resolved to).
        to_atlas_voxel: 4x4, label-map voxel index -> atlas voxel index.
        to_atlas_world: 4x4, label-map voxel index -> atlas world coordinates (RAS mm).
        note: why this mode was chosen (for the provenance record).
    """

    mode: str
    to_atlas_voxel: np.ndarray
    to_atlas_world: np.ndarray
    note: str = ""


def place_on_atlas(
    shape: tuple[int, ...], affine: np.ndarray, atlas: AtlasLabels, alignment: str = "auto"
) -> Placement:
    """Decide how a grid maps onto the atlas (see the module docstring)."""
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, not {alignment!r}")
    world = np.linalg.inv(atlas.affine) @ np.asarray(affine, float)
    if alignment == "world":
        return Placement("world", world, atlas.affine @ world, "through the affines")
    same_shape = tuple(shape[:3]) == atlas.shape
    if alignment == "array":
        if not same_shape:
            raise ValueError(
                f"array alignment needs the atlas shape {atlas.shape}, the label map has "
                f"{tuple(shape[:3])}"
            )
        return Placement("array", np.eye(4), atlas.affine.copy(), "by array index (requested)")
    overlap = grid_overlap(world, tuple(shape), atlas.shape)
    if overlap >= 0.9:
        return Placement("world", world, atlas.affine @ world, f"affines ({overlap:.0%} overlap)")
    if same_shape:
        return Placement(
            "array",
            np.eye(4),
            atlas.affine.copy(),
            f"by array index: the header places only {overlap:.0%} of the grid on the atlas "
            "(BraTS collection layout)",
        )
    raise ValueError(
        f"the label map's grid {tuple(shape[:3])} is not on the atlas grid {atlas.shape}: its "
        f"header places {overlap:.0%} of it on the atlas and the shapes differ"
    )


def atlas_index(
    voxels: np.ndarray, placement: Placement, atlas: AtlasLabels
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest atlas voxel of each label-map voxel index: ``(indices, inside the atlas)``."""
    pts = np.asarray(voxels, float).reshape(-1, 3)
    m = placement.to_atlas_voxel
    idx = np.rint(pts @ m[:3, :3].T + m[:3, 3]).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(atlas.shape)), axis=1)
    return idx, inside


def region_name(voxels: np.ndarray, placement: Placement, atlas: AtlasLabels) -> str:
    """Most frequent named parcel (tzo116plus) among the voxels; "" without one."""
    if atlas.parcels is None:
        return ""
    idx, inside = atlas_index(voxels, placement, atlas)
    ii = idx[inside]
    labs = atlas.parcels[ii[:, 0], ii[:, 1], ii[:, 2]].astype(np.int64)
    labs = labs[labs > 0]
    if not len(labs):
        return ""
    return atlas.parcel_names.get(int(np.bincount(labs).argmax()), "")


def infratentorial_at(voxels: np.ndarray, placement: Placement, atlas: AtlasLabels) -> np.ndarray:
    """Boolean per voxel index (rows of ``voxels``, label-map indices): in infratentorial
    brain (nearest atlas voxel; outside the atlas grid counts as not infratentorial)."""
    idx, inside = atlas_index(voxels, placement, atlas)
    out = np.zeros(len(idx), bool)
    ii = idx[inside]
    out[inside] = atlas.infratentorial[ii[:, 0], ii[:, 1], ii[:, 2]]
    return out
