"""Click-to-segment: one lesion's 3D extent from a seed voxel.

:func:`grow_lesion` takes a case's normalised images (:class:`~brainmets.annotate.images.
CaseImages`) and a seed voxel inside (or next to) an enhancing lesion and returns the
lesion's masks in a crop of the grid (:class:`LesionMasks`):

* **enhancing**: the voxels of the enhancement map (T1c - T1, or T1c) at or above a
  threshold halfway (``level``) between the local background and the lesion's level (the
  median enhancement just around its peak), connected (6-neighbourhood) to the peak. The peak
  is found uphill from the seed; a seed that does not enhance (a click on the necrotic centre
  or just outside) starts from the nearest voxel within ``seed_search_mm`` that does. The
  search box grows (``roi_mm``) until the lesion does not touch its border.
* **necrosis**: the non-enhancing interior: the holes of the (closed) enhancing shell.
* **core** = enhancing + necrosis (the reference's ``Core{n}_PGGE`` on T1c). When the core is
  two touching lesions (:func:`split_core`), the one at the peak is kept.
* **whole**: the FLAIR hyperintensity connected to the core, thresholded halfway between the
  brain's median and the FLAIR peak just around the core, within ``whole_max_mm`` of the core
  (the reference's ``Whole{n}_FLAIR``); the core when the case has no FLAIR or no edema.

Grow / shrink by a step (``steps`` > 0 / < 0) lowers / raises both thresholds by ``step`` of
the contrast. Everything runs on a crop around the seed, so one call takes tens of
milliseconds on a 1 mm grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np
from scipy import ndimage

from brainmets.annotate.images import CaseImages

__all__ = ["GrowOptions", "LesionMasks", "NoLesionHere", "grow_lesion", "split_core"]


class NoLesionHere(ValueError):
    """No enhancing lesion near the seed (nothing stands out from the background)."""


@dataclass(frozen=True)
class GrowOptions:
    """Parameters of :func:`grow_lesion` (mm on a 1 mm grid: voxels)."""

    level: float = 0.5  # enhancing threshold: background + level * (peak - background)
    whole_level: float = 0.5  # FLAIR threshold: median + whole_level * (peak - median)
    step: float = 0.1  # change of both levels per grow / shrink step
    roi_mm: tuple[int, ...] = (16, 28, 44, 64)  # half-sizes of the search box, tried in turn
    seed_search_mm: float = 15.0  # a seed that does not enhance: the nearest that does
    min_contrast: float = 3.0  # peak above background, in units of the background's noise
    whole_max_mm: int = 30  # the whole tumour reaches at most this far beyond the core
    min_edema_contrast: float = 1.0  # FLAIR peak above the brain median (z) to count edema


@dataclass
class LesionMasks:
    """One lesion's masks in a crop of the grid starting at ``origin`` (voxel)."""

    origin: tuple[int, int, int]
    enhancing: np.ndarray
    necrosis: np.ndarray
    whole: np.ndarray
    seed: tuple[int, int, int]
    peak: tuple[int, int, int]
    threshold: float
    background: float
    contrast: float  # peak - background, in units of the background noise
    touches_box: bool = False  # the largest search box was not enough (a leak, or huge)
    info: dict[str, float] = field(default_factory=dict)

    @property
    def core(self) -> np.ndarray:
        return self.enhancing | self.necrosis

    def counts(self) -> dict[str, int]:
        """Voxel counts of core, enhancing, necrosis, whole."""
        return {
            "core": int(self.core.sum()),
            "enhancing": int(self.enhancing.sum()),
            "necrosis": int(self.necrosis.sum()),
            "whole": int(self.whole.sum()),
        }

    def full(self, which: str, shape: tuple[int, int, int]) -> np.ndarray:
        """One mask (``core``, ``enhancing``, ``necrosis``, ``whole``) on the whole grid."""
        out = np.zeros(shape, bool)
        part = getattr(self, which)
        sl = tuple(slice(o, o + n) for o, n in zip(self.origin, part.shape, strict=True))
        out[sl] = part
        return out

    def centroid(self) -> tuple[float, float, float]:
        """The core's centre of mass (voxel, on the whole grid)."""
        c = ndimage.center_of_mass(self.core)
        return (
            float(c[0] + self.origin[0]),
            float(c[1] + self.origin[1]),
            float(c[2] + self.origin[2]),
        )


def _box(centre: tuple[int, ...], half: int, shape: tuple[int, ...]) -> tuple[slice, slice, slice]:
    lo = [max(0, c - half) for c in centre]
    hi = [min(n, c + half + 1) for c, n in zip(centre, shape, strict=True)]
    return (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))


def _ball(r: float) -> np.ndarray:
    n = int(np.ceil(r))
    g = np.mgrid[-n : n + 1, -n : n + 1, -n : n + 1]
    return (g**2).sum(axis=0) <= r * r + 1e-6


def _touches(mask: np.ndarray, sl: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    """Whether ``mask`` (a crop ``sl`` of a grid of ``shape``) reaches a crop face that is
    not the grid's own border."""
    for ax in range(3):
        s = sl[ax]
        if s.start > 0 and mask.take(0, axis=ax).any():
            return True
        if s.stop < shape[ax] and mask.take(mask.shape[ax] - 1, axis=ax).any():
            return True
    return False


def _noise(values: np.ndarray) -> tuple[float, float]:
    """(median, robust sigma) of background values."""
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * 1.4826
    return med, max(mad, 1e-3)


def _component_at(mask: np.ndarray, at: tuple[int, int, int]) -> np.ndarray:
    labels = cc3d.connected_components(mask, connectivity=6)
    lab = labels[at]
    if lab == 0:
        return np.zeros(mask.shape, bool)
    return np.asarray(labels == lab)


def _find_peak(
    smooth: np.ndarray,
    b: np.ndarray,
    local: tuple[int, int, int],
    floor: float,
    search_mm: float,
) -> tuple[int, int, int] | None:
    """Where the lesion clicked at ``local`` peaks: from the seed (or, when the seed does not
    enhance — a click on necrosis or just outside — from the nearest voxel within
    ``search_mm`` that does) uphill on the smoothed map to its local maximum, so the peak is
    the clicked lesion's and not a brighter neighbour's."""
    start = local
    if not (b[local] and smooth[local] >= floor):
        r = int(np.ceil(search_mm))
        near = _box(local, r, smooth.shape)
        sub = (smooth[near] >= floor) & b[near]
        if not sub.any():
            return None
        pts = np.argwhere(sub)
        centre = np.array([lc - n.start for lc, n in zip(local, near, strict=True)])
        d = np.linalg.norm(pts - centre, axis=1)
        if d.min() > search_mm:
            return None
        q = pts[int(np.argmin(d))]
        start = (int(q[0] + near[0].start), int(q[1] + near[1].start), int(q[2] + near[2].start))
    p = start
    for _ in range(200):  # steepest ascent, one voxel at a time
        cube = _box(p, 1, smooth.shape)
        vals = np.where(b[cube], smooth[cube], -np.inf)
        at = np.unravel_index(int(np.argmax(vals)), vals.shape)
        q3 = (int(at[0] + cube[0].start), int(at[1] + cube[1].start), int(at[2] + cube[2].start))
        if smooth[q3] <= smooth[p]:
            break
        p = q3
    return p


def _without_brighter_neighbour(
    region: np.ndarray,
    e: np.ndarray,
    smooth: np.ndarray,
    b: np.ndarray,
    p: tuple[int, int, int],
    start: tuple[int, int, int],
    bg: float,
    level: float,
    floor: float,
) -> np.ndarray:
    """``region`` without a brighter lesion it runs into: when the region holds enhancement
    far stronger (1.5 x above the background) than the clicked lesion's peak, that lesion is
    grown at its own threshold and cut out (with a one-voxel margin), and the part connected
    to the clicked peak is kept. A small lesion next to a large bright one stays small."""
    own = float(smooth[p]) - bg
    vals = np.where(region, smooth, -np.inf)
    top = float(vals.max())
    if own <= 0 or top - bg <= 1.5 * own:
        return region
    at = np.unravel_index(int(np.argmax(vals)), vals.shape)
    q = (int(at[0]), int(at[1]), int(at[2]))
    around = _box(q, 2, e.shape)
    lv = e[around][b[around] & (e[around] >= floor)]
    level_q = float(np.median(lv)) if lv.size else float(e[q])
    other = _component_at((e >= bg + level * (level_q - bg)) & b, q)
    if other[p] or other[start]:
        return region
    cut = region & ~ndimage.binary_dilation(other, _ball(1.0))
    mine = _component_at(cut, start) if cut[start] else np.zeros(region.shape, bool)
    return mine if mine.any() else region


def _enhancing(
    case: CaseImages, seed: tuple[int, int, int], level: float, opts: GrowOptions
) -> tuple[np.ndarray, tuple[slice, slice, slice], tuple[int, int, int], dict[str, float], bool]:
    enh, brain, shape = case.enhancement, case.brain, case.shape
    region = np.zeros((1, 1, 1), bool)
    sl = _box(seed, opts.roi_mm[0], shape)
    peak = seed
    info: dict[str, float] = {}
    touches = False
    for half in opts.roi_mm:
        sl = _box(seed, half, shape)
        e = enh[sl]
        b = brain[sl]
        if not b.any():
            raise NoLesionHere(f"the seed {seed} is outside the brain")
        local = (seed[0] - sl[0].start, seed[1] - sl[1].start, seed[2] - sl[2].start)
        bg, sigma = _noise(e[b])
        floor = bg + opts.min_contrast * sigma
        smooth = case.smooth_enhancement[sl]
        p = _find_peak(smooth, b, local, floor, opts.seed_search_mm)
        if p is None:
            raise NoLesionHere(
                f"no enhancing lesion near {seed}: nothing within {opts.seed_search_mm:g} mm "
                f"stands {opts.min_contrast:g} noise units above its surroundings"
            )
        # the lesion's level: the median of its enhancing voxels just around the peak
        around = _box(p, 2, e.shape)
        vals = e[around][b[around] & (e[around] >= floor)]
        peak_value = float(np.median(vals)) if vals.size else float(e[p])
        contrast = (peak_value - bg) / sigma
        thr = max(bg + level * (peak_value - bg), bg + 2.0 * sigma)
        above = (e >= thr) & b
        start = p
        if not above[p]:  # start from the strongest above-threshold voxel next to the peak
            cube = _box(p, 1, e.shape)
            vals3 = np.where(above[cube], e[cube], -np.inf)
            if not np.isfinite(vals3.max()):
                raise NoLesionHere(f"no enhancing lesion near {seed}")
            a3 = np.unravel_index(int(np.argmax(vals3)), vals3.shape)
            start = (
                int(a3[0] + cube[0].start),
                int(a3[1] + cube[1].start),
                int(a3[2] + cube[2].start),
            )
        region = _component_at(above, start)
        region = _without_brighter_neighbour(region, e, smooth, b, p, start, bg, level, floor)
        peak = (p[0] + sl[0].start, p[1] + sl[1].start, p[2] + sl[2].start)
        info = {"threshold": thr, "background": bg, "sigma": sigma, "contrast": contrast}
        touches = _touches(region, sl, shape)
        if not touches:
            break
    return region, sl, peak, info, touches


def _necrosis(enhancing: np.ndarray) -> np.ndarray:
    """The holes of the enhancing shell (closed by one voxel first, so a rim with small gaps
    still encloses its centre), in 3D and in each axial slice."""
    if not enhancing.any():
        return np.zeros(enhancing.shape, bool)
    pad = np.pad(enhancing, 2)
    closed = ndimage.binary_closing(pad, structure=_ball(1.0))
    filled = ndimage.binary_fill_holes(closed)
    for k in range(filled.shape[2]):  # rims open above or below: fill slice by slice
        filled[:, :, k] |= ndimage.binary_fill_holes(closed[:, :, k])
    holes = filled & ~closed
    # the closing's bridges across a gap belong to the core too, where they border a hole
    bridges = closed & ~pad & ndimage.binary_dilation(holes)
    return np.asarray((holes | bridges)[2:-2, 2:-2, 2:-2] & ~enhancing)


def _whole(
    case: CaseImages,
    core_full_sl: tuple[slice, slice, slice],
    core: np.ndarray,
    level: float,
    opts: GrowOptions,
    others: np.ndarray | None = None,
    enh_threshold: float = np.inf,
) -> tuple[np.ndarray, tuple[slice, slice, slice], dict[str, float]]:
    """The whole tumour (FLAIR) in a box ``whole_max_mm`` around the core's box; ``others``
    (on the core's box): a touching lesion's core, never part of this one's whole tumour."""
    shape = case.shape
    m = opts.whole_max_mm
    sl = tuple(
        slice(max(0, s.start - m), min(n, s.stop + m))
        for s, n in zip(core_full_sl, shape, strict=True)
    )
    sl3 = (sl[0], sl[1], sl[2])
    core_box = np.zeros(tuple(s.stop - s.start for s in sl3), bool)
    inner = tuple(
        slice(c.start - w.start, c.stop - w.start) for c, w in zip(core_full_sl, sl3, strict=True)
    )
    core_box[inner] = core
    other_box = np.zeros(core_box.shape, bool)
    if others is not None:
        other_box[inner] = others
    if case.flair is None:
        return core_box, sl3, {"edema": 0.0}
    f = case.flair[sl3]
    b = case.brain[sl3]
    # the FLAIR just around the core, past the ring of partial volume with the core itself
    from_core = ndimage.distance_transform_edt(~core_box)  # mm from the core
    ring = from_core <= 1.5
    shell = (from_core <= 4.0) & ~ring & b
    if not shell.any():
        return core_box, sl3, {"edema": 0.0}
    peak = float(np.percentile(f[shell], 75))
    bg = 0.0  # the FLAIR is a robust z-score over the brain: its median is 0
    if peak - bg < opts.min_edema_contrast:
        return core_box, sl3, {"edema": 0.0, "flair_peak": peak}
    thr = max(bg + level * (peak - bg), 1.0)
    above = (((f >= thr) & b) | core_box) & ~other_box

    def connected(mask: np.ndarray) -> np.ndarray:
        labels = cc3d.connected_components(mask, connectivity=6)
        keep = np.unique(labels[core_box])
        return np.isin(labels, keep[keep > 0])

    whole = connected(above)
    # edema between this lesion and another enhancing one goes to the nearer core
    e = case.enhancement[sl3]
    others = (e >= enh_threshold) & b & ~ring & whole
    others_l, n_o = cc3d.connected_components(others, connectivity=26, return_N=True)
    if n_o:
        sizes = np.bincount(others_l.ravel())
        big = np.flatnonzero(sizes >= 5)
        big = big[big > 0]
        if big.size:
            # distance to each core in units of that core's radius: edema spreads with the
            # size of the lesion that makes it, so a small lesion inside a large one's edema
            # does not take that edema
            def radius(voxels: float) -> float:
                return max(1.0, float((3.0 * voxels / (4.0 * np.pi)) ** (1.0 / 3.0)))

            d_mine = from_core / radius(float(core_box.sum()))
            kept = np.where(np.isin(others_l, big), others_l, 0)
            d_other, idx = ndimage.distance_transform_edt(kept == 0, return_indices=True)
            nearest = kept[idx[0], idx[1], idx[2]]
            radii = np.array([radius(float(n)) for n in sizes])
            d_other = d_other / radii[nearest]
            whole = connected(whole & (d_mine <= d_other))
    whole = np.asarray(ndimage.binary_fill_holes(whole)) & (b | core_box)
    return whole, sl3, {"edema": 1.0, "flair_peak": peak, "flair_threshold": thr}


def split_core(core: np.ndarray, depth: float = 1.5) -> list[np.ndarray]:
    """``core`` divided into touching lesions: the parts that stay apart when the mask is
    eroded (the distance transform thresholded at rising levels), where each part reaches
    ``depth`` voxels deeper than the level that separates them; every voxel goes to its
    nearest part. One lesion (however irregular, with or without necrosis) stays whole."""
    if not core.any():
        return [core]
    dist = ndimage.distance_transform_edt(np.pad(core, 1))[1:-1, 1:-1, 1:-1]
    top = float(dist.max())
    for t in np.arange(1.0, top - depth + 1e-6, 0.5):
        labels, n = cc3d.connected_components(dist > t, connectivity=26, return_N=True)
        if n < 2:
            continue
        maxes = ndimage.maximum(dist, labels, index=np.arange(1, n + 1))
        deep = [i + 1 for i, mx in enumerate(np.atleast_1d(maxes)) if mx >= t + depth]
        if len(deep) < 2:
            continue
        markers = np.where(np.isin(labels, deep), labels, 0)
        _, idx = ndimage.distance_transform_edt(markers == 0, return_indices=True)
        nearest = markers[idx[0], idx[1], idx[2]]
        return [core & (nearest == d) for d in deep]
    return [core]


def grow_lesion(
    case: CaseImages,
    seed: tuple[int, int, int],
    steps: int = 0,
    options: GrowOptions | None = None,
) -> LesionMasks:
    """One lesion's masks from a seed voxel (see the module docstring); ``steps`` > 0 grows,
    < 0 shrinks. Raises :class:`NoLesionHere` when nothing enhances near the seed."""
    opts = options or GrowOptions()
    shape = case.shape
    seed = (int(seed[0]), int(seed[1]), int(seed[2]))
    if not all(0 <= s < n for s, n in zip(seed, shape, strict=True)):
        raise NoLesionHere(f"the seed {seed} is outside the image {shape}")
    level = float(np.clip(opts.level - steps * opts.step, 0.1, 0.9))
    wlevel = float(np.clip(opts.whole_level - steps * opts.step, 0.1, 0.9))
    region, sl, peak, info, touches = _enhancing(case, seed, level, opts)
    # crop to the lesion's bounding box
    idx = np.argwhere(region)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    tight = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    enh = region[tight]
    nec = _necrosis(enh)
    parts = split_core(enh | nec)
    others = np.zeros(enh.shape, bool)
    if len(parts) > 1:  # touching lesions: keep the one at the peak (or nearest to it)
        local = np.array([p - t.start - s.start for p, t, s in zip(peak, tight, sl, strict=True)])
        local = np.clip(local, 0, np.array(enh.shape) - 1)

        def closeness(part: np.ndarray) -> float:
            return float(np.min(np.linalg.norm(np.argwhere(part) - local, axis=1)))

        mine = min(parts, key=closeness)
        others = (enh | nec) & ~mine
        enh, nec = enh & mine, nec & mine
    core_sl = tuple(
        slice(s.start + t.start, s.start + t.stop) for s, t in zip(sl, tight, strict=True)
    )
    core_sl3 = (core_sl[0], core_sl[1], core_sl[2])
    whole, wsl, winfo = _whole(
        case, core_sl3, enh | nec, wlevel, opts, others, float(info["threshold"])
    )
    # everything in the whole tumour's box
    inner = tuple(
        slice(c.start - w.start, c.stop - w.start) for c, w in zip(core_sl3, wsl, strict=True)
    )
    enh_w = np.zeros(whole.shape, bool)
    nec_w = np.zeros(whole.shape, bool)
    enh_w[inner] = enh
    nec_w[inner] = nec
    return LesionMasks(
        origin=(wsl[0].start, wsl[1].start, wsl[2].start),
        enhancing=enh_w,
        necrosis=nec_w,
        whole=whole | enh_w | nec_w,
        seed=seed,
        peak=peak,
        threshold=info["threshold"],
        background=info["background"],
        contrast=info["contrast"],
        touches_box=touches,
        info={**info, **winfo, "level": level, "whole_level": wlevel},
    )
