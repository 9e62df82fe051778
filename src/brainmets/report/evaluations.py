"""The report's section "Evaluation of segmentation models".

``brainmets evaluate --workspace WS --name NAME`` keeps an evaluation in the workspace
(:attr:`brainmets.config.Config.evaluations_dir` ``/NAME/``: ``metrics.json``,
``metrics.detail.json``, the CSV tables). The report reads the detail files, never the
evaluation code: per evaluation the mean (median) of its headline metrics per region, the
detection by lesion size (sensitivity, false positives per case, median Dice per size bin)
and a figure: sensitivity by lesion size and, when the predictions carried probabilities,
the FROC curve (else false positives per case by size). Only aggregates: no case ID and no
path reaches the report.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from brainmets.cohort.render import Figure, Section
from brainmets.cohort.tables import Table, fmt_num
from brainmets.config import Config

DETAIL_FILE = "metrics.detail.json"
REGION_COLOURS = {"ET": "#d62728", "TC": "#ff7f0e", "WT": "#1f77b4", "RC": "#7f7f7f"}


def find_evaluations(config: Config) -> list[Path]:
    """The detail files of the evaluations kept in the workspace, by name."""
    folder = config.evaluations_dir
    if not folder.is_dir():
        return []
    return sorted(p / DETAIL_FILE for p in folder.iterdir() if (p / DETAIL_FILE).is_file())


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    if v == "inf":
        return math.inf
    return float(v)


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "size_bins" not in data or "summary" not in data:
        return None
    data.setdefault("name", path.parent.name)
    return data


def evaluation_section(paths: list[Path]) -> tuple[Section | None, list[str]]:
    """The section (None without a readable evaluation) and the files that could not be
    read (for the stage's warnings)."""
    evals: list[dict[str, Any]] = []
    bad: list[str] = []
    for p in paths:
        data = _load(p)
        if data is None:
            bad.append(f"{p.parent.name}/{p.name}")
        else:
            evals.append(data)
    if not evals:
        return None, bad
    summary = Table(
        "evaluation_summary",
        "Model evaluations: mean (median) over cases, per region",
        ["Evaluation", "Definition", "Region", "Cases", "Metric", "Mean (median)"],
    )
    sizes = Table(
        "evaluation_sizes",
        "Detection by lesion size (sphere-equivalent diameter of the reference lesion)",
        ["Evaluation", "Region", "Size", "Lesions", "Found", "Sensitivity", "FP per case",
         "Median Dice"],
        note="Every reference lesion counts, also those a definition leaves out of its own "
        "scores; found = paired with a prediction lesion by the definition's rule.",
    )  # fmt: skip
    paragraphs = [
        "Predicted label maps compared with the reference lesion by lesion by "
        "`brainmets evaluate` (docs/evaluation.md); each evaluation below is kept in the "
        "workspace's evaluations folder."
    ]
    figures: list[Figure] = []
    for ev in evals:
        name = str(ev["name"])
        heads = list(ev.get("headline_metrics") or [])
        rows = ev["summary"]
        for r in rows:
            if heads and r["metric"] not in heads:
                continue
            summary.rows.append(
                [
                    name,
                    ev.get("definition", ""),
                    r["region"],
                    r["n_cases"],
                    r["metric"],
                    f"{fmt_num(_num(r['mean']), 3)} ({fmt_num(_num(r['median']), 3)})",
                ]
            )
        for b in ev["size_bins"]:
            if not b["n_ref"] and not b["n_fp"]:
                continue
            sizes.rows.append(
                [
                    name,
                    b["region"],
                    b["label"],
                    b["n_ref"],
                    b["n_detected"],
                    fmt_num(_num(b["sensitivity"]), 3),
                    fmt_num(_num(b["fp_per_case"]), 2),
                    fmt_num(_num(b["median_dice"]), 3),
                ]
            )
        paragraphs.append(
            f"{name}: definition {ev.get('definition', '?')}; {ev.get('accounting', '')}."
        )
        figures.append(
            Figure(
                f"evaluation_{_safe(name)}",
                f"{name}: sensitivity by lesion size (left) and "
                + (
                    "the FROC curve (right)"
                    if ev.get("froc")
                    else "false positives per case by lesion size (right)"
                ),
                evaluation_figure(ev),
            )  # fmt: skip
        )
    return Section("Evaluation of segmentation models", paragraphs, [summary, sizes], figures), bad


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def evaluation_figure(ev: dict[str, Any], dpi: int = 100) -> bytes:
    """Sensitivity per size bin and region (bars, with the number of lesions), beside the
    FROC curve when there is one, else false positives per case per size bin."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    bins = ev["size_bins"]
    regions = list(dict.fromkeys(b["region"] for b in bins if b["n_ref"] or b["n_fp"]))
    labels = list(dict.fromkeys(b["label"] for b in bins))
    fig = MplFigure(figsize=(10.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    width = 0.8 / max(1, len(regions))
    for k, region in enumerate(regions):
        mine = {b["label"]: b for b in bins if b["region"] == region}
        xs = [i + (k - (len(regions) - 1) / 2) * width for i in range(len(labels))]
        sens = [_num(mine[lab]["sensitivity"]) if lab in mine else math.nan for lab in labels]
        bars = left.bar(xs, [0 if math.isnan(s) else s for s in sens], width,
                        label=region, color=REGION_COLOURS.get(region))  # fmt: skip
        for bar, lab in zip(bars, labels, strict=True):
            n = mine[lab]["n_ref"] if lab in mine else 0
            if n:
                left.annotate(str(n), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                              ha="center", va="bottom", fontsize=7)  # fmt: skip
    left.set_xticks(range(len(labels)), labels, fontsize=8)
    left.set_ylim(0, 1.3)
    left.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    left.set_ylabel("sensitivity")
    left.set_xlabel("lesion diameter (number: reference lesions)")
    left.legend(fontsize=8, loc="upper left", ncols=max(1, len(regions)), frameon=False)
    froc = ev.get("froc") or {}
    if froc:
        for region, points in froc.items():
            xs = [p["fp_per_case"] for p in points]
            ys = [p["sensitivity"] for p in points]
            right.plot(xs, ys, marker="o", ms=3, label=region, color=REGION_COLOURS.get(region))
        right.set_xlabel("false positives per case")
        right.set_ylabel("sensitivity")
        right.set_ylim(0, 1.05)
        right.legend(fontsize=8, loc="lower right")
    else:
        for k, region in enumerate(regions):
            mine = {b["label"]: b for b in bins if b["region"] == region}
            xs = [i + (k - (len(regions) - 1) / 2) * width for i in range(len(labels))]
            fps = [_num(mine[lab]["fp_per_case"]) if lab in mine else 0.0 for lab in labels]
            right.bar(xs, fps, width, label=region, color=REGION_COLOURS.get(region))
        right.set_xticks(range(len(labels)), labels, fontsize=8)
        right.set_ylabel("false positives per case")
        right.set_xlabel("false-positive lesion diameter")
    fig.suptitle(f"{ev.get('name', '')} ({ev.get('definition', '')})", fontsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
