#!/usr/bin/env python3
"""Speed benchmark (not a test): ``brainmets evaluate`` under both definitions against the
official programs on the same label-map pairs, in one run: the BraTS 2023 lesion-wise
script (``--definition brats2023``) and ``brats-evaluation``'s ``mets`` configuration on
panoptica (``--definition brats2025``).

The official programs run in their own virtual environments (``official_brats2023.py`` and
``official_brats2025.py`` beside this file say how to make them)::

    .venv/bin/python benchmarks/evaluate.py \\
        --official-2023-python /tmp/venv2023/bin/python --official-2023-src /tmp/brats2023-src \\
        --official-2025-python /tmp/venv2025/bin/python

Both sides are timed as whole processes over all cases (start-up and reading included) and
per case (the same case, reading included). brainmets runs with 1 and 2 workers
(``--workers``); the official programs have no parallel mode. The numbers of both are
compared in the same run (every metric within 1e-6, counts exactly). An official program
whose environment is not given is left out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from brainmets.shared import testdata_dir  # noqa: E402


def run_ours(pred: Path, ref: Path, out: Path, workers: int, definition: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "brainmets", "evaluate", "--pred", str(pred), "--ref", str(ref),
         "--json", str(out), "--workers", str(workers), "--definition", definition],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def run_official(definition: str, args: argparse.Namespace, out: Path) -> float | None:
    """Seconds of the official program over all cases (its numbers in ``out``), or None
    when its environment was not given."""
    if definition == "brats2023":
        if not (args.official_2023_python and args.official_2023_src):
            return None
        cmd = [str(args.official_2023_python), str(REPO / "benchmarks" / "official_brats2023.py"),
               "--src", str(args.official_2023_src), "--patch"]  # fmt: skip
    else:
        if not args.official_2025_python:
            return None
        cmd = [str(args.official_2025_python), str(REPO / "benchmarks" / "official_brats2025.py")]
    start = time.perf_counter()
    subprocess.run(
        [*cmd, "--pred", str(args.pred), "--ref", str(args.ref), "--out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    v = sorted(values)
    n = len(v)
    return (v[n // 2] + v[(n - 1) // 2]) / 2


def compare(ours: dict, official: dict) -> tuple[int, list[str]]:
    n, bad = 0, []
    for case, regions in official.items():
        for region, metrics in regions.items():
            for name, value in metrics.items():
                n += 1
                got = ours.get(case, {}).get(region, {}).get(name)
                if value is None or got is None:
                    if value != got:
                        bad.append(f"{case} {region} {name}: official {value}, ours {got}")
                elif abs(float(got) - float(value)) > 1e-6:
                    bad.append(f"{case} {region} {name}: official {value}, ours {got}")
    return n, bad


def bench(definition: str, args: argparse.Namespace, n_cases: int, tmp: Path) -> None:
    print(f"--- {definition}")
    ours: dict[int, float] = {}
    for workers in (1, 2):
        best = min(
            run_ours(args.pred, args.ref, tmp / f"{definition}-{workers}.json", workers, definition)
            for _ in range(args.repeat)
        )
        ours[workers] = best
        print(f"brainmets  workers={workers}: {best:7.1f} s  {best / n_cases:6.2f} s/case")
    print(f"brainmets  2 workers vs 1: {ours[1] / ours[2]:.2f}x")
    detail = json.loads((tmp / f"{definition}-1.detail.json").read_text())
    per_case = {k: c["seconds"] for k, c in detail["cases"].items()}
    print(
        f"brainmets  per case (in-process, 1 worker): median {median(list(per_case.values())):.2f}"
        f" s, max {max(per_case.values()):.2f} s"
    )
    out = tmp / f"{definition}-official.json"
    total = run_official(definition, args, out)
    if total is None:
        print("official   (not run: give its environment)")
        return
    off = json.loads(out.read_text())
    secs = off["seconds"]
    print(
        f"official   1 process:  {total:7.1f} s  {total / n_cases:6.2f} s/case "
        f"(per case median {median(list(secs.values())):.2f} s, max {max(secs.values()):.2f} s)"
    )
    print(
        f"speed-up, whole process: {total / ours[1]:.1f}x (1 worker), "
        f"{total / ours[2]:.1f}x (2 workers)"
    )
    ratios = [secs[k] / per_case[k] for k in secs if k in per_case and per_case[k] > 0]
    print(
        f"speed-up per case (same case, 1 worker): median {median(ratios):.1f}x, "
        f"min {min(ratios):.1f}x"
    )
    n, bad = compare(json.loads((tmp / f"{definition}-1.json").read_text()), off["cases"])
    print(f"exactness: {n - len(bad)}/{n} metric values within 1e-6 of the official")
    for line in bad[:20]:
        print("  differs:", line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    cases = testdata_dir() / "metrics_cases"
    ap.add_argument("--pred", type=Path, default=cases / "pred")
    ap.add_argument("--ref", type=Path, default=cases / "ref")
    ap.add_argument("--definition", choices=("brats2023", "brats2025", "both"), default="both")
    ap.add_argument("--official-2023-python", type=Path, help="python of the 2023 script's venv")
    ap.add_argument("--official-2023-src", type=Path, help="the 2023 repository's folder")
    ap.add_argument("--official-2025-python", type=Path, help="python of brats-evaluation's venv")
    ap.add_argument("--repeat", type=int, default=2, help="brainmets runs per setting (best)")
    args = ap.parse_args()
    n_cases = len([p for p in args.ref.iterdir() if p.name.endswith(".nii.gz")])
    tmp = Path(tempfile.mkdtemp(prefix="bm-eval-bench-"))
    print(f"{n_cases} case(s) from {args.ref}")
    todo = ("brats2023", "brats2025") if args.definition == "both" else (args.definition,)
    for definition in todo:
        bench(definition, args, n_cases, tmp)


if __name__ == "__main__":
    main()
