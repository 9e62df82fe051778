"""The ``export`` pipeline stage (cohort scope): write the dataset in a layout, with its
checksums, and check the result.

Parameters: :data:`brainmets.export.layouts.DEFAULTS` (``[stages.export]``). The clinical
sheet, the report's figure choices and the inclusion rule are the ``report`` stage's
(``[stages.report]``), so the export and the report always describe the same patients.

Writes the export to ``out`` (default ``<[paths] exports>/<layout>``), and into its own folder
``data/derivatives/_cohort/export/``: ``export.json`` (layout, destination, IDs scheme,
counts, manifest hash) and, for ``ids = "brats"``, ``ids.json`` (the stable pseudonym ->
number table; never exported). After writing, a ``collection`` or ``nnunet`` export is
validated (:mod:`brainmets.export.validate`); an error fails the stage. Each export is
recorded in the catalog's ``exports`` table (folder, layout, time, manifest hash, and the
status and fingerprint of every other stage run it was made from), so that ``brainmets
validate`` can tell when the workspace has changed since (a stale export).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from brainmets.catalog import utcnow
from brainmets.cohort import DEFAULTS as REPORT_DEFAULTS
from brainmets.cohort import clinical_for, cohort_for, scanners, table1
from brainmets.cohort.review import review_inputs
from brainmets.config import Config
from brainmets.export.ids import IDS_FILE, SCHEMES, assign_ids, load_numbers, numbers_json
from brainmets.export.layouts import (
    DEFAULTS,
    LAYOUTS,
    ExportError,
    ExportJob,
    check_destination,
    export_target,
    run_layout,
)
from brainmets.export.manifest import MANIFEST_NAME
from brainmets.fsutil import atomic_write_text, sha256_file
from brainmets.pipeline.inputs import InputContext
from brainmets.pipeline.options import options_class
from brainmets.pipeline.stage import Stage, StageContext, StageResult
from brainmets.pipeline.states import runs_snapshot

#: 2: each export is recorded in the catalog (`exports`); 3: the report's tables include
#: clinical_problems (and issue 18's other tables)
VERSION = "3"


def _check_options(opts: Any) -> None:
    if opts.layout not in LAYOUTS:
        raise ExportError(f"layout must be one of {LAYOUTS}, not {opts.layout!r}")
    if opts.ids not in SCHEMES:
        raise ExportError(f"ids must be one of {SCHEMES}, not {opts.ids!r}")


#: the stage parameters (``[stages.export]``, :data:`brainmets.export.layouts.DEFAULTS`) as a
#: typed options object, each parameter typed by its default
ExportOptions = options_class(
    "ExportOptions", DEFAULTS, check=_check_options, doc="The export stage's parameters."
)


def export_out(root: Path, config: dict[str, Any], params: dict[str, Any]) -> Path:
    """The export's ``out`` folder (parameter, else ``<[paths] exports>/<layout>``)."""
    cfg = Config(root=root, data=config)
    value = str(params.get("out") or "").strip()
    if not value:
        return cfg.path("exports") / str(params["layout"])
    p = Path(value).expanduser()
    return (p if p.is_absolute() else root / p).resolve()


def run_export(ctx: StageContext) -> StageResult:
    params = {**DEFAULTS, **ctx.params}
    layout = str(params["layout"])
    if layout not in LAYOUTS:
        raise ExportError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if params["ids"] not in SCHEMES:
        raise ExportError(f"ids must be one of {SCHEMES}, not {params['ids']!r}")
    cfg = Config(root=ctx.root, data=ctx.config)
    report_params = {**REPORT_DEFAULTS, **cfg.stage_params("report", REPORT_DEFAULTS)}
    cohort = cohort_for(ctx.root, ctx.config, report_params)
    included = [p.id for p in cohort.included]
    if not included:
        # not an error of this stage: the patients' earlier stages decide (brainmets status)
        ctx.warning(
            f"no patient is included ({len(cohort.found)} found): nothing exported; "
            "see the report's cohort flow"
            + (" (require_review: only approved cases)" if cohort.review.require_review else "")
        )
        summary0 = {"layout": layout, "target": "", "patients": 0, "files": 0}
        out0 = atomic_write_text(ctx.out_dir / "export.json", json.dumps(summary0, indent=1))
        return StageResult(outputs={"summary": out0}, metrics=summary0)
    ids_path = ctx.out_dir / IDS_FILE
    table = assign_ids(
        included, str(params["ids"]), load_numbers(ids_path), int(params["id_start"])
    )
    clinical = clinical_for(ctx.root, report_params, cohort)
    out = export_out(ctx.root, ctx.config, params)
    target = export_target(out, layout, params)
    check_destination(target, ctx.root, cfg.path("private"))
    job = ExportJob(
        root=ctx.root,
        cohort=cohort,
        ids=table,
        params=params,
        report_params=report_params,
        clinical_rows=clinical.rows if clinical is not None else None,
        clinical_source=clinical.source if clinical is not None else "",
        clinical_problems=list(clinical.problems) if clinical is not None else [],
        acquisition_tables=[scanners(cohort), table1(cohort)],
        log=ctx.info,
        atlas_dir=cfg.atlas_dir,
    )
    outputs: dict[str, Path] = {}
    if table.scheme == "brats":  # before writing: a number once shown is never given again
        outputs["ids"] = atomic_write_text(ids_path, numbers_json(table))
    result = run_layout(job, layout, target)
    problems: list[str] = []
    if layout in ("collection", "nnunet"):
        from brainmets.export.validate import validate

        rep = validate(target)
        for p in rep.problems:
            if p.severity == "warning":
                ctx.warning(str(p))
            else:
                ctx.log("ERROR", str(p))
        problems = [str(p) for p in rep.errors]
        if problems:
            raise ExportError(
                f"the export in {target} does not validate: " + "; ".join(problems[:5])
            )
    manifest = target / MANIFEST_NAME
    summary = {
        "layout": layout,
        "target": str(target),
        "ids": table.scheme,
        "header": params["header"],
        "patients": len(result.patients),
        "files": result.files,
        "placed": result.placed,
        "manifest_sha256": sha256_file(manifest),
        "not_included": len(cohort.not_included),
        "left_out_by_review": sum(1 for p in cohort.patients if p.stopped_stage == "review"),
        "require_review": cohort.review.require_review,
    }
    outputs["summary"] = atomic_write_text(
        ctx.out_dir / "export.json", json.dumps(summary, indent=1)
    )
    try:
        manifest.resolve().relative_to(ctx.root.resolve())
        outputs["manifest"] = manifest  # inside the workspace: a deleted export is redone
    except ValueError:
        pass
    ctx.info(
        f"export {layout}: {len(result.patients)} patient(s), {result.files} file(s) -> {target}"
    )
    return StageResult(
        outputs=outputs,
        records={"exports": [_export_record(ctx, target, layout, summary)]},
        metrics={k: v for k, v in summary.items() if k not in ("placed",)},
        tools=_tools(),
    )


def _export_record(
    ctx: StageContext, target: Path, layout: str, summary: dict[str, Any]
) -> dict[str, Any]:
    """The ``exports`` row of this export: the folder, and every other stage run as it is
    now (status, fingerprint), which ``brainmets validate`` compares with the workspace's
    later state to tell whether the folder is still current."""
    from brainmets.export.validate import target_key

    cat = ctx.catalog()
    try:
        runs = cat.stage_runs()
    finally:
        cat.close()
    return {
        "target": target_key(ctx.root, target),
        "stage": ctx.stage,
        "layout": layout,
        "exported_at": utcnow(),
        "run_id": ctx.run_id,
        "patients": int(summary["patients"]),
        "manifest_sha256": summary["manifest_sha256"],
        "stage_runs_json": runs_snapshot(runs, ctx.stage),
    }


def _fingerprint_inputs(inp: InputContext) -> Any:
    """What the export reads from outside the pipeline: the review states
    (:func:`brainmets.cohort.review.review_inputs`; None without any review)."""
    return review_inputs(inp.catalog, inp.config.data)


def _tools() -> dict[str, str]:
    import highdicom
    import nibabel

    return {"nibabel": nibabel.__version__, "highdicom": highdicom.__version__}


STAGE = Stage(
    name="export",
    func=run_export,
    scope="cohort",
    version=VERSION,
    defaults=DEFAULTS,
    options=ExportOptions,
    summary="write the dataset: collection / nnU-Net / DICOM-SEG layouts with checksums",
    fingerprint_inputs=_fingerprint_inputs,
    tools=_tools,
)
