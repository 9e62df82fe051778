"""Lesion proposals on phantoms: lesions of several sizes found, a vessel-like tube not
proposed, two touching lesions kept apart, nothing on a lesion-free brain."""

from __future__ import annotations

from phantoms import SHAPE, Phantom, dice

from brainmets.annotate.propose import propose_lesions


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
    ph.lesion((50, 60, 50), radius=6)
    ph.lesion((62, 60, 50), radius=6)  # the two spheres touch
    cands = propose_lesions(ph.case())
    assert len(cands) == 2, [c.as_dict(i) for i, c in enumerate(cands)]
    best = _matches(cands, ph.truth)
    assert all(d > 0.8 for d in best), best


def test_nothing_on_a_brain_without_lesions() -> None:
    assert propose_lesions(Phantom(seed=5).case()) == []
