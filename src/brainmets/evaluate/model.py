"""The results of a lesion-wise evaluation: per case, per region, per lesion."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainmets.vocab import REGIONS

__all__ = ["REGIONS", "CaseResult", "Lesion", "max_probability", "sphere_diameter_mm"]


def sphere_diameter_mm(volume_mm3: float) -> float:
    """The diameter of the sphere of ``volume_mm3`` (how lesion sizes are binned)."""
    return float((6.0 * volume_mm3 / math.pi) ** (1.0 / 3.0)) if volume_mm3 > 0 else 0.0


@dataclass
class Lesion:
    """One reference lesion and what the prediction made of it, or one false-positive
    prediction lesion (``kind == "fp"``, no reference)."""

    region: str
    kind: str  # "tp" (detected), "fn" (missed), "fp" (prediction lesion matching nothing)
    ref_id: int | None
    pred_ids: list[int]
    ref_voxels: int
    ref_volume_mm3: float
    pred_voxels: int
    pred_volume_mm3: float
    dice: float
    hd95: float
    counted: bool = True  # False: under the definition's volume threshold, not scored
    probability: float | None = None  # prediction lesion's probability (when one was given)
    centre_vox: tuple[int, int, int] | None = None
    nsd: float | None = None  # normalised surface Dice (the 2025 definition)

    @property
    def diameter_mm(self) -> float:
        vol = self.ref_volume_mm3 if self.kind != "fp" else self.pred_volume_mm3
        return sphere_diameter_mm(vol)

    def as_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "kind": self.kind,
            "ref_lesion": self.ref_id,
            "pred_lesions": list(self.pred_ids),
            "ref_voxels": self.ref_voxels,
            "ref_volume_mm3": self.ref_volume_mm3,
            "pred_voxels": self.pred_voxels,
            "pred_volume_mm3": self.pred_volume_mm3,
            "diameter_mm": self.diameter_mm,
            "dice": self.dice,
            "hd95": self.hd95,
            "nsd": self.nsd,
            "counted": self.counted,
            "probability": self.probability,
            "centre_voxel": list(self.centre_vox) if self.centre_vox else None,
        }


@dataclass
class CaseResult:
    """A case's metrics under one definition: ``metrics[region][official metric name]``."""

    case_id: str
    definition: str
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    lesions: list[Lesion] = field(default_factory=list)
    ref_file: str = ""
    pred_file: str = ""
    seconds: float = 0.0


def max_probability(
    probability: np.ndarray | None,
    components: np.ndarray,
    ids: list[int],
    boxes: list[tuple[slice, ...] | None],
) -> float | None:
    """The highest probability inside prediction components ``ids`` (``None`` without a
    probability map); ``boxes[i - 1]`` is component ``i``'s bounding box."""
    if probability is None or not ids:
        return None
    best = 0.0
    for i in ids:
        box = boxes[i - 1]
        if box is None:
            continue
        vals = probability[box][components[box] == i]
        if vals.size:
            best = max(best, float(vals.max()))
    return best
