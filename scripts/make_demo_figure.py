"""Figure of one synthetic patient: the four sequences as acquired (top row) and resampled
into template space with the ground-truth label map overlaid (bottom row).

    python scripts/make_demo_figure.py [--cohort DIR] [--patient 0] [--out PNG]

Without ``--cohort`` a one-patient cohort (seed 0) is generated into a temporary folder.
Needs matplotlib (``pip install 'brainmets[demo]'``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from scipy import ndimage  # noqa: E402

KINDS = [("T1", "T1"), ("T1c", "T1 post-contrast"), ("T2", "T2"), ("FLAIR", "FLAIR")]
LABEL_COLOURS = ListedColormap(
    [(0, 0, 0, 0), (1.0, 0.85, 0.1, 0.75), (0.1, 0.8, 0.3, 0.45), (0.95, 0.15, 0.15, 0.75)]
)


def read_series(root: Path, series: dict) -> tuple[np.ndarray, np.ndarray]:
    """Stored values x slope as an [i, j, k] array, with the truth's RAS affine."""
    files = sorted((root / series["dir"]).glob("*.dcm"))
    dss = [pydicom.dcmread(f) for f in files]
    dss.sort(key=lambda d: int(d.InstanceNumber))
    arr = np.stack([d.pixel_array.T.astype(np.float32) for d in dss], axis=-1)
    n = series["grids"][0]["shape"][2]
    slope = float(dss[0].get("RescaleSlope", 1.0))
    return arr[:, :, :n] * slope, np.array(series["grids"][0]["affine_ras"])


def to_template_slice(
    vol: np.ndarray,
    affine: np.ndarray,
    t2s: np.ndarray,
    tmpl_affine: np.ndarray,
    shape: tuple[int, int],
    k: int,
) -> np.ndarray:
    """Axial slice ``k`` of the template grid, sampled from a series (linear)."""
    ii, jj = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    vox = np.stack([ii, jj, np.full_like(ii, k), np.ones_like(ii)]).reshape(4, -1).astype(float)
    m = np.linalg.inv(affine) @ t2s @ tmpl_affine
    src = (m @ vox)[:3]
    out = ndimage.map_coordinates(vol, src, order=1, cval=0.0)
    return out.reshape(shape)


def window(img: np.ndarray) -> tuple[float, float]:
    nz = img[img > 0]
    if not nz.size:
        return 0.0, 1.0
    return 0.0, float(np.percentile(nz, 99.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cohort", type=Path, default=None)
    ap.add_argument("--patient", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("docs/img/synthetic_patient.png"))
    args = ap.parse_args()
    tmp = None
    root = args.cohort
    if root is None:
        from brainmets.synth import generate_cohort

        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name)
        generate_cohort(root, 1, 0, workers=1)
    truth = json.loads((root / "truth.json").read_text())
    pat = truth["patients"][args.patient]
    study = pat["studies"][0]
    label_img = nib.load(str(root / pat["truth_files"]["label_map"]))
    labels = np.asarray(label_img.dataobj)
    tmpl_affine = label_img.affine
    big = max(pat["lesions"], key=lambda les: les["volume_voxels"]["whole"])
    centre = np.array(big["centre_template_mm"] + [1.0])
    k_t = int(round((np.linalg.inv(tmpl_affine) @ centre)[2]))
    fig, axes = plt.subplots(2, 4, figsize=(16, 8.6), facecolor="black")
    for col, (kind, title) in enumerate(KINDS):
        series = next((s for s in study["series"] if s["kind"] == kind), None)
        top, bottom = axes[0, col], axes[1, col]
        for ax in (top, bottom):
            ax.set_axis_off()
        if series is None:
            top.set_title(f"{title}: not acquired", color="white")
            continue
        vol, aff = read_series(root, series)
        t2s = np.array(series["template_to_scanner"])
        # native slice through the largest lesion
        scanner = t2s @ centre
        k = int(np.clip(round((np.linalg.inv(aff) @ scanner)[2]), 0, vol.shape[2] - 1))
        sl = vol[:, :, k].T
        sp = np.linalg.norm(aff[:3, :3], axis=0)
        lo, hi = window(vol)
        top.imshow(sl, cmap="gray", vmin=lo, vmax=hi, aspect=sp[1] / sp[0], interpolation="nearest")
        top.set_title(
            f"{title}\n{series['description']} ({series['acquisition_type']}, "
            f"{series['orientation']})",
            color="white",
            fontsize=10,
        )
        # template-space slice with labels
        ts = to_template_slice(vol, aff, t2s, tmpl_affine, labels.shape[:2], k_t)
        lo2, hi2 = window(ts)
        bottom.imshow(ts.T, cmap="gray", vmin=lo2, vmax=hi2, origin="lower")
        bottom.imshow(
            labels[:, :, k_t].T,
            cmap=LABEL_COLOURS,
            vmin=0,
            vmax=3,
            origin="lower",
            interpolation="nearest",
        )
        bottom.set_title(f"{title} in {pat['template']} space + labels", color="white", fontsize=10)
    scanner = study["scanner"]
    fig.suptitle(
        f"Synthetic patient {pat['index']} - {scanner['manufacturer']} {scanner['model']} "
        f"{scanner['field_strength_t']} T - {len(pat['lesions'])} metastases "
        "(labels: yellow necrosis, green edema, red enhancing)",
        color="white",
        fontsize=12,
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80, facecolor="black")
    print(f"wrote {args.out}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
