"""Lesion counting and measurement on one label map (labels 1 necrosis, 2 edema, 3 enhancing).

Conventions (each one a field of :class:`FeatureParams`; see ``docs/lesions.md``):

* **Counts** (``ET_num``, ``Nec_num``, ``Edema_num``): connected components of each label
  separately (``connectivity`` 26 by default; 6 and 18 available). Components smaller than
  ``min_size_voxels`` are not counted and not listed as lesions; volumes always include
  every voxel. Edema of neighbouring lesions merges, so ``Edema_num`` can be below ``ET_num``.
* **Volumes** in cm^3 (voxel count x voxel volume / 1000), rounded to ``volume_decimals``.
* **Ratios** use the tumour core as denominator: ``Nec_ET_ratio = Nec / (ET + Nec)``,
  ``Edema_ET_ratio = Edema / (ET + Nec)`` (``ratio_denominator="enhancing"`` divides by ET
  only); empty when the denominator is 0 (``ratio_without_core="zero"`` gives 0).
* **A lesion** is a connected component of the tumour core (labels ``lesion_labels``,
  default {1, 3}). Its edema is the edema components it touches; an edema component that
  touches several lesions is split between them by nearest core voxel (in mm).
* **Maximum diameter**: largest distance between two voxel centres of the lesion plus one
  (mean) voxel spacing (``diameter="centres+voxel"``); ``"centres"`` omits the voxel,
  ``"corners"`` measures between voxel corners. ``subcentimetre``: diameter < 10 mm.
* **Infratentorial lesion** (``infratentorial_rule``): ``"centroid_or_majority"`` (default)
  when the voxel nearest its centroid is in SRI24 infratentorial brain or more than half of
  its voxels are; also ``"majority"``, ``"centroid"``, ``"any"``. The patient's
  ``Infratentorial`` is 1 when any lesion is (``patient_infratentorial="any_voxel"``: when
  any labelled voxel is).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import cc3d
import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from brainmets.labelmaps.arrays import nonzero_box
from brainmets.labelmaps.io import LabelMap
from brainmets.lesions.atlas import (
    ALIGNMENTS,
    AtlasLabels,
    Placement,
    infratentorial_at,
    place_on_atlas,
    region_name,
)
from brainmets.vocab import EDEMA, ENHANCING, NECROSIS

CONNECTIVITIES = (6, 18, 26)
INFRATENTORIAL_RULES = ("centroid_or_majority", "majority", "centroid", "any")
PATIENT_INFRATENTORIAL = ("any_lesion", "any_voxel")
DIAMETER_METHODS = ("centres+voxel", "centres", "corners")
RATIO_DENOMINATORS = ("core", "enhancing")
RATIO_WITHOUT_CORE = ("empty", "zero")

#: the per-patient columns of the reference sheet, in its order
FEATURE_COLUMNS = (
    "Infratentorial",
    "ET_num",
    "Nec_num",
    "Edema_num",
    "ET_vol",
    "Nec_vol",
    "Edema_vol",
    "Nec_ET_ratio",
    "Edema_ET_ratio",
)


@dataclass(frozen=True)
class FeatureParams:
    """Every convention of lesion counting and measurement (defaults: the reference's)."""

    connectivity: int = 26
    min_size_voxels: int = 0
    volume_decimals: int = 3
    ratio_decimals: int | None = 4
    ratio_denominator: str = "core"
    ratio_without_core: str = "empty"
    lesion_labels: tuple[int, ...] = (NECROSIS, ENHANCING)
    infratentorial_rule: str = "centroid_or_majority"
    patient_infratentorial: str = "any_lesion"
    diameter: str = "centres+voxel"
    subcentimetre_mm: float = 10.0
    alignment: str = "auto"

    def __post_init__(self) -> None:
        checks: list[tuple[str, Any, tuple[Any, ...]]] = [
            ("connectivity", self.connectivity, CONNECTIVITIES),
            ("infratentorial_rule", self.infratentorial_rule, INFRATENTORIAL_RULES),
            ("patient_infratentorial", self.patient_infratentorial, PATIENT_INFRATENTORIAL),
            ("diameter", self.diameter, DIAMETER_METHODS),
            ("ratio_denominator", self.ratio_denominator, RATIO_DENOMINATORS),
            ("ratio_without_core", self.ratio_without_core, RATIO_WITHOUT_CORE),
            ("alignment", self.alignment, ALIGNMENTS),
        ]
        for name, value, allowed in checks:
            if value not in allowed:
                raise ValueError(f"feature parameter {name}={value!r}: allowed {list(allowed)}")
        if self.min_size_voxels < 0:
            raise ValueError("feature parameter min_size_voxels must be >= 0")
        if not set(self.lesion_labels) <= {NECROSIS, EDEMA, ENHANCING} or not self.lesion_labels:
            raise ValueError(
                f"lesion_labels must be a non-empty subset of 1, 2, 3: {self.lesion_labels}"
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FeatureParams:
        """Build from stage parameters / CLI options; unknown keys are an error."""
        values = dict(values or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown feature parameter(s) {unknown}; known: {sorted(names)}")
        if "lesion_labels" in values:
            values["lesion_labels"] = tuple(int(v) for v in values["lesion_labels"])
        for k in ("connectivity", "min_size_voxels", "volume_decimals"):
            if k in values:
                values[k] = int(values[k])
        if values.get("ratio_decimals") in ("", "none", "None"):
            values["ratio_decimals"] = None
        elif "ratio_decimals" in values and values["ratio_decimals"] is not None:
            values["ratio_decimals"] = int(values["ratio_decimals"])
        if "subcentimetre_mm" in values:
            values["subcentimetre_mm"] = float(values["subcentimetre_mm"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lesion_labels"] = list(self.lesion_labels)
        return d


def defaults() -> dict[str, Any]:
    """The default parameters as a plain dict (stage defaults)."""
    return FeatureParams().as_dict()


@dataclass
class LesionRecord:
    """One lesion (a connected component of the tumour core).

    ``centroid_{x,y,z}_mm``: the core's centroid in world coordinates (mm) of the label map's
    grid, i.e. its NIfTI affine, which is RAS+ by the NIfTI convention — for the pipeline's
    label maps the preprocessed SRI24 grid, whose affine is the SRI24 template's
    (``diag(-1, 1, 1)``, origin at voxel (0, 0, 0): x = -i, y = j, z = k); a label map read by
    array index (``Placement.mode == "array"``, e.g. the BraTS-METS header) is given the
    atlas's world. ``centroid_{i,j,k}``: the same centroid as array indices of the label map.
    """

    lesion: int
    voxels: int
    volume_cm3: float
    et_voxels: int
    nec_voxels: int
    edema_voxels: int
    et_vol: float
    nec_vol: float
    edema_vol: float
    edema_shared: bool
    max_diameter_mm: float
    centroid_x_mm: float
    centroid_y_mm: float
    centroid_z_mm: float
    centroid_i: float
    centroid_j: float
    centroid_k: float
    subcentimetre: bool
    has_necrosis: bool
    has_edema: bool
    infratentorial: bool | None
    infratentorial_fraction: float | None
    location: str
    region: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class PatientFeatures:
    """The reference sheet's per-patient features, plus details kept in ``features.json``."""

    infratentorial: int | None
    et_num: int
    nec_num: int
    edema_num: int
    et_vol: float
    nec_vol: float
    edema_vol: float
    nec_et_ratio: float | None
    edema_et_ratio: float | None
    n_lesions: int = 0
    n_subcentimetre: int = 0
    et_voxels: int = 0
    nec_voxels: int = 0
    edema_voxels: int = 0
    orphan_edema_components: int = 0
    orphan_edema_voxels: int = 0
    voxel_volume_mm3: float = 1.0

    def row(self) -> dict[str, Any]:
        """The reference sheet's columns (:data:`FEATURE_COLUMNS`)."""
        return {
            "Infratentorial": self.infratentorial,
            "ET_num": self.et_num,
            "Nec_num": self.nec_num,
            "Edema_num": self.edema_num,
            "ET_vol": self.et_vol,
            "Nec_vol": self.nec_vol,
            "Edema_vol": self.edema_vol,
            "Nec_ET_ratio": self.nec_et_ratio,
            "Edema_ET_ratio": self.edema_et_ratio,
        }

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Analysis:
    """Everything computed from one label map."""

    features: PatientFeatures
    lesions: list[LesionRecord]
    placement: Placement | None = None
    params: FeatureParams = field(default_factory=FeatureParams)

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features.row(),
            "details": self.features.as_dict(),
            "lesions": [les.as_dict() for les in self.lesions],
            "placement": None
            if self.placement is None
            else {"mode": self.placement.mode, "note": self.placement.note},
            "params": self.params.as_dict(),
        }


# ------------------------------------------------------------------------ helpers
def count_components(
    mask: np.ndarray, connectivity: int = 26, min_size_voxels: int = 0
) -> tuple[np.ndarray, int]:
    """Connected components of a boolean mask (cc3d): ``(component labels, count)``;
    components below ``min_size_voxels`` keep their labels but are not counted."""
    cc, n = cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=np.uint8),
        connectivity=cast("Literal[6, 18, 26]", connectivity),  # checked in FeatureParams
        return_N=True,
    )
    if min_size_voxels > 1 and n:
        sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
        n = int((sizes >= min_size_voxels).sum())
    return cc, int(n)


def _structure(connectivity: int) -> np.ndarray:
    return ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])


def _extreme_points(sub: np.ndarray) -> np.ndarray:
    """Voxel indices of the first and last voxel of every k-line of a boolean box (enough
    for the convex hull of all voxel centres)."""
    anyk = sub.any(axis=2)
    i, j = np.nonzero(anyk)
    first = np.argmax(sub, axis=2)[i, j]
    last = sub.shape[2] - 1 - np.argmax(sub[:, :, ::-1], axis=2)[i, j]
    two = last != first
    return np.concatenate([np.stack([i, j, first], 1), np.stack([i[two], j[two], last[two]], 1)])


def _max_pairwise(points: np.ndarray, chunk: int = 1024) -> float:
    best = 0.0
    for s in range(0, len(points), chunk):
        d = points[s : s + chunk, None, :] - points[None, :, :]
        best = max(best, float(np.einsum("ijk,ijk->ij", d, d).max()))
    return float(np.sqrt(best))


def max_diameter_mm(sub: np.ndarray, linear: np.ndarray, method: str = "centres+voxel") -> float:
    """Maximum 3D diameter (mm) of the voxels of boolean box ``sub`` under the 3x3 voxel-to-mm
    matrix ``linear`` (see :class:`FeatureParams` for ``method``)."""
    idx = _extreme_points(sub)
    if not len(idx):
        return 0.0
    pts = idx @ np.asarray(linear, float).T
    if len(pts) > 4:
        try:
            pts = pts[ConvexHull(pts).vertices]
        except QhullError:
            with contextlib.suppress(QhullError):  # flat lesion (one slice): joggle
                pts = pts[ConvexHull(pts, qhull_options="QJ").vertices]
    if method == "corners":
        offs = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])
        pts = (pts[:, None, :] + (offs @ np.asarray(linear, float).T)[None]).reshape(-1, 3)
    d = _max_pairwise(pts)
    if method == "centres+voxel":
        d += float(np.linalg.norm(linear, axis=0).mean())
    return d


def _round(v: float, nd: int | None) -> float:
    return float(v) if nd is None else round(float(v), nd)


# ----------------------------------------------------------------------- analysis
def analyse(
    labels: np.ndarray | LabelMap,
    affine: np.ndarray | None = None,
    params: FeatureParams | None = None,
    atlas: AtlasLabels | None = None,
    placement: Placement | None = None,
    instances: np.ndarray | None = None,
) -> Analysis:
    """Count and measure the lesions of one checked label map.

    ``instances`` (optional, the same grid): the annotated lesion of every voxel (the
    segment stage's instance map). An edema component touching several lesions is then
    split by the lesion each voxel was drawn for, not by the nearest core (which gives a
    small lesion beside a large one a Voronoi cell of the large one's oedema); voxels of an
    annotated lesion that is none of the touching ones go to the nearest core as before.

    ``labels`` is a ``uint8`` array with values in {0,1,2,3} (use
    :func:`brainmets.lesions.load_label_map` to read and check a file) or a
    :class:`LabelMap`. Without ``atlas`` the infratentorial fields are empty (``None``).
    """
    if isinstance(labels, LabelMap):
        affine = labels.affine
        labels = labels.data
    if affine is None:
        raise ValueError("analyse() needs the label map's affine")
    p = params or FeatureParams()
    affine = np.asarray(affine, float)
    vox_mm3 = float(abs(np.linalg.det(affine[:3, :3])))
    if atlas is not None and placement is None:
        placement = place_on_atlas(labels.shape, affine, atlas, p.alignment)
    world = placement.to_atlas_world if placement is not None else affine
    box = nonzero_box(labels)
    if box is None:
        return Analysis(_empty_features(p, vox_mm3, atlas), [], placement, p)
    crop = np.ascontiguousarray(labels[box])
    offset = np.array([s.start for s in box])
    inst = None
    if instances is not None:
        if np.shape(instances) != labels.shape:
            raise ValueError(
                f"instance map grid {np.shape(instances)} is not the label map's {labels.shape}"
            )
        inst = np.asarray(instances)[box]
    counts = np.bincount(crop.ravel(), minlength=4)
    et_vox, nec_vox, ed_vox = int(counts[ENHANCING]), int(counts[NECROSIS]), int(counts[EDEMA])
    # one multi-label pass: cc3d separates components of different labels
    all_cc, n_all = cc3d.connected_components(
        crop, connectivity=cast("Literal[6, 18, 26]", p.connectivity), return_N=True
    )
    comp_label = np.zeros(n_all + 1, np.uint8)
    comp_label[all_cc.ravel()] = crop.ravel()
    comp_size = np.bincount(all_cc.ravel(), minlength=n_all + 1)
    counted = comp_label[1:][comp_size[1:] >= max(p.min_size_voxels, 1)]
    per_label = np.bincount(counted, minlength=4)
    et_num, nec_num, edema_num = (int(per_label[v]) for v in (ENHANCING, NECROSIS, EDEMA))

    lut = np.zeros(256, bool)
    lut[list(p.lesion_labels)] = True
    core_cc, _ = count_components(lut[crop], p.connectivity)
    stats = cc3d.statistics(core_cc)
    sizes = np.asarray(stats["voxel_counts"])
    boxes = stats["bounding_boxes"]
    struct = _structure(p.connectivity)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    linear = world[:3, :3]

    raw: list[dict[str, Any]] = []
    touching: dict[int, list[int]] = {}
    for cid in range(1, len(sizes)):
        n_vox = int(sizes[cid])
        if n_vox == 0 or n_vox < p.min_size_voxels:
            continue
        bb = boxes[cid]
        sub = core_cc[bb] == cid
        lab = crop[bb][sub]
        # edema components touching this lesion (1-voxel dilation inside a padded box)
        pad = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, crop.shape[a])) for a, s in enumerate(bb)
        )
        subp = core_cc[pad] == cid
        ring = ndimage.binary_dilation(subp, struct) & ~subp
        near = np.unique(all_cc[pad][ring])
        touched = [int(t) for t in near if t and comp_label[t] == EDEMA]
        idx0 = offset + np.array([s.start for s in bb])
        vox_idx = np.argwhere(sub) + idx0
        centroid = vox_idx.mean(axis=0)
        rec = {
            "cid": cid,
            "voxels": n_vox,
            "et": int((lab == ENHANCING).sum()),
            "nec": int((lab == NECROSIS).sum()),
            "touched": touched,
            "centroid_vox": centroid,
            "diameter": max_diameter_mm(sub, linear, p.diameter),
            "infra": _lesion_infratentorial(vox_idx, centroid, placement, atlas, p),
            "region": ""
            if atlas is None or placement is None
            else region_name(vox_idx, placement, atlas),
        }
        raw.append(rec)
        for t in touched:
            touching.setdefault(t, []).append(cid)

    edema_of, shared, orphan_n, orphan_vox = _assign_edema(
        all_cc, comp_label, comp_size, core_cc, boxes, touching, spacing, p, inst
    )
    raw.sort(key=lambda r: (-r["voxels"], *np.round(r["centroid_vox"], 3)))
    lesions: list[LesionRecord] = []
    cm3 = vox_mm3 / 1000.0
    for n, r in enumerate(raw, start=1):
        c_world = world[:3, :3] @ r["centroid_vox"] + world[:3, 3]
        infra, frac = r["infra"]
        ed = int(edema_of.get(r["cid"], 0))
        lesions.append(
            LesionRecord(
                lesion=n,
                voxels=r["voxels"],
                volume_cm3=_round(r["voxels"] * cm3, p.volume_decimals),
                et_voxels=r["et"],
                nec_voxels=r["nec"],
                edema_voxels=ed,
                et_vol=_round(r["et"] * cm3, p.volume_decimals),
                nec_vol=_round(r["nec"] * cm3, p.volume_decimals),
                edema_vol=_round(ed * cm3, p.volume_decimals),
                edema_shared=r["cid"] in shared,
                max_diameter_mm=round(r["diameter"], 2),
                centroid_x_mm=round(float(c_world[0]), 2),
                centroid_y_mm=round(float(c_world[1]), 2),
                centroid_z_mm=round(float(c_world[2]), 2),
                centroid_i=round(float(r["centroid_vox"][0]), 2),
                centroid_j=round(float(r["centroid_vox"][1]), 2),
                centroid_k=round(float(r["centroid_vox"][2]), 2),
                subcentimetre=bool(r["diameter"] < p.subcentimetre_mm),
                has_necrosis=r["nec"] > 0,
                has_edema=bool(r["touched"]),
                infratentorial=infra,
                infratentorial_fraction=frac,
                location="" if infra is None else ("infratentorial" if infra else "supratentorial"),
                region=r["region"],
            )
        )

    if atlas is None or placement is None:
        patient_infra: int | None = None
    elif p.patient_infratentorial == "any_voxel":
        patient_infra = int(
            infratentorial_at(np.argwhere(crop > 0) + offset, placement, atlas).any()
        )
    else:
        patient_infra = int(any(les.infratentorial for les in lesions))
    et_ratio, ed_ratio = _ratios(et_vox, nec_vox, ed_vox, p)
    feats = PatientFeatures(
        infratentorial=patient_infra,
        et_num=et_num,
        nec_num=nec_num,
        edema_num=edema_num,
        et_vol=_round(et_vox * cm3, p.volume_decimals),
        nec_vol=_round(nec_vox * cm3, p.volume_decimals),
        edema_vol=_round(ed_vox * cm3, p.volume_decimals),
        nec_et_ratio=et_ratio,
        edema_et_ratio=ed_ratio,
        n_lesions=len(lesions),
        n_subcentimetre=sum(les.subcentimetre for les in lesions),
        et_voxels=et_vox,
        nec_voxels=nec_vox,
        edema_voxels=ed_vox,
        orphan_edema_components=orphan_n,
        orphan_edema_voxels=orphan_vox,
        voxel_volume_mm3=vox_mm3,
    )
    return Analysis(feats, lesions, placement, p)


def _empty_features(p: FeatureParams, vox_mm3: float, atlas: AtlasLabels | None) -> PatientFeatures:
    r1, r2 = _ratios(0, 0, 0, p)
    return PatientFeatures(
        infratentorial=None if atlas is None else 0,
        et_num=0,
        nec_num=0,
        edema_num=0,
        et_vol=0.0,
        nec_vol=0.0,
        edema_vol=0.0,
        nec_et_ratio=r1,
        edema_et_ratio=r2,
        voxel_volume_mm3=vox_mm3,
    )


def _ratios(et: int, nec: int, ed: int, p: FeatureParams) -> tuple[float | None, float | None]:
    denom = et + nec if p.ratio_denominator == "core" else et
    if denom == 0:
        return (None, None) if p.ratio_without_core == "empty" else (0.0, 0.0)
    return _round(nec / denom, p.ratio_decimals), _round(ed / denom, p.ratio_decimals)


def _lesion_infratentorial(
    vox_idx: np.ndarray,
    centroid: np.ndarray,
    placement: Placement | None,
    atlas: AtlasLabels | None,
    p: FeatureParams,
) -> tuple[bool | None, float | None]:
    if atlas is None or placement is None:
        return None, None
    inside = infratentorial_at(vox_idx, placement, atlas)
    frac = float(inside.mean()) if len(inside) else 0.0
    at_centroid = bool(infratentorial_at(centroid[None], placement, atlas)[0])
    rule = p.infratentorial_rule
    if rule == "majority":
        flag = frac > 0.5
    elif rule == "centroid":
        flag = at_centroid
    elif rule == "any":
        flag = bool(inside.any())
    else:
        flag = at_centroid or frac > 0.5
    return bool(flag), round(frac, 4)


def _assign_edema(
    all_cc: np.ndarray,
    comp_label: np.ndarray,
    sizes: np.ndarray,
    core_cc: np.ndarray,
    core_boxes: Sequence[tuple[slice, ...]],
    touching: dict[int, list[int]],
    spacing: np.ndarray,
    p: FeatureParams,
    instances: np.ndarray | None = None,
) -> tuple[dict[int, int], set[int], int, int]:
    """Edema voxels per lesion (core component id), the lesions sharing an edema component,
    and the edema components touching no lesion (count, voxels). A shared component is split
    by ``instances`` (the annotated lesion of each voxel; a core component's lesion is the
    most frequent instance of its voxels) where given, else by nearest core voxel."""
    boxes: list[tuple[slice, ...] | None] | None = None  # found when first needed
    edema_of: dict[int, int] = {}
    shared: set[int] = set()
    orphan_n = orphan_vox = 0
    for e in np.flatnonzero(comp_label == EDEMA):
        eid = int(e)
        if sizes[eid] == 0:
            continue
        owners = touching.get(eid, [])
        if not owners:
            if sizes[eid] >= max(p.min_size_voxels, 1):
                orphan_n += 1
            orphan_vox += int(sizes[eid])
            continue
        if len(owners) == 1:
            edema_of[owners[0]] = edema_of.get(owners[0], 0) + int(sizes[eid])
            continue
        shared.update(owners)
        # split by nearest core voxel, in a box holding the component and its lesions' cores
        if boxes is None:
            boxes = ndimage.find_objects(all_cc)
        ebox = boxes[eid - 1]
        assert ebox is not None
        lo = np.array([s.start for s in ebox])
        hi = np.array([s.stop for s in ebox])
        for cid in owners:
            lo = np.minimum(lo, [s.start for s in core_boxes[cid]])
            hi = np.maximum(hi, [s.stop for s in core_boxes[cid]])
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        local = core_cc[box]
        cores = np.where(np.isin(local, owners), local, 0)
        _, ind = ndimage.distance_transform_edt(cores == 0, sampling=spacing, return_indices=True)
        nearest = cores[tuple(ind)]
        if instances is not None:
            nearest = _by_instance(nearest, instances[box], local, owners)
        comp = all_cc[box] == eid
        got = np.bincount(nearest[comp].ravel().astype(np.int64))
        for cid in owners:
            if cid < len(got):
                edema_of[cid] = edema_of.get(cid, 0) + int(got[cid])
    return edema_of, shared, orphan_n, orphan_vox


def _by_instance(
    nearest: np.ndarray, instances: np.ndarray, cores: np.ndarray, owners: Sequence[int]
) -> np.ndarray:
    """``nearest`` (core component per voxel) overridden by the annotated lesion: each
    owner's instance is the most frequent instance of its core voxels; a voxel drawn for
    one of the owners' instances goes to that owner."""
    out = nearest.copy()
    for cid in owners:
        ids = instances[cores == cid]
        ids = ids[ids > 0]
        if not ids.size:
            continue
        mine = instances == int(np.bincount(ids).argmax())
        out[mine] = cid
    return out
