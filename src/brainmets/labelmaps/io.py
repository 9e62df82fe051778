"""Reading and checking label maps (one ``uint8`` image per patient, labels ``{0,1,2,3}``).

Label values follow the reference collection (``docs/lesions.md``): 1 necrosis, 2 edema,
3 enhancing tumour. Other numberings (old BraTS: 4 = enhancing) are read through an explicit
mapping ``{source value: our label}``. Every problem raises :class:`LabelMapError` with the
file named: values outside the allowed set, non-integral or non-finite floats, a wrong number
of dimensions. An all-zero label map is valid (a patient without a visible lesion).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np

from brainmets.vocab import LABELS

ALLOWED = frozenset(LABELS)

#: ready-made mappings from other numberings to ours
MAPPINGS: dict[str, dict[int, int]] = {
    "brats-mets": {0: 0, 1: 1, 2: 2, 3: 3},
    # BraTS 2017-2021 / BraTS Toolkit: 1 necrosis / non-enhancing core, 2 edema, 4 enhancing
    "brats-2021": {0: 0, 1: 1, 2: 2, 4: 3},
    # some collections: 1 necrosis, 2 enhancing, 3 edema
    "nec-et-edema": {0: 0, 1: 1, 2: 3, 3: 2},
}


class LabelMapError(ValueError):
    """A label map (or segmentation) is unusable; the message names the file."""


@dataclass
class LabelMap:
    """A checked label map: ``uint8`` data with values in ``{0,1,2,3}`` and its affine."""

    data: np.ndarray
    affine: np.ndarray
    source: str = ""

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))


def parse_mapping(spec: str | Mapping[Any, int | str] | None) -> dict[int, int] | None:
    """A label mapping from a name in :data:`MAPPINGS`, ``"1:1,2:2,4:3"`` or a mapping.

    Values absent from the mapping are errors when reading (so a label never disappears
    silently); background 0 maps to 0 unless stated otherwise.
    """
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        if spec in MAPPINGS:
            return dict(MAPPINGS[spec])
        out: dict[int, int] = {}
        for part in spec.replace(";", ",").split(","):
            if not part.strip():
                continue
            src, sep, dst = part.partition(":")
            if not sep:
                raise ValueError(
                    f"label mapping {spec!r}: expected 'source:target' pairs like '1:1,2:2,4:3'"
                    f" or one of {sorted(MAPPINGS)}"
                )
            out[int(src)] = int(dst)
    else:
        out = {int(k): int(v) for k, v in spec.items()}
    out.setdefault(0, 0)
    bad = {k: v for k, v in out.items() if v not in ALLOWED}
    if bad:
        raise ValueError(f"label mapping targets must be in {sorted(ALLOWED)}; got {bad}")
    return out


def _describe(values: Iterable[float], limit: int = 8) -> str:
    vals = list(values)
    text = ", ".join(f"{v:g}" for v in vals[:limit])
    return text + (f", ... ({len(vals)} distinct)" if len(vals) > limit else "")


def as_label_array(
    data: np.ndarray,
    source: str = "label map",
    mapping: Mapping[int, int] | None = None,
    allowed: Iterable[int] = ALLOWED,
) -> np.ndarray:
    """Check ``data`` and return it as a ``uint8`` label array.

    Floats must be finite and integral (released segmentations are sometimes stored as
    float); a trailing singleton 4th axis is dropped. With ``mapping`` every value present
    must be a key of it. Raises :class:`LabelMapError` naming ``source``.
    """
    arr = np.asarray(data)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise LabelMapError(f"{source}: expected a 3D label map, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise LabelMapError(f"{source}: unsupported data type {arr.dtype} for a label map")
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            raise LabelMapError(
                f"{source}: {int((~finite).sum())} voxel(s) are NaN or infinite; "
                "a label map must hold whole numbers"
            )
        rounded = np.rint(arr)
        frac = rounded != arr
        if frac.any():
            bad = np.unique(arr[frac])
            raise LabelMapError(
                f"{source}: stored as {arr.dtype} with non-integral values "
                f"({_describe(bad.tolist())} in {int(frac.sum())} voxel(s)); "
                "is this a probability map or an interpolated (non-nearest-neighbour) resample?"
            )
        arr = rounded
    lo, hi = (arr.min(), arr.max()) if arr.size else (0, 0)
    if lo < 0 or hi > 65535:
        values = np.unique(arr)
        raise LabelMapError(f"{source}: label values out of range ({_describe(values.tolist())})")
    ints = arr.astype(np.uint16 if hi > 255 else np.uint8, copy=False)
    allowed_set = {int(a) for a in allowed}
    if mapping is None and allowed_set >= set(range(int(hi) + 1)):
        return ints  # fast path: every value in 0..max is allowed
    nonzero = ints[ints != 0]  # labelled voxels are few: count only those
    counts = np.bincount(nonzero, minlength=1)
    counts[0] = ints.size - nonzero.size
    present = [int(v) for v in np.flatnonzero(counts)]
    if mapping is not None:
        unknown = [v for v in present if v not in mapping]
        if unknown:
            raise LabelMapError(
                f"{source}: label value(s) {unknown} are not in the label mapping "
                f"{dict(sorted(mapping.items()))}"
            )
        lut = np.zeros(max(present + [0]) + 1, dtype=np.uint8)
        for v in present:
            lut[v] = mapping[v]
        return lut[ints]
    unknown = [v for v in present if v not in allowed_set]
    if unknown:
        raise LabelMapError(
            f"{source}: label value(s) {unknown} ({int(counts[unknown].sum())} voxels) outside "
            f"the allowed {sorted(allowed_set)}; give a label mapping (e.g. 'brats-2021' for "
            "4 = enhancing) if this file uses another numbering"
        )
    return ints.astype(np.uint8, copy=False)


def load_label_map(
    path: str | os.PathLike[str],
    mapping: Mapping[int, int] | None = None,
    allowed: Iterable[int] = ALLOWED,
) -> LabelMap:
    """Read a NIfTI label map and check it (see :func:`as_label_array`)."""
    path = Path(path)
    try:
        img = cast(nib.Nifti1Image, nib.load(str(path)))
        raw = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise LabelMapError(f"{path}: no such file") from None
    except Exception as exc:  # nibabel raises many kinds for a broken file
        raise LabelMapError(f"{path}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    data = as_label_array(raw, str(path), mapping, allowed)
    return LabelMap(data=data, affine=np.asarray(img.affine, dtype=float), source=str(path))


def grid_difference(
    shape_a: tuple[int, ...],
    affine_a: np.ndarray,
    shape_b: tuple[int, ...],
    affine_b: np.ndarray,
    atol_mm: float = 1e-3,
) -> str | None:
    """``None`` when two grids are the same (shape and affine within ``atol_mm``), else what
    differs, in words."""
    sa, sb = tuple(shape_a[:3]), tuple(shape_b[:3])
    if sa != sb:
        return f"shape {sa} vs {sb}"
    diff = np.abs(np.asarray(affine_a, float) - np.asarray(affine_b, float))
    if diff.max() > atol_mm:
        return (
            f"affine differs by up to {diff.max():.4g} mm "
            f"(orientation {''.join(nib.aff2axcodes(affine_a))} vs "
            f"{''.join(nib.aff2axcodes(affine_b))})"
        )
    return None


def check_same_grid(label_map: LabelMap, image_path: str | os.PathLike[str]) -> None:
    """Raise :class:`LabelMapError` when ``label_map`` is not on the grid of ``image_path``."""
    img = cast(nib.Nifti1Image, nib.load(str(image_path)))
    diff = grid_difference(label_map.shape, label_map.affine, img.shape, img.affine)
    if diff is not None:
        raise LabelMapError(
            f"{label_map.source}: segmentation grid differs from the image {image_path}: {diff}"
        )


def save_label_map(
    path: str | os.PathLike[str],
    data: np.ndarray,
    affine: np.ndarray,
    header: nib.Nifti1Header | None = None,
) -> Path:
    """Write a ``uint8`` label map atomically (sform and qform set to ``affine``)."""
    arr = as_label_array(data, str(path))
    return _save_integers(path, arr, affine, header, np.uint8, b"brainmets labels 1 NEC 2 ED 3 ET")


def _save_integers(
    path: str | os.PathLike[str],
    arr: np.ndarray,
    affine: np.ndarray,
    header: nib.Nifti1Header | None,
    dtype: type[np.integer[Any]],
    descrip: bytes,
) -> Path:
    """Write an integer image atomically: ``dtype``, no scaling, sform and qform ``affine``."""
    from brainmets.fsutil import atomic_path

    hdr = header.copy() if header is not None else nib.Nifti1Header()
    img = nib.Nifti1Image(arr.astype(dtype), affine, hdr)
    img.set_data_dtype(dtype)
    img.header.set_slope_inter(1.0, 0.0)
    img.header.set_sform(affine, code=1)
    img.header.set_qform(affine, code=1)
    img.header["descrip"] = descrip
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def save_instance_map(
    path: str | os.PathLike[str],
    data: np.ndarray,
    affine: np.ndarray,
    header: nib.Nifti1Header | None = None,
) -> Path:
    """Write a lesion instance map atomically: ``uint16``, the annotated lesion of every
    voxel of the label map beside it (0 where it is 0; the names in ``segment.json``)."""
    arr = np.asarray(data)
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.integer) or arr.min(initial=0) < 0:
        raise LabelMapError(f"{path}: an instance map is a 3D array of integers >= 0")
    if arr.max(initial=0) > np.iinfo(np.uint16).max:
        raise LabelMapError(f"{path}: more lesions than an instance map holds")
    return _save_integers(path, arr, affine, header, np.uint16, b"brainmets lesion instances")


def load_instance_map(path: str | os.PathLike[str], like: LabelMap) -> np.ndarray:
    """Read an instance map written by :func:`save_instance_map` for the label map ``like``
    (the same grid, checked); ``uint16``."""
    img = cast(nib.Nifti1Image, nib.load(str(path)))
    arr = np.asanyarray(img.dataobj)
    if arr.shape != like.data.shape:
        raise LabelMapError(f"{path}: grid {arr.shape} is not the label map's {like.data.shape}")
    if not np.allclose(np.asarray(img.affine, float), like.affine, atol=1e-4):
        raise LabelMapError(f"{path}: its affine is not the label map's")
    if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
        raise LabelMapError(f"{path}: non-integral instance values")
    return np.asarray(arr, np.uint16)
