"""Detection by lesion size, and a FROC curve from per-lesion probabilities.

Neither official program breaks its numbers down by lesion size, which is what metastasis
work needs: small lesions are the ones models miss. A lesion's size is the diameter of the
sphere of its volume (the reference lesion's; a false positive's own).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainmets.evaluate.model import CaseResult, Lesion

#: default bin edges (mm of diameter): 0-3, 3-5, 5-10, 10-20, > 20
DEFAULT_BINS: tuple[float, ...] = (0.0, 3.0, 5.0, 10.0, 20.0, math.inf)


def parse_bins(text: str) -> tuple[float, ...]:
    """Bin edges from ``"0,3,5,10,20"`` (an open last bin is added)."""
    edges = [float(x) for x in text.replace(";", ",").split(",") if x.strip()]
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"size bins {text!r}: give at least two increasing edges, e.g. 0,3,5,10")
    if edges[0] != 0:
        edges.insert(0, 0.0)
    if math.isfinite(edges[-1]):
        edges.append(math.inf)
    return tuple(edges)


def bin_label(lo: float, hi: float) -> str:
    return f">{lo:g} mm" if math.isinf(hi) else f"{lo:g}-{hi:g} mm"


@dataclass
class SizeBin:
    region: str
    label: str
    lo_mm: float
    hi_mm: float
    n_ref: int
    n_detected: int
    n_fp: int
    fp_per_case: float
    sensitivity: float  # NaN without reference lesions in the bin
    median_dice: float  # over the bin's reference lesions (missed ones count 0)
    mean_dice: float

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def _in_bin(d: float, lo: float, hi: float) -> bool:
    return lo <= d < hi


def size_breakdown(
    cases: Sequence[CaseResult], bins: Sequence[float] = DEFAULT_BINS
) -> list[SizeBin]:
    """Sensitivity, false positives per case and Dice per region and size bin, over all
    cases (every reference lesion, also those under a definition's volume threshold)."""
    n_cases = max(1, len(cases))
    lesions = [les for c in cases for les in c.lesions]
    regions = list(dict.fromkeys(les.region for les in lesions)) or []
    out: list[SizeBin] = []
    for region in regions:
        mine = [les for les in lesions if les.region == region]
        for lo, hi in zip(bins, bins[1:], strict=False):
            refs = [les for les in mine if les.kind != "fp" and _in_bin(les.diameter_mm, lo, hi)]
            fps = [les for les in mine if les.kind == "fp" and _in_bin(les.diameter_mm, lo, hi)]
            detected = [les for les in refs if les.kind == "tp"]
            dices = np.array([les.dice for les in refs], dtype=float)
            out.append(
                SizeBin(
                    region=region,
                    label=bin_label(lo, hi),
                    lo_mm=lo,
                    hi_mm=hi,
                    n_ref=len(refs),
                    n_detected=len(detected),
                    n_fp=len(fps),
                    fp_per_case=len(fps) / n_cases,
                    sensitivity=len(detected) / len(refs) if refs else math.nan,
                    median_dice=float(np.median(dices)) if dices.size else math.nan,
                    mean_dice=float(np.mean(dices)) if dices.size else math.nan,
                )
            )
    return out


@dataclass
class FrocPoint:
    region: str
    threshold: float
    sensitivity: float
    fp_per_case: float


def froc(cases: Sequence[CaseResult], region: str = "ET") -> list[FrocPoint]:
    """Sensitivity against false positives per case as the probability threshold on
    prediction lesions rises (a lesion's probability is the maximum over its voxels).

    Only when the prediction lesions carry probabilities; a reference lesion counts as
    found at a threshold when one of its prediction lesions reaches it. Matching does not
    change with the threshold: the 2023 rule assigns each prediction component on its own.
    """
    n_cases = max(1, len(cases))
    refs: list[Lesion] = []
    fps: list[Lesion] = []
    for c in cases:
        for les in c.lesions:
            if les.region != region:
                continue
            (fps if les.kind == "fp" else refs).append(les)
    probs = [les.probability for les in refs + fps if les.probability is not None]
    if not probs or not refs:
        return []
    points = []
    for t in sorted(set(probs), reverse=True):
        found = sum(1 for les in refs if les.kind == "tp" and (les.probability or 0.0) >= t)
        fp = sum(1 for les in fps if (les.probability or 0.0) >= t)
        points.append(FrocPoint(region, float(t), found / len(refs), fp / n_cases))
    return points
