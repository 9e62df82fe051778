"""Skull strippers compared on tumour cases: brain-mask Dice against a reference, seconds,
and tumour voxels left outside the mask, for each extractor raw and after lesion protection.

    python benchmarks/skullstrip.py --prep /tmp/bm-prep-bench --cohort /tmp/synth \
        [--extractors deepbet atlas] [--cases 15265606 TCGA-FG-6692] [--json out.json]

Reuses what ``benchmarks/preprocess.py --out DIR`` registered (``DIR/ours/<case>`` transforms,
``DIR/nifti/<case>`` inputs): the native images are resampled once into SRI24 with those
transforms (unmasked), and each extractor runs on them. References:

* synthetic patients (``--cohort``): the SRI24 brain mask carried onto the output grid with
  the generator's true T1c transform (the head's real brain); tumour = the true label map,
  carried the same way;
* ``TCGA-FG-6692`` (shared test data): the T1c brain mask provided with the case, mapped
  with our transforms.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from brainmets.preprocess import CaseTransforms, map_to_atlas
from brainmets.preprocess.evaluation import (
    TCGA_CASE as TCGA,
)
from brainmets.preprocess.evaluation import (
    synthetic_truth,
    tcga_inputs,
    tumour_outside_mask,
)
from brainmets.preprocess.images import load_volume, reorient
from brainmets.preprocess.pipeline import AtlasImages
from brainmets.preprocess.qc import dice
from brainmets.preprocess.registration import resample_array
from brainmets.preprocess.skullstrip import LIMIT_MM, _within, extract_brain, protect_lesions
from brainmets.preprocess.transforms import resample_labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prep", type=Path, required=True, help="benchmarks/preprocess.py --out")
    ap.add_argument("--cohort", type=Path, help="the synthetic cohort of those cases")
    ap.add_argument("--extractors", nargs="+", default=["deepbet", "atlas"])
    ap.add_argument("--cases", nargs="*", help="default: every case under PREP/ours")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    atlas = AtlasImages.load(None)
    assert atlas.head is not None
    grid = atlas.grid
    limit = _within(atlas.brain.data > 0, LIMIT_MM)
    cases = args.cases or sorted(p.name for p in (args.prep / "ours").iterdir() if p.is_dir())
    rows = []
    for cid in cases:
        tr = CaseTransforms.load(args.prep / "ours" / cid / f"{cid}-transforms.json")
        inputs = (
            tcga_inputs()
            if cid == TCGA
            else {
                s: args.prep / "nifti" / cid / f"{s}.nii.gz" for s in ("t1", "t1c", "t2", "flair")
            }
        )
        ref_file = inputs.pop("mask", None)
        images = {}
        for s, f in inputs.items():
            v = reorient(load_volume(f), "RAS")
            images[s] = resample_array(v.data, v.affine, grid, tr.atlas_to[s])
        if ref_file is not None:
            ref = np.asarray(map_to_atlas(ref_file, tr, "t1c", kind="mask").dataobj) > 0
        else:
            if args.cohort is None:
                ap.error("--cohort is needed for synthetic cases")
            true_c = synthetic_truth(args.cohort, cid)["t1c"]
            m = np.linalg.inv(true_c) @ tr.atlas_to["t1c"]
            brain = (atlas.brain.data > 0).astype(np.uint8)
            ref = resample_labels(brain, atlas.brain.affine, grid, m, "nearest") > 0
        for name in args.extractors:
            t0 = time.perf_counter()
            ex = extract_brain(
                images,
                grid,
                name,
                (atlas.head.data, atlas.head.affine),
                (atlas.brain.data, atlas.brain.affine),
                ("t1c",),
                protect=False,
            )
            seconds = time.perf_counter() - t0
            raw = ex.mask
            t0 = time.perf_counter()
            protected, added = protect_lesions(raw, images, limit=limit)
            protect_s = time.perf_counter() - t0
            row = {
                "case": cid,
                "extractor": name,
                "seconds": round(seconds, 1),
                "protection_s": round(protect_s, 1),
                "dice_raw": round(dice(raw, ref), 4),
                "dice_protected": round(dice(protected, ref), 4),
                "voxels_added": added,
            }
            if cid != TCGA:
                row["tumour_outside_raw"] = tumour_outside_mask(args.cohort, cid, tr, raw)
                row["tumour_outside_protected"] = tumour_outside_mask(
                    args.cohort, cid, tr, protected
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\n{'case':<14}{'extractor':<10}{'s':>6}{'Dice raw':>10}{'protected':>11}"
        f"{'tumour out':>16}"
    )
    for r in rows:
        out = r.get("tumour_outside_raw")
        outp = r.get("tumour_outside_protected")
        tum = f"{out[1]} -> {outp[1]}" if out and outp else "-"
        print(
            f"{r['case']:<14}{r['extractor']:<10}{r['seconds']:>6.1f}{r['dice_raw']:>10.4f}"
            f"{r['dice_protected']:>11.4f}{tum:>16}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
