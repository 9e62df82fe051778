#!/usr/bin/env python3
"""Speed benchmark (not a test): ``brainmets evaluate --definition brats2023`` against the
official BraTS 2023 lesion-wise script on the same label-map pairs, in one run.

The official script runs in its own virtual environment (``benchmarks/official_brats2023.py``
says how to make it)::

    .venv/bin/python benchmarks/evaluate.py \\
        --official-python /tmp/venv2023/bin/python --official-src /tmp/brats2023-src

Both sides are timed as whole processes over all cases (start-up and reading included) and
per case. brainmets runs with 1 and 2 workers (``--workers``); the official script has no
parallel mode. The numbers of both are compared in the same run (every metric within 1e-6,
counts exactly). Without ``--official-python`` only brainmets is timed.
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


def run_ours(pred: Path, ref: Path, out: Path, workers: int) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "brainmets", "evaluate", "--pred", str(pred), "--ref", str(ref),
         "--json", str(out), "--workers", str(workers)],
        check=True, capture_output=True,
    )  # fmt: skip
    return time.perf_counter() - start


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    cases = testdata_dir() / "metrics_cases"
    ap.add_argument("--pred", type=Path, default=cases / "pred")
    ap.add_argument("--ref", type=Path, default=cases / "ref")
    ap.add_argument("--official-python", type=Path, help="python of the official tool's venv")
    ap.add_argument("--official-src", type=Path, help="the official repository's folder")
    ap.add_argument("--repeat", type=int, default=2, help="brainmets runs per setting (best)")
    args = ap.parse_args()
    n_cases = len([p for p in args.ref.iterdir() if p.name.endswith(".nii.gz")])
    tmp = Path(tempfile.mkdtemp(prefix="bm-eval-bench-"))
    print(f"{n_cases} case(s) from {args.ref}")
    ours: dict[int, float] = {}
    for workers in (1, 2):
        best = min(
            run_ours(args.pred, args.ref, tmp / f"ours{workers}.json", workers)
            for _ in range(args.repeat)
        )
        ours[workers] = best
        print(f"brainmets  workers={workers}: {best:7.1f} s  {best / n_cases:6.2f} s/case")
    print(f"brainmets  2 workers vs 1: {ours[1] / ours[2]:.2f}x")
    detail = json.loads((tmp / "ours1.detail.json").read_text())
    per_case = [c["seconds"] for c in detail["cases"].values()]
    median = sorted(per_case)[len(per_case) // 2]
    print(
        f"brainmets  per case (in-process, 1 worker): median {median:.2f} s, "
        f"max {max(per_case):.2f} s"
    )
    if args.official_python and args.official_src:
        out = tmp / "official.json"
        start = time.perf_counter()
        subprocess.run(
            [str(args.official_python), str(REPO / "benchmarks" / "official_brats2023.py"),
             "--src", str(args.official_src), "--patch", "--pred", str(args.pred),
             "--ref", str(args.ref), "--out", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        total = time.perf_counter() - start
        off = json.loads(out.read_text())
        secs = list(off["seconds"].values())
        print(
            f"official   1 process:  {total:7.1f} s  {total / n_cases:6.2f} s/case "
            f"(per case median {sorted(secs)[len(secs) // 2]:.1f} s, max {max(secs):.1f} s)"
        )
        print(
            f"speed-up per case: {total / ours[1]:.1f}x (1 worker), {total / ours[2]:.1f}x "
            "(2 workers)"
        )
        n, bad = compare(json.loads((tmp / "ours1.json").read_text()), off["cases"])
        print(f"exactness: {n - len(bad)}/{n} metric values within 1e-6 of the official")
        for line in bad[:20]:
            print("  differs:", line)


if __name__ == "__main__":
    main()
