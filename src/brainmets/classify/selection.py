"""Study selection (the hanging protocol) and the inclusion rule.

**Pretreatment study.** Per patient, the studies are ordered by date and time. A study is
*complete* when each required class (default ``t1``, ``t1c``, ``t2``, ``flair``) has at
least one eligible series (classified as that class, with at least ``min_slices`` slice
positions). Without a treatment date the **earliest complete study** is chosen; with one
(``treatment_dates`` parameter, in the workspace's shifted dates) the **last complete study
on or before the treatment date** (a radiosurgery planning MRI is often acquired the morning
of treatment). Series of different studies are never combined.

**Inclusion rule.** A patient without such a study is excluded, with the reason naming what
each study lacks.

**Competing series.** When several series of the chosen study have the same class, they are
ranked by, in order:

1. a manual override naming that class (a person chose it);
2. classification confidence of at least 0.5 before lower;
3. original before derived (Image Type value 1);
4. 3D before 2D acquisitions;
5. thinner slices (slice thickness, else spacing; 0.1 mm steps);
6. axial before sagittal / coronal;
7. higher classification confidence (for ``t1c``: the series acquired after the agent with
   the most direct evidence of it);
8. more slice positions (coverage);
9. the lower series number (deterministic tie-break).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from brainmets.classify.classifier import TARGETS, Classification
from brainmets.classify.header import SeriesHeader

DEFAULT_MIN_SLICES = 10


@dataclass
class Candidate:
    """One classified series of a study, with the image files that make it."""

    header: SeriesHeader
    classification: Classification
    instances: list[str] = field(default_factory=list)  # workspace-relative paths

    @property
    def uid(self) -> str:
        return self.header.uid


@dataclass
class StudyCandidates:
    """A study and its classified series."""

    uid: str
    date: str | None
    time: str | None
    description: str | None
    series: list[Candidate]


@dataclass
class Choice:
    """The series chosen for one class and why."""

    cls: str
    uid: str
    why: str
    runners_up: list[str] = field(default_factory=list)


@dataclass
class Selection:
    """The outcome for one patient: the chosen study and series, or the exclusion reason."""

    patient_id: str
    study_uid: str | None = None
    study_date: str | None = None
    rule: str = ""
    choices: dict[str, Choice] = field(default_factory=dict)
    studies: list[dict[str, Any]] = field(default_factory=list)
    excluded: str | None = None


def _thickness(h: SeriesHeader) -> float:
    t = h.slice_thickness or h.spacing_between_slices
    return round(t, 1) if t else 99.0


def _derived(h: SeriesHeader) -> bool:
    return bool(h.image_type) and h.image_type[0].upper() == "DERIVED"


def _positions(h: SeriesHeader) -> int:
    return h.n_positions or h.n_frames or h.n_instances


def rank_key(c: Candidate) -> tuple[Any, ...]:
    """Sort key implementing the ranking of the module docstring (smaller is better)."""
    h, k = c.header, c.classification
    return (
        k.source != "manual override",
        k.confidence < 0.5,
        _derived(h),
        h.mr_acquisition_type != "3D",
        _thickness(h),
        h.orientation != "axial",
        -k.confidence,
        -_positions(h),
        h.series_number if h.series_number is not None else 1 << 30,
        h.uid,
    )


def describe_series(h: SeriesHeader) -> str:
    """A short human description: ``series 7 't1_mprage' 3D 1.0 mm sagittal original``."""
    parts = [f"series {h.series_number}" if h.series_number is not None else "series ?"]
    parts.append(repr(h.description or h.protocol_name or "(no description)"))
    parts.append(h.mr_acquisition_type or "?D")
    t = h.slice_thickness or h.spacing_between_slices
    parts.append(f"{t:g} mm" if t else "? mm")
    parts.append(h.orientation or "?")
    parts.append("derived" if _derived(h) else "original")
    return " ".join(parts)


def _why(best: Candidate, others: Sequence[Candidate]) -> str:
    h = best.header
    why = describe_series(h) + f", confidence {best.classification.confidence:.2f}"
    if best.classification.source == "manual override":
        why += ", chosen by a manual override"
    if not others:
        return why + "; the only candidate"
    o = others[0].header
    a, b = rank_key(best), rank_key(others[0])
    reasons = [
        "manual override",
        "higher classification confidence",
        "original rather than derived",
        "3D rather than 2D",
        "thinner slices",
        "axial",
        "higher classification confidence",
        "more slices",
        "lower series number",
        "series UID order",
    ]
    decisive = next((reasons[i] for i in range(len(a)) if a[i] != b[i]), "equal")
    return why + f"; preferred over {describe_series(o)} ({decisive})"


def eligible(c: Candidate, cls: str, min_slices: int) -> bool:
    return c.classification.cls == cls and _positions(c.header) >= min_slices


def select_study(
    patient_id: str,
    studies: Sequence[StudyCandidates],
    *,
    required: Sequence[str] = TARGETS,
    treatment_date: str | None = None,
    min_slices: int = DEFAULT_MIN_SLICES,
) -> Selection:
    """Choose the pretreatment study and its series (see the module docstring)."""
    required = list(required)
    ordered = sorted(studies, key=lambda s: (s.date or "99999999", s.time or "", s.uid))
    sel = Selection(patient_id)
    complete: list[StudyCandidates] = []
    for st in ordered:
        have = {cls: [c for c in st.series if eligible(c, cls, min_slices)] for cls in TARGETS}
        too_short = sorted(
            {
                c.classification.cls
                for c in st.series
                if c.classification.cls in TARGETS
                and not eligible(c, c.classification.cls, min_slices)
            }
        )
        missing = [cls for cls in required if not have[cls]]
        sel.studies.append(
            {
                "uid": st.uid,
                "date": st.date,
                "time": st.time,
                "description": st.description,
                "series": len(st.series),
                "classes": {cls: [c.uid for c in have[cls]] for cls in TARGETS},
                "missing": missing,
                "too_few_slices": too_short,
            }
        )
        if not missing:
            complete.append(st)
    td = (treatment_date or "").replace("-", "").strip() or None
    if td:
        before = [st for st in complete if (st.date or "") and (st.date or "") <= td]
        chosen = before[-1] if before else None
        sel.rule = (
            f"last study with all of {', '.join(required)} on or before the treatment date {td}"
        )
    else:
        chosen = complete[0] if complete else None
        sel.rule = f"earliest study with all of {', '.join(required)}"
    if chosen is None:
        sel.excluded = _exclusion_reason(sel, required, td, bool(complete))
        return sel
    sel.study_uid, sel.study_date = chosen.uid, chosen.date
    for cls in TARGETS:
        cands = sorted((c for c in chosen.series if eligible(c, cls, min_slices)), key=rank_key)
        if not cands:
            continue
        sel.choices[cls] = Choice(
            cls, cands[0].uid, _why(cands[0], cands[1:]), [c.uid for c in cands[1:]]
        )
    return sel


def _exclusion_reason(
    sel: Selection, required: Sequence[str], td: str | None, any_complete: bool
) -> str:
    if not sel.studies:
        return "no MR study"
    need = ", ".join(required)
    if td and any_complete:
        dates = ", ".join(str(s["date"]) for s in sel.studies if not s["missing"])
        return (
            f"no study with all of {need} on or before the treatment date {td} (complete: {dates})"
        )
    parts = []
    for s in sel.studies:
        what = f"lacks {', '.join(s['missing'])}"
        if s["too_few_slices"]:
            what += f" (too few slices: {', '.join(s['too_few_slices'])})"
        parts.append(f"study {s['date'] or '?'} {s['description'] or ''}".rstrip() + f" {what}")
    return f"no study with all of {need}: " + "; ".join(parts)


def selection_json(sel: Selection, candidates: Mapping[str, Candidate]) -> dict[str, Any]:
    """The ``selection.json`` document: the choice, why, and the files of each series."""
    chosen = {}
    for cls, ch in sel.choices.items():
        c = candidates[ch.uid]
        chosen[cls] = {
            "series_uid": ch.uid,
            "series_number": c.header.series_number,
            "description": c.header.description,
            "why": ch.why,
            "classification": c.classification.to_json(),
            "runners_up": ch.runners_up,
            "instances": c.instances,
        }
    return {
        "patient": sel.patient_id,
        "rule": sel.rule,
        "study_uid": sel.study_uid,
        "study_date": sel.study_date,
        "excluded": sel.excluded,
        "selected": chosen,
        "studies": sel.studies,
    }
