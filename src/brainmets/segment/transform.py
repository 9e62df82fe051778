"""World-to-world transforms and label-preserving (nearest-neighbour) resampling.

This is the interface between preprocessing and segmentation import. A transform says where
a point of the **template** (SRI24, the target grid) lies in the **native** image the mask
was drawn on (its scanner/world coordinates): ``native_world = T @ template_world``. That is
the direction resampling needs (pull: for every target voxel, look up the source voxel), and
the direction of an ITK/SimpleITK registration transform with the template as fixed image.

Accepted forms (:func:`read_transform`):

* ``.json``: ``{"matrix": [[4 x 4]], "convention": "RAS" | "LPS",
  "direction": "template_to_native" | "native_to_template"}`` (defaults RAS,
  template_to_native);
* ``.txt`` / ``.mat`` / ``.npy`` with a plain 4x4 matrix (RAS, template_to_native);
* ITK transform files (``.tfm``, ``.h5``; LPS, fixed = template) read with SimpleITK, including
  non-linear ones (resampled through SimpleITK).

RAS is the NIfTI/nibabel world convention, LPS the DICOM/ITK one; they differ by
``diag(-1, -1, 1)`` and :class:`WorldTransform` converts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from brainmets.labelmaps.arrays import VOLUME_LEVELS, volume_level
from brainmets.spatial import FORMAT as TRANSFORMS_FORMAT
from brainmets.vocab import SUFFIX

#: diag(-1, -1, 1, 1): RAS <-> LPS (its own inverse)
FLIP_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
CONVENTIONS = ("RAS", "LPS")
DIRECTIONS = ("template_to_native", "native_to_template")


class TransformError(ValueError):
    """A transform file or matrix is unusable."""


@dataclass(frozen=True)
class WorldTransform:
    """A 4x4 affine mapping template world (RAS mm) to native world (RAS mm)."""

    matrix: np.ndarray
    source: str = ""

    @classmethod
    def identity(cls) -> WorldTransform:
        return cls(np.eye(4), "identity")

    @classmethod
    def from_matrix(
        cls,
        matrix: Any,
        convention: str = "RAS",
        direction: str = "template_to_native",
        source: str = "",
    ) -> WorldTransform:
        """Build from a 4x4 matrix given in ``convention`` and ``direction``."""
        m = np.asarray(matrix, dtype=float)
        if m.shape == (3, 4):
            m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
        if m.shape != (4, 4) or not np.all(np.isfinite(m)):
            raise TransformError(
                f"{source or 'transform'}: expected a finite 4x4 matrix, got {m.shape}"
            )
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
            raise TransformError(f"{source or 'transform'}: last row must be [0, 0, 0, 1]")
        if abs(np.linalg.det(m[:3, :3])) < 1e-9:
            raise TransformError(f"{source or 'transform'}: the matrix is singular")
        conv = convention.upper()
        if conv not in CONVENTIONS:
            raise TransformError(f"convention must be one of {CONVENTIONS}, not {convention!r}")
        if direction not in DIRECTIONS:
            raise TransformError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        if conv == "LPS":
            m = FLIP_LPS @ m @ FLIP_LPS
        if direction == "native_to_template":
            m = np.linalg.inv(m)
        return cls(m, source)

    def inverse(self) -> WorldTransform:
        return WorldTransform(np.linalg.inv(self.matrix), f"inverse of {self.source}")

    def to_json(self) -> dict[str, Any]:
        return {
            "matrix": np.round(self.matrix, 9).tolist(),
            "convention": "RAS",
            "direction": "template_to_native",
        }


@dataclass(frozen=True)
class ItkTransform:
    """A SimpleITK transform (LPS; maps template/fixed points to native/moving points)."""

    transform: Any
    source: str = ""


Transform = WorldTransform | ItkTransform


def transform_from_json(obj: dict[str, Any], source: str = "") -> WorldTransform:
    """A :class:`WorldTransform` from the JSON form (see the module docstring)."""
    if "matrix" not in obj:
        raise TransformError(f"{source}: a transform needs a 'matrix' (4x4)")
    return WorldTransform.from_matrix(
        obj["matrix"],
        str(obj.get("convention", "RAS")),
        str(obj.get("direction", "template_to_native")),
        source,
    )


def read_transform(path: str | os.PathLike[str]) -> Transform:
    """Read a transform file (JSON, plain 4x4 text/npy, or ITK via SimpleITK)."""
    path = Path(path)
    if not path.is_file():
        raise TransformError(f"{path}: transform file not found")
    name = path.name.lower()
    try:
        if name.endswith(".json"):
            return transform_from_json(json.loads(path.read_text()), str(path))
        if name.endswith(".npy"):
            return WorldTransform.from_matrix(np.load(path), source=str(path))
        if name.endswith((".tfm", ".h5", ".hdf5")) or (
            name.endswith(".txt") and path.read_text(errors="replace").startswith("#Insight")
        ):
            return _read_itk(path)
        if name.endswith((".txt", ".mat", ".xfm")):
            return WorldTransform.from_matrix(np.loadtxt(path), source=str(path))
    except TransformError:
        raise
    except Exception as exc:
        raise TransformError(
            f"{path}: cannot read transform ({type(exc).__name__}: {exc})"
        ) from exc
    raise TransformError(
        f"{path}: unknown transform format (use .json, .txt/.mat/.npy 4x4, or ITK .tfm/.h5)"
    )


def _read_itk(path: Path) -> Transform:
    """An ITK transform file: a linear one (affine, rigid, similarity...) becomes a
    :class:`WorldTransform` (LPS, fixed = template -> moving = native); anything else (a
    composite or displacement-field transform) stays an :class:`ItkTransform`."""
    import SimpleITK as sitk

    tx = sitk.ReadTransform(str(path))
    if all(hasattr(tx, a) for a in ("GetMatrix", "GetTranslation", "GetCenter")):
        lin = np.asarray(tx.GetMatrix(), float).reshape(3, 3)
        centre = np.asarray(tx.GetCenter(), float)
        m = np.eye(4)
        m[:3, :3] = lin
        m[:3, 3] = np.asarray(tx.GetTranslation(), float) + centre - lin @ centre
        return WorldTransform.from_matrix(m, "LPS", "template_to_native", str(path))
    return ItkTransform(tx, str(path))


def transforms_from_case_json(path: str | os.PathLike[str]) -> dict[str, WorldTransform]:
    """The per-sequence transforms of a preprocess ``<ID>-transforms.json``
    (``brainmets.preprocess.transforms/1``: ``atlas_to[sequence]``, RAS, atlas world ->
    native world), keyed by the collection's sequence names (t1n, t1c, t2w, t2f)."""
    path = Path(path)
    obj = json.loads(path.read_text())
    if str(obj.get("format", "")).split("/")[0] != TRANSFORMS_FORMAT.split("/")[0]:
        raise TransformError(f"{path}: not a preprocess transforms file")
    return {
        SUFFIX.get(k, k): WorldTransform.from_matrix(
            v, "RAS", "template_to_native", f"{path.name}:{k}"
        )
        for k, v in obj.get("atlas_to", {}).items()
    }


# --------------------------------------------------------------------- resampling
def _target_box(
    src_box: tuple[slice, ...], m_inv: np.ndarray, target_shape: tuple[int, ...]
) -> tuple[slice, ...] | None:
    """Target-grid box that can receive the source voxels in ``src_box``."""
    lo = np.array([s.start for s in src_box], float) - 0.5
    hi = np.array([s.stop for s in src_box], float) - 0.5
    corners = np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]
    )
    mapped = corners @ m_inv[:3, :3].T + m_inv[:3, 3]
    a = np.floor(mapped.min(axis=0)).astype(int) - 1
    b = np.ceil(mapped.max(axis=0)).astype(int) + 2
    a = np.clip(a, 0, target_shape)
    b = np.clip(b, 0, target_shape)
    if np.any(b <= a):
        return None
    return tuple(slice(int(x), int(y)) for x, y in zip(a, b, strict=True))


def resample_nearest(
    data: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: Transform | None = None,
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """Resample integer labels from their grid onto a target grid, nearest neighbour through
    world coordinates (``transform`` maps target world to source world; ``None`` = same
    world). Returns ``(box, values)``: the target-grid box that can hold non-zero values and
    the resampled values there (``(None, empty)`` when nothing lands on the target grid).
    """
    return _resample(np.asarray(data), affine, target_shape, target_affine, transform, 0)


def resample_mask(
    mask: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: Transform | None = None,
    method: str = "nearest",
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    """Resample one binary mask onto a target grid. Methods:

    * ``"nearest"``: :func:`resample_nearest`;
    * ``"linear"``: trilinear interpolation of the 0/1 mask, kept where >= 0.5 (between the
      thick slices of a 2D acquisition the outline is interpolated, not copied);
    * ``"volume"``: the same interpolation, kept above the level that gives the mask the
      volume it was drawn with (its voxels times their volume, through the transform's
      determinant), the level bounded to [0.25, 0.75] (:data:`VOLUME_LEVELS`). A 0.5
      threshold after a resampling shrinks small convex masks (a 5 mm lesion loses a
      third of its voxels, an outline interpolated between 6 mm slices is cut inside the
      rounded drawing); this keeps what was drawn. Pieces resampled from one connected
      drawing stay connected (:func:`keep_drawn_connectivity`). Used as ``"linear"`` when
      the volume cannot be known (a non-linear ITK transform, a mask leaving the target
      grid).

    A mask that reaches the target grid but is smaller than its voxels keeps, with
    ``"linear"`` and ``"volume"``, the voxel(s) it covers most: it never disappears.

    Every method keeps a binary mask binary; returns ``(box, bool values)``."""
    m = np.asarray(mask).astype(bool)
    if method == "nearest":
        box, vals = _resample(m.astype(np.uint8), affine, target_shape, target_affine, transform, 0)
        return box, vals.astype(bool)
    if method not in ("linear", "volume"):
        raise ValueError(
            f"mask resampling method must be 'nearest', 'linear' or 'volume', not {method!r}"
        )
    box, vals = _resample(m.astype(np.float32), affine, target_shape, target_affine, transform, 1)
    if box is None:
        return None, np.zeros((0, 0, 0), bool)
    level = 0.5
    if method == "volume" and not isinstance(transform, ItkTransform):
        level = _volume_level(m, affine, target_shape, target_affine, transform, box, vals)
    keep = vals >= level
    if not keep.any():  # smaller than a target voxel: a drawn mask never disappears
        keep = vals >= vals.max()
    if method == "volume" and not isinstance(transform, ItkTransform):
        keep = keep_drawn_connectivity(
            keep, box, vals, m, affine, target_shape, target_affine, transform
        )
    from brainmets.labelmaps.arrays import nonzero_box

    inner = nonzero_box(keep)
    if inner is None:
        return None, np.zeros((0, 0, 0), bool)
    box = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner, strict=True))
    return box, keep[inner]


#: a mask resampled into more components than this is left as it is
MAX_BRIDGED_COMPONENTS = 1000


def keep_drawn_connectivity(
    keep: np.ndarray,
    box: tuple[slice, ...],
    vals: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: WorldTransform | None,
) -> np.ndarray:
    """Pieces drawn as one connected object stay one object after resampling.

    Interpolating a mask drawn on thick slices and thresholding it cuts the thin bridges of
    the drawing (a finger of oedema one native voxel wide between two 6 mm slices): one
    drawn whole tumour becomes several components on the 1 mm grid, which the count (connected
    components) reports as separate lesions and the fusion drops as detached. Here every
    target component is assigned the native (26-connected) component it was resampled from;
    each smaller component of one native component is joined to the largest by the straight
    line (26-connected, one voxel wide) between their nearest voxels, when the whole line
    lies where the interpolated mask reaches (``vals > 0``). Components of
    different native components are never joined. ``keep`` is returned changed or as is."""
    import cc3d

    cc_keep, n_keep = cc3d.connected_components(
        keep.astype(np.uint8), connectivity=26, return_N=True
    )
    if n_keep <= 1 or n_keep > MAX_BRIDGED_COMPONENTS:
        return keep
    native, n_native = cc3d.connected_components(
        np.asarray(mask, np.uint8), connectivity=26, return_N=True
    )
    if n_native >= n_keep:
        return keep
    nbox, nvals = _resample(
        native.astype(np.int32), affine, target_shape, target_affine, transform, 0
    )
    owner = np.zeros(keep.shape, np.int32)
    if nbox is not None:
        here = tuple(
            slice(max(a.start, b.start), min(a.stop, b.stop))
            for a, b in zip(box, nbox, strict=True)
        )
        if all(s.stop > s.start for s in here):
            dst = tuple(
                slice(s.start - b.start, s.stop - b.start) for s, b in zip(here, box, strict=True)
            )
            src = tuple(
                slice(s.start - b.start, s.stop - b.start) for s, b in zip(here, nbox, strict=True)
            )
            owner[dst] = nvals[src]
    owner = ndimage.grey_dilation(owner, size=(3, 3, 3))  # boundary voxels: their neighbours' id
    groups: dict[int, list[int]] = {}
    sizes = np.bincount(cc_keep.ravel())
    for c in range(1, n_keep + 1):
        ids = owner[cc_keep == c]
        ids = ids[ids > 0]
        if ids.size:
            groups.setdefault(int(np.bincount(ids).argmax()), []).append(c)
    reach = vals > 0
    out = keep.copy()
    for comps in groups.values():
        if len(comps) < 2:
            continue
        comps.sort(key=lambda c: -int(sizes[c]))
        main = cc_keep == comps[0]
        dist, nearest = ndimage.distance_transform_edt(~main, return_indices=True)
        for c in comps[1:]:
            piece = np.argwhere(cc_keep == c)
            start = piece[int(np.argmin(dist[tuple(piece.T)]))]
            end = nearest[(slice(None), *start)]
            steps = int(np.abs(end - start).max()) + 1
            line = np.rint(np.linspace(start, end, steps)).astype(int)
            at = tuple(line.T)
            if reach[at].all():  # a straight, 26-connected path inside what was drawn
                out[at] = True
    return out


#: a drawn grid whose voxels along an axis exceed the target's by more than this factor has
#: thick slices along it (:func:`brainmets.segment.importer.drawn_apart`)
THICK_SLICE_RATIO = 2.0


def _volume_level(
    mask: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: WorldTransform | None,
    box: tuple[slice, ...],
    vals: np.ndarray,
) -> float:
    """The threshold at which the interpolated mask has its drawn volume (0.5 when the
    mask reaches the edge of the target grid: part of it is not there to count)."""
    touches = any(b.start == 0 or b.stop == n for b, n in zip(box, target_shape, strict=True))
    if touches:
        return 0.5
    drawn_mm3 = float(mask.sum()) * abs(float(np.linalg.det(np.asarray(affine, float)[:3, :3])))
    t_det = 1.0 if transform is None else abs(float(np.linalg.det(transform.matrix[:3, :3])))
    target_vox = abs(float(np.linalg.det(np.asarray(target_affine, float)[:3, :3])))
    want = int(round(drawn_mm3 / t_det / target_vox))
    return volume_level(vals, want, VOLUME_LEVELS)


def _resample(
    data: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: Transform | None,
    order: int,
) -> tuple[tuple[slice, ...] | None, np.ndarray]:
    from brainmets.labelmaps.arrays import nonzero_box

    empty = np.zeros((0, 0, 0), data.dtype)
    if isinstance(transform, ItkTransform):
        full = _resample_sitk(data, affine, target_shape, target_affine, transform, order)
        box = nonzero_box(full)
        return (box, full[box]) if box is not None else (None, empty)
    t = np.eye(4) if transform is None else transform.matrix
    # target voxel -> source voxel
    m = np.linalg.inv(np.asarray(affine, float)) @ t @ np.asarray(target_affine, float)
    src_box = nonzero_box(data)
    if src_box is None:
        return None, empty
    box = _target_box(src_box, np.linalg.inv(m), target_shape)
    if box is None:
        return None, empty
    lo = np.array([s.start for s in box], float)
    out_shape = tuple(s.stop - s.start for s in box)
    # order 0: nearest neighbour (rounds the source coordinate); order 1: trilinear
    vals = ndimage.affine_transform(
        data,
        m[:3, :3],
        offset=m[:3, :3] @ lo + m[:3, 3],
        output_shape=out_shape,
        order=order,
        mode="constant",
        cval=0,
        prefilter=False,
    )
    inner = nonzero_box(vals)
    if inner is None:
        return None, empty
    box = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner, strict=True))
    return box, vals[inner]


def partial_volume(
    mask: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: WorldTransform | None = None,
) -> np.ndarray:
    """The fraction of every target voxel that a binary mask fills (float32, the whole target
    grid): trilinear samples at sub-voxel centres (about 1 mm apart along each target axis,
    so a 6 mm slice is the mean of six samples) averaged per voxel."""
    m = np.asarray(mask).astype(np.float32)
    spacing = np.linalg.norm(np.asarray(target_affine, float)[:3, :3], axis=0)
    src_mm = float(np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0).min())
    n = np.maximum(1, np.ceil(spacing / max(src_mm, 1e-6) - 1e-6)).astype(int)
    sub = np.asarray(target_affine, float) @ np.diag([*(1.0 / n), 1.0])
    # sub-voxel j of voxel i along an axis: index i * n + j at (i - 1/2 + (j + 1/2) / n)
    sub[:3, 3] = np.asarray(target_affine, float)[:3, :3] @ ((1.0 / n - 1.0) / 2.0) + sub[:3, 3]
    sub_shape = tuple(int(s * k) for s, k in zip(target_shape, n, strict=True))
    box, vals = _resample(m, affine, sub_shape, sub, transform, 1)  # type: ignore[arg-type]
    out = np.zeros(target_shape, np.float32)
    if box is None:
        return out
    full = np.zeros(sub_shape, np.float32)
    full[box] = vals
    out[...] = full.reshape(
        target_shape[0], n[0], target_shape[1], n[1], target_shape[2], n[2]
    ).mean(axis=(1, 3, 5))
    return out


def resample_full(
    data: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: Transform | None = None,
) -> np.ndarray:
    """:func:`resample_nearest` onto the whole target grid."""
    box, vals = resample_nearest(data, affine, target_shape, target_affine, transform)
    out = np.zeros(target_shape, dtype=np.asarray(data).dtype)
    if box is not None:
        out[box] = vals
    return out


def _to_sitk(data: np.ndarray, affine: np.ndarray) -> Any:
    import SimpleITK as sitk

    lps = FLIP_LPS @ np.asarray(affine, float)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise TransformError("SimpleITK resampling needs an orthogonal (unsheared) grid")
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(data, (2, 1, 0))))
    img.SetSpacing([float(s) for s in spacing])
    img.SetOrigin([float(v) for v in lps[:3, 3]])
    img.SetDirection([float(v) for v in direction.ravel()])
    return img


def _resample_sitk(
    data: np.ndarray,
    affine: np.ndarray,
    target_shape: tuple[int, int, int],
    target_affine: np.ndarray,
    transform: ItkTransform,
    order: int = 0,
) -> np.ndarray:
    import SimpleITK as sitk

    src = _to_sitk(data, affine)
    ref = _to_sitk(np.zeros(target_shape, dtype=np.uint8), target_affine)
    interp = sitk.sitkNearestNeighbor if order == 0 else sitk.sitkLinear
    out = sitk.Resample(src, ref, transform.transform, interp, 0, src.GetPixelID())
    return np.transpose(sitk.GetArrayFromImage(out), (2, 1, 0))
