"""Benchmark of the preprocess step: seconds per patient (registration / resampling / skull
stripping) and accuracy, next to brainles-preprocessing doing the same work in the same run.

    python benchmarks/preprocess.py --cohort /tmp/synth --patients 3 \
        [--peer-python /tmp/peer-venv/bin/python] [--tcga] [--skull-stripper auto] \
        [--atlas-registration rigid] [--option KEY=VALUE ...] [--json results.json]

Cases: synthetic patients (``brainmets.synth``; generated into ``--cohort`` when it holds
none, converted with dcm2niix) with their true transforms, and optionally the real TCGA case
of the shared test data (brain-mask Dice against its T1c mask). Accuracy: mean displacement
of brain voxels (mm, see ``brainmets.preprocess.evaluation``); for the synthetic cases also
whether every tumour voxel lies inside the brain mask.

The peer runs in its own virtual environment (never a project dependency):
``python -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install torch==2.13.0
brainles-preprocessing picsl-greedy``. It is given the SRI24 template as a file (no
download), its greedy registrator (the BraTS recipe, as ours) and no brain extractor (its
default, HD-BET, downloads weights at run time); its N4 is off, as it is by default, and so
is its optional second registration in atlas space ("atlas correction"), which the BraTS
recipe does not have. Its time is its own ``preprocess`` call (reading and writing its
files included, as ours; interpreter start-up and imports excluded, also for us except the
first case's deepbet import). The summary prints ours / peer ratios (< 1: we are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from brainmets.atlas import atlas_file
from brainmets.preprocess import CaseTransforms, PreprocessOptions, map_to_atlas, preprocess_case
from brainmets.preprocess.evaluation import (
    TCGA_CASE,
    brain_points,
    registration_errors,
    synthetic_inputs,
    synthetic_truth,
    tcga_inputs,
    tumour_outside_mask,
)
from brainmets.preprocess.qc import dice

PEER_SCRIPT = r"""
import json, sys, time
from pathlib import Path
from brainles_preprocessing.modality import Modality, CenterModality
from brainles_preprocessing.preprocessor import AtlasCentricPreprocessor
from brainles_preprocessing.registration import GreedyRegistrator
import brainles_preprocessing.registration.greedy.greedy as _g
# 0.6.14's greedy registrator calls str methods on the Path objects it is given
_g.check_and_add_suffix = lambda f, s: str(f) if str(f).endswith(s) else str(f) + s
inputs, out, atlas = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
center = CenterModality("t1c", inputs["t1c"], raw_skull_output_path=out / "t1c.nii.gz",
                        atlas_correction=False)
moving = [Modality(s, inputs[s], raw_skull_output_path=out / f"{s}.nii.gz",
                   atlas_correction=False) for s in ("t1", "t2", "flair")]
pre = AtlasCentricPreprocessor(center, moving, registrator=GreedyRegistrator(),
                               atlas_image_path=atlas, use_gpu=False)
t = time.perf_counter()
pre.run(save_dir_coregistration=out / "coreg", save_dir_atlas_registration=out / "atlas",
        save_dir_transformations=out / "tx")
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def run_peer(python: str, inputs: dict[str, Path], out: Path, atlas: Path) -> dict:
    """Run brainles-preprocessing on one case; seconds and its transforms (RAS matrices)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            python,
            "-c",
            PEER_SCRIPT,
            json.dumps({k: str(v) for k, v in inputs.items()}),
            str(out),
            str(atlas),
        ],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-800:], "wall_s": wall}
    mats = {p.stem: np.loadtxt(p) for p in out.rglob("*.mat")}
    # its own timing of the preprocessing call (without interpreter start-up and imports)
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    return {"wall_s": wall, "seconds": seconds, "matrices": mats}


def peer_transforms(peer: dict, ours: CaseTransforms) -> CaseTransforms | None:
    """The peer's matrices in our convention. It writes greedy .mat files (fixed -> moving,
    RAS): ``M_atlas__t1c`` (SRI24 -> T1c) and ``M_co__t1c__<seq>`` (T1c -> seq)."""
    mats = peer.get("matrices") or {}
    if "M_atlas__t1c" not in mats:
        return None
    tr = CaseTransforms(ours.case_id, ours.atlas_grid, atlas_registration="rigid")
    tr.atlas_to["t1c"] = mats["M_atlas__t1c"]
    tr.t1c_to["t1c"] = np.eye(4)
    for s in ("t1", "t2", "flair"):
        m = mats.get(f"M_co__t1c__{s}")
        if m is None:
            return None
        tr.t1c_to[s] = m
        tr.atlas_to[s] = m @ tr.atlas_to["t1c"]
    return tr


def ensure_cohort(cohort: Path, n: int, seed: int) -> list[str]:
    truth = cohort / "truth.json"
    if not truth.exists():
        from brainmets.synth import generate_cohort

        generate_cohort(cohort, n, seed=seed, workers=1)
    rec = json.loads(truth.read_text())
    return [p["mrn"] for p in rec["patients"] if p["expected_included"]][:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cohort", type=Path, default=Path(tempfile.gettempdir()) / "bm-synth")
    ap.add_argument("--patients", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--tcga", action="store_true", help="also the real TCGA case")
    ap.add_argument("--peer-python", default=os.environ.get("PEER_PYTHON", ""))
    ap.add_argument("--skull-stripper", default="auto")
    ap.add_argument("--atlas-registration", default="rigid")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bm-prep-bench")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another preprocess parameter, e.g. n4_for_registration=false, fixed_image=reference",
    )
    args = ap.parse_args(argv)
    params: dict = {
        "skull_stripper": args.skull_stripper,
        "atlas_registration": args.atlas_registration,
    }
    for item in args.option:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    opts = PreprocessOptions.from_params(params)
    brain_tmpl = atlas_file("t1_brain.nii.gz")
    head_tmpl = atlas_file("t1_head.nii.gz")
    pts = brain_points(brain_tmpl)
    cases: list[tuple[str, dict[str, Path], str | None]] = []
    if args.patients > 0:
        for mrn in ensure_cohort(args.cohort, args.patients, args.seed):
            cases.append((mrn, synthetic_inputs(args.cohort, mrn, args.out / "nifti" / mrn), mrn))
    if args.tcga:
        tcga = tcga_inputs()
        ref_mask = tcga.pop("mask")
        cases.append((TCGA_CASE, tcga, None))
    rows = []
    for cid, inputs, mrn in cases:
        row: dict = {"case": cid}
        t0 = time.perf_counter()
        res = preprocess_case(inputs, args.out / "ours" / cid, cid, opts)
        row["ours_total_s"] = round(time.perf_counter() - t0, 1)
        tm = res.timings
        row["ours_registration_s"] = round(tm["registration_s"], 1)
        row["ours_resampling_s"] = round(tm["resampling_s"], 1)
        row["ours_skull_stripping_s"] = round(tm["skull_stripping_s"], 1)
        row["skull_stripper"] = res.qc["skull_stripper"]
        mask = np.asarray(nib.load(str(res.outputs["mask"])).dataobj) > 0
        assert res.transforms is not None
        if mrn:
            truth = synthetic_truth(args.cohort, mrn)
            errs = registration_errors(res.transforms, truth, pts)
            row["ours_error_mm"] = round(errs["atlas_mean"], 3)
            row["ours_coreg_mm"] = round(
                float(np.mean([errs[f"coreg_{s}"] for s in ("t1", "t2", "flair")])), 3
            )
            row["tumour_voxels_outside_mask"] = list(
                tumour_outside_mask(args.cohort, mrn, res.transforms, mask)
            )
        else:
            ref = (
                np.asarray(
                    map_to_atlas(
                        ref_mask,
                        res.transforms,
                        "t1c",
                        kind="mask",
                    ).dataobj
                )
                > 0
            )
            row["mask_dice"] = round(dice(mask, ref), 4)
        if args.peer_python:
            peer = run_peer(args.peer_python, inputs, args.out / "peer" / cid, head_tmpl)
            if "error" in peer:
                row["peer_error"] = peer["error"]
            else:
                row["peer_total_s"] = round(peer["seconds"], 1)
                row["peer_wall_s"] = round(peer["wall_s"], 1)
                ptr = peer_transforms(peer, res.transforms)
                if ptr is not None and mrn:
                    perr = registration_errors(ptr, synthetic_truth(args.cohort, mrn), pts)
                    row["peer_error_mm"] = round(perr["atlas_mean"], 3)
                    row["peer_coreg_mm"] = round(
                        float(np.mean([perr[f"coreg_{s}"] for s in ("t1", "t2", "flair")])), 3
                    )
        row["load_average"] = round(os.getloadavg()[0], 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_summary(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def print_summary(rows: list[dict]) -> None:
    """One line per case: our times, the peer's, and the ratios (ours / peer; < 1 = faster)."""
    print(
        f"\n{'case':<14}{'ours total':>11}{'reg+res':>9}{'strip':>7}{'peer':>7}"
        f"{'total/peer':>12}{'reg+res/peer':>14}{'err ours/peer mm':>18}{'tumour out':>12}"
    )
    for r in rows:
        regres = r["ours_registration_s"] + r["ours_resampling_s"]
        peer = r.get("peer_total_s")
        ratio = f"{r['ours_total_s'] / peer:.2f}" if peer else "-"
        ratio_rr = f"{regres / peer:.2f}" if peer else "-"
        err = (
            f"{r['ours_error_mm']:.2f}/{r['peer_error_mm']:.2f}"
            if "peer_error_mm" in r
            else (f"{r['ours_error_mm']:.2f}" if "ours_error_mm" in r else "-")
        )
        out = r.get("tumour_voxels_outside_mask")
        print(
            f"{r['case']:<14}{r['ours_total_s']:>11.1f}{regres:>9.1f}"
            f"{r['ours_skull_stripping_s']:>7.1f}{(peer or float('nan')):>7.1f}{ratio:>12}"
            f"{ratio_rr:>14}{err:>18}{(f'{out[1]}/{out[0]}' if out else '-'):>12}"
        )


if __name__ == "__main__":
    sys.exit(main())
