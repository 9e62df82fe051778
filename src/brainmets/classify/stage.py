"""The ``classify`` pipeline stage: header index, classification, study selection, inclusion.

For one patient, every de-identified series recorded by ``deid`` is read (headers only,
from the workspace's instance files) and indexed (:mod:`brainmets.classify.header`),
classified study by study (:mod:`brainmets.classify.classifier`), and the pretreatment
study and its four series are chosen (:mod:`brainmets.classify.selection`).

Outputs (in ``data/derivatives/<patient>/classify/``):

* ``selection.json`` (role ``selection``): the rule applied, the chosen study, per class the
  chosen series, why it was preferred, its classification and its image files (what the
  ``convert`` stage converts), and per study which classes it has and lacks;
* ``series.json`` (role ``series``): the header index and classification of every series.

Catalog: each series row gets its index (:class:`brainmets.catalog.IndexedSeries`: header,
classification, ``selected_as`` "t1c" | None, ``selection_why``). A patient without a complete study
is excluded with the reason (``patients.excluded_reason``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pydicom

from brainmets.catalog import Catalog, IndexedSeries, SeriesRow, StudyRow
from brainmets.classify.classifier import (
    CLASSES,
    TARGETS,
    Classification,
    classify_study,
    compile_site_rules,
)
from brainmets.classify.header import SeriesHeader, index_series, is_image, read_headers
from brainmets.classify.selection import (
    DEFAULT_MIN_SLICES,
    Candidate,
    StudyCandidates,
    select_study,
    selection_json,
)
from brainmets.fsutil import atomic_write_text
from brainmets.pipeline.options import option_defaults
from brainmets.pipeline.stage import Stage, StageContext, StageResult


@dataclass(frozen=True)
class ClassifyOptions:
    """The stage parameters (``[stages.classify]``), checked when built.

    Attributes:
        overrides: series UID -> class (t1, t1c, t2, flair, other): a person's decision,
            always applied.
        site_rules: regular expression on SeriesDescription / ProtocolName -> class (first
            match wins).
        treatment_dates: patient ID -> treatment date YYYYMMDD (in the workspace's shifted
            dates); with a date, the last complete study on or before it is chosen, else the
            earliest complete study.
        required: the classes a patient must have in one study to be included.
        min_slices: series with fewer slice positions cannot be chosen (localizer-like slabs).
    """

    overrides: dict[str, str] = field(default_factory=dict)
    site_rules: dict[str, str] = field(default_factory=dict)
    treatment_dates: dict[str, str | int] = field(default_factory=dict)
    required: list[str] = field(default_factory=lambda: list(TARGETS))
    min_slices: int = DEFAULT_MIN_SLICES

    def __post_init__(self) -> None:
        _check_params(dataclasses.asdict(self))


#: Stage parameters (``[stages.classify]``) and their defaults.
DEFAULTS: dict[str, Any] = option_defaults(ClassifyOptions)


def _check_params(params: dict[str, Any]) -> None:
    compile_site_rules(params.get("site_rules"))
    for uid, cls in (params.get("overrides") or {}).items():
        if str(cls).lower() not in CLASSES:
            raise ValueError(
                f"[stages.classify] overrides: {uid} = {cls!r} is not one of {CLASSES}"
            )
    bad = [c for c in params.get("required") or [] if c not in TARGETS]
    if bad or not params.get("required"):
        raise ValueError(f"[stages.classify] required must list classes of {TARGETS}, got {bad}")


def _rows(
    cat: Catalog, patient: str
) -> tuple[list[StudyRow], list[SeriesRow], dict[str, list[str]]]:
    paths: dict[str, list[str]] = defaultdict(list)
    for inst in cat.instances(patient):
        paths[inst.series_uid].append(inst.path)
    return cat.studies(patient), cat.series(patient), paths


def index_patient_series(
    ctx: StageContext, series_rows: list[SeriesRow], paths: dict[str, list[str]]
) -> tuple[dict[str, SeriesHeader], dict[str, list[str]]]:
    """Read every series' instance headers: header index and image-instance paths."""
    headers: dict[str, SeriesHeader] = {}
    images: dict[str, list[str]] = {}
    for row in series_rows:
        uid = row.uid
        read = read_headers(ctx.root / p for p in paths.get(uid, []))
        rel = {str(p): os.path.relpath(p, ctx.root) for p, _ in read}
        headers[uid] = index_series([ds for _, ds in read], uid=uid, study_uid=row.study_uid)
        images[uid] = sorted(rel[str(p)] for p, ds in read if is_image(ds))
    return headers, images


def run_classify(ctx: StageContext) -> StageResult:
    params = ctx.params
    _check_params(params)
    cat = ctx.catalog()
    try:
        studies, series_rows, paths = _rows(cat, ctx.patient_id)
    finally:
        cat.close()
    if not series_rows:
        raise ValueError(
            f"no de-identified series recorded for {ctx.patient_id}; run `brainmets deid`"
        )
    headers, images = index_patient_series(ctx, series_rows, paths)

    classes: dict[str, Classification] = {}
    by_study: dict[str, list[SeriesHeader]] = defaultdict(list)
    for row in series_rows:
        by_study[row.study_uid].append(headers[row.uid])
    for members in by_study.values():
        classes.update(
            classify_study(members, site_rules=params["site_rules"], overrides=params["overrides"])
        )
    for row in series_rows:
        h, c = headers[row.uid], classes[row.uid]
        ctx.info(
            f"series {h.series_number} {h.text!r}: {c.cls} ({c.confidence:.2f}, {c.source}) "
            f"- {c.reason}",
            series=h.uid,
        )

    candidates = {
        uid: Candidate(headers[uid], classes[uid], images.get(uid, [])) for uid in headers
    }
    study_list = [
        StudyCandidates(
            uid=s.uid,
            date=s.study_date,
            time=s.study_time,
            description=s.description,
            series=[candidates[h.uid] for h in by_study.get(s.uid, [])],
        )
        for s in studies
    ]
    treatment = (params.get("treatment_dates") or {}).get(ctx.patient_id)
    sel = select_study(
        ctx.patient_id,
        study_list,
        required=params["required"],
        treatment_date=str(treatment) if treatment else None,
        min_slices=int(params["min_slices"]),
    )
    role_of = {ch.uid: cls for cls, ch in sel.choices.items()}
    why_of = {ch.uid: ch.why for ch in sel.choices.values()}

    doc = selection_json(sel, candidates)
    out_sel = atomic_write_text(ctx.out_dir / "selection.json", json.dumps(doc, indent=1))
    index = [
        {
            "series_uid": uid,
            "study_uid": headers[uid].study_uid,
            "header": headers[uid].to_json(),
            "classification": classes[uid].to_json(),
            "selected_as": role_of.get(uid),
        }
        for uid in headers
    ]
    out_idx = atomic_write_text(ctx.out_dir / "series.json", json.dumps(index, indent=1))

    records = [
        IndexedSeries(
            uid=row.uid,
            study_uid=row.study_uid,
            patient_id=ctx.patient_id,
            header=headers[row.uid].to_json(),
            classification=classes[row.uid].to_json(),
            selected_as=role_of.get(row.uid),
            selection_why=why_of.get(row.uid),
        ).record()
        for row in series_rows
    ]
    counts = {cls: sum(1 for c in classes.values() if c.cls == cls) for cls in CLASSES}
    if sel.excluded:
        ctx.warning(f"excluded: {sel.excluded}")
    else:
        ctx.info(
            f"study {sel.study_date}: "
            + ", ".join(
                f"{cls}=series {candidates[ch.uid].header.series_number}"
                for cls, ch in sel.choices.items()
            )
        )
    return StageResult(
        outputs={"selection": out_sel, "series": out_idx},
        records={"series": records},
        metrics={
            "series": len(series_rows),
            "studies": len(studies),
            **{f"n_{k}": v for k, v in counts.items()},
            "selected_study_date": sel.study_date,
            "min_confidence_selected": min(
                (candidates[ch.uid].classification.confidence for ch in sel.choices.values()),
                default=None,
            ),
        },
        tools={"pydicom": pydicom.__version__},
        exclude=sel.excluded,
    )


STAGE = Stage(
    name="classify",
    func=run_classify,
    scope="patient",
    version="1",
    defaults=DEFAULTS,
    options=ClassifyOptions,
    summary="find the four pretreatment sequences; apply the inclusion rule",
)
