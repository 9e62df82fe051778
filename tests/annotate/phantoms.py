"""Phantoms for the annotation tools: a head-sized brain with lesions, a vessel, noise."""

from __future__ import annotations

import numpy as np

from brainmets.annotate.images import CaseImages

SHAPE = (120, 120, 100)
CENTRE = (60, 60, 50)


def _dist(centre: tuple[float, float, float], shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    g = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return np.sqrt(sum((a - c) ** 2 for a, c in zip(g, centre, strict=True)))


class Phantom:
    """Build a case: T1, T1c, FLAIR with Gaussian noise; lesions added one by one; the truth
    (enhancing, necrosis, whole) kept per lesion."""

    def __init__(self, seed: int = 0, noise: float = 4.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.brain = _dist(CENTRE) <= 50
        base = np.where(self.brain, 100.0, 0.0)
        self.t1 = base.copy()
        self.t1c = base.copy()
        self.flair = base.copy()
        self.noise = noise
        self.truth: list[dict[str, np.ndarray]] = []

    def lesion(
        self, centre: tuple[int, int, int], radius: float, necrosis: float = 0.0, edema: float = 0.0
    ) -> int:
        d = _dist(centre)
        core = d <= radius
        nec = d <= necrosis if necrosis else np.zeros(SHAPE, bool)
        enh = core & ~nec
        whole = (d <= edema) | core if edema else core.copy()
        self.t1c[enh] = 170.0
        self.t1c[nec] = 80.0
        self.t1[core] = 85.0
        self.flair[whole & ~core] = 160.0
        self.flair[core] = 140.0
        self.truth.append({"enhancing": enh, "necrosis": nec, "core": core, "whole": whole})
        return len(self.truth)

    def vessel(self, start: tuple[int, int, int], axis: int, length: int, radius: float) -> None:
        g = np.indices(SHAPE)
        other = [a for a in range(3) if a != axis]
        d = np.sqrt(sum((g[a] - start[a]) ** 2 for a in other))
        along = (g[axis] >= start[axis]) & (g[axis] < start[axis] + length)
        tube = (d <= radius) & along & self.brain
        self.t1c[tube] = 170.0

    def case(self, blur: float = 0.0) -> CaseImages:
        """The images with noise; ``blur`` (mm): partial volume at the edges, as a scanner's
        point-spread function makes it."""
        from scipy import ndimage

        def noisy(a: np.ndarray) -> np.ndarray:
            if blur:
                a = ndimage.gaussian_filter(a, blur)
            return np.where(self.brain, a + self.rng.normal(0, self.noise, SHAPE), 0.0)

        return CaseImages.from_arrays(
            noisy(self.t1c), self.brain, noisy(self.t1), noisy(self.flair)
        )


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0
