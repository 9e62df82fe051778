"""The BraTS 2023 (BraTS-METS) lesion-wise rules on hand-made phantoms, one rule per test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from brainmets.evaluate.brats2023 import Brats2023
from brainmets.evaluate.surface import dice, robust_hausdorff, surface_distances

SHAPE = (48, 48, 48)
ONE = (1.0, 1.0, 1.0)


def ball(centre: tuple[int, int, int], r: float, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    g = np.indices(shape)
    d2 = sum((g[i] - centre[i]) ** 2 for i in range(3))
    return d2 <= r * r


def et(*masks: np.ndarray) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    for m in masks:
        out[m] = 3
    return out


def region(ref: np.ndarray, pred: np.ndarray, **kw: object) -> tuple[dict[str, float], list]:
    d = Brats2023(**kw)  # type: ignore[arg-type]
    return d.region(ref.astype(bool), pred.astype(bool), ONE, "ET")


def test_perfect_prediction_scores_one_and_zero() -> None:
    ref = ball((12, 12, 12), 4) | ball((34, 34, 34), 6)
    m, lesions = region(ref, ref)
    assert m["Num_TP"] == 2 and m["Num_FN"] == 0 and m["Num_FP"] == 0
    assert m["LesionWise_Score_Dice"] == 1.0 and m["LesionWise_Score_HD95"] == 0.0
    assert m["Legacy_Dice"] == 1.0 and m["Legacy_HD95"] == 0.0
    assert m["GT_Complete_Volume"] == ref.sum()
    assert [les.kind for les in lesions] == ["tp", "tp"]


def test_r1_components_are_26_connected() -> None:
    ref = np.zeros(SHAPE, bool)
    ref[10:14, 10:14, 10:14] = True
    ref[14:18, 14:18, 14:18] = True  # touches the first one only at a corner
    m, lesions = region(ref, ref, dilation=0)
    assert len([les for les in lesions if les.kind != "fp"]) == 1
    assert m["Num_TP"] == 1


def test_r2_reference_lesions_within_two_voxels_merge() -> None:
    a = np.zeros(SHAPE, bool)
    a[10:16, 10:16, 10:16] = True
    b = np.zeros(SHAPE, bool)
    b[18:24, 10:16, 10:16] = True  # two empty voxels between: dilations touch
    c = np.zeros(SHAPE, bool)
    c[30:36, 10:16, 10:16] = True  # far away
    m, lesions = region(a | b | c, a | b | c)
    refs = [les for les in lesions if les.kind != "fp"]
    assert len(refs) == 2
    assert sorted(les.ref_voxels for les in refs) == [216, 432]
    # Num_TP counts detected reference lesions (the merged one once)
    assert m["Num_TP"] == 2


def test_r3_a_split_prediction_is_scored_as_one_union() -> None:
    ref = np.zeros(SHAPE, bool)
    ref[10:30, 10:20, 10:20] = True
    pred = ref.copy()
    pred[19:22] = False  # cut into two pieces by a 3-voxel slab
    m, lesions = region(ref, pred)
    (les,) = [x for x in lesions if x.kind == "tp"]
    assert len(les.pred_ids) == 2
    assert les.dice == pytest.approx(dice(ref, pred))
    # Num_TP counts detected reference lesions, not prediction pieces
    assert m["Num_TP"] == 1 and m["Num_FP"] == 0
    assert m["LesionWise_Score_Dice"] == pytest.approx(les.dice)


def test_r3_a_merged_prediction_counts_for_each_reference_lesion() -> None:
    a = np.zeros(SHAPE, bool)
    a[10:16, 10:16, 10:16] = True
    b = np.zeros(SHAPE, bool)
    b[22:28, 10:16, 10:16] = True
    pred = a | b
    pred[16:22, 12:14, 12:14] = True  # a bridge joins them into one prediction component
    m, lesions = region(a | b, pred)
    refs = [les for les in lesions if les.kind == "tp"]
    assert len(refs) == 2
    # each reference lesion is scored against the whole merged component
    for les in refs:
        assert les.pred_voxels == pred.sum()
        assert les.dice == pytest.approx(2 * 216 / (216 + pred.sum()))
    assert m["Num_TP"] == 2 and m["Num_FP"] == 0


def test_r3_a_near_miss_touching_the_dilation_is_a_hit() -> None:
    ref = np.zeros(SHAPE, bool)
    ref[10:16, 10:16, 10:16] = True
    pred = np.zeros(SHAPE, bool)
    pred[16:22, 10:16, 10:16] = True  # face to face, no overlap: inside the dilation
    m, lesions = region(ref, pred)
    (les,) = [x for x in lesions if x.kind != "fp"]
    assert les.kind == "tp" and les.dice == 0.0
    assert m["Num_TP"] == 1 and m["Num_FP"] == 0 and m["Num_FN"] == 0
    # one empty voxel between: outside the dilation, a miss and a false positive
    pred2 = np.zeros(SHAPE, bool)
    pred2[17:23, 10:16, 10:16] = True
    m2, _ = region(ref, pred2)
    assert m2["Num_TP"] == 0 and m2["Num_FP"] == 1 and m2["Num_FN"] == 1


def test_r4_false_positives_count_at_any_size() -> None:
    ref = ball((12, 12, 12), 4)
    pred = ref.copy()
    pred[40, 40, 40] = True  # a one-voxel speck
    m, lesions = region(ref, pred)
    assert m["Num_FP"] == 1
    assert m["LesionWise_Score_Dice"] == pytest.approx(0.5)
    assert m["LesionWise_Score_HD95"] == pytest.approx(374 / 2)
    (fp,) = [les for les in lesions if les.kind == "fp"]
    assert fp.pred_voxels == 1


def test_r5_reference_lesions_of_two_voxels_or_less_are_not_scored() -> None:
    big = ball((12, 12, 12), 4)
    tiny = np.zeros(SHAPE, bool)
    tiny[40, 40, 40:42] = True  # 2 voxels = 2 mm³
    three = np.zeros(SHAPE, bool)
    three[30, 40, 40:43] = True  # 3 voxels: scored
    m, lesions = region(big | tiny | three, big)
    assert m["Num_FN"] == 1  # only the 3-voxel lesion
    assert m["Num_TP"] == 1
    assert m["LesionWise_Score_Dice"] == pytest.approx(0.5)
    unscored = [les for les in lesions if not les.counted]
    assert len(unscored) == 1 and unscored[0].ref_voxels == 2
    # a prediction of the unscored lesion is not a false positive either
    m2, _ = region(big | tiny, big | tiny)
    assert m2["Num_FP"] == 0 and m2["Num_TP"] == 1


def test_r6_a_missed_lesion_scores_the_penalties() -> None:
    a, b = ball((12, 12, 12), 4), ball((34, 34, 34), 4)
    m, lesions = region(a | b, a)
    missed = [les for les in lesions if les.kind == "fn"]
    assert len(missed) == 1 and missed[0].dice == 0 and missed[0].hd95 == 374
    assert m["LesionWise_Score_HD95"] == pytest.approx(374 / 2)


def test_r7_empty_reference_and_prediction() -> None:
    empty = np.zeros(SHAPE, bool)
    m, lesions = region(empty, empty)
    assert not lesions
    assert m["LesionWise_Score_Dice"] == 1.0 and m["LesionWise_Score_HD95"] == 0.0
    assert m["Legacy_Dice"] == 1.0 and m["Legacy_HD95"] == 0.0
    ref = ball((20, 20, 20), 5)
    m_fn, _ = region(ref, empty)
    assert m_fn["LesionWise_Score_Dice"] == 0 and m_fn["Legacy_HD95"] == 374
    assert m_fn["Sensitivity"] == 0
    m_fp, _ = region(empty, ref)
    assert m_fp["Num_FP"] == 1 and m_fp["LesionWise_Score_HD95"] == 374
    assert m_fp["Legacy_Dice"] == 0 and m_fp["GT_Complete_Volume"] == 0
    assert m_fp["Sensitivity"] == 0  # nothing to find, but something found


def test_r8_regions_are_built_from_the_labels() -> None:
    ref = np.zeros(SHAPE, np.uint8)
    core = ball((24, 24, 24), 6)
    ref[ball((24, 24, 24), 10)] = 2
    ref[core] = 3
    ref[ball((24, 24, 24), 3)] = 1
    pred = ref.copy()
    pred[pred == 2] = 3  # edema predicted as enhancing
    res = Brats2023().evaluate(ref, pred, ONE, "x")
    assert res.metrics["WT"]["Legacy_Dice"] == 1.0
    assert res.metrics["TC"]["Legacy_Dice"] < 0.5
    assert res.metrics["ET"]["Num_TP"] == 1
    assert math.isclose(res.metrics["ET"]["GT_Complete_Volume"], float((ref == 3).sum()))


def test_hd95_of_shifted_cubes_is_the_shift() -> None:
    a = np.zeros(SHAPE, bool)
    a[10:30, 10:30, 10:30] = True
    b = np.roll(a, 3, axis=0)
    hd = robust_hausdorff(surface_distances(a, b))
    assert hd == pytest.approx(3.0)
    # anisotropic spacing scales the distance
    hd2 = robust_hausdorff(surface_distances(a, b, (2.0, 1.0, 1.0)))
    assert hd2 == pytest.approx(6.0)


def test_the_crop_does_not_change_the_numbers() -> None:
    ref = ball((12, 12, 12), 4) | ball((34, 34, 34), 6)
    pred = np.roll(ref, 2, axis=1)
    ref_l, pred_l = et(ref), et(pred)
    big_ref = np.zeros((96, 96, 96), np.uint8)
    big_pred = np.zeros((96, 96, 96), np.uint8)
    big_ref[20:68, 30:78, 10:58] = ref_l
    big_pred[20:68, 30:78, 10:58] = pred_l
    small = Brats2023().evaluate(ref_l, pred_l, ONE).metrics["ET"]
    big = Brats2023().evaluate(big_ref, big_pred, ONE).metrics["ET"]
    for k in small:
        if k == "Specificity":
            continue  # depends on the image size, by definition
        assert small[k] == pytest.approx(big[k]), k


# ---------------------------------------------------------------- against the official script
OFFICIAL = Path(__file__).parent / "data" / "brats2023_official_metrics_cases.json"


def test_every_metric_matches_the_official_script_on_the_shared_cases() -> None:
    from brainmets.evaluate import evaluate_folders, metrics_json
    from brainmets.shared import testdata_dir

    cases_dir = testdata_dir() / "metrics_cases"
    if not (cases_dir / "ref").is_dir():
        pytest.skip(f"{cases_dir}: the shared metrics cases are not here")
    official = json.loads(OFFICIAL.read_text())["cases"]
    ours = metrics_json(evaluate_folders(cases_dir / "pred", cases_dir / "ref", workers=2))
    assert set(ours) == set(official)
    compared = 0
    for case, regions in official.items():
        for region, metrics in regions.items():
            for name, value in metrics.items():
                got = ours[case][region][name]
                if name.startswith("Num_"):
                    assert got == int(value), (case, region, name)
                else:
                    assert got == pytest.approx(value, abs=1e-6), (case, region, name)
                compared += 1
    assert compared == 14 * 3 * 10
