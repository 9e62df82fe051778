"""Command-line entry for ``brainmets demo-data`` (wired by :mod:`brainmets.cli`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from brainmets.synth.anatomy import TemplateError
from brainmets.synth.cohort import CohortDirError, CohortSummary, generate_cohort


def cohort_table(
    summary: CohortSummary, seconds: float, pseudonym: Callable[[str], str] | None = None
) -> Table:
    """What :func:`generate_cohort` wrote, as a table (``brainmets demo-data`` / ``demo``).

    ``pseudonym``: the workspace's MRN -> patient pseudonym; the expected exclusions are
    then named as the workspace names them (the demo), else by their synthetic MRNs."""
    table = Table(title=f"Synthetic cohort ({summary.template} anatomy, seed {summary.seed})")
    table.add_column("what")
    table.add_column("value")
    table.add_row("patients", str(len(summary.mrns)))
    table.add_row("series / DICOM files", f"{summary.n_series} / {summary.n_files}")
    excluded = [pseudonym(m) for m in summary.excluded] if pseudonym else list(summary.excluded)
    label = "expected exclusions" + (" (pseudonyms)" if pseudonym else " (MRNs)")
    table.add_row(label, ", ".join(excluded) or "none")
    table.add_row("time", f"{seconds:.1f} s")
    return table


def cohort_paths(summary: CohortSummary) -> list[tuple[str, Path]]:
    """Where :func:`generate_cohort` wrote (printed as whole lines, not table cells, so that
    a path copied from an 80-column console is whole)."""
    return [
        ("DICOM export", summary.out_dir / "dicom"),
        ("ground truth", summary.truth_json),
        ("clinical sheet", summary.clinical_sheet),
    ]


def print_cohort(
    console: Console,
    summary: CohortSummary,
    seconds: float,
    pseudonym: Callable[[str], str] | None = None,
) -> None:
    """:func:`cohort_table`, then :func:`cohort_paths` one per line (soft-wrapped)."""
    console.print(cohort_table(summary, seconds, pseudonym))
    for what, path in cohort_paths(summary):
        console.print(f"{what}: {escape(str(path))}", soft_wrap=True, highlight=False)


def run_demo_data(
    out: Path,
    patients: int = 10,
    seed: int = 0,
    workers: int | None = None,
    atlas_dir: Path | None = None,
) -> int:
    """Generate the cohort into `out`; print a short summary (rich); return exit code."""
    console = Console()
    if patients < 1:
        console.print("[red]--patients must be at least 1[/red]")
        return 2
    t0 = time.perf_counter()
    try:
        summary = generate_cohort(Path(out), patients, seed, workers=workers, atlas_dir=atlas_dir)
    except (TemplateError, CohortDirError) as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    print_cohort(console, summary, time.perf_counter() - t0)
    return 0
