"""Plain functions behind ``brainmets features --collection DIR`` and ``brainmets compare A B``
(wired by :mod:`brainmets.cli`). Each returns the process exit code: 0 success / identical,
1 some case failed / the workbooks differ. Bad arguments raise ``ValueError`` or
``FileNotFoundError`` (the CLI turns them into exit code 2)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from brainmets.cohort.clinical import ClinicalTable, Problem, load_clinical, problems_csv
from brainmets.cohort.workbook import write_workbook
from brainmets.fsutil import atomic_write_text
from brainmets.ids import normalise_id
from brainmets.lesions.analysis import FeatureParams
from brainmets.lesions.collection import CollectionResult, analyse_collection, find_cases
from brainmets.lesions.compare import compare_workbooks


def _print_problems(console: Console, problems: list[Problem], limit: int = 40) -> None:
    if not problems:
        return
    table = Table(title=f"clinical sheet: {len(problems)} problem(s)", show_edge=False)
    for c in ("row", "column", "value", "severity", "message"):
        table.add_column(c)
    for p in problems[:limit]:
        style = "red" if p.severity == "error" else "yellow"
        table.add_row(str(p.row), p.column, p.value, f"[{style}]{p.severity}[/]", p.message)
    console.print(table)
    if len(problems) > limit:
        console.print(f"... {len(problems) - limit} more (see the problems CSV)")


def run_collection(
    collection_dir: Path,
    out_xlsx: Path,
    clinical: Path | None = None,
    workers: int | None = None,
    params: Mapping[str, Any] | None = None,
    atlas_dir: Path | None = None,
    check_images: bool = True,
    console: Console | None = None,
) -> int:
    """Recompute every feature of the published collection and write the dataset workbook.

    ``clinical``: optional sheet keyed by ``BraTS_MET_ID`` (e.g. the published
    ``..._clin_YYYYMMDD.xlsx``) whose clinical columns are carried over (validated). Problems
    are printed and written beside the workbook as ``<name>.problems.csv``.
    """
    console = console or Console()
    fp = FeatureParams.from_mapping(params)
    cases = find_cases(collection_dir)
    if not cases:
        raise ValueError(f"{collection_dir}: no BraTS-MET-XXXXX-NNN case folders found")
    t0 = time.perf_counter()
    done = 0

    def progress(_: CollectionResult) -> None:
        nonlocal done
        done += 1
        if done % 25 == 0 or done == len(cases):
            console.print(f"analysed {done}/{len(cases)} cases", highlight=False)

    results = analyse_collection(cases, fp, atlas_dir, workers, check_images, progress)
    elapsed = time.perf_counter() - t0
    table: ClinicalTable | None = None
    if clinical is not None:
        table = load_clinical(clinical, key_column="BraTS_MET_ID")
        _print_problems(console, table.problems)
    feats: dict[str, Any] = {}
    lesions: dict[str, Any] = {}
    ids: dict[str, int | str] = {}
    failed: list[CollectionResult] = []
    notes: list[str] = []
    for r in results:
        key = normalise_id(r.workbook_id)
        ids[key] = r.workbook_id
        if r.error is not None:
            failed.append(r)
            feats[key] = None
            continue
        assert r.analysis is not None
        feats[key] = r.analysis.features
        lesions[key] = r.analysis.lesions
        notes += [f"{r.case_id}: {n}" for n in r.notes]
    placements = {r.analysis.placement.mode for r in results if r.analysis and r.analysis.placement}
    write_workbook(
        out_xlsx,
        feats,
        lesions,
        table,
        ids=ids,
        params=fp.as_dict(),
        provenance={
            "source": f"collection {Path(collection_dir).name}",
            "cases": len(cases),
            "cases failed": [r.case_id for r in failed],
            "atlas placement": sorted(placements),
            "clinical sheet": clinical.name if clinical else "",
            "analysis seconds": round(elapsed, 2),
        },
    )
    if table is not None and table.problems:
        atomic_write_text(Path(out_xlsx).with_suffix(".problems.csv"), problems_csv(table.problems))
    n_array = sum(
        1
        for r in results
        if r.analysis and r.analysis.placement and r.analysis.placement.mode == "array"
    )
    if n_array:
        console.print(
            f"{n_array} case(s) placed on the atlas by array index: their headers do not put "
            "them on SRI24 in world coordinates (the BraTS collection layout)",
            highlight=False,
        )
    for n in notes[:20]:
        console.print(f"[dim]{n}[/]", highlight=False)
    if len(notes) > 20:
        console.print(f"[dim]... {len(notes) - 20} more notes[/]")
    for r in failed:
        console.print(f"[red]failed[/] {r.case_id}: {r.error}", highlight=False)
    console.print(
        f"{len(cases) - len(failed)}/{len(cases)} cases analysed in {elapsed:.1f} s; "
        f"workbook: {out_xlsx}",
        highlight=False,
    )
    return 1 if failed else 0


def run_compare(
    a: Path,
    b: Path,
    tolerance: float = 1e-6,
    columns: list[str] | None = None,
    max_rows: int = 200,
    console: Console | None = None,
) -> int:
    """Print the per-patient differences between two workbooks; 0 when identical."""
    console = console or Console()
    cmp = compare_workbooks(a, b, columns, tolerance)
    console.print(
        f"A: {a}\nB: {b}\n{len(cmp.common)} patient(s) in both, {len(cmp.only_a)} only in A, "
        f"{len(cmp.only_b)} only in B; {len(cmp.columns)} column(s) compared "
        f"(tolerance {tolerance:g})",
        highlight=False,
    )
    if cmp.only_a:
        console.print(f"only in A: {', '.join(cmp.only_a[:50])}", highlight=False)
    if cmp.only_b:
        console.print(f"only in B: {', '.join(cmp.only_b[:50])}", highlight=False)
    for label, cols in (("A", cmp.columns_only_a), ("B", cmp.columns_only_b)):
        if cols:
            console.print(
                f"columns only in {label} (not compared): {', '.join(cols)}", highlight=False
            )
    if cmp.differences:
        table = Table(title=f"{len(cmp.differences)} difference(s)", show_edge=False)
        for c in ("patient", "column", "A", "B", "B - A"):
            table.add_column(c, justify="right" if c in ("A", "B", "B - A") else "left")
        for d in cmp.differences[:max_rows]:
            delta = d.delta
            table.add_row(
                d.patient, d.column, _fmt(d.a), _fmt(d.b), "" if delta is None else f"{delta:+.6g}"
            )
        console.print(table)
        if len(cmp.differences) > max_rows:
            console.print(f"... {len(cmp.differences) - max_rows} more")
        by_col = ", ".join(f"{c} {n}" for c, n in cmp.by_column().items())
        console.print(f"differences per column: {by_col}", highlight=False)
    if cmp.identical:
        console.print("[green]identical[/] (within the tolerance)")
        return 0
    return 1


def _fmt(v: Any) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
