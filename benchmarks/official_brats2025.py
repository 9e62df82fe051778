#!/usr/bin/env python3
"""Run the official BraTS 2025 evaluation (PyPI ``brats-evaluation``, the ``mets`` config on
panoptica, then its ``mets`` metrics parser) on pairs of label maps and write the parser's
per-case rows as JSON (a peer for ``benchmarks/evaluate.py`` and the source of
``tests/evaluate/data/brats2025_official_metrics_cases.json``).

This script runs *inside the official tool's own virtual environment*, never brainmets'::

    python3 -m venv /tmp/venv2025
    /tmp/venv2025/bin/pip install brats-evaluation==0.0.10   # pulls panoptica 2.1.7
    /tmp/venv2025/bin/python benchmarks/official_brats2025.py \\
        --pred PRED_DIR --ref REF_DIR --out official2025.json

It calls the package's own ``evaluate_single_exam`` per case (timed) with the bundled
``config_mets.yaml``, writes the panoptica JSON that ``brats-evaluate`` would write, and runs
``parse_mets_results`` on it with the parser's defaults (volume threshold 20, overlap
threshold 0.1), exactly as ``brats-parse-metrics mets`` does. Files pair by identical names.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile
import time
import warnings
from importlib.resources import files
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--ref", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases")
    ap.add_argument("--vol-threshold", type=float, default=20.0)
    ap.add_argument("--overlap-threshold", type=float, default=0.1)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from brats_evaluation.evaluation import evaluate_single_exam
    from brats_evaluation.metrics_parser import parse_mets_results
    from panoptica import Panoptica_Evaluator

    config = Path(str(files("brats_evaluation").joinpath("configs", "config_mets.yaml")))
    evaluator = Panoptica_Evaluator.load_from_config(str(config))
    names = sorted(p.name for p in args.ref.iterdir() if p.name.endswith(".nii.gz"))
    if args.limit:
        names = names[: args.limit]
    results = []
    seconds: dict[str, float] = {}
    for name in names:
        case = name[: -len(".nii.gz")]
        start = time.perf_counter()
        results.append(evaluate_single_exam(str(args.pred / name), str(args.ref / name), name,
                                            evaluator))  # fmt: skip
        seconds[case] = time.perf_counter() - start
        print(f"{case}: {seconds[case]:.2f} s", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="brats2025-"))
    (tmp / "panoptica.json").write_text(json.dumps({"metrics": results, "missings": []}))
    parse_mets_results(str(tmp / "panoptica.json"), args.vol_threshold, args.overlap_threshold,
                       str(tmp / "mets.csv"))  # fmt: skip
    cases: dict[str, dict[str, dict[str, float | None]]] = {}
    with open(tmp / "mets.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            sid = row.pop("subject_id")
            if not sid.endswith(".nii.gz"):
                continue  # the parser's mean / std / median rows
            regions: dict[str, dict[str, float | None]] = {}
            for key, text in row.items():
                metric, _, region = key.rpartition("_")
                value = float(text) if text != "" else math.nan
                regions.setdefault(region.upper(), {})[metric] = (
                    None if math.isnan(value) else value
                )
            cases[sid[: -len(".nii.gz")]] = regions
    args.out.write_text(json.dumps({"seconds": seconds, "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
