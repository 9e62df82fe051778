"""Plain functions behind ``brainmets classify --evaluate`` and ``--set SERIES=CLASS``.

The command-line wiring lives in :mod:`brainmets.cli`; these functions do the work and
return an exit code (or raise ``ValueError`` / ``KeyError`` for a usage error, which the
CLI turns into one line and exit code 2).
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.console import Console
from rich.table import Table

from brainmets.classify.classifier import CLASSES
from brainmets.classify.evaluation import (
    Evaluation,
    evaluate_real,
    evaluate_rows,
    load_evaluation_set,
)
from brainmets.shared import ENV_SHARED, env_shared_dir
from brainmets.workspace import Workspace

#: value of ``--set UID=auto``: remove a manual override
AUTO = "auto"


def confusion_table(ev: Evaluation) -> Table:
    """A rich table: rows are true classes, columns predicted classes."""
    table = Table(
        title=f"{ev.name}: {ev.correct}/{ev.total} correct ({100 * ev.accuracy:.1f} %)",
        show_lines=False,
    )
    table.add_column("true \\ predicted", style="bold")
    for c in CLASSES:
        table.add_column(c, justify="right")
    table.add_column("n", justify="right", style="dim")
    table.add_column("sensitivity", justify="right")
    table.add_column("PPV", justify="right")
    stats = ev.per_class()
    for t in CLASSES:
        cells = []
        for p in CLASSES:
            n = ev.matrix[t][p]
            cells.append(f"[green]{n}[/]" if t == p and n else (f"[red]{n}[/]" if n else "."))
        sens, ppv = stats[t]
        table.add_row(
            t,
            *cells,
            str(sum(ev.matrix[t].values())),
            "-" if math.isnan(sens) else f"{sens:.3f}",
            "-" if math.isnan(ppv) else f"{ppv:.3f}",
        )
    return table


def print_evaluation(ev: Evaluation, console: Console) -> None:
    console.print(confusion_table(ev))
    for what, true, pred, why in ev.errors:
        console.print(f"  [red]{true} -> {pred}[/] {what}: {why}", highlight=False)


def run_evaluate(
    evaluation_set: Path | None = None,
    dicom_dir: Path | None = None,
    console: Console | None = None,
) -> int:
    """Print the confusion matrices of the evaluation set and of the real test series.

    The real series are read from ``dicom_dir``, else from ``$BRAINMETS_SHARED/testdata/dicom``
    (the shared test data); with neither, or when the folder is missing, that part is skipped
    with a message saying so. Returns 0 (the matrices are the evidence; misclassifications are
    listed, not fatal).
    """
    console = console or Console()
    print_evaluation(evaluate_rows(load_evaluation_set(evaluation_set)), console)
    shared = env_shared_dir()
    if dicom_dir is not None:
        dicom = dicom_dir
    elif shared is not None:
        dicom = shared / "testdata" / "dicom"
    else:
        console.print(
            f"[yellow]real test series skipped: set {ENV_SHARED} to the shared data folder "
            "(the one holding testdata/dicom) to evaluate them[/]"
        )
        return 0
    if dicom.is_dir():
        print_evaluation(evaluate_real(dicom), console)
    else:
        console.print(f"[yellow]real test series not found at {dicom}; skipped[/]")
    return 0


def set_override(workspace_root: Path, series_uid: str, cls: str) -> None:
    """Record a manual class for a series: ``[stages.classify] overrides = {uid = "t1c"}``.

    ``cls`` is one of t1, t1c, t2, flair, other, or ``auto`` to remove the override. The
    overrides are a stage parameter, so the next run re-classifies (and re-runs the stages
    after ``classify``). The UID is the de-identified SeriesInstanceUID as in the catalog.
    """
    cls = cls.strip().lower()
    if cls not in (*CLASSES, AUTO):
        raise ValueError(f"unknown class {cls!r}; use one of {', '.join(CLASSES)} or {AUTO}")
    ws = Workspace.open(workspace_root)
    with ws.catalog(readonly=True) as cat:
        known = cat.has_series(series_uid)
    if not known:
        raise KeyError(
            f"no series {series_uid!r} in this workspace (the de-identified SeriesInstanceUID, "
            "as listed in data/derivatives/<patient>/classify/series.json)"
        )
    with ws.lock():
        stages = ws.config.data.setdefault("stages", {})
        table = stages.setdefault("classify", {})
        overrides = dict(table.get("overrides") or {})
        if cls == AUTO:
            overrides.pop(series_uid, None)
        else:
            overrides[series_uid] = cls
        table["overrides"] = overrides
        ws.config.save()


def parse_assignment(text: str) -> tuple[str, str]:
    """``"UID=t1c"`` -> ``("UID", "t1c")`` (for ``--set``)."""
    uid, sep, cls = text.partition("=")
    if not sep or not uid.strip() or not cls.strip():
        raise ValueError(f"--set expects SERIES_UID=CLASS, got {text!r}")
    return uid.strip(), cls.strip()
