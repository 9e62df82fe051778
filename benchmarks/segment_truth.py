"""Benchmark: segmentation import against synthetic truth — brainmets' defaults vs the peer
(segment stage version 1: nearest-neighbour mask resampling, no edema cleaning), measured in
the same run on the same cohort.

A synthetic cohort (``--patients``, ``--seed``; the default seed 8 was not used while the
defaults were chosen: those used seeds 0, 1 and 2, and 7 was looked at once) is generated;
for every patient expected to be included its annotations (per-lesion masks on the native
T1c and FLAIR grids) are imported onto the SRI24 grid with the cohort's true transforms,
counted and measured (:func:`brainmets.lesions.analyse`), and compared with the truth
(:mod:`brainmets.synth.check`). The registration is left out on purpose: this isolates the
import (resampling and fusion). ``brainmets demo`` runs the same check after the whole
pipeline, registration included.

Usage::

    .venv/bin/python benchmarks/segment_truth.py [--patients 12] [--seed 8] [--keep DIR]

Prints, per configuration, the truth check's table and its measures, then the ratios
brainmets / peer.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from brainmets.ids import patient_pseudonym
from brainmets.labelmaps import LabelMap, save_label_map
from brainmets.lesions import analyse, load_atlas_labels
from brainmets.segment.fusion import FusionRules
from brainmets.segment.importer import ImportOptions, annotation_transforms, import_annotations
from brainmets.synth import generate_cohort
from brainmets.synth.check import TruthCheck, check_truth, load_truth

#: a fixed key: the check finds each truth patient by its pseudonym
KEY = b"segment-truth-benchmark-key-0000"
#: name: (import options, split shared oedema by the annotated lesion)
CONFIGS: dict[str, tuple[ImportOptions, bool]] = {
    "brainmets": (ImportOptions(), True),
    "peer (v1: nearest, no cleaning)": (
        ImportOptions(
            mask_interpolation="nearest",
            rules=FusionRules(
                min_edema_voxels=0, detached_edema="keep", edema_shell="keep", edema_support="keep"
            ),
        ),
        False,
    ),
}


def run_config(
    cohort: Path, out: Path, options: ImportOptions, instances: bool = True
) -> tuple[TruthCheck, float]:
    import nibabel as nib

    atlas = load_atlas_labels()
    truth = load_truth(cohort)
    results: dict[str, dict[str, Path]] = {}
    t0 = time.perf_counter()
    for rec in truth["patients"]:
        if not rec["expected_included"]:
            continue
        folder = cohort / "truth" / rec["mrn"]
        ref = nib.load(str(cohort / rec["truth_files"]["label_map"]))
        shape = tuple(int(s) for s in ref.shape[:3])
        res = import_annotations(
            folder, shape, np.asarray(ref.affine), options, annotation_transforms(folder)
        )
        pid = patient_pseudonym(KEY, str(rec["mrn"]))
        seg = save_label_map(out / f"{pid}-seg.nii.gz", res.labels, np.asarray(ref.affine))
        analysis = analyse(
            LabelMap(res.labels, np.asarray(ref.affine)),
            atlas=atlas,
            instances=res.fusion.instances if instances else None,
        )
        feats = out / f"{pid}-features.json"
        feats.write_text(json.dumps(analysis.to_json()))
        results[pid] = {"seg": seg, "features": feats}
    seconds = time.perf_counter() - t0
    return check_truth(cohort, out, KEY, results), seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=12)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--keep", type=Path, help="keep the cohort and outputs in this folder")
    args = ap.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="bm-segtruth-"))
    cohort = work / "cohort"
    try:
        if not (cohort / "truth.json").is_file():
            t0 = time.perf_counter()
            generate_cohort(cohort, args.patients, args.seed, workers=os.cpu_count() or 1)
            print(
                f"cohort: {args.patients} patients, seed {args.seed} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
        measures = {}
        for name, (options, instances) in CONFIGS.items():
            out = work / name.split()[0]
            out.mkdir(parents=True, exist_ok=True)
            check, seconds = run_config(cohort, out, options, instances)
            print(f"\n== {name}: {len(check.patients)} patients, import {seconds:.1f} s")
            for row in check.table():
                print("  " + " | ".join(f"{c:>14}" for c in row))
            for line in check.summary_lines():
                print("  " + line)
            measures[name] = check.measures()
        ours, peer = (measures[n] for n in CONFIGS)
        print("\nratios brainmets / peer:")
        for k in ours:
            a, b = ours[k], peer[k]
            ratio = "-" if not a or not b else f"{a / b:.2f}"
            print(
                f"  {k}: {a if a is None else round(a, 3)} / "
                f"{b if b is None else round(b, 3)} = {ratio}"
            )
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
