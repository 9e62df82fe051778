"""Brain metastases in template space: placement, shape, labels and per-lesion statistics.

Each lesion is an irregular ellipsoid (enhancing tumour), with a necrotic core in most
larger lesions and peritumoral (vasogenic) edema that spreads through white matter and
spares the cortex. Everything is rasterised on the template's 1 mm grid:

* label map (uint8): 1 necrosis, 2 edema (whole tumour minus core), 3 enhancing;
* instance map (uint8): the lesion (1..N) that owns each labelled voxel. Cores never
  overlap; edema where two lesions' edema meets belongs to the lesion with the nearest core.

Volumes reported by :func:`lesion_stats` are voxel counts of these maps on the template's
own grid (for SRI24, 1 mm^3 voxels, so counts are mm^3).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from brainmets.synth.anatomy import Template, dilate, erode
from brainmets.vocab import EDEMA, ENHANCING, NECROSIS


@dataclass
class LesionParams:
    """Parameters that rasterise one lesion (deterministic given ``noise_seed``)."""

    centre: np.ndarray  # template voxel coordinates (float)
    radii: np.ndarray  # mm, ellipsoid semi-axes of the enhancing tumour
    rotation: np.ndarray  # 3x3
    irregularity: float
    rim_mm: float | None  # None: solid enhancing, else necrotic core inside a rim
    edema_mm: float  # 0: no edema
    edema_gm_fraction: float
    noise_seed: int
    infratentorial_target: bool = False
    near_lesion: int | None = None  # placed next to this lesion (index from 1)
    cached: object | None = field(default=None, repr=False, compare=False)

    @property
    def diameter_mm(self) -> float:
        return float(2.0 * self.radii.max())


@dataclass
class LesionSet:
    """Rasterised lesions of one time point on the template grid."""

    params: list[LesionParams]
    labels: np.ndarray  # uint8, template grid
    instances: np.ndarray  # uint8, template grid
    boxes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # [lo, hi)

    def lesion_mask(self, n: int, which: str) -> tuple[np.ndarray, np.ndarray]:
        """(crop origin, boolean crop) of lesion ``n`` (1-based): core, necrosis, enhancing,
        edema or whole."""
        lo, hi = self.boxes[n - 1]
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        inst = self.instances[sl] == n
        lab = self.labels[sl]
        sets = {
            "core": (lab == NECROSIS) | (lab == ENHANCING),
            "necrosis": lab == NECROSIS,
            "enhancing": lab == ENHANCING,
            "edema": lab == EDEMA,
            "whole": lab > 0,
        }
        return lo, inst & sets[which]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    sd = float(n.std())
    return n / sd if sd > 0 else n


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def sample_diameter(rng: np.random.Generator) -> float:
    """Diameter (mm) of a metastasis: many sub-centimetre, some 2-4 cm."""
    u = rng.random()
    if u < 0.55:
        return float(np.exp(rng.uniform(np.log(3.5), np.log(10.0))))
    if u < 0.85:
        return float(rng.uniform(10.0, 20.0))
    return float(rng.uniform(20.0, 40.0))


def lesion_count(rng: np.random.Generator, max_n: int = 15) -> int:
    """1 to ``max_n`` lesions, most patients with 1-3."""
    return int(min(max_n, 1 + rng.negative_binomial(1, 0.32)))


def make_params(
    rng: np.random.Generator,
    centre: np.ndarray,
    diameter: float,
    infratentorial: bool = False,
    near: int | None = None,
    force_necrosis: bool = False,
    force_edema: bool = False,
) -> LesionParams:
    r = diameter / 2.0
    radii = r * rng.uniform(0.8, 1.15, size=3)
    radii *= r / radii.max()
    rim = None
    p_nec = 0.0 if diameter < 10 else (0.45 if diameter < 20 else 0.9)
    if force_necrosis or rng.random() < p_nec:
        rim = float(rng.uniform(1.5, min(4.0, 0.45 * r)))
    p_ed = 0.35 if diameter < 8 else (0.75 if diameter < 15 else 0.95)
    edema = 0.0
    if force_edema or rng.random() < p_ed:
        edema = float(rng.uniform(0.4, 1.5) * r + rng.uniform(2.0, 8.0))
    return LesionParams(
        centre=np.asarray(centre, dtype=float),
        radii=radii,
        rotation=_random_rotation(rng),
        irregularity=float(rng.uniform(0.05, 0.14)),
        rim_mm=rim,
        edema_mm=edema,
        edema_gm_fraction=float(rng.uniform(0.1, 0.35)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
        infratentorial_target=infratentorial,
        near_lesion=near,
    )


@dataclass
class _Raster:
    lo: np.ndarray
    core: np.ndarray
    necrosis: np.ndarray
    edema: np.ndarray
    core_dist: np.ndarray
    outside_fraction: float


def rasterise(t: Template, p: LesionParams, scale: float = 1.0) -> _Raster:
    """Rasterise one lesion in a box around its centre (``scale`` shrinks it, e.g. after
    treatment)."""
    if scale == 1.0 and isinstance(p.cached, _Raster):
        return p.cached
    vox = np.linalg.norm(t.affine[:3, :3], axis=0)
    reach = p.radii.max() * 1.35 + p.edema_mm * 1.4 + 4.0
    half = np.ceil(reach / vox).astype(int)
    c = np.round(p.centre).astype(int)
    lo = np.maximum(c - half, 0)
    hi = np.minimum(c + half + 1, np.array(t.shape))
    shape = tuple(int(v) for v in hi - lo)
    rng = np.random.default_rng(p.noise_seed)
    grid = np.stack(
        np.meshgrid(*(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij"), axis=-1
    ).astype(np.float32)
    d_mm = (grid - p.centre) * vox
    local = d_mm @ p.rotation  # coordinates in the lesion's own axes
    rad = np.sqrt(((local / (p.radii * scale)) ** 2).sum(axis=-1))
    mean_r = float(p.radii.mean()) * scale
    sig = max(1.0, 0.35 * mean_r)
    n1 = _smooth_noise(rng, shape, sig)
    n2 = _smooth_noise(rng, shape, max(1.0, 0.25 * mean_r))
    n3 = _smooth_noise(rng, shape, 3.0)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    brain = t.tissues[sl] > 0
    tissue = t.tissues[sl]
    shape_r = rad * (1.0 + p.irregularity * n1)
    ideal = shape_r <= 1.0
    core = ideal & brain
    outside = 1.0 - core.sum() / max(int(ideal.sum()), 1)
    necrosis = np.zeros_like(core)
    if p.rim_mm is not None and mean_r > p.rim_mm + 1.0:
        inner = 1.0 - p.rim_mm / mean_r
        necrosis = core & (rad * (1.0 + 1.6 * p.irregularity * n2) <= inner)
        # keep a rim of at least one voxel around the necrosis
        necrosis &= ndimage.binary_erosion(core, iterations=1)
    core_dist = ndimage.distance_transform_edt(~core, sampling=vox).astype(np.float32)
    edema = np.zeros_like(core)
    if p.edema_mm > 0 and core.any():
        reach_mm = p.edema_mm * scale * (1.0 + 0.35 * n3)
        allowed_wm = tissue == 3
        allowed_gm = tissue == 2
        edema = (~core) & (
            (allowed_wm & (core_dist <= reach_mm))
            | (allowed_gm & (core_dist <= reach_mm * p.edema_gm_fraction))
        )
        # edema is connected to its lesion
        lab, n = ndimage.label(edema | core)
        if n > 1:
            keep = np.unique(lab[core])
            edema &= np.isin(lab, keep[keep > 0])
    return _Raster(lo, core, necrosis, edema, core_dist, float(outside))


def _sample_voxel(rng: np.random.Generator, candidates: np.ndarray) -> np.ndarray:
    return candidates[int(rng.integers(0, len(candidates)))].astype(float)


_CANDIDATES: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _candidates(t: Template) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate centre voxels (supratentorial grey-white junction, infratentorial
    parenchyma, any supratentorial parenchyma), computed once per template."""
    key = id(t)
    if key not in _CANDIDATES:
        tis = t.tissues
        parenchyma = (tis == 2) | (tis == 3)
        eroded = erode(t.brain, 3)
        gm_near = dilate(tis == 2, 2)
        wm_near = dilate(tis == 3, 2)
        junction = parenchyma & gm_near & wm_near & eroded
        _CANDIDATES[key] = (
            np.argwhere(junction & ~t.infratentorial).astype(np.int16),
            np.argwhere(parenchyma & eroded & t.infratentorial).astype(np.int16),
            np.argwhere(parenchyma & eroded & ~t.infratentorial).astype(np.int16),
        )
    return _CANDIDATES[key]


def place_lesions(
    t: Template,
    rng: np.random.Generator,
    n_lesions: int,
    force_infratentorial: bool = False,
    force_pair: bool = False,
    force_large: bool = False,
) -> list[LesionParams]:
    """Choose lesion parameters: mostly at the grey-white junction, ~15 % infratentorial,
    some pairs close together (their edema merges), none outside the brain."""
    parenchyma = (t.tissues == 2) | (t.tissues == 3)
    supra_junction, infra, anywhere = _candidates(t)
    occupied = np.zeros(t.shape, dtype=bool)
    out: list[LesionParams] = []
    forced_infra_idx = (1 if n_lesions > 1 else 0) if force_infratentorial else -1
    pair_done = not force_pair
    for idx in range(n_lesions):
        diameter = sample_diameter(rng)
        if idx == 0 and force_large:
            diameter = float(rng.uniform(24.0, 36.0))
        want_infra = (idx == forced_infra_idx) or (rng.random() < 0.15)
        if idx == 0 and force_large:
            want_infra = False
        want_near = bool(out) and not want_infra and ((not pair_done) or rng.random() < 0.2)
        if want_infra:
            diameter = min(diameter, 22.0)
        placed = False
        for attempt in range(60):
            d = diameter * (0.85 ** (attempt // 15))
            near = None
            if want_near and attempt < 40:
                ref = int(rng.integers(0, len(out)))
                refp = out[ref]
                direction = rng.standard_normal(3)
                direction /= np.linalg.norm(direction)
                dist = refp.radii.max() + d / 2.0 + rng.uniform(4.0, 11.0)
                c = refp.centre + direction * dist
                ci = np.round(c).astype(int)
                if np.any(ci < 0) or np.any(ci >= np.array(t.shape)) or not parenchyma[tuple(ci)]:
                    continue
                near = ref + 1
            elif want_infra and len(infra):
                c = _sample_voxel(rng, infra)
            elif rng.random() < 0.7 and len(supra_junction):
                c = _sample_voxel(rng, supra_junction)
            else:
                c = _sample_voxel(rng, anywhere)
            c = c + rng.uniform(-0.5, 0.5, size=3)
            p = make_params(
                rng,
                c,
                d,
                infratentorial=want_infra,
                near=near,
                force_necrosis=(idx == 0 and force_large),
                force_edema=(near is not None or (idx == 0 and force_pair)),
            )
            r = rasterise(t, p)
            if r.outside_fraction > 0.08 or r.core.sum() < 4:
                continue
            sl = tuple(slice(int(a), int(a) + s) for a, s in zip(r.lo, r.core.shape, strict=True))
            grown = ndimage.binary_dilation(r.core, iterations=2)
            if (occupied[sl] & grown).any():
                continue
            occupied[sl] |= r.core
            p.cached = r
            out.append(p)
            placed = True
            if near is not None:
                pair_done = True
            break
        if not placed and not out:
            raise RuntimeError("could not place any lesion in the brain")
    return out


def rasterise_set(
    t: Template, params: list[LesionParams], scale: float | list[float] = 1.0
) -> LesionSet:
    """Combine lesions into the label and instance maps (cores win over edema; contested
    edema goes to the nearest core)."""
    labels = np.zeros(t.shape, dtype=np.uint8)
    instances = np.zeros(t.shape, dtype=np.uint8)
    best = np.full(t.shape, np.inf, dtype=np.float32)
    core_any = np.zeros(t.shape, dtype=bool)
    scales = scale if isinstance(scale, list) else [scale] * len(params)
    rasters = [rasterise(t, p, s) for p, s in zip(params, scales, strict=True)]
    boxes = []
    for n, r in enumerate(rasters, start=1):
        sl = tuple(slice(int(a), int(a) + s) for a, s in zip(r.lo, r.core.shape, strict=True))
        boxes.append((r.lo.copy(), r.lo + np.array(r.core.shape)))
        lab = labels[sl]
        inst = instances[sl]
        lab[r.core] = ENHANCING
        lab[r.necrosis] = NECROSIS
        inst[r.core] = n
        core_any[sl] |= r.core
    for n, r in enumerate(rasters, start=1):
        sl = tuple(slice(int(a), int(a) + s) for a, s in zip(r.lo, r.core.shape, strict=True))
        cand = r.edema & ~core_any[sl] & (r.core_dist < best[sl])
        best[sl] = np.where(cand, r.core_dist, best[sl])
        labels[sl][cand] = EDEMA
        instances[sl][cand] = n
    _drop_edema_crumbs(labels, instances)
    return LesionSet(params=params, labels=labels, instances=instances, boxes=boxes)


#: edema components smaller than this (voxels of 1 mm^3) are not part of the truth: where
#: cores and edema meet, the voxel raster leaves crumbs (a voxel in a concavity of a core) that
#: no grader outlines on a 5 mm FLAIR, and that would count as edema lesions
MIN_EDEMA_COMPONENT_VOXELS = 10


def _drop_edema_crumbs(labels: np.ndarray, instances: np.ndarray) -> None:
    """Remove edema components of fewer than :data:`MIN_EDEMA_COMPONENT_VOXELS` voxels
    (26-connectivity, the count's), in place."""
    import cc3d

    edema = labels == EDEMA
    if not edema.any():
        return
    cc = cc3d.connected_components(edema.astype(np.uint8), connectivity=26)
    sizes = np.bincount(cc.ravel())
    small = np.nonzero(sizes < MIN_EDEMA_COMPONENT_VOXELS)[0]
    small = small[small > 0]
    if small.size:
        crumbs = np.isin(cc, small)
        labels[crumbs] = 0
        instances[crumbs] = 0


def _max_diameter(points_mm: np.ndarray) -> float:
    if len(points_mm) < 2:
        return 0.0
    pts = points_mm
    if len(pts) > 4:
        with contextlib.suppress(QhullError):
            pts = pts[ConvexHull(pts).vertices]
    if len(pts) > 3000:
        pts = pts[:: max(1, len(pts) // 3000)]
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
    return float(d.max())


def _region(t: Template, idx: np.ndarray) -> str:
    """Most frequent named parcel among the core's voxels ('' without a parcellation)."""
    if t.parcellation is None:
        return ""
    labs = t.parcellation[tuple(idx.T)].astype(np.int64)
    labs = labs[labs > 0]
    if not len(labs):
        return ""
    return t.parcel_names.get(int(np.bincount(labs).argmax()), "")


def lesion_stats(t: Template, ls: LesionSet) -> list[dict]:
    """Per-lesion truth: centre (template world mm), volumes (voxel counts on the template's
    own grid), maximum diameter of the tumour core (voxel centres, mm, +1 voxel), flags."""
    vox_vol = float(abs(np.linalg.det(t.affine[:3, :3])))
    out = []
    for n, p in enumerate(ls.params, start=1):
        lo, core = ls.lesion_mask(n, "core")
        _, nec = ls.lesion_mask(n, "necrosis")
        _, enh = ls.lesion_mask(n, "enhancing")
        _, ede = ls.lesion_mask(n, "edema")
        idx = np.argwhere(core) + lo
        centre_vox = idx.mean(axis=0)
        centre_world = t.affine[:3, :3] @ centre_vox + t.affine[:3, 3]
        pts_mm = idx @ t.affine[:3, :3].T
        infra_vox = t.infratentorial[tuple(np.round(centre_vox).astype(int))]
        infra_frac = float(t.infratentorial[tuple(idx.T)].mean())
        out.append(
            {
                "id": n,
                "centre_template_mm": [round(float(v), 3) for v in centre_world],
                "centre_template_voxel": [
                    round(float(v), 3) for v in centre_vox - np.array(t.pad_origin)
                ],
                "volume_voxels": {
                    "enhancing": int(enh.sum()),
                    "necrosis": int(nec.sum()),
                    "core": int(core.sum()),
                    "edema": int(ede.sum()),
                    "whole": int(core.sum() + ede.sum()),
                },
                "voxel_volume_mm3": vox_vol,
                "max_diameter_mm": round(
                    _max_diameter(pts_mm) + float(np.linalg.norm(t.affine[:3, :3], axis=0).mean()),
                    2,
                ),
                "planned_diameter_mm": round(p.diameter_mm, 2),
                "infratentorial": bool(infra_vox or infra_frac > 0.5),
                "has_necrosis": bool(nec.any()),
                "has_edema": bool(ede.any()),
                "placed_next_to": p.near_lesion,
                "region": _region(t, idx),
            }
        )
    return out


def component_counts(labels: np.ndarray, connectivity: Literal[6, 18, 26] = 26) -> dict[str, int]:
    """Connected components per label (ET, necrosis, edema) as the reference sheet counts."""
    import cc3d

    out = {}
    for name, lab in (("ET_num", ENHANCING), ("Nec_num", NECROSIS), ("Edema_num", EDEMA)):
        m = (labels == lab).astype(np.uint8)
        out[name] = int(cc3d.connected_components(m, connectivity=connectivity).max())
    return out


def merged_edema_groups(ls: LesionSet) -> list[list[int]]:
    """Groups of lesions whose whole-tumour regions touch (26-connectivity)."""
    import cc3d

    cc = cc3d.connected_components((ls.labels > 0).astype(np.uint8), connectivity=26)
    m = cc > 0
    pairs = np.unique(np.stack([cc[m].astype(np.int64), ls.instances[m].astype(np.int64)]), axis=1)
    groups: dict[int, list[int]] = {}
    for comp, inst in pairs.T:
        if inst > 0:
            groups.setdefault(int(comp), []).append(int(inst))
    return sorted(sorted(g) for g in groups.values() if len(g) > 1)
