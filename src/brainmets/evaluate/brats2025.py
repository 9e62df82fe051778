"""The BraTS 2025 lesion-wise evaluation, BraTS-METS settings (``--definition brats2025``).

Written from the challenge's published description and the behaviour of its official
package (``brats-evaluation``: panoptica with the bundled ``mets`` configuration, then the
package's ``mets`` metrics parser); every rule below is named in ``docs/evaluation.md`` and
has a phantom test.

Per region (ET = {3}, TC = {1, 3}, WT = {1, 2, 3}, RC = {4}):

* **P1 instances.** Reference and prediction instances are 26-connected components.
* **P2 one-to-one matching.** Every overlapping (reference, prediction) pair scores its Dice;
  pairs with Dice >= ``matching_threshold`` (1e-6) may match; a maximum-weight bipartite
  matching (Hungarian, cost 1 - Dice) pairs each reference instance with at most one
  prediction instance. No merging: a reference lesion split in two predicted pieces matches
  one of them, the other is a false positive.
* **P3 counts.** TP = matched pairs, FP = prediction instances left over, FN = reference
  instances left over; precision, recall and F1 (``all_instance_*``) from these, NaN where
  their denominators are zero, F1 0 without a TP unless both masks are empty (NaN).
* **P4 instance metrics.** Dice, HD95 and NSD of each matched pair, the surface metrics on
  border voxels (the 6-neighbourhood), in mm with the voxel spacing, NSD at a tolerance of
  the smallest voxel spacing; HD95 the 95th percentile (linear interpolation) of the pooled
  distances of both directions.
* **P5 large and small lesions.** A reference instance is *large* when its volume is at
  least ``volume_threshold`` (20 mm³). Lesion-wise Dice / HD95 / NSD (mean and standard
  deviation) are over the large instances (matched: their scores; missed: 0 / 373 / 0) plus
  one penalty (0 / 373 / 0) per false positive; NaN when the case has no large reference
  instance. A large matched instance with Dice below ``overlap_threshold`` (0.1) counts as
  missed in ``large_instance_*`` (its scores still enter the means). Small instances are
  only detected or not (``small_instance_*``: matched with Dice >= 0.1). Both the large and
  the small counts take *all* false positives; each block is NaN when the case has no
  instance of that size.
* **P6 global metrics.** Dice, NSD and HD95 of the whole region. The official package passes
  no voxel spacing here, so HD95 is in voxels and NSD uses a 0.5-voxel tolerance (only
  coinciding border voxels agree); reproduced as such. Without overlap: NaN when both masks
  are empty, else Dice 0, NSD 0, HD95 373.
* **P7 penalty.** Infinite distances (an empty side) are reported as 373 (the diameter of the
  SRI24 box) in the parser's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from brainmets.evaluate.model import REGIONS, CaseResult, Lesion, max_probability
from brainmets.evaluate.surface import border_distances, border_voxels
from brainmets.lesions.analysis import count_components

#: the regions of the 2025 definition; RC (resection cavity, label 4) is new in 2025
REGIONS_2025: dict[str, tuple[int, ...]] = {
    "ET": REGIONS["ET"],
    "TC": REGIONS["TC"],
    "WT": REGIONS["WT"],
    "RC": (4,),
}

METRICS_2025: tuple[str, ...] = tuple(
    [f"all_instance_{m}" for m in ("tp", "fp", "fn", "prec", "rec", "f1")]
    + [f"large_instance_{m}" for m in ("tp", "fp", "fn", "prec", "rec", "f1")]
    + [f"lesionwise_{m}_{s}" for m in ("dsc", "hd95", "nsd") for s in ("mean", "std")]
    + [f"small_instance_{m}" for m in ("tp", "fn", "fp", "prec", "rec", "f1")]
    + ["global_dsc", "global_nsd", "global_hd95"]
)

NAN = math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b else NAN


@dataclass(frozen=True)
class _Instance:
    """One reference instance after matching."""

    label: int
    voxels: int
    volume: float
    matched: int | None  # the matched prediction instance
    dice: float = NAN
    hd95: float = NAN
    nsd: float = NAN


@dataclass(frozen=True)
class Brats2025:
    """Parameters of the 2025 definition (the defaults are the official ``mets`` ones)."""

    name: str = "brats2025"
    matching_threshold: float = 1e-6
    volume_threshold: float = 20.0  # mm³, the parser's vol_threshold
    overlap_threshold: float = 0.1
    penalty_hd95: float = 373.0
    connectivity: int = 26
    regions: tuple[str, ...] = ("ET", "TC", "WT", "RC")
    labels: tuple[int, ...] = (0, 1, 2, 3, 4)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return METRICS_2025

    def evaluate(
        self,
        ref_labels: np.ndarray,
        pred_labels: np.ndarray,
        spacing: tuple[float, float, float],
        case_id: str = "",
        probability: np.ndarray | None = None,
    ) -> CaseResult:
        res = CaseResult(case_id=case_id, definition=self.name)
        # every measure is translation invariant and the region boxes (plus their 2-voxel
        # margin, clipped at the image's edge) lie inside this one: crop once
        box = _label_box(ref_labels, pred_labels, pad=3)
        ref_labels, pred_labels = ref_labels[box], pred_labels[box]
        if probability is not None:
            probability = probability[box]
        base = tuple(s.start for s in box)
        present = set(np.flatnonzero(np.bincount(ref_labels.ravel(), minlength=256))) | set(
            np.flatnonzero(np.bincount(pred_labels.ravel(), minlength=256))
        )
        for region in self.regions:
            lut = np.zeros(256, dtype=bool)
            lut[list(REGIONS_2025[region])] = True
            if not present & set(REGIONS_2025[region]):  # empty on both sides: no array work
                empty = np.zeros((1, 1, 1), dtype=bool)
                metrics, lesions = self.region(empty, empty, spacing, region)
            else:
                metrics, lesions = self.region(
                    lut[ref_labels], lut[pred_labels], spacing, region, probability, base
                )
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
        base: tuple[int, ...] = (0, 0, 0),
    ) -> tuple[dict[str, float], list[Lesion]]:
        """Metrics and lesions of one region (boolean masks of the same shape); ``base`` is
        the masks' offset in the image (for the lesion centres)."""
        box = _paired_box(ref, pred, pad=2)
        ref, pred = ref[box], pred[box]
        prob = None if probability is None else probability[box]
        offset = tuple(s.start + b for s, b in zip(box, base, strict=True))
        voxel_mm3 = float(np.prod(spacing))
        ref_cc, n_ref = _components(ref, self.connectivity)
        pred_cc, n_pred = _components(pred, self.connectivity)
        ref_sizes = np.bincount(ref_cc.ravel(), minlength=n_ref + 1)
        pred_sizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1)
        pairs = self._match(ref_cc, pred_cc, n_ref, n_pred, ref_sizes, pred_sizes)
        ref_boxes = _boxes(ref_cc, n_ref)
        pred_boxes = _boxes(pred_cc, n_pred)
        # the border of a region is the union of its components' borders (26-connected
        # components never share a face neighbour): found once, in each component's box
        ref_borders = _component_borders(ref_cc, ref_boxes)
        pred_borders = _component_borders(pred_cc, pred_boxes)
        instances: list[_Instance] = []
        for r in range(1, n_ref + 1):
            p = pairs.get(r)
            vox = int(ref_sizes[r])
            if p is None:
                instances.append(_Instance(r, vox, vox * voxel_mm3, None))
                continue
            ib = _grow_union(ref_boxes[r - 1], pred_boxes[p - 1], ref.shape, pad=0)
            inter = int(np.count_nonzero((ref_cc[ib] == r) & (pred_cc[ib] == p)))
            d = 2.0 * inter / (vox + int(pred_sizes[p]))
            sd_ref, sd_pred = border_distances(ref_borders[r - 1], pred_borders[p - 1], spacing)
            hd = float(np.percentile(np.hstack((sd_ref, sd_pred)), 95))
            nsd = _nsd(sd_ref, sd_pred, min(spacing))
            instances.append(_Instance(r, vox, vox * voxel_mm3, p, d, hd, nsd))
        tp = sum(1 for i in instances if i.matched is not None)
        fp = n_pred - tp
        fn = n_ref - tp
        metrics: dict[str, float] = {
            "all_instance_tp": float(tp),
            "all_instance_fp": float(fp),
            "all_instance_fn": float(fn),
            "all_instance_prec": _ratio(tp, tp + fp),
            "all_instance_rec": _ratio(tp, tp + fn),
            "all_instance_f1": (
                tp / (tp + 0.5 * fp + 0.5 * fn) if tp else (0.0 if n_pred + n_ref else NAN)
            ),
        }
        metrics.update(self._parser_rows(instances, fp))
        metrics.update(
            _global(
                ref_borders,
                pred_borders,
                ref_sizes,
                pred_sizes,
                inter_all(ref, pred),
                self.penalty_hd95,
            )
        )
        lesions = self._lesions(
            instances, region, ref_cc, pred_cc, pred_sizes, pred_boxes, ref_boxes,
            pairs, voxel_mm3, prob, offset,
        )  # fmt: skip
        return {k: metrics[k] for k in METRICS_2025}, lesions

    def _match(
        self,
        ref_cc: np.ndarray,
        pred_cc: np.ndarray,
        n_ref: int,
        n_pred: int,
        ref_sizes: np.ndarray,
        pred_sizes: np.ndarray,
    ) -> dict[int, int]:
        """P2: reference instance -> its matched prediction instance."""
        if not n_ref or not n_pred:
            return {}
        both = (ref_cc > 0) & (pred_cc > 0)
        code = ref_cc[both].astype(np.int64) * (n_pred + 1) + pred_cc[both]
        values, inter = np.unique(code, return_counts=True)
        r_of = values // (n_pred + 1)
        p_of = values % (n_pred + 1)
        dsc = 2.0 * inter / (ref_sizes[r_of] + pred_sizes[p_of])
        cost = np.full((n_ref, n_pred), 1.0 + 1e-6)
        ok = dsc >= self.matching_threshold
        cost[r_of[ok] - 1, p_of[ok] - 1] = 1.0 - dsc[ok]
        rows, cols = linear_sum_assignment(cost)
        return {int(i) + 1: int(j) + 1 for i, j in zip(rows, cols, strict=True) if cost[i, j] < 1}

    def _parser_rows(self, instances: list[_Instance], num_fp: int) -> dict[str, float]:
        """P5: the official ``mets`` parser's large / small / lesion-wise values."""
        pen = self.penalty_hd95
        large_dsc: list[float] = []
        large_hd: list[float] = []
        large_nsd: list[float] = []
        s_tp = s_fn = l_tp = l_fn = 0
        small_present = large_present = False
        for ins in instances:
            large = ins.volume >= self.volume_threshold
            large_present |= large
            small_present |= not large
            if ins.matched is not None:
                hit = ins.dice >= self.overlap_threshold
                if large:
                    large_dsc.append(ins.dice)
                    large_hd.append(ins.hd95)
                    large_nsd.append(ins.nsd)
                    l_tp, l_fn = l_tp + hit, l_fn + (not hit)
                else:
                    s_tp, s_fn = s_tp + hit, s_fn + (not hit)
            elif large:
                l_fn += 1
                large_dsc.append(0.0)
                large_nsd.append(0.0)
                large_hd.append(pen)
            else:
                s_fn += 1
        large_dsc += [0.0] * num_fp
        large_nsd += [0.0] * num_fp
        large_hd += [pen] * num_fp
        out: dict[str, float] = {}
        out.update(_detection("large_instance", l_tp, num_fp, l_fn, large_present))
        if instances and large_present:
            finite = [v for v in large_hd if math.isfinite(v)]
            out["lesionwise_dsc_mean"] = float(np.mean(large_dsc)) if large_dsc else 0.0
            out["lesionwise_dsc_std"] = float(np.std(large_dsc)) if large_dsc else 0.0
            out["lesionwise_hd95_mean"] = float(np.mean(finite)) if finite else pen
            out["lesionwise_hd95_std"] = float(np.std(finite)) if finite else 0.0
            out["lesionwise_nsd_mean"] = float(np.mean(large_nsd)) if large_nsd else 0.0
            out["lesionwise_nsd_std"] = float(np.std(large_nsd)) if large_nsd else 0.0
        else:
            for m in ("dsc", "hd95", "nsd"):
                out[f"lesionwise_{m}_mean"] = out[f"lesionwise_{m}_std"] = NAN
        out.update(_detection("small_instance", s_tp, num_fp, s_fn, small_present))
        return out

    def _lesions(
        self,
        instances: list[_Instance],
        region: str,
        ref_cc: np.ndarray,
        pred_cc: np.ndarray,
        pred_sizes: np.ndarray,
        pred_boxes: list[tuple[slice, ...] | None],
        ref_boxes: list[tuple[slice, ...] | None],
        pairs: dict[int, int],
        voxel_mm3: float,
        prob: np.ndarray | None,
        offset: tuple[int, ...],
    ) -> list[Lesion]:
        out: list[Lesion] = []
        for ins in instances:
            p = ins.matched
            pv = int(pred_sizes[p]) if p is not None else 0
            out.append(
                Lesion(
                    region=region,
                    kind="tp" if p is not None else "fn",
                    ref_id=ins.label,
                    pred_ids=[p] if p is not None else [],
                    ref_voxels=ins.voxels,
                    ref_volume_mm3=ins.volume,
                    pred_voxels=pv,
                    pred_volume_mm3=pv * voxel_mm3,
                    dice=ins.dice if p is not None else 0.0,
                    hd95=ins.hd95 if p is not None else self.penalty_hd95,
                    nsd=ins.nsd if p is not None else 0.0,
                    counted=ins.volume >= self.volume_threshold,
                    probability=max_probability(prob, pred_cc, [p] if p else [], pred_boxes),
                    centre_vox=_centre(ref_cc, ref_boxes[ins.label - 1], ins.label, offset),
                )
            )
        matched = set(pairs.values())
        for p in range(1, len(pred_boxes) + 1):
            if p in matched or pred_boxes[p - 1] is None:
                continue
            pv = int(pred_sizes[p])
            out.append(
                Lesion(
                    region=region,
                    kind="fp",
                    ref_id=None,
                    pred_ids=[p],
                    ref_voxels=0,
                    ref_volume_mm3=0.0,
                    pred_voxels=pv,
                    pred_volume_mm3=pv * voxel_mm3,
                    dice=0.0,
                    hd95=self.penalty_hd95,
                    nsd=0.0,
                    probability=max_probability(prob, pred_cc, [p], pred_boxes),
                    centre_vox=_centre(pred_cc, pred_boxes[p - 1], p, offset),
                )
            )
        return out


def _detection(prefix: str, tp: int, fp: int, fn: int, present: bool) -> dict[str, float]:
    """The parser's detection block; its zero-denominator values are 0, not NaN."""
    if not present:
        return {f"{prefix}_{m}": NAN for m in ("tp", "fp", "fn", "prec", "rec", "f1")}
    f1_den = 2 * tp + fp + fn
    return {
        f"{prefix}_tp": float(tp),
        f"{prefix}_fp": float(fp),
        f"{prefix}_fn": float(fn),
        f"{prefix}_prec": tp / (tp + fp) if tp + fp else 0.0,
        f"{prefix}_rec": tp / (tp + fn) if tp + fn else 0.0,
        f"{prefix}_f1": 2 * tp / f1_den if f1_den else 0.0,
    }


def inter_all(ref: np.ndarray, pred: np.ndarray) -> int:
    return int(np.count_nonzero(ref & pred))


def _global(
    ref_borders: list[np.ndarray],
    pred_borders: list[np.ndarray],
    ref_sizes: np.ndarray,
    pred_sizes: np.ndarray,
    inter: int,
    penalty: float,
) -> dict[str, float]:
    """P6: whole-region Dice, NSD (0.5-voxel tolerance) and HD95 in voxels."""
    if inter == 0:
        if not ref_borders and not pred_borders:
            return {"global_dsc": NAN, "global_nsd": NAN, "global_hd95": NAN}
        return {"global_dsc": 0.0, "global_nsd": 0.0, "global_hd95": penalty}
    a, b = int(ref_sizes[1:].sum()), int(pred_sizes[1:].sum())
    sd_ref, sd_pred = border_distances(
        np.concatenate(ref_borders), np.concatenate(pred_borders), (1.0, 1.0, 1.0)
    )
    return {
        "global_dsc": 2.0 * inter / (a + b),
        "global_nsd": _nsd(sd_ref, sd_pred, 0.5),
        "global_hd95": float(np.percentile(np.hstack((sd_ref, sd_pred)), 95)),
    }


def _nsd(sd_ref: np.ndarray, sd_pred: np.ndarray, tolerance: float) -> float:
    """Normalised surface Dice as panoptica computes it (from GaNDLF)."""
    tp_a = np.sum(sd_ref <= tolerance) / len(sd_ref)
    tp_b = np.sum(sd_pred <= tolerance) / len(sd_pred)
    fp = np.sum(sd_ref > tolerance) / len(sd_ref)
    fn = np.sum(sd_pred > tolerance) / len(sd_pred)
    return float((tp_a + tp_b) / (tp_a + tp_b + fp + fn + np.finfo(float).tiny))


def _component_borders(cc: np.ndarray, boxes: list[tuple[slice, ...] | None]) -> list[np.ndarray]:
    """Border voxel indices (n, 3) of each component (an empty array for a missing one)."""
    out = []
    for i, box in enumerate(boxes, start=1):
        if box is None:
            out.append(np.zeros((0, 3), dtype=np.int64))
            continue
        lo = np.asarray([s.start for s in box], dtype=np.int64)
        out.append(border_voxels(cc[box] == i) + lo)
    return out


def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.uint32), 0
    return count_components(mask, connectivity)


def _boxes(cc: np.ndarray, n: int) -> list[tuple[slice, ...] | None]:
    return list(ndimage.find_objects(cc, max_label=n)) if n else []


def _paired_box(ref: np.ndarray, pred: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The box of both masks plus ``pad`` voxels (clipped); the whole array when empty."""
    union = ref | pred
    if not union.any():
        return tuple(slice(0, n) for n in ref.shape)
    out = []
    for ax in range(union.ndim):
        hit = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != ax)))
        out.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + 1 + pad, union.shape[ax])))
    return tuple(out)


def _label_box(ref: np.ndarray, pred: np.ndarray, pad: int) -> tuple[slice, ...]:
    """:func:`_paired_box` of two label maps, in two passes over the image."""
    both = np.maximum(ref, pred)
    plane = both.any(axis=2)
    rows = np.flatnonzero(plane.any(axis=1))
    if not rows.size:
        return tuple(slice(0, n) for n in ref.shape)
    cols = np.flatnonzero(plane.any(axis=0))
    sub = both[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]
    deep = np.flatnonzero(sub.any(axis=(0, 1)))
    out = []
    for hit, n in zip((rows, cols, deep), ref.shape, strict=True):
        out.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + 1 + pad, n)))
    return tuple(out)


def _grow_union(
    a: tuple[slice, ...] | None,
    b: tuple[slice, ...] | None,
    shape: tuple[int, ...],
    pad: int,
) -> tuple[slice, ...]:
    boxes = [x for x in (a, b) if x is not None]
    return tuple(
        slice(
            max(min(x[ax].start for x in boxes) - pad, 0),
            min(max(x[ax].stop for x in boxes) + pad, shape[ax]),
        )
        for ax in range(len(shape))
    )


def _centre(
    labels: np.ndarray, box: tuple[slice, ...] | None, label: int, offset: tuple[int, ...]
) -> tuple[int, int, int] | None:
    if box is None:
        return None
    idx = np.nonzero(labels[box] == label)
    c = [
        int(round(float(np.mean(a)))) + s.start + o
        for a, s, o in zip(idx, box, offset, strict=True)
    ]
    return (c[0], c[1], c[2])
