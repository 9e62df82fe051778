"""Lesion proposals on phantoms: lesions of several sizes found, a vessel-like tube not
proposed, two touching lesions kept apart, a left-right pair (the choroid plexus, the carotids)
not proposed, nothing on a lesion-free brain; the Hessian test that tells blobs from tubes
and sheets."""

from __future__ import annotations

import numpy as np
from phantoms import SHAPE, Phantom, dice
from scipy import ndimage

from brainmets.annotate.propose import hessian_eigenvalues, midline, propose_lesions


def _matches(cands, truth) -> list[float]:
    """Best core Dice of each true lesion among the candidates."""
    return [
        max((dice(c.masks.full("core", SHAPE), t["core"]) for c in cands), default=0.0)
        for t in truth
    ]


def test_lesions_found_and_the_vessel_is_not() -> None:
    ph = Phantom(seed=3)
    ph.lesion((45, 45, 50), radius=8, necrosis=4, edema=14)
    ph.lesion((80, 50, 40), radius=4)
    ph.lesion((60, 85, 60), radius=2)  # 4 mm
    ph.vessel((30, 60, 30), axis=2, length=40, radius=1.2)
    cands = propose_lesions(ph.case())
    best = _matches(cands, ph.truth)
    assert all(d > 0.6 for d in best), best
    # nothing along the tube
    for c in cands:
        assert not (abs(c.centre[0] - 30) < 4 and abs(c.centre[1] - 60) < 4), c.as_dict(0)
    assert len(cands) == 3, [c.as_dict(i) for i, c in enumerate(cands)]
    assert all(0 < c.confidence <= 1 for c in cands)


def test_touching_lesions_stay_apart() -> None:
    ph = Phantom(seed=4)
    ph.lesion((40, 60, 50), radius=6)
    ph.lesion((52, 60, 50), radius=6)  # the two spheres touch
    cands = propose_lesions(ph.case())
    assert len(cands) == 2, [c.as_dict(i) for i, c in enumerate(cands)]
    best = _matches(cands, ph.truth)
    assert all(d > 0.8 for d in best), best


def test_nothing_on_a_brain_without_lesions() -> None:
    assert propose_lesions(Phantom(seed=5).case()) == []


def test_a_left_right_pair_is_anatomy_not_lesions() -> None:
    ph = Phantom(seed=6)
    assert midline(ph.case()) is not None
    axis, c = midline(ph.case())  # type: ignore[misc]
    assert axis == 0 and abs(c - 60) < 0.5
    ph.lesion((40, 62, 45), radius=3)  # a pair at mirror positions, like the choroid plexus
    ph.lesion((80, 62, 45), radius=3)
    ph.lesion((45, 30, 60), radius=3)  # a lesion whose mirror position is normal brain
    cands = propose_lesions(ph.case())
    assert len(cands) == 1, [c.as_dict(i) for i, c in enumerate(cands)]
    assert dice(cands[0].masks.full("core", SHAPE), ph.truth[2]["core"]) > 0.8
    assert cands[0].scores["symmetry"] == 1.0


def test_the_hessian_tells_a_blob_from_a_tube_and_a_sheet() -> None:
    g = np.ogrid[:41, :41, :41]
    blob = np.exp(-sum((a - 20.0) ** 2 for a in g) / 8.0)
    tube = np.exp(-((g[0] - 20.0) ** 2 + (g[1] - 20.0) ** 2) / 8.0) * np.ones((1, 1, 41))
    sheet = np.exp(-((g[0] - 20.0) ** 2) / 8.0) * np.ones((1, 41, 41))
    at = np.array([[20, 20, 20]])
    for img, negative in ((blob, 3), (tube, 2), (sheet, 1)):
        ev = hessian_eigenvalues(ndimage.gaussian_filter(img, 1.0), at)[0]
        assert int((ev < -1e-3 * abs(ev[0])).sum()) == negative, (negative, ev)
