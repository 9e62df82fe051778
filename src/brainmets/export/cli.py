"""Plain functions behind ``brainmets export`` and ``brainmets validate`` (the CLI module
parses options and calls these; they print and return the exit code)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from brainmets.export.validate import ValidationReport, check_current, validate

EXIT_OK, EXIT_FAILED = 0, 1


def print_validation(rep: ValidationReport, console: Console | None = None) -> None:
    """Every problem on its own line, then the summary."""
    console = console or Console()
    for p in rep.problems:
        style = "red" if p.severity == "error" else "yellow"
        console.print(f"[{style}]{p.severity}[/] {p.path}: {p.message}", highlight=False)
    mark = "[green]valid[/]" if rep.ok else "[red]not valid[/]"
    if rep.ok and rep.changes:
        mark = "[yellow]valid but stale[/]"
    console.print(f"{mark}: {rep.summary()}", highlight=False)


def run_validate(
    path: Path,
    console: Console | None = None,
    workspace: Path | None = None,
    allow_stale: bool = False,
) -> int:
    """``brainmets validate DIR``: 0 when the dataset has no error (warnings allowed), 1 when
    it has, 2 when ``DIR`` is not a folder.

    An export folder of a workspace (``workspace``, or the one that holds ``DIR``) is also
    compared with it: a stale export (the workspace changed since) is an error, or a warning
    with ``allow_stale`` (:func:`brainmets.export.validate.check_current`)."""
    console = console or Console()
    if not Path(path).is_dir():
        console.print(f"[red]error:[/] {path} is not a folder", highlight=False)
        return 2
    rep = check_current(validate(path), workspace, allow_stale)
    print_validation(rep, console)
    return EXIT_OK if rep.ok else EXIT_FAILED


def export_command(
    workspace_root: Path,
    layout: str | None = None,
    out: Path | None = None,
    console: Console | None = None,
    **params: object,
) -> int:
    """``brainmets export``: run the export stage now (forced), with ``layout`` / ``out`` /
    other export parameters overriding ``[stages.export]`` for this run only (the
    configuration file is not changed). Holds the workspace lock. Returns 0 on success, 1
    when the export failed (the reason is printed)."""
    from brainmets.catalog import COHORT
    from brainmets.pipeline import InlineExecutor, Runner, load_pipeline
    from brainmets.workspace import Workspace

    console = console or Console(stderr=True)
    ws = Workspace.open(workspace_root)
    if layout:
        ws.config.set_stage_param("export", "layout", layout)
    if out is not None:
        ws.config.set_stage_param("export", "out", str(Path(out).expanduser().resolve()))
    for k, v in params.items():
        if v is not None:
            ws.config.set_stage_param("export", k, v)
    pipeline = load_pipeline(ws.config.data["runner"]["pipeline"])
    pipeline.get("export")  # KeyError (usage) for a pipeline without it
    with ws.lock():
        ws.checked_key(command="export")  # as every run: another key is refused (exit 3)
        runner = Runner(ws, pipeline, InlineExecutor(), console=console)
        summary = runner.run(["export"], force=["export"])
    failed = [(st, msg) for _pid, st, msg in summary.failures if st == "export"]
    for st, msg in failed:
        console.print(f"[red]failed[/] {st}: {msg}", highlight=False)
    if failed or summary.count("export", "done") != 1:
        return EXIT_FAILED
    if summary.blocked:  # patients whose earlier stages are not done: not in the dataset
        console.print(
            f"[yellow]{len(summary.blocked)} patient(s) whose earlier stages did not finish are "
            "not in the export[/] (brainmets status)",
            highlight=False,
        )
    cat = ws.catalog(readonly=True)
    try:
        outs = cat.stage_outputs(COHORT, "export")
    finally:
        cat.close()
    if "summary" in outs:
        doc = json.loads((ws.root / outs["summary"][0]).read_text())
        if not doc.get("patients"):
            console.print("[red]nothing exported[/]: no patient is included (brainmets status)")
            return EXIT_FAILED
        console.print(
            f"[green]exported[/] {doc['layout']}: {doc['patients']} patient(s), "
            f"{doc['files']} file(s) -> {doc['target']}",
            highlight=False,
        )
        if doc.get("left_out_by_review"):
            console.print(
                f"[yellow]{doc['left_out_by_review']} case(s) left out by the review[/] ("
                + ("not approved or " if doc.get("require_review") else "")
                + "excluded by a reviewer; reasons: the report's cohort flow, brainmets status)",
                highlight=False,
            )
    return EXIT_OK
