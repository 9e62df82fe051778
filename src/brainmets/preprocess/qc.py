"""Quality control values of one preprocessed case and the plausibility rules behind them.

* ``similarity_<seq>``: normalised mutual information (NMI, (H(A)+H(B))/H(A,B), 1 = unrelated,
  2 = identical up to a one-to-one intensity mapping) of each skull-stripped output with the
  skull-stripped SRI24 T1 template, inside the union of both brain masks.
* ``registration_nmi_<step>``: the NMI each registration reached on its own fixed grid.
* ``brain_volume_cm3``: volume of the brain mask.
* ``flags``: names of the implausible values found (empty = nothing to look at).

Thresholds were set from correct and deliberately wrong registrations of the synthetic
cohort and the real test cases (see ``docs/preprocessing.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from brainmets.preprocess.registration import nmi

#: brain-mask volume outside this range (cm^3) is flagged
BRAIN_VOLUME_CM3 = (800.0, 2000.0)
#: minimum output-to-template NMI (inside the brain masks) per sequence; below: flagged
MIN_TEMPLATE_NMI: dict[str, float] = {"t1c": 1.015, "t1": 1.015, "t2": 1.01, "flair": 1.01}
#: Dice of the brain mask with the template's brain mask below this is flagged
MIN_TEMPLATE_DICE = 0.85


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, bool)
    b = np.asarray(b, bool)
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else 1.0


def case_qc(
    outputs: Mapping[str, np.ndarray],
    mask: np.ndarray,
    template: np.ndarray,
    voxel_cm3: float,
    registration_nmi: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """QC values and flags of a case's atlas-space outputs (``outputs``: sequence -> image)."""
    tmask = np.asarray(template) > 0
    region = tmask | mask
    qc: dict[str, Any] = {}
    flags: list[str] = []
    for seq, img in outputs.items():
        v = nmi(np.asarray(template, np.float32), np.asarray(img, np.float32), region)
        qc[f"similarity_{seq}"] = round(v, 4)
        if v < MIN_TEMPLATE_NMI.get(seq, 1.03):
            flags.append(f"low_similarity_{seq}")
    vol = float(mask.sum()) * voxel_cm3
    qc["brain_volume_cm3"] = round(vol, 1)
    if not BRAIN_VOLUME_CM3[0] <= vol <= BRAIN_VOLUME_CM3[1]:
        flags.append("brain_volume_implausible")
    d = dice(mask, tmask)
    qc["mask_template_dice"] = round(d, 4)
    if d < MIN_TEMPLATE_DICE:
        flags.append("mask_differs_from_template")
    for k, v in (registration_nmi or {}).items():
        qc[f"registration_nmi_{k}"] = round(float(v), 4)
    qc["flags"] = flags
    return qc
