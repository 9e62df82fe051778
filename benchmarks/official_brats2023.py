#!/usr/bin/env python3
"""Run the official BraTS 2023 lesion-wise metrics script (BraTS-MET settings) on pairs of
label maps and write its numbers as JSON (a peer for ``benchmarks/evaluate.py`` and the
source of ``tests/evaluate/data/brats2023_official_metrics_cases.json``).

This script runs *inside the official tool's own virtual environment*, never brainmets'.
The official code needs old pins (``DataFrame.append``: pandas < 2)::

    python3 -m venv /tmp/venv2023
    /tmp/venv2023/bin/pip install numpy==1.24.3 pandas==1.5.3 scipy==1.11.1 \\
        nibabel==5.1.0 connected-components-3d==3.12.1
    # the script itself: github.com/rachitsaluja/BraTS-2023-Metrics (metrics.py and its
    # surface_distance/ folder), e.g. in /tmp/brats2023-src

On Python 3.11 its ``metric_df.replace(np.inf, 374)`` raises (the frame holds a column of
numpy arrays); ``--patch`` runs a copy of ``metrics.py`` in which that replacement is applied
to the ``hd95_lesionwise`` column only, which is where infinities occur (the same result)::

    /tmp/venv2023/bin/python benchmarks/official_brats2023.py --src /tmp/brats2023-src \\
        --patch --pred PRED_DIR --ref REF_DIR --out official.json

Files pair by identical names (as in ``../shared/testdata/metrics_cases``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

ORIGINAL = "        metric_df = metric_df.replace(np.inf, 374)\n"
PATCHED = (
    '        metric_df["hd95_lesionwise"] = metric_df["hd95_lesionwise"].replace(np.inf, 374)\n'
)


def load_metrics(src: Path, patch: bool):
    if patch:
        tmp = Path(tempfile.mkdtemp(prefix="brats2023-"))
        shutil.copytree(src / "surface_distance", tmp / "surface_distance")
        text = (src / "metrics.py").read_text()
        if ORIGINAL not in text and PATCHED not in text:
            sys.exit(f"{src / 'metrics.py'}: the line to patch is not there; not this version?")
        (tmp / "metrics.py").write_text(text.replace(ORIGINAL, PATCHED))
        src = tmp
    sys.path.insert(0, str(src))
    spec = importlib.util.spec_from_file_location("metrics", src / "metrics.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--src", type=Path, required=True, help="the official repository's folder")
    ap.add_argument("--pred", type=Path, required=True)
    ap.add_argument("--ref", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--patch", action="store_true", help="apply the Python 3.11 fix (above)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N cases")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    metrics = load_metrics(args.src, args.patch)
    names = sorted(p.name for p in args.ref.iterdir() if p.name.endswith(".nii.gz"))
    if args.limit:
        names = names[: args.limit]
    cases: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for name in names:
        case = name[: -len(".nii.gz")]
        start = time.perf_counter()
        df = metrics.get_LesionWiseResults(str(args.pred / name), str(args.ref / name), "BraTS-MET")
        seconds[case] = time.perf_counter() - start
        cases[case] = {
            row["Labels"]: {
                k: (None if isinstance(v, float) and math.isnan(v) else float(v))
                for k, v in row.items()
                if k != "Labels"
            }
            for _, row in df.iterrows()
        }
        print(f"{case}: {seconds[case]:.1f} s", flush=True)
    args.out.write_text(json.dumps({"seconds": seconds, "cases": cases}, indent=1) + "\n")


if __name__ == "__main__":
    main()
