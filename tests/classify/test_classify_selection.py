"""Study selection, competing series and the inclusion rule."""

from __future__ import annotations

from brainmets.classify.classifier import Classification
from brainmets.classify.header import SeriesHeader
from brainmets.classify.selection import Candidate, StudyCandidates, rank_key, select_study


def cand(uid: str, cls: str, conf: float = 0.9, **kw: object) -> Candidate:
    h: dict[str, object] = {
        "uid": uid,
        "series_number": int(uid[-1]) if uid[-1].isdigit() else 1,
        "description": uid,
        "mr_acquisition_type": "2D",
        "slice_thickness": 5.0,
        "orientation": "axial",
        "n_positions": 24,
        "image_type": ["ORIGINAL", "PRIMARY"],
    }
    h.update(kw)
    return Candidate(SeriesHeader(**h), Classification(uid, cls, conf, "test"), [f"{uid}.dcm"])  # type: ignore[arg-type]


def study(uid: str, date: str, *series: Candidate) -> StudyCandidates:
    return StudyCandidates(uid, date, "0800", f"study {uid}", list(series))


def full(prefix: str) -> list[Candidate]:
    return [cand(f"{prefix}{c}", c) for c in ("t1", "t1c", "t2", "flair")]


def test_the_earliest_complete_study_is_chosen() -> None:
    a = study("A", "20200101", *full("a")[:3])  # lacks FLAIR
    b = study("B", "20200301", *full("b"))
    c = study("C", "20200901", *full("c"))
    sel = select_study("P", [c, a, b])
    assert sel.excluded is None and sel.study_uid == "B"
    assert {k: v.uid for k, v in sel.choices.items()} == {
        "t1": "bt1",
        "t1c": "bt1c",
        "t2": "bt2",
        "flair": "bflair",
    }
    assert sel.studies[0]["missing"] == ["flair"]


def test_a_treatment_date_chooses_the_last_complete_study_on_or_before_it() -> None:
    studies = [study("B", "20200301", *full("b")), study("C", "20200901", *full("c"))]
    assert select_study("P", studies, treatment_date="20200901").study_uid == "C"
    assert select_study("P", studies, treatment_date="2020-08-31").study_uid == "B"
    sel = select_study("P", studies, treatment_date="20200101")
    assert sel.study_uid is None
    assert "on or before the treatment date 20200101" in (sel.excluded or "")


def test_patients_without_all_four_are_excluded_with_the_reason() -> None:
    sel = select_study("P", [study("A", "20200101", *full("a")[:2], cand("x", "other"))])
    assert sel.excluded is not None
    assert "lacks t2, flair" in sel.excluded and "20200101" in sel.excluded
    assert select_study("P", []).excluded == "no MR study"
    # a short slab does not count
    short = [cand(f"s{c}", c, n_positions=4) if c == "t2" else cand(f"s{c}", c)
             for c in ("t1", "t1c", "t2", "flair")]  # fmt: skip
    sel = select_study("P", [study("S", "20200101", *short)])
    assert "lacks t2 (too few slices: t2)" in (sel.excluded or "")
    assert select_study("P", [study("S", "20200101", *short)], min_slices=3).excluded is None


def test_competing_series_are_ranked_by_the_documented_rules() -> None:
    two_d = cand("c2", "t1c", mr_acquisition_type="2D", slice_thickness=5.0)
    three_d = cand("c3", "t1c", mr_acquisition_type="3D", slice_thickness=1.0,
                   orientation="sagittal")  # fmt: skip
    derived = cand("c4", "t1c", mr_acquisition_type="3D", slice_thickness=1.0,
                   image_type=["DERIVED", "SECONDARY"])  # fmt: skip
    unsure = cand("c5", "t1c", conf=0.3, mr_acquisition_type="3D", slice_thickness=0.8)
    ranked = sorted([two_d, three_d, derived, unsure], key=rank_key)
    assert [c.uid for c in ranked] == ["c3", "c2", "c4", "c5"]  # original before 3D
    thin = cand("t6", "t2", slice_thickness=3.0, orientation="coronal")
    thick = cand("t7", "t2", slice_thickness=5.0)
    ax = cand("t8", "t2", slice_thickness=3.0)
    assert [c.uid for c in sorted([thick, thin, ax], key=rank_key)] == ["t8", "t6", "t7"]
    override = cand("t9", "t2", slice_thickness=6.0)
    override.classification.source = "manual override"
    assert sorted([ax, override], key=rank_key)[0].uid == "t9"

    sel = select_study(
        "P", [study("A", "20200101", two_d, three_d, *full("a")[:1], *full("a")[2:])]
    )
    choice = sel.choices["t1c"]
    assert choice.uid == "c3" and choice.runners_up == ["c2"]
    assert "3D rather than 2D" in choice.why
