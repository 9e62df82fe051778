"""The ``report`` pipeline stage (cohort scope): the dataset descriptor.

Reads the catalog (read-only) and the recorded outputs of every patient, and writes into
``data/derivatives/_cohort/report/``: ``report.html`` (self-contained: CSS inline, figures
embedded), ``report.md`` (figures in ``figures/``), ``tables/*.csv`` and ``figures/*.png``.
Parameters: :data:`brainmets.cohort.document.DEFAULTS`. See ``docs/report_export.md``.

A workspace made from the synthetic cohort (its ``truth.json`` found by
:func:`brainmets.report.truth.find_truth`) gets the section "Check against the synthetic
truth" (``tables/truth_check.csv``, ``tables/truth_check_targets.csv``).
"""

from __future__ import annotations

from typing import Any

from brainmets.cohort import (
    DEFAULTS,
    build_document,
    clinical_for,
    cohort_for,
    report_metrics,
    sheet_path,
    write_document,
)
from brainmets.cohort.patient_figures import TEMPLATE_FILE
from brainmets.cohort.review import review_inputs
from brainmets.config import Config
from brainmets.pipeline.inputs import InputContext, describe_atlas, describe_file
from brainmets.pipeline.options import options_class
from brainmets.pipeline.stage import Stage, StageContext, StageResult
from brainmets.report.evaluations import evaluation_section, find_evaluations
from brainmets.report.truth import (
    TRUTH_FILE,
    find_truth,
    truth_check,
    truth_section,
    workspace_sources,
)

#: 2: larger patient figures, lesion montages, registration figures, truth check, input
#: files, Table 1 with T1/T2 and more parameters, clinical_problems always (issue 18)
VERSION = "2"

#: the stage parameters (``[stages.report]``, :data:`brainmets.cohort.document.DEFAULTS`)
#: as a typed options object, each parameter typed by its default
ReportOptions = options_class("ReportOptions", DEFAULTS, doc="The report stage's parameters.")


def run_report(ctx: StageContext) -> StageResult:
    params = {**DEFAULTS, **ctx.params}
    cohort = cohort_for(ctx.root, ctx.config, params)
    clinical = clinical_for(ctx.root, params, cohort)
    if clinical is not None and clinical.problems:
        errors = sum(1 for x in clinical.problems if x[2] == "error")
        ctx.warning(
            f"clinical sheet {clinical.source}: {errors} error(s), "
            f"{len(clinical.problems) - errors} warning(s) (rows, columns and effects: the "
            "report's Clinical sheet problems, tables/clinical_problems.csv)"
        )
    try:
        check = truth_check(ctx.root, ctx.config, params)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged truth: no section
        ctx.warning(f"no check against the synthetic truth: {type(exc).__name__}: {exc}")
        check = None
    extra = [] if check is None else [truth_section(check)]
    kept = find_evaluations(Config(root=ctx.root, data=ctx.config))
    section, unreadable = evaluation_section(kept)
    for name in unreadable:
        ctx.warning(f"evaluation {name}: not readable as a brainmets evaluation; left out")
    if section is not None:
        extra.append(section)
    doc = build_document(
        cohort,
        params,
        clinical,
        atlas_dir=Config(root=ctx.root, data=ctx.config).atlas_dir,
        extra_sections=extra,
    )
    written = write_document(doc, ctx.out_dir)
    ctx.info(f"report: {written['html']}")
    metrics = report_metrics(cohort, doc)
    if check is not None:
        metrics["truth_check"] = "met" if check.ok else "not met"
        ctx.info(f"check against the synthetic truth: targets {metrics['truth_check']}")
    return StageResult(outputs=written, metrics=metrics, tools=_tools())


def _tools() -> dict[str, str]:
    import matplotlib

    return {"matplotlib": matplotlib.__version__}


def _fingerprint_inputs(inp: InputContext) -> Any:
    """What the report reads from outside the pipeline: the clinical sheet
    (``clinical_sheet``: its path and content hash, missing / unreadable when so), unless
    ``qc_figures = "none"`` the SRI24 template of the registration figures, the synthetic
    cohort's ``truth.json`` when found, the review states (:func:`brainmets.cohort.
    review.review_inputs`) and the evaluations kept in the workspace; None when there is
    none of them."""
    out: dict[str, Any] = {}
    path = sheet_path(inp.root, inp.params.get("clinical_sheet") or "")
    if path is not None:
        out["clinical_sheet"] = describe_file(path)
    if inp.params.get("qc_figures", DEFAULTS["qc_figures"]) != "none":
        out["template"] = describe_atlas([TEMPLATE_FILE], inp.config.atlas_dir)
    sources = workspace_sources(inp.workspace.config.data)
    truth = find_truth(inp.root, sources, inp.params.get("synthetic_truth"))
    if truth is not None:
        out["synthetic_truth"] = describe_file(truth / TRUTH_FILE)
    review = review_inputs(inp.catalog, inp.config.data)
    if review is not None:
        out["review"] = review
    evaluations = find_evaluations(inp.config)
    if evaluations:
        out["evaluations"] = {p.parent.name: describe_file(p) for p in evaluations}
    return out or None


STAGE = Stage(
    name="report",
    func=run_report,
    scope="cohort",
    version=VERSION,
    defaults=DEFAULTS,
    options=ReportOptions,
    summary="dataset descriptor: cohort flow, Table 1, scanners, lesions, figures, QC",
    fingerprint_inputs=_fingerprint_inputs,
    tools=_tools,
)
