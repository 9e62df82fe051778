"""The BraTS 2025 (brats-evaluation ``mets`` on panoptica) rules P1-P7 on hand-made phantoms,
one rule per test, and every metric against the official package on the shared cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from brainmets.evaluate.brats2025 import METRICS_2025, Brats2025
from brainmets.evaluate.surface import border_voxels, voxel_border_distances

SHAPE = (48, 48, 48)
ONE = (1.0, 1.0, 1.0)
OFFICIAL = Path(__file__).parent / "data" / "brats2025_official_metrics_cases.json"


def cube(lo: tuple[int, int, int], size: int | tuple[int, int, int]) -> np.ndarray:
    s = (size, size, size) if isinstance(size, int) else size
    m = np.zeros(SHAPE, bool)
    m[lo[0] : lo[0] + s[0], lo[1] : lo[1] + s[1], lo[2] : lo[2] + s[2]] = True
    return m


def region(ref: np.ndarray, pred: np.ndarray, spacing=ONE, **kw: object):
    return Brats2025(**kw).region(ref, pred, spacing, "ET")  # type: ignore[arg-type]


def test_perfect_prediction() -> None:
    ref = cube((5, 5, 5), 6) | cube((25, 25, 25), 8)
    m, lesions = region(ref, ref)
    assert (m["all_instance_tp"], m["all_instance_fp"], m["all_instance_fn"]) == (2, 0, 0)
    assert m["all_instance_f1"] == 1.0 and m["lesionwise_dsc_mean"] == 1.0
    assert m["lesionwise_hd95_mean"] == 0.0 and m["lesionwise_nsd_mean"] == 1.0
    assert m["global_dsc"] == 1.0 and m["global_hd95"] == 0.0 and m["global_nsd"] == 1.0
    assert set(m) == set(METRICS_2025)
    assert [les.kind for les in lesions] == ["tp", "tp"]


def test_p1_instances_are_26_connected() -> None:
    ref = cube((10, 10, 10), 4) | cube((14, 14, 14), 4)  # corner contact only
    m, _ = region(ref, ref)
    assert m["all_instance_tp"] == 1


def test_p2_a_split_prediction_matches_one_piece_the_other_is_a_false_positive() -> None:
    ref = cube((10, 10, 10), (20, 10, 10))
    pred = ref.copy()
    pred[22:25] = False  # pieces of 12 and 5 slabs
    m, lesions = region(ref, pred)
    assert (m["all_instance_tp"], m["all_instance_fp"], m["all_instance_fn"]) == (1, 1, 0)
    (tp,) = [x for x in lesions if x.kind == "tp"]
    # the larger piece wins (higher Dice); Dice of the pair only, not of the union
    assert tp.pred_voxels == 12 * 100 and tp.dice == pytest.approx(2 * 1200 / (2000 + 1200))
    # the false positive enters the lesion-wise mean as a zero
    assert m["lesionwise_dsc_mean"] == pytest.approx(tp.dice / 2)
    assert m["lesionwise_hd95_mean"] == pytest.approx((tp.hd95 + 373) / 2)


def test_p2_one_prediction_over_two_references_matches_the_better_one() -> None:
    a = cube((5, 10, 10), (10, 10, 10))
    b = cube((17, 10, 10), (4, 10, 10))
    pred = cube((5, 10, 10), (16, 10, 10))  # covers both and the gap
    m, lesions = region(a | b, pred)
    assert (m["all_instance_tp"], m["all_instance_fp"], m["all_instance_fn"]) == (1, 0, 1)
    (tp,) = [x for x in lesions if x.kind == "tp"]
    assert tp.ref_voxels == 1000


def test_p2_the_matching_maximises_the_total_dice_not_greedy() -> None:
    # along z: r1 [12, 14), r2 [16, 24); p1 [12, 20), p2 [22, 26). The best single pair is
    # (r2, p1) (Dice 0.5); taking it first leaves r1 and p2 without a partner. The optimal
    # matching takes (r1, p1) 0.4 and (r2, p2) 0.333: two true positives.
    def slab(z0: int, z1: int) -> np.ndarray:
        return cube((10, 10, z0), (10, 10, z1 - z0))

    ref, pred = slab(12, 14) | slab(16, 24), slab(12, 20) | slab(22, 26)
    m, lesions = region(ref, pred)
    assert (m["all_instance_tp"], m["all_instance_fp"], m["all_instance_fn"]) == (2, 0, 0)
    assert sorted(round(x.dice, 3) for x in lesions) == [0.333, 0.4]


def test_p3_counts_precision_recall_f1_and_their_empty_conventions() -> None:
    ref = cube((5, 5, 5), 5) | cube((20, 20, 20), 5) | cube((35, 35, 35), 5)
    pred = cube((5, 5, 5), 5) | cube((30, 5, 5), 5)
    m, _ = region(ref, pred)
    assert (m["all_instance_tp"], m["all_instance_fp"], m["all_instance_fn"]) == (1, 1, 2)
    assert m["all_instance_prec"] == 0.5 and m["all_instance_rec"] == pytest.approx(1 / 3)
    assert m["all_instance_f1"] == pytest.approx(1 / (1 + 0.5 + 1))
    empty = np.zeros(SHAPE, bool)
    m, _ = region(ref, empty)
    assert math.isnan(m["all_instance_prec"]) and m["all_instance_rec"] == 0.0
    assert m["all_instance_f1"] == 0.0
    m, _ = region(empty, pred)
    assert m["all_instance_prec"] == 0.0 and math.isnan(m["all_instance_rec"])
    m, _ = region(empty, empty)
    assert all(math.isnan(m[k]) for k in ("all_instance_prec", "all_instance_rec"))
    assert math.isnan(m["all_instance_f1"]) and math.isnan(m["global_dsc"])
    assert math.isnan(m["lesionwise_dsc_mean"]) and math.isnan(m["small_instance_tp"])


def test_p4_surface_distances_are_voxel_borders_like_a_distance_transform() -> None:
    rng = np.random.default_rng(3)
    a = ndimage.binary_opening(rng.random(SHAPE) > 0.55, iterations=1)
    b = ndimage.binary_opening(rng.random(SHAPE) > 0.55, iterations=1)
    spacing = (1.0, 0.8, 2.5)
    ab = a ^ ndimage.binary_erosion(a, ndimage.generate_binary_structure(3, 1))
    bb = b ^ ndimage.binary_erosion(b, ndimage.generate_binary_structure(3, 1))
    assert len(border_voxels(a)) == ab.sum()
    want_ab = ndimage.distance_transform_edt(~bb, sampling=spacing)[ab]
    want_ba = ndimage.distance_transform_edt(~ab, sampling=spacing)[bb]
    got_ab, got_ba = voxel_border_distances(a, b, spacing)
    assert np.sort(got_ab) == pytest.approx(np.sort(want_ab), abs=1e-9)
    assert np.sort(got_ba) == pytest.approx(np.sort(want_ba), abs=1e-9)


def test_p4_instance_metrics_use_the_spacing_and_nsd_tolerates_one_smallest_voxel() -> None:
    ref = cube((10, 10, 10), 10)
    pred = cube((11, 10, 10), 10)  # shifted one voxel along the first axis
    m1, (les1,) = region(ref, pred)
    m2, (les2,) = region(ref, pred, spacing=(2.0, 1.0, 1.0))
    assert les1.hd95 == pytest.approx(1.0) and les2.hd95 == pytest.approx(2.0)
    # a 1-voxel shift is within the 1 mm tolerance at 1 mm, not at 2 mm along that axis
    assert les1.nsd == 1.0 and les2.nsd < 1.0
    assert les1.dice == les2.dice == pytest.approx(0.9)


def test_p5_large_and_small_lesions_and_the_overlap_threshold() -> None:
    large = cube((5, 5, 5), 6)  # 216 mm³
    small = cube((30, 30, 30), 2)  # 8 mm³ < 20
    barely = cube((30, 5, 5), (2, 2, 5))  # 20 mm³: large (>= 20)
    ref = large | small | barely
    pred = large | small  # barely missed
    m, lesions = region(ref, pred)
    assert [les.counted for les in lesions if les.kind != "fp"] == [True, True, False]
    assert (m["large_instance_tp"], m["large_instance_fn"]) == (1, 1)
    assert (m["small_instance_tp"], m["small_instance_fn"]) == (1, 0)
    assert m["lesionwise_dsc_mean"] == pytest.approx(0.5)  # large: 1 and a miss (0)
    assert m["lesionwise_hd95_mean"] == pytest.approx(373 / 2)
    # a small lesion matched with Dice < 0.1 is not detected; a large one counts as missed
    # in the counts but keeps its scores in the means
    ref2 = cube((5, 5, 5), (10, 10, 10)) | cube((30, 30, 30), (3, 1, 1))
    pred2 = cube((5, 5, 5), (5, 10, 1)) | cube((32, 28, 28), (10, 3, 3))  # Dice 0.095, 0.022
    m2, lesions2 = region(ref2, pred2)
    assert m2["all_instance_tp"] == 2
    assert (m2["large_instance_tp"], m2["large_instance_fn"]) == (0, 1)
    assert (m2["small_instance_tp"], m2["small_instance_fn"]) == (0, 1)
    big = [x for x in lesions2 if x.ref_voxels == 1000][0]
    assert m2["lesionwise_dsc_mean"] == pytest.approx(big.dice)
    # all false positives count in both blocks; a block is NaN without its lesions
    m3, _ = region(large, large | cube((30, 30, 30), 3))
    assert m3["large_instance_fp"] == 1 and math.isnan(m3["small_instance_fp"])
    assert m3["lesionwise_dsc_mean"] == pytest.approx(0.5)
    m4, _ = region(small, small)
    assert math.isnan(m4["lesionwise_dsc_mean"]) and m4["small_instance_tp"] == 1


def test_p6_global_metrics_are_in_voxels_with_a_half_voxel_tolerance() -> None:
    ref = cube((10, 10, 10), 10)
    pred = cube((11, 10, 10), 10)
    m, _ = region(ref, pred, spacing=(2.0, 1.0, 1.0))
    assert m["global_hd95"] == pytest.approx(1.0)  # voxels, not the 2 mm of the spacing
    # only the border voxels the two masks share count as agreeing
    a, b = border_voxels(ref), border_voxels(pred)
    shared = len({tuple(x) for x in a} & {tuple(x) for x in b})
    assert m["global_nsd"] == pytest.approx(shared / len(a) / 2 + shared / len(b) / 2)
    far = cube((30, 30, 30), 5)
    m, _ = region(ref, far)
    assert (m["global_dsc"], m["global_nsd"], m["global_hd95"]) == (0.0, 0.0, 373.0)


def test_p7_missed_lesions_and_false_positives_are_penalised_with_373() -> None:
    ref = cube((5, 5, 5), 6)
    empty = np.zeros(SHAPE, bool)
    m, (les,) = region(ref, empty)
    assert les.kind == "fn" and les.hd95 == 373.0
    assert m["lesionwise_hd95_mean"] == 373.0 and m["global_hd95"] == 373.0
    m, (fp,) = region(empty, ref)
    assert fp.kind == "fp" and fp.hd95 == 373.0
    assert math.isnan(m["lesionwise_hd95_mean"])  # no reference lesion: no lesion-wise score


def test_resection_cavity_is_its_own_region_and_label_4_is_allowed(tmp_path: Path) -> None:
    import nibabel as nib

    from brainmets.evaluate import evaluate_pair
    from brainmets.labelmaps import LabelMapError

    lab = np.zeros(SHAPE, np.uint8)
    lab[cube((5, 5, 5), 6)] = 3
    lab[cube((25, 25, 25), 6)] = 4
    for name in ("ref", "pred"):
        nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / f"{name}-00001-000.nii.gz")
    res = evaluate_pair(
        tmp_path / "ref-00001-000.nii.gz", tmp_path / "pred-00001-000.nii.gz", "brats2025", "c"
    )
    assert res.metrics["RC"]["all_instance_tp"] == 1 and res.metrics["ET"]["all_instance_tp"] == 1
    assert res.metrics["WT"]["all_instance_tp"] == 1  # the cavity is not tumour
    with pytest.raises(LabelMapError, match="outside"):
        evaluate_pair(
            tmp_path / "ref-00001-000.nii.gz", tmp_path / "pred-00001-000.nii.gz", "brats2023", "c"
        )


def test_every_metric_matches_the_official_package_on_the_shared_cases() -> None:
    from brainmets.evaluate import evaluate_folders, metrics_json
    from brainmets.shared import testdata_dir

    cases_dir = testdata_dir() / "metrics_cases"
    if not (cases_dir / "ref").is_dir():
        pytest.skip(f"{cases_dir}: the shared metrics cases are not here")
    official = json.loads(OFFICIAL.read_text())["cases"]
    ev = evaluate_folders(cases_dir / "pred", cases_dir / "ref", "brats2025", workers=2)
    ours = metrics_json(ev)
    assert set(ours) == set(official)
    compared = 0
    for case, regions in official.items():
        for region_name, metrics in regions.items():
            for name, value in metrics.items():
                got = ours[case][region_name][name]
                if value is None:
                    assert got is None, (case, region_name, name, got)
                elif name.endswith(("_tp", "_fp", "_fn")):
                    assert got == int(value), (case, region_name, name)
                else:
                    assert got == pytest.approx(value, abs=1e-6), (case, region_name, name)
                compared += 1
    assert compared == 14 * 4 * 27
