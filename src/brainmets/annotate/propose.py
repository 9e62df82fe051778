"""Lesion proposals: candidate enhancing lesions of a case, each with a confidence, so that
small lesions are not missed.

:func:`propose_lesions` (an image-analysis method; a deep-learning proposer can replace it,
see :mod:`brainmets.annotate.proposers`):

1. the enhancement map (T1c - T1, or T1c; robust z inside the brain) is lightly smoothed and
   its local maxima that stand ``min_z`` noise units above the brain's median are the seeds;
2. each seed, strongest first, is grown into a lesion (:func:`~brainmets.annotate.grow.
   grow_lesion`, which keeps touching lesions apart); a seed that falls inside a lesion found
   before is dropped;
3. each lesion is scored by what tells a metastasis from the known false positives: contrast,
   compactness (vessels are tubes: the ratio of the longest to the shortest principal axis),
   depth below the brain's surface (dura, sinuses and cortical vessels lie at the surface) and
   size; the confidence is the product of the four scores, in [0, 1].

Candidates below ``min_confidence`` are dropped. Each :class:`Candidate` keeps its masks, so
accepting it writes them without growing again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from brainmets.annotate.grow import GrowOptions, LesionMasks, NoLesionHere, grow_lesion
from brainmets.annotate.images import SMOOTH_SIGMA, CaseImages

__all__ = ["Candidate", "ProposeOptions", "propose_lesions"]


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
    grow: GrowOptions = GrowOptions()


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
    order = np.argsort(-smooth[peaks])
    return [(int(a), int(b), int(c)) for a, b, c in idx[order]]


def _elongation(mask: np.ndarray) -> float:
    pts = np.argwhere(mask).astype(float)
    if len(pts) < 4:
        return 1.0
    ev = np.linalg.eigvalsh(np.cov(pts.T))
    ev = np.clip(ev, 0.05, None)
    return float(np.sqrt(ev[-1] / ev[0]))


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
        if n < opts.min_voxels or n > opts.max_voxels:
            taken |= core_full
            taken[seed] = True
            continue
        found.append(m)
        taken |= core_full
    depth = ndimage.distance_transform_edt(np.pad(case.brain, 1))[1:-1, 1:-1, 1:-1]
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
        conf = float(np.prod(list(scores.values())))
        scores["elongation"] = elong
        scores["depth_mm"] = d
        if conf < opts.min_confidence:
            continue
        out.append(Candidate(m, c, case.world(c), n, conf, scores))
    out.sort(key=lambda x: -x.confidence)
    return out[: opts.max_candidates]
