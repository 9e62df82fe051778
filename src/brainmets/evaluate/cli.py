"""``brainmets evaluate``: print and write an evaluation (called by :mod:`brainmets.cli`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from brainmets.evaluate.output import summary_rows, write_csv_dir, write_json
from brainmets.evaluate.predict import PredictionError, dataset_folders, run_prediction
from brainmets.evaluate.run import Evaluation, evaluate_folders
from brainmets.evaluate.sizes import DEFAULT_BINS, size_breakdown
from brainmets.labelmaps import parse_mapping

#: the metrics shown in the terminal summary, per definition
HEADLINE = {
    "brats2023": ("LesionWise_Score_Dice", "LesionWise_Score_HD95", "Legacy_Dice", "Num_FN"),
    "brats2025": (
        "lesionwise_dsc_mean",
        "lesionwise_nsd_mean",
        "lesionwise_hd95_mean",
        "all_instance_f1",
        "global_dsc",
    ),
}


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.4g}"


def print_evaluation(ev: Evaluation, console: Console, bins: Sequence[float]) -> None:
    heads = HEADLINE.get(ev.definition, ())
    rows = {(r["region"], r["metric"]): r for r in summary_rows(ev)}
    regions = list(dict.fromkeys(r for c in ev.cases for r in c.metrics))
    table = Table(title=f"{ev.definition}: mean (median) over {len(ev.cases)} case(s)")
    table.add_column("region")
    for h in heads:
        table.add_column(h, justify="right")
    for region in regions:
        cells = []
        for h in heads:
            r = rows.get((region, h))
            cells.append(f"{_fmt(r['mean'])} ({_fmt(r['median'])})" if r else "-")
        table.add_row(region, *cells)
    console.print(table)
    sizes = Table(title="detection by lesion size (sphere-equivalent diameter)")
    for col in ("region", "size", "lesions", "found", "sensitivity", "FP/case", "median Dice"):
        sizes.add_column(col, justify="right" if col not in ("region", "size") else "left")
    for b in size_breakdown(ev.cases, bins):
        if b.n_ref == 0 and b.n_fp == 0:
            continue
        sizes.add_row(
            b.region,
            b.label,
            str(b.n_ref),
            str(b.n_detected),
            _fmt(b.sensitivity),
            _fmt(b.fp_per_case),
            _fmt(b.median_dice),
        )
    console.print(sizes)
    for cid, msg in ev.errors.items():
        console.print(f"[red]not evaluated[/red] {cid}: {msg}")
    for p in ev.pairing.unpaired_ref:
        console.print(f"[yellow]no prediction[/yellow] for reference {p}")
    for p in ev.pairing.unpaired_pred:
        console.print(f"[yellow]no reference[/yellow] for prediction {p}")
    for msg in ev.pairing.problems:
        console.print(f"[yellow]skipped[/yellow] {msg}")
    console.print(f"{ev.accounted}; {ev.seconds:.1f} s with {ev.workers} worker(s)")


def evaluate_command(
    pred: Path,
    ref: Path,
    definition_name: str,
    json_out: Path | None,
    csv_dir: Path | None,
    workers: int,
    label_mapping: str | None,
    probability_dir: Path | None,
    bins: Sequence[float] = DEFAULT_BINS,
    console: Console | None = None,
    keep: Path | None = None,
) -> int:
    """Evaluate, print, write; exit code 0 when every file was paired and evaluated, else 1.

    ``keep``: a folder (``Config.evaluations_dir / NAME``) to keep the evaluation in for the
    workspace's report: the metrics, the detail and the CSV tables, with no folder path."""
    console = console or Console(stderr=True)
    mapping = parse_mapping(label_mapping) if label_mapping else None
    ev = evaluate_folders(
        pred, ref, definition_name, workers=workers, mapping=mapping,
        probability_dir=probability_dir,
    )  # fmt: skip
    print_evaluation(ev, console, bins)
    if json_out is not None:
        write_json(ev, json_out, bins)
        console.print(f"wrote {json_out} (and its .detail.json)")
    if csv_dir is not None:
        for p in write_csv_dir(ev, csv_dir, bins):
            console.print(f"wrote {p}")
    if keep is not None:
        keep_evaluation(ev, keep, bins, pred, ref)
        console.print(f"kept in the workspace as {keep.name!r} ({keep}); the report shows it")
    incomplete = ev.errors or ev.pairing.unpaired_ref or ev.pairing.unpaired_pred
    return 1 if incomplete or ev.pairing.problems else 0


def keep_evaluation(
    ev: Evaluation, folder: Path, bins: Sequence[float], pred: Path, ref: Path
) -> None:
    """Write the evaluation into ``folder`` (replacing one of the same name), folder paths in
    messages reduced to ``pred/`` and ``ref/``."""
    for key, msg in list(ev.errors.items()):
        for d, short in ((pred, "pred"), (ref, "ref")):
            msg = msg.replace(str(d.resolve()), short).replace(str(d), short)
        ev.errors[key] = msg
    folder.mkdir(parents=True, exist_ok=True)
    extra = {
        "name": folder.name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "headline_metrics": list(HEADLINE.get(ev.definition, ())),
        "prediction_folder": pred.name,
        "reference_folder": ref.name,
    }
    write_json(ev, folder / "metrics.json", bins, extra)
    write_csv_dir(ev, folder, bins)


def predict_first(
    template: str, dataset: Path, pred: Path, ref: Path | None, console: Console
) -> Path | None:
    """Run the model command; the reference folder to evaluate against, or ``None`` (the
    failure printed)."""
    try:
        _, labels = dataset_folders(dataset)
        console.print(f"running the model on {dataset / 'imagesTr'} ...")
        run = run_prediction(template, dataset, pred)
    except PredictionError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        return None
    console.print(f"the model wrote {run.written} label map(s) in {run.seconds:.1f} s")
    return ref or labels
