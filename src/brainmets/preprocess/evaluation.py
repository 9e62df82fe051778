"""Accuracy measurement against the synthetic cohort's ground truth (tests, benchmark).

The synthetic generator (:mod:`brainmets.synth`) records for every series the exact
``template_to_scanner`` transform (SRI24 world -> that series' scanner world, RAS), which is
what ``CaseTransforms.atlas_to[seq]`` estimates. Errors are mean displacements (mm) over the
template's brain voxels:

* ``atlas_<seq>``: estimated vs true SRI24 -> native mapping of each series. The synthetic
  heads are scaled per patient (0.93-1.07 per axis), which a rigid atlas registration
  cannot represent; for ``rigid`` the reference is therefore the closest rigid transform
  to the truth (least squares over the brain), reported as ``atlas_<seq>``, and the full
  residual (scale included) as ``atlas_full_<seq>``.
* ``coreg_<seq>``: the co-registration to the T1c (exactly rigid in the generator: head
  motion between series) vs the truth, over the same brain voxels in T1c space.

:func:`tumour_outside_mask` carries the true SRI24 label map (tumour, necrosis, oedema)
onto the preprocessed grid with the true T1c transform and the estimated one, and counts
tumour voxels the brain mask leaves out (the skull stripping must leave out none).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import cast

import numpy as np

from brainmets.preprocess.images import SEQUENCES, load_volume
from brainmets.preprocess.transforms import (
    CaseTransforms,
    apply,
    closest_rigid,
    mean_displacement,
    resample_labels,
)

#: synthetic series kind -> input role
_KINDS = {"T1": "t1", "T1c": "t1c", "T2": "t2", "FLAIR": "flair"}


def synthetic_truth(cohort_dir: str | os.PathLike[str], mrn: str) -> dict[str, np.ndarray]:
    """Sequence -> true SRI24 world -> scanner world matrix (baseline study)."""
    rec = json.loads((Path(cohort_dir) / "truth" / mrn / "truth.json").read_text())
    study = rec["studies"][0]
    out: dict[str, np.ndarray] = {}
    for s in study["series"]:
        role = _KINDS.get(s["kind"])
        if role and role not in out:
            out[role] = np.asarray(s["template_to_scanner"], dtype=float)
    return out


def _dcm2niix() -> str:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).parent / "dcm2niix")
    if not Path(exe).exists():
        raise FileNotFoundError("dcm2niix is not installed (pip install dcm2niix)")
    return exe


def synthetic_inputs(
    cohort_dir: str | os.PathLike[str], mrn: str, out_dir: str | os.PathLike[str]
) -> dict[str, Path]:
    """Convert the baseline T1, T1c, T2 and FLAIR series of one synthetic patient with
    dcm2niix (what the convert stage does) and return role -> NIfTI path."""
    cohort = Path(cohort_dir)
    rec = json.loads((cohort / "truth" / mrn / "truth.json").read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for s in rec["studies"][0]["series"]:
        role = _KINDS.get(s["kind"])
        if not role or role in paths:
            continue
        dest = out / f"{role}.nii.gz"
        if not dest.exists():
            cmd = [
                _dcm2niix(),
                "-z",
                "y",
                "-b",
                "n",
                "-f",
                role,
                "-o",
                str(out),
                str(cohort / s["dir"]),
            ]
            subprocess.run(cmd, check=True, capture_output=True)
        paths[role] = dest
    return paths


def brain_points(brain_template: str | os.PathLike[str], step: int = 3) -> np.ndarray:
    """World coordinates of every ``step``-th brain voxel of the SRI24 brain template."""
    vol = load_volume(brain_template)
    idx = np.argwhere(vol.data > 0)[::step]
    return apply(vol.affine, idx.astype(float))


def registration_errors(
    transforms: CaseTransforms, truth: dict[str, np.ndarray], points: np.ndarray
) -> dict[str, float]:
    """Mean displacement errors (mm) of one case; see the module docstring."""
    out: dict[str, float] = {}
    true_c = truth["t1c"]
    rigid_c = closest_rigid(true_c, points)
    t1c_points = apply(true_c, points)
    for s in SEQUENCES:
        est = transforms.atlas_to[s]
        coreg_true = truth[s] @ np.linalg.inv(true_c)
        full = mean_displacement(est, truth[s], points)
        if transforms.atlas_registration in ("rigid", "rigid-direct"):
            out[f"atlas_{s}"] = mean_displacement(est, coreg_true @ rigid_c, points)
            out[f"atlas_full_{s}"] = full
        else:
            out[f"atlas_{s}"] = full
        if s != "t1c":
            out[f"coreg_{s}"] = mean_displacement(transforms.t1c_to[s], coreg_true, t1c_points)
    atlas = [out[f"atlas_{s}"] for s in SEQUENCES]
    out["atlas_mean"] = float(np.mean(atlas))
    out["atlas_max"] = float(np.max(atlas))
    return out


def tumour_outside_mask(
    cohort_dir: str | os.PathLike[str],
    mrn: str,
    transforms: CaseTransforms,
    mask: np.ndarray,
) -> tuple[int, int]:
    """(tumour voxels, of which outside ``mask``) of one synthetic patient on the
    preprocessed grid. The truth label map lives on the synthetic head's template grid;
    an output voxel shows the anatomy at ``inv(true T1c) @ atlas_to["t1c"]`` of it."""
    import nibabel as nib

    lab = cast(
        nib.Nifti1Image, nib.load(str(Path(cohort_dir) / "truth" / mrn / "label_map_sri24.nii.gz"))
    )
    true_c = synthetic_truth(cohort_dir, mrn)["t1c"]
    m = np.linalg.inv(true_c) @ transforms.atlas_to["t1c"]
    mapped = resample_labels(
        np.asarray(lab.dataobj), lab.affine, transforms.atlas_grid, m, "nearest"
    )
    tumour = mapped > 0
    return int(tumour.sum()), int((tumour & ~np.asarray(mask, dtype=bool)).sum())


#: the real case of the shared test data (one glioma patient, four sequences with skull)
TCGA_CASE = "TCGA-FG-6692"


def tcga_inputs(testdata: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """Role -> file of ``nifti/tcga_fg_6692_bratstoolkit/native`` in the shared test data
    (``t1``, ``t1c``, ``t2``, ``flair`` and ``mask``, the T1c brain mask provided with it).
    Raises FileNotFoundError when the folder is absent."""
    from brainmets.shared import testdata_dir

    d = Path(testdata or testdata_dir()) / "nifti" / "tcga_fg_6692_bratstoolkit" / "native"
    patterns = {
        "t1": "T1_AX*",
        "t1c": "*POST_GAD*",
        "t2": "*T2_AX*",
        "flair": "*FLAIR*",
        "mask": "bet_*t1c_mask*",
    }
    out: dict[str, Path] = {}
    for role, pattern in patterns.items():
        hits = sorted(d.glob(pattern))
        if not hits:
            raise FileNotFoundError(f"{d}: no {role} file ({pattern})")
        out[role] = hits[0]
    return out
