"""Writing an evaluation: the metrics JSON (official names), per-lesion detail, CSV tables.

JSON conventions: NaN is ``null``; infinity is the string ``"inf"`` (``"-inf"``). The metrics
file is exactly ``{case_id: {region: {metric_name: value}}}``; the per-lesion detail, the
size breakdown and what was not evaluated are in a second file beside it
(``NAME.detail.json``).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainmets.evaluate.run import Evaluation
from brainmets.evaluate.sizes import DEFAULT_BINS, froc, size_breakdown
from brainmets.fsutil import atomic_path

COUNT_METRICS = frozenset(
    {
        "Num_TP",
        "Num_FP",
        "Num_FN",
        "all_instance_tp",
        "all_instance_fp",
        "all_instance_fn",
        "large_instance_tp",
        "large_instance_fp",
        "large_instance_fn",
        "small_instance_tp",
        "small_instance_fp",
        "small_instance_fn",
    }
)


def json_value(v: Any) -> Any:
    """A metric value for JSON: counts as integers, NaN as ``None``, infinity as text."""
    if isinstance(v, float | np.floating):
        f = float(v)
        if math.isnan(f):
            return None
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, dict):
        return {k: json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [json_value(x) for x in v]
    return v


def metrics_json(ev: Evaluation) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for case in ev.cases:
        out[case.case_id] = {
            region: {
                name: (int(v) if name in COUNT_METRICS and math.isfinite(v) else json_value(v))
                for name, v in metrics.items()
            }
            for region, metrics in case.metrics.items()
        }
    return out


def detail_json(
    ev: Evaluation,
    bins: Sequence[float] = DEFAULT_BINS,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything beyond the metrics; ``extra`` (e.g. the name an evaluation is kept under)
    goes first."""
    regions = list(dict.fromkeys(r for c in ev.cases for r in c.metrics))
    return json_value(
        {
            **(extra or {}),
            "definition": ev.definition,
            "accounting": ev.accounted,
            "not_evaluated": {
                "errors": ev.errors,
                "references_without_prediction": [p.name for p in ev.pairing.unpaired_ref],
                "predictions_without_reference": [p.name for p in ev.pairing.unpaired_pred],
                "problems": ev.pairing.problems,
            },
            "cases": {
                c.case_id: {
                    "reference": c.ref_file,
                    "prediction": c.pred_file,
                    "seconds": c.seconds,
                    "lesions": [les.as_dict() for les in c.lesions],
                }
                for c in ev.cases
            },
            "size_bins": [b.as_dict() for b in size_breakdown(ev.cases, bins)],
            "froc": {
                r: [p.__dict__ for p in froc(ev.cases, r)] for r in regions if froc(ev.cases, r)
            },
            "summary": summary_rows(ev),
        }
    )


def write_json(
    ev: Evaluation,
    path: str | os.PathLike[str],
    bins: Sequence[float] = DEFAULT_BINS,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``path`` (the metrics) and ``path``'s ``.detail.json`` sibling; both atomic."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(metrics_json(ev), indent=2, allow_nan=False) + "\n")
    detail = detail_path(path)
    with atomic_path(detail) as tmp:
        text = json.dumps(detail_json(ev, bins, extra), indent=1, allow_nan=False)
        tmp.write_text(text + "\n")
    return path


def detail_path(path: Path) -> Path:
    name = path.name[:-5] if path.name.endswith(".json") else path.name
    return path.with_name(name + ".detail.json")


def summary_rows(ev: Evaluation) -> list[dict[str, Any]]:
    """Mean and median of every metric per region across cases (NaN values left out)."""
    rows = []
    regions = list(dict.fromkeys(r for c in ev.cases for r in c.metrics))
    for region in regions:
        names = list(dict.fromkeys(n for c in ev.cases for n in c.metrics.get(region, {})))
        for name in names:
            vals = np.array(
                [c.metrics[region][name] for c in ev.cases if name in c.metrics.get(region, {})],
                dtype=float,
            )
            finite = vals[~np.isnan(vals)]
            rows.append(
                {
                    "region": region,
                    "metric": name,
                    "n_cases": int(finite.size),
                    "mean": float(np.mean(finite)) if finite.size else math.nan,
                    "median": float(np.median(finite)) if finite.size else math.nan,
                }
            )
    return rows


def _csv_value(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return ""
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, list | tuple):
        return " ".join(str(x) for x in v)
    return "" if v is None else v


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: _csv_value(row.get(k)) for k in columns})


def write_csv_dir(
    ev: Evaluation, folder: str | os.PathLike[str], bins: Sequence[float] = DEFAULT_BINS
) -> list[Path]:
    """``cases.csv`` (one row per case and region), ``lesions.csv`` (one row per reference
    lesion and per false positive), ``summary.csv`` (mean/median per region and metric) and
    ``sizes.csv`` (detection by lesion size)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(n for c in ev.cases for m in c.metrics.values() for n in m))
    case_rows = [
        {"case_id": c.case_id, "region": region, **metrics}
        for c in ev.cases
        for region, metrics in c.metrics.items()
    ]
    lesion_rows = [{"case_id": c.case_id, **les.as_dict()} for c in ev.cases for les in c.lesions]
    lesion_cols = ["case_id"] + (list(lesion_rows[0]) if lesion_rows else [])
    if not lesion_rows:
        lesion_cols = ["case_id", "region", "kind", "ref_lesion", "pred_lesions", "dice", "hd95"]
    size_rows = [b.as_dict() for b in size_breakdown(ev.cases, bins)]
    size_cols = list(size_rows[0]) if size_rows else ["region", "label"]
    out = [folder / "cases.csv", folder / "lesions.csv", folder / "summary.csv"]
    _write_csv(out[0], case_rows, ["case_id", "region", *names])
    _write_csv(out[1], lesion_rows, lesion_cols)
    _write_csv(out[2], summary_rows(ev), ["region", "metric", "n_cases", "mean", "median"])
    _write_csv(folder / "sizes.csv", size_rows, size_cols)
    out.append(folder / "sizes.csv")
    return out
