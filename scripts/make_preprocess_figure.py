"""Visual check of a preprocessed case for docs/preprocessing.md.

    python scripts/make_preprocess_figure.py OUT_DIR CASE_ID [--reference-mask NATIVE_MASK]
        [--png docs/img/preprocess_<case>.png]

Rows: the four atlas-space sequences before skull stripping (resampled again from the
inputs with the saved transforms) in axial, coronal and sagittal slices; red: our brain
mask; green: a reference brain mask drawn on the native T1c (mapped with the saved
transforms), if given; yellow: the edge of the SRI24 template brain (registration check).
Needs matplotlib (``pip install brainmets[demo]``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from brainmets.atlas import atlas_file  # noqa: E402
from brainmets.preprocess import CaseTransforms, map_to_atlas  # noqa: E402
from brainmets.preprocess.images import load_volume  # noqa: E402
from brainmets.preprocess.qc import dice  # noqa: E402
from brainmets.preprocess.registration import resample_array  # noqa: E402

ROWS = (("t1c", "T1c"), ("t1", "T1"), ("t2", "T2"), ("flair", "FLAIR"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("case_id")
    ap.add_argument("--reference-mask", type=Path)
    ap.add_argument("--png", type=Path)
    args = ap.parse_args(argv)
    tr = CaseTransforms.load(args.out_dir / f"{args.case_id}-transforms.json")
    grid = tr.atlas_grid
    mask = np.asarray(nib.load(str(args.out_dir / f"{args.case_id}-mask.nii.gz")).dataobj) > 0
    tmpl = load_volume(atlas_file("t1_brain.nii.gz")).data > 0
    ref = None
    title = f"{args.case_id}: red = brain mask, yellow = SRI24 brain edge"
    if args.reference_mask:
        ref = np.asarray(map_to_atlas(args.reference_mask, tr, "t1c", kind="mask").dataobj) > 0
        title += f", green = reference mask (Dice {dice(mask, ref):.3f})"
    c = np.argwhere(mask).mean(axis=0).round().astype(int)
    fig, axes = plt.subplots(len(ROWS), 3, figsize=(9, 12))
    for r, (seq, name) in enumerate(ROWS):
        v = load_volume(tr.inputs[seq])
        img = resample_array(v.data, v.affine, grid, tr.atlas_to[seq])
        hi = np.percentile(img[mask], 99.5) if mask.any() else img.max()
        views = (
            (
                img[:, :, c[2]],
                mask[:, :, c[2]],
                tmpl[:, :, c[2]],
                None if ref is None else ref[:, :, c[2]],
            ),
            (
                img[:, c[1], :],
                mask[:, c[1], :],
                tmpl[:, c[1], :],
                None if ref is None else ref[:, c[1], :],
            ),
            (
                img[c[0], :, :],
                mask[c[0], :, :],
                tmpl[c[0], :, :],
                None if ref is None else ref[c[0], :, :],
            ),
        )
        for col, (sl, m, t, rf) in enumerate(views):
            ax = axes[r, col]
            # the template grid's first axis runs right -> left: show the subject's left on
            # the right of the picture (radiological convention) by plotting i as is
            ax.imshow(sl.T, cmap="gray", origin="lower", vmin=0, vmax=hi)
            ax.contour(t.T, [0.5], colors="yellow", linewidths=0.6)
            ax.contour(m.T, [0.5], colors="red", linewidths=0.8)
            if rf is not None:
                ax.contour(rf.T, [0.5], colors="lime", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name)
            if r == 0:
                ax.set_title(("axial", "coronal", "sagittal")[col])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    png = args.png or Path("docs/img") / f"preprocess_{args.case_id.lower()}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    print(png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
