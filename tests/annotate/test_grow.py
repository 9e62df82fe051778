"""Click-to-segment on phantoms: a rim-enhancing lesion with a necrotic centre and edema, a
small solid lesion, grow / shrink, a click on the necrosis, a click on nothing."""

from __future__ import annotations

import pytest
from phantoms import SHAPE, Phantom, dice

from brainmets.annotate.grow import NoLesionHere, grow_lesion


def test_rim_lesion_with_necrosis_and_edema() -> None:
    ph = Phantom()
    ph.lesion((60, 60, 50), radius=9, necrosis=5, edema=16)
    case = ph.case()
    t = ph.truth[0]
    for seed in ((60, 60, 50), (67, 60, 50), (60, 52, 52)):  # centre (necrosis), rim, rim
        m = grow_lesion(case, seed)
        assert dice(m.full("core", SHAPE), t["core"]) > 0.9, seed
        assert dice(m.full("enhancing", SHAPE), t["enhancing"]) > 0.85, seed
        assert dice(m.full("necrosis", SHAPE), t["necrosis"]) > 0.8, seed
        assert dice(m.full("whole", SHAPE), t["whole"]) > 0.85, seed
        assert not m.touches_box


def test_small_solid_lesion_and_steps() -> None:
    ph = Phantom(seed=1)
    ph.lesion((40, 70, 45), radius=2.5)
    case = ph.case(blur=0.8)
    m = grow_lesion(case, (40, 70, 45))
    assert dice(m.full("core", SHAPE), ph.truth[0]["core"]) > 0.7
    assert m.counts()["necrosis"] == 0
    bigger = grow_lesion(case, (40, 70, 45), steps=3)
    smaller = grow_lesion(case, (40, 70, 45), steps=-3)
    assert smaller.counts()["core"] <= m.counts()["core"] <= bigger.counts()["core"]
    assert smaller.counts()["core"] < bigger.counts()["core"]


def test_a_click_on_plain_brain_finds_nothing() -> None:
    ph = Phantom(seed=2)
    ph.lesion((40, 40, 50), radius=5)
    case = ph.case()
    with pytest.raises(NoLesionHere):
        grow_lesion(case, (80, 80, 50))
    with pytest.raises(NoLesionHere):
        grow_lesion(case, (2, 2, 2))  # outside the brain


def test_a_click_deep_in_a_large_necrosis_finds_the_rim() -> None:
    ph = Phantom(seed=6)
    ph.lesion((60, 60, 50), radius=14, necrosis=10)
    m = grow_lesion(ph.case(blur=0.8), (60, 60, 50))  # 10 mm from the enhancing rim
    assert dice(m.full("core", SHAPE), ph.truth[0]["core"]) > 0.9
    assert dice(m.full("necrosis", SHAPE), ph.truth[0]["necrosis"]) > 0.85


def test_a_small_faint_lesion_beside_a_large_bright_one_stays_small() -> None:
    ph = Phantom(seed=7)
    ph.lesion((50, 60, 50), radius=9)
    ph.t1c[ph.truth[0]["enhancing"]] = 200.0  # brighter than the small one
    ph.lesion((63, 60, 50), radius=2.2)  # 2 mm from the large one
    ph.t1c[ph.truth[1]["enhancing"]] = 140.0
    case = ph.case(blur=0.8)
    small = grow_lesion(case, (63, 60, 50))
    assert dice(small.full("core", SHAPE), ph.truth[1]["core"]) > 0.6, small.counts()
    large = grow_lesion(case, (50, 60, 50))
    assert dice(large.full("core", SHAPE), ph.truth[0]["core"]) > 0.9
