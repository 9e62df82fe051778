"""The BraTS 2023 lesion-wise evaluation, BraTS-METS settings (``--definition brats2023``).

Written from the challenge's published description and the behaviour of its official
script; every rule below is named in ``docs/evaluation.md`` and has a phantom test.

Per region (ET = {3}, TC = {1, 3}, WT = {1, 2, 3}):

* **R1 components.** Reference and prediction lesions are 26-connected components.
* **R2 merging by dilation.** The reference mask is dilated by ``dilation`` iterations of the
  18-neighbourhood; reference components whose dilations touch are one reference lesion.
* **R3 assignment.** A prediction component belongs to a reference lesion when it overlaps the
  lesion's own dilation (one iteration); a prediction component may belong to several
  reference lesions, and a reference lesion is scored against the union of all of its
  prediction components (whole components, also the parts outside the dilation).
* **R4 false positives.** Prediction components that belong to no reference lesion, at any
  size.
* **R5 volume threshold.** Reference lesions of at most ``volume_threshold`` mm³ are left out
  of the counts and scores (but their prediction components are not false positives).
* **R6 penalties.** A missed lesion scores Dice 0 and HD95 ``penalty_hd95`` (374 mm); so
  does each false positive.
* **R7 lesion-wise scores.** Sum of the counted lesions' scores (plus penalties for false
  positives) divided by the number of counted lesions plus false positives; with nothing to
  count (no reference lesion, no false positive) Dice 1 and HD95 0.
* **R8 legacy metrics.** Dice and HD95 of the whole region; voxel-wise sensitivity and
  specificity; the reference volume (mm³).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brainmets.evaluate.model import REGIONS, CaseResult, Lesion, max_probability
from brainmets.evaluate.surface import dice, robust_hausdorff, surface_distances
from brainmets.labelmaps import nonzero_box
from brainmets.lesions.analysis import count_components

METRICS_2023: tuple[str, ...] = (
    "Num_TP",
    "Num_FP",
    "Num_FN",
    "Sensitivity",
    "Specificity",
    "Legacy_Dice",
    "Legacy_HD95",
    "GT_Complete_Volume",
    "LesionWise_Score_Dice",
    "LesionWise_Score_HD95",
)

_STRUCT18 = ndimage.generate_binary_structure(3, 2)


@dataclass(frozen=True)
class Brats2023:
    """Parameters of the 2023 definition (the defaults are the BraTS-METS challenge's)."""

    name: str = "brats2023"
    dilation: int = 1
    volume_threshold: float = 2.0
    penalty_hd95: float = 374.0
    connectivity: int = 26
    regions: tuple[str, ...] = ("ET", "TC", "WT")
    labels: tuple[int, ...] = (0, 1, 2, 3)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return METRICS_2023

    def evaluate(
        self,
        ref_labels: np.ndarray,
        pred_labels: np.ndarray,
        spacing: tuple[float, float, float],
        case_id: str = "",
        probability: np.ndarray | None = None,
    ) -> CaseResult:
        res = CaseResult(case_id=case_id, definition=self.name)
        ref_labels, pred_labels, probability, full_size = _crop_to_labels(
            ref_labels, pred_labels, probability, margin=self.dilation + 2
        )
        for region in self.regions:
            lut = np.zeros(256, dtype=bool)
            lut[list(REGIONS[region])] = True
            ref = lut[ref_labels]
            pred = lut[pred_labels]
            metrics, lesions = self.region(ref, pred, spacing, region, probability, full_size)
            res.metrics[region] = metrics
            res.lesions.extend(lesions)
        return res

    # ------------------------------------------------------------------ one region
    def region(
        self,
        ref: np.ndarray,
        pred: np.ndarray,
        spacing: tuple[float, float, float],
        region: str = "",
        probability: np.ndarray | None = None,
        full_size: int | None = None,
    ) -> tuple[dict[str, float], list[Lesion]]:
        """Metrics and lesions of one region (boolean masks); ``full_size`` is the number of
        voxels of the whole image when the masks are a crop of it (for the specificity)."""
        voxel_mm3 = float(np.prod(spacing))
        ref_groups = _merged_reference(ref, self.dilation, self.connectivity)
        pred_cc, n_pred = count_components(pred, self.connectivity)
        pred_boxes = ndimage.find_objects(pred_cc) if n_pred else []
        pred_sizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1)
        ref_boxes = ndimage.find_objects(ref_groups)
        lesions: list[Lesion] = []
        assigned: set[int] = set()
        tp_count = 0  # counted reference lesions with at least one prediction component
        fn_count = 0
        for ref_id, box in enumerate(ref_boxes, start=1):
            if box is None:
                continue
            grown = _grow(box, ref.shape, self.dilation + 1)
            ref_local = ref_groups[grown] == ref_id
            near = ndimage.binary_dilation(ref_local, structure=_STRUCT18, iterations=self.dilation)
            hits = [int(h) for h in np.unique(pred_cc[grown][near]) if h != 0]
            assigned.update(hits)
            ref_vox = int(ref_local.sum())
            vol = ref_vox * voxel_mm3
            counted = vol > self.volume_threshold
            if hits:
                union_box = _union_box([grown] + [pred_boxes[h - 1] for h in hits])
                r = ref_groups[union_box] == ref_id
                p = np.isin(pred_cc[union_box], hits)
                d = dice(r, p)
                hd = robust_hausdorff(surface_distances(r, p, spacing))
                pred_vox = int(pred_sizes[hits].sum())
                kind = "tp"
                if counted:
                    tp_count += 1
            else:
                d, hd, pred_vox, kind = 0.0, float("inf"), 0, "fn"
                if counted:
                    fn_count += 1
            if not np.isfinite(hd):
                hd = self.penalty_hd95
            lesions.append(
                Lesion(
                    region=region,
                    kind=kind,
                    ref_id=ref_id,
                    pred_ids=hits,
                    ref_voxels=ref_vox,
                    ref_volume_mm3=vol,
                    pred_voxels=pred_vox,
                    pred_volume_mm3=pred_vox * voxel_mm3,
                    dice=d,
                    hd95=hd,
                    counted=counted,
                    probability=max_probability(probability, pred_cc, hits, pred_boxes),
                    centre_vox=_centre(ref_groups, box, ref_id),
                )
            )
        fps = [i for i in range(1, n_pred + 1) if i not in assigned and pred_boxes[i - 1]]
        for i in fps:
            lesions.append(
                Lesion(
                    region=region,
                    kind="fp",
                    ref_id=None,
                    pred_ids=[i],
                    ref_voxels=0,
                    ref_volume_mm3=0.0,
                    pred_voxels=int(pred_sizes[i]),
                    pred_volume_mm3=float(pred_sizes[i]) * voxel_mm3,
                    dice=0.0,
                    hd95=self.penalty_hd95,
                    probability=max_probability(probability, pred_cc, [i], pred_boxes),
                    centre_vox=_centre(pred_cc, pred_boxes[i - 1], i),
                )
            )
        scored = [les for les in lesions if les.kind != "fp" and les.counted]
        n = len(scored) + len(fps)
        if n:
            lw_dice = sum(les.dice for les in scored) / n
            lw_hd = (sum(les.hd95 for les in scored) + len(fps) * self.penalty_hd95) / n
        else:
            lw_dice, lw_hd = 1.0, 0.0
        metrics = {
            "Num_TP": float(tp_count),
            "Num_FP": float(len(fps)),
            "Num_FN": float(fn_count),
            **_legacy(ref, pred, spacing, self.penalty_hd95, full_size),
            "LesionWise_Score_Dice": lw_dice,
            "LesionWise_Score_HD95": lw_hd,
        }
        return {k: metrics[k] for k in METRICS_2023}, lesions


def _grow(box: tuple[slice, ...], shape: tuple[int, ...], margin: int) -> tuple[slice, ...]:
    return tuple(
        slice(max(0, s.start - margin), min(n, s.stop + margin))
        for s, n in zip(box, shape, strict=True)
    )


def _union_box(boxes: list[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(
        slice(min(b[ax].start for b in boxes), max(b[ax].stop for b in boxes))
        for ax in range(len(boxes[0]))
    )


def _merged_reference(ref: np.ndarray, dilation: int, connectivity: int) -> np.ndarray:
    """Reference voxels labelled by the component of the dilated reference they lie in (R2)."""
    out = np.zeros(ref.shape, dtype=np.uint32)
    if not ref.any():
        return out
    idx = np.nonzero(ref)
    box = _grow(tuple(slice(int(a.min()), int(a.max()) + 1) for a in idx), ref.shape, dilation + 1)
    local = ref[box]
    grown = ndimage.binary_dilation(local, structure=_STRUCT18, iterations=dilation)
    groups, _ = count_components(grown, connectivity)
    out[box] = np.where(local, groups, 0)
    return out


def _crop_to_labels(
    ref: np.ndarray, pred: np.ndarray, probability: np.ndarray | None, margin: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """The label maps cropped to the box of their labelled voxels (plus ``margin``): every
    measure is translation invariant, and the image's size is kept for the specificity."""
    size = int(ref.size)
    box = nonzero_box((ref != 0) | (pred != 0))
    if box is None:
        box = tuple(slice(0, min(1, n)) for n in ref.shape)
    box = _grow(box, ref.shape, margin)
    prob = None if probability is None else probability[box]
    return ref[box], pred[box], prob, size


def _legacy(
    ref: np.ndarray,
    pred: np.ndarray,
    spacing: tuple[float, float, float],
    penalty: float,
    full_size: int | None = None,
) -> dict[str, float]:
    tp = int(np.count_nonzero(ref & pred))
    n_ref = int(np.count_nonzero(ref))
    n_pred = int(np.count_nonzero(pred))
    fn = n_ref - tp
    fp = n_pred - tp
    tn = (ref.size if full_size is None else full_size) - tp - fn - fp
    if n_ref == 0 and n_pred == 0:
        legacy_dice, legacy_hd = 1.0, 0.0
    elif n_ref == 0 or n_pred == 0:
        legacy_dice, legacy_hd = 0.0, penalty
    else:
        legacy_dice = dice(ref, pred)
        legacy_hd = robust_hausdorff(surface_distances(ref, pred, spacing))
    return {
        # an empty reference scores sensitivity 1 only with an empty prediction
        "Sensitivity": tp / (tp + fn) if tp + fn else (1.0 if n_pred == 0 else 0.0),
        "Specificity": tn / (tn + fp) if tn + fp else 0.0,
        "Legacy_Dice": legacy_dice,
        "Legacy_HD95": legacy_hd,
        "GT_Complete_Volume": n_ref * float(np.prod(spacing)),
    }


def _centre(labels: np.ndarray, box: tuple[slice, ...], label: int) -> tuple[int, int, int]:
    idx = np.nonzero(labels[box] == label)
    c = [int(round(float(np.mean(a)))) + s.start for a, s in zip(idx, box, strict=True)]
    return (c[0], c[1], c[2])
