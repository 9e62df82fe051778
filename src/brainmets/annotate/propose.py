"""Lesion proposals: candidate enhancing lesions of a case, each with a confidence, so that
small lesions are not missed.

:func:`propose_lesions` (an image-analysis method; a deep-learning proposer can replace it,
see :mod:`brainmets.annotate.proposers`):

1. the enhancement map (T1c - T1, or T1c; robust z inside the brain) is lightly smoothed and
   its local maxima that stand ``min_z`` noise units above the brain's median are the
   candidate seeds. A seed is kept only where the enhancement is a *blob* at one of the
   scales ``blob_scales`` (the Hessian of the Gaussian-smoothed map has three negative
   eigenvalues, the smallest at least ``blob_ratio`` of the largest): vessels are tubes (one
   eigenvalue near 0) and the dura, the falx and the sinuses' walls are sheets (two near 0),
   so the thousands of maxima along them on a real image never start a lesion. The centres
   of large rim-enhancing (cystic, necrotic) lesions, where the map does not peak, are found
   as maxima of the scale-normalised Laplacian of Gaussian at ``ring_scales``;
2. each seed, strongest first, is grown into a lesion (:func:`~brainmets.annotate.grow.
   grow_lesion`, which keeps touching lesions apart); a seed that falls inside a lesion found
   before is dropped, and so is a lesion that still reaches the border of a 44 mm search box
   (what leaks that far along its threshold is a network of vessels);
3. each lesion is scored by what tells a metastasis from the known false positives: contrast,
   compactness (vessels are tubes: the ratio of the longest to the shortest principal axis),
   depth below the brain's surface (dura, sinuses and cortical vessels lie at the surface) and
   size, compactness (the core's share of the sphere spanning its largest extent: a vessel
   tree's threshold region is a few percent of it, a lesion, solid or rim-enhancing, most of
   it), and symmetry: the choroid plexus, the internal carotid arteries, the cavernous and
   sigmoid sinuses come in left-right pairs, a metastasis almost never does, so a lesion
   whose mirror image across the mid-sagittal plane (the grid is the atlas's, so the plane is
   the brain's own ``i = c``, :func:`midline`) is a structure of about its size that enhances
   as strongly as itself scores 0. The
   confidence is the product of the six scores, in [0, 1].

Candidates below ``min_confidence`` are dropped. Each :class:`Candidate` keeps its masks, so
accepting it writes them without growing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np
from scipy import ndimage

from brainmets.annotate.grow import GrowOptions, LesionMasks, NoLesionHere, grow_lesion
from brainmets.annotate.images import SMOOTH_SIGMA, CaseImages

__all__ = ["Candidate", "ProposeOptions", "hessian_eigenvalues", "midline", "propose_lesions"]


@dataclass(frozen=True)
class ProposeOptions:
    """Parameters of :func:`propose_lesions`."""

    min_z: float = 4.0  # seed: smoothed enhancement this many noise units above the median
    smooth_mm: float = 0.7  # Gaussian smoothing of the enhancement map before seeding
    min_voxels: int = 4  # smaller lesions are dropped (a 2 mm sphere has 33 voxels)
    max_voxels: int = 200_000
    max_elongation: float = 4.0  # longest / shortest principal axis at which shape scores 0
    surface_mm: float = 4.0  # depth below the brain surface at which depth scores 1
    min_confidence: float = 0.2
    max_candidates: int = 60
    blob_scales: tuple[float, ...] = (1.0, 2.0, 3.5, 6.0)  # Gaussian sigmas (voxels)
    blob_ratio: float = 0.3  # smallest / largest Hessian eigenvalue for a blob
    ring_scales: tuple[float, ...] = (6.0, 9.0)  # LoG sigmas for rim-enhancing lesions
    # mirror enhancement / own enhancement at which symmetry scores 1 (below) and 0 (above)
    symmetry: tuple[float, float] = (0.4, 0.8)
    compactness: tuple[float, float] = (0.05, 0.2)  # fill at which compactness scores 0, 1
    symmetry_slack: int = 3  # voxels the mirror image may be off (anatomy is not exact)
    # a lesion still touching a 44 mm search box is a vessel network, not a lesion
    grow: GrowOptions = GrowOptions(roi_mm=(16, 28, 44))


@dataclass
class Candidate:
    """A proposed lesion: its masks, where it is, how big, and why it is believed."""

    masks: LesionMasks
    centre: tuple[float, float, float]  # voxel
    centre_mm: tuple[float, float, float]
    voxels: int  # core voxels (1 mm: mm^3)
    confidence: float
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self, n: int) -> dict[str, object]:
        return {
            "id": n,
            "centre_voxel": [round(c, 1) for c in self.centre],
            "centre_mm": [round(c, 1) for c in self.centre_mm],
            "peak_voxel": list(self.masks.peak),
            "volume_voxels": self.voxels,
            "confidence": round(self.confidence, 3),
            "scores": {k: round(v, 3) for k, v in self.scores.items()},
        }


def hessian_eigenvalues(smooth: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The eigenvalues (ascending) of the Hessian of ``smooth`` at ``points`` (an ``(n, 3)``
    array of voxels), by central differences; points on the border are clipped inward."""
    if len(points) == 0:
        return np.zeros((0, 3))
    shape = np.array(smooth.shape)
    p = np.clip(points, 1, shape - 2)
    unit = np.eye(3, dtype=int)

    def at(offset: np.ndarray) -> np.ndarray:
        q = p + offset
        return smooth[q[:, 0], q[:, 1], q[:, 2]].astype(np.float64)

    centre = at(np.zeros(3, int))
    h = np.empty((len(p), 3, 3))
    for a in range(3):
        h[:, a, a] = at(unit[a]) - 2 * centre + at(-unit[a])
        for b in range(a + 1, 3):
            d = at(unit[a] + unit[b]) - at(unit[a] - unit[b])
            d -= at(unit[b] - unit[a]) - at(-unit[a] - unit[b])
            h[:, a, b] = h[:, b, a] = d / 4.0
    return np.asarray(np.linalg.eigvalsh(h))


def _is_blob(eig: np.ndarray, ratio: float) -> np.ndarray:
    """Which Hessian eigenvalue triples (ascending) describe a bright blob."""
    return np.asarray((eig[:, 2] < 0) & (np.abs(eig[:, 2]) >= ratio * np.abs(eig[:, 0])))


def _seeds(case: CaseImages, opts: ProposeOptions) -> list[tuple[int, int, int]]:
    enh = case.enhancement
    brain = case.brain
    if opts.smooth_mm == SMOOTH_SIGMA:
        smooth = case.smooth_enhancement
    else:
        smooth = ndimage.gaussian_filter(enh, opts.smooth_mm) if opts.smooth_mm else enh
    vals = smooth[brain]
    med = float(np.median(vals))
    sigma = float(np.median(np.abs(vals - med))) * 1.4826 or 1.0
    thr = med + opts.min_z * sigma
    peaks = (smooth == ndimage.maximum_filter(smooth, size=3)) & (smooth >= thr) & brain
    idx = np.argwhere(peaks)
    strength = smooth[peaks]
    if opts.blob_scales and len(idx):
        blob = np.zeros(len(idx), bool)
        for s in opts.blob_scales:
            g = ndimage.gaussian_filter(enh, s)
            blob |= _is_blob(hessian_eigenvalues(g, idx), opts.blob_ratio)
        idx, strength = idx[blob], strength[blob]
    seeds = [tuple(int(x) for x in v) for v in idx[np.argsort(-strength)]]
    # the centres of rim-enhancing lesions: blobs of the LoG at large scales, after the peaks
    ring: list[tuple[float, tuple[int, int, int]]] = []
    for s in opts.ring_scales:
        log = -(s**2) * ndimage.gaussian_laplace(enh, s)
        lv = log[brain]
        lmed = float(np.median(lv))
        lsig = float(np.median(np.abs(lv - lmed))) * 1.4826 or 1.0
        at = (log == ndimage.maximum_filter(log, size=5)) & (log >= lmed + opts.min_z * lsig)
        at &= brain
        for v in np.argwhere(at):
            ring.append((float(log[tuple(v)]), (int(v[0]), int(v[1]), int(v[2]))))
    ring.sort(key=lambda x: -x[0])
    return [(a, b, c) for a, b, c in seeds] + [v for _, v in ring]


def _elongation(mask: np.ndarray) -> float:
    pts = np.argwhere(mask).astype(float)
    if len(pts) < 4:
        return 1.0
    ev = np.linalg.eigvalsh(np.cov(pts.T))
    ev = np.clip(ev, 0.05, None)
    return float(np.sqrt(ev[-1] / ev[0]))


def midline(case: CaseImages) -> tuple[int, float] | None:
    """The mid-sagittal plane of a case on an atlas-aligned grid: the left-right axis (the
    grid axis most aligned with world x) and the brain's centre along it, or None when no
    axis is clearly left-right."""
    direction = np.abs(np.asarray(case.affine, float)[:3, :3])
    direction /= np.linalg.norm(direction, axis=0, keepdims=True) + 1e-12
    axis = int(np.argmax(direction[0]))
    if direction[0, axis] < 0.9 or not case.brain.any():
        return None
    profile = case.brain.sum(axis=tuple(a for a in range(3) if a != axis)).astype(float)
    return axis, float((profile * np.arange(profile.size)).sum() / profile.sum())


def _mirror_ratio(
    case: CaseImages, m: LesionMasks, plane: tuple[int, float] | None, slack: int
) -> float:
    """How strongly the mirror image of a lesion's core enhances, as a fraction of the core's
    own enhancement, when the mirror image is a structure of about the lesion's size (half to
    twice its volume above the lesion's threshold): a left-right pair. 0 without a
    mid-sagittal plane, for a lesion that reaches the midline, and when the mirror image is
    normal brain or a structure of another size (a lesion that happens to lie across the
    midline from a larger or smaller one is not anatomy)."""
    if plane is None:
        return 0.0
    axis, c = plane
    smooth = case.smooth_enhancement
    pts = np.argwhere(m.core) + np.array(m.origin)
    own = float(np.median(smooth[pts[:, 0], pts[:, 1], pts[:, 2]]))
    mirrored = pts.copy()
    mirrored[:, axis] = np.round(2 * c - pts[:, axis]).astype(int)
    n = case.shape[axis]
    if own <= 0 or mirrored[:, axis].min() < 0 or mirrored[:, axis].max() >= n:
        return 0.0
    if np.abs(pts[:, axis] - c).min() <= slack:  # reaches the midline: its own mirror
        return 0.0
    extent = int((pts.max(axis=0) - pts.min(axis=0)).max()) + 1
    margin = slack + extent
    lo = np.maximum(mirrored.min(axis=0) - margin, 0)
    hi = np.minimum(mirrored.max(axis=0) + margin + 1, np.array(case.shape))
    sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    box = smooth[sl]
    near = ndimage.maximum_filter(box, size=2 * slack + 1)
    q = mirrored - lo
    ratio = float(np.median(near[q[:, 0], q[:, 1], q[:, 2]])) / own
    # the structure there: what stands above the lesion's own threshold, touching its mirror
    spot = np.zeros(box.shape, bool)
    spot[q[:, 0], q[:, 1], q[:, 2]] = True
    spot = ndimage.binary_dilation(spot, iterations=slack)
    labels = cc3d.connected_components((case.enhancement[sl] >= m.threshold) & case.brain[sl])
    keep = np.unique(labels[spot])
    there = np.isin(labels, keep[keep > 0])
    if not there.any():
        return 0.0
    for ax in range(3):  # runs out of the box: far larger than the lesion
        if there.take(0, axis=ax).any() and lo[ax] > 0:
            return 0.0
        if there.take(there.shape[ax] - 1, axis=ax).any() and hi[ax] < case.shape[ax]:
            return 0.0
    size = float(there.sum()) / len(pts)
    return ratio if 0.5 <= size <= 2.0 else 0.0


def propose_lesions(case: CaseImages, options: ProposeOptions | None = None) -> list[Candidate]:
    """Candidate lesions of a case, most confident first (see the module docstring)."""
    opts = options or ProposeOptions()
    shape = case.shape
    seeds = _seeds(case, opts)
    taken = np.zeros(shape, bool)
    found: list[LesionMasks] = []
    for seed in seeds:
        if taken[seed]:
            continue
        try:
            m = grow_lesion(case, seed, options=opts.grow)
        except NoLesionHere:
            continue
        core_full = m.full("core", shape)
        n = int(core_full.sum())
        if n and int((core_full & taken).sum()) > 0.5 * n:  # found before, from another seed
            taken[seed] = True
            continue
        if n < opts.min_voxels or n > opts.max_voxels or m.touches_box:
            taken |= core_full
            taken[seed] = True
            continue
        found.append(m)
        taken |= core_full
    depth = ndimage.distance_transform_edt(np.pad(case.brain, 1))[1:-1, 1:-1, 1:-1]
    plane = midline(case)
    lo_sym, hi_sym = opts.symmetry
    out: list[Candidate] = []
    for m in found:
        core = m.core
        n = int(core.sum())
        c = m.centroid()
        ci = tuple(int(round(x)) for x in c)
        d = float(depth[ci]) if case.brain[ci] else 0.0
        elong = _elongation(core)
        scores = {
            "contrast": float(np.clip((m.contrast - 3.0) / 5.0, 0.0, 1.0)),
            "shape": float(
                np.clip((opts.max_elongation - elong) / (opts.max_elongation - 1.5), 0.0, 1.0)
            ),
            "depth": float(np.clip(d / opts.surface_mm, 0.0, 1.0)),
            "size": float(np.clip(n / 14.0, 0.0, 1.0)),  # 14 voxels: a 3 mm sphere
        }
        idx = np.argwhere(core)
        extent = float((idx.max(axis=0) - idx.min(axis=0) + 1).max())
        fill = n / (np.pi / 6.0 * extent**3)
        c0, c1 = opts.compactness
        scores["compactness"] = float(np.clip((fill - c0) / (c1 - c0), 0.0, 1.0))
        mirror = _mirror_ratio(case, m, plane, opts.symmetry_slack)
        scores["symmetry"] = float(np.clip((hi_sym - mirror) / (hi_sym - lo_sym), 0.0, 1.0))
        conf = float(np.prod(list(scores.values())))
        scores["elongation"] = elong
        scores["depth_mm"] = d
        scores["mirror_ratio"] = mirror
        scores["fill"] = fill
        if conf < opts.min_confidence:
            continue
        out.append(Candidate(m, c, case.world(c), n, conf, scores))
    out.sort(key=lambda x: -x.confidence)
    return out[: opts.max_candidates]
