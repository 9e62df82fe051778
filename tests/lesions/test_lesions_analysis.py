"""Lesion counting and measurement on small synthetic label maps with known answers."""

from __future__ import annotations

import time

import numpy as np
import pytest

from brainmets.atlas import AtlasError
from brainmets.lesions import FeatureParams, analyse, count_components, load_atlas_labels
from brainmets.lesions.analysis import max_diameter_mm
from brainmets.lesions.atlas import AtlasLabels, place_on_atlas

EYE = np.eye(4)


@pytest.fixture(scope="module")
def atlas() -> AtlasLabels:
    try:
        return load_atlas_labels()
    except AtlasError as exc:
        pytest.skip(str(exc))


def ball(shape: tuple[int, int, int], centre: tuple[float, ...], r: float) -> np.ndarray:
    g = np.ogrid[tuple(slice(0, s) for s in shape)]
    return sum((a - c) ** 2 for a, c in zip(g, centre, strict=True)) <= r * r


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ((1, 1, 1), {26: 1, 18: 2, 6: 2}),
        ((1, 1, 0), {26: 1, 18: 1, 6: 2}),
        ((1, 0, 0), {26: 1, 18: 1, 6: 1}),
    ],
)
def test_connectivity(offset: tuple[int, int, int], expected: dict[int, int]) -> None:
    lab = np.zeros((6, 6, 6), np.uint8)
    lab[2, 2, 2] = 3
    lab[2 + offset[0], 2 + offset[1], 2 + offset[2]] = 3
    for conn, n in expected.items():
        f = analyse(lab, EYE, FeatureParams(connectivity=conn)).features
        assert f.et_num == n, conn
        assert f.et_vol == 0.002


def test_counts_per_label_separately_and_merged_edema() -> None:
    lab = np.zeros((40, 30, 30), np.uint8)
    lab[ball(lab.shape, (12, 15, 15), 7)] = 2
    lab[ball(lab.shape, (26, 15, 15), 7)] = 2
    lab[ball(lab.shape, (12, 15, 15), 3)] = 3
    lab[ball(lab.shape, (12, 15, 15), 1)] = 1
    lab[ball(lab.shape, (26, 15, 15), 3)] = 3
    a = analyse(lab, EYE)
    f = a.features
    assert (f.et_num, f.nec_num, f.edema_num, f.n_lesions) == (2, 1, 1, 2)
    assert f.et_voxels == int((lab == 3).sum())
    assert f.nec_vol == round((lab == 1).sum() / 1000, 3)
    # the shared edema is split between the two lesions, nothing lost
    assert all(les.edema_shared and les.has_edema for les in a.lesions)
    assert sum(les.edema_voxels for les in a.lesions) == f.edema_voxels
    assert a.lesions[0].has_necrosis and not a.lesions[1].has_necrosis
    assert f.orphan_edema_components == 0


def test_orphan_edema_is_counted_but_not_a_lesion() -> None:
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[2:5, 2:5, 2:5] = 2
    lab[12:15, 12:15, 12:15] = 3
    a = analyse(lab, EYE)
    assert a.features.edema_num == 1 and a.features.n_lesions == 1
    assert a.features.orphan_edema_components == 1 and a.features.orphan_edema_voxels == 27
    assert not a.lesions[0].has_edema


def test_min_size_excludes_small_components_from_counts_not_volumes() -> None:
    lab = np.zeros((20, 20, 20), np.uint8)
    lab[2, 2, 2] = 3
    lab[10:13, 10:13, 10:13] = 3
    f = analyse(lab, EYE, FeatureParams(min_size_voxels=2)).features
    assert f.et_num == 1 and f.n_lesions == 1
    assert f.et_voxels == 28
    _, n = count_components(lab == 3, 26, 2)
    assert n == 1


def test_volumes_use_the_voxel_size_and_round_to_3_decimals() -> None:
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[1:4, 1:4, 1:2] = 3  # 9 voxels
    aff = np.diag([0.9, 0.9, 2.5, 1.0])
    f = analyse(lab, aff).features
    assert f.et_vol == round(9 * 0.9 * 0.9 * 2.5 / 1000, 3)
    assert f.voxel_volume_mm3 == pytest.approx(2.025)
    assert analyse(lab, aff, FeatureParams(volume_decimals=5)).features.et_vol == 0.01823


def test_ratios_use_the_core_as_denominator() -> None:
    lab = np.zeros((10, 10, 10), np.uint8)
    lab[0, 0, :3] = 1  # 3 necrosis
    lab[0, 1, :] = 3  # 10 enhancing
    lab[5:9, 5:9, 5:9] = 2  # 64 edema (orphan)
    f = analyse(lab, EYE).features
    assert f.nec_et_ratio == round(3 / 13, 4)
    assert f.edema_et_ratio == round(64 / 13, 4)
    g = analyse(
        lab, EYE, FeatureParams(ratio_denominator="enhancing", ratio_decimals=None)
    ).features
    assert g.nec_et_ratio == pytest.approx(0.3)
    assert g.edema_et_ratio == pytest.approx(6.4)


def test_ratios_without_core() -> None:
    lab = np.zeros((6, 6, 6), np.uint8)
    lab[1:3, 1:3, 1:3] = 2
    assert analyse(lab, EYE).features.nec_et_ratio is None
    z = analyse(lab, EYE, FeatureParams(ratio_without_core="zero")).features
    assert (z.nec_et_ratio, z.edema_et_ratio) == (0.0, 0.0)


def test_empty_label_map_gives_zero_features(atlas: AtlasLabels) -> None:
    lab = np.zeros(atlas.shape, np.uint8)
    f = analyse(lab, atlas.affine, atlas=atlas).features
    assert f.row() == {
        "Infratentorial": 0,
        "ET_num": 0,
        "Nec_num": 0,
        "Edema_num": 0,
        "ET_vol": 0.0,
        "Nec_vol": 0.0,
        "Edema_vol": 0.0,
        "Nec_ET_ratio": None,
        "Edema_ET_ratio": None,
    }
    assert analyse(lab, atlas.affine).features.infratentorial is None


def test_diameter_conventions() -> None:
    sub = np.zeros((12, 3, 3), bool)
    sub[0:10, 1, 1] = True  # 10 voxels in a row
    assert max_diameter_mm(sub, np.eye(3), "centres") == pytest.approx(9.0)
    assert max_diameter_mm(sub, np.eye(3), "centres+voxel") == pytest.approx(10.0)
    assert max_diameter_mm(sub, np.eye(3), "corners") == pytest.approx(np.sqrt(100 + 1 + 1))
    assert max_diameter_mm(sub, np.diag([2.0, 1, 1]), "centres") == pytest.approx(18.0)
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[ball(lab.shape, (15, 15, 15), 6)] = 3
    les = analyse(lab, EYE).lesions[0]
    assert les.max_diameter_mm == pytest.approx(13.0)
    assert not les.subcentimetre
    lab[:] = 0
    lab[2:11, 2, 2] = 3  # 9 mm
    assert analyse(lab, EYE).lesions[0].subcentimetre


def test_lesions_are_numbered_largest_first_with_centroids() -> None:
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[2:4, 2:4, 2:4] = 3
    lab[10:15, 10:15, 10:15] = 3
    aff = np.eye(4)
    aff[:3, 3] = [-5, 7, 100]
    les = analyse(lab, aff).lesions
    assert [x.voxels for x in les] == [125, 8]
    assert (
        les[0].centroid_i,
        les[0].centroid_x_mm,
        les[0].centroid_y_mm,
        les[0].centroid_z_mm,
    ) == (
        12.0,
        7.0,
        19.0,
        112.0,
    )


def test_centroids_are_in_the_world_of_the_grid_affine(atlas: AtlasLabels) -> None:
    """On the preprocessed SRI24 grid the centroid is the template's world (its NIfTI affine,
    RAS+): x = -i, y = j, z = k (the SRI24 header puts voxel (0, 0, 0) at the origin)."""
    lab = np.zeros(atlas.shape, np.uint8)
    lab[148:152, 100:103, 60:62] = 3
    les = analyse(lab, atlas.affine, atlas=atlas).lesions[0]
    ijk = np.array([les.centroid_i, les.centroid_j, les.centroid_k, 1.0])
    assert np.allclose(
        atlas.affine @ ijk, [les.centroid_x_mm, les.centroid_y_mm, les.centroid_z_mm, 1]
    )
    assert (les.centroid_x_mm, les.centroid_y_mm, les.centroid_z_mm) == (-149.5, 101.0, 60.5)
    assert np.allclose(atlas.affine, np.diag([-1.0, 1, 1, 1]))


def _infra_voxel(atlas: AtlasLabels) -> tuple[int, int, int]:
    from scipy import ndimage

    core = ndimage.binary_erosion(atlas.infratentorial, iterations=4)
    idx = np.argwhere(core)
    return tuple(int(v) for v in idx[len(idx) // 2])  # type: ignore[return-value]


def test_infratentorial_flags(atlas: AtlasLabels) -> None:
    lab = np.zeros(atlas.shape, np.uint8)
    c = _infra_voxel(atlas)
    lab[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = 3
    lab[120:123, 150:153, 110:113] = 3  # high in the cerebrum
    a = analyse(lab, atlas.affine, atlas=atlas)
    flags = sorted((les.infratentorial, les.location) for les in a.lesions)
    assert flags == [(False, "supratentorial"), (True, "infratentorial")]
    assert a.features.infratentorial == 1
    assert a.placement is not None and a.placement.mode == "world"
    # supratentorial only
    lab[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = 0
    assert analyse(lab, atlas.affine, atlas=atlas).features.infratentorial == 0


def test_infratentorial_rules(atlas: AtlasLabels) -> None:
    lab = np.zeros(atlas.shape, np.uint8)
    c = _infra_voxel(atlas)
    lab[c] = 3
    # a long supratentorial-side tail: most voxels outside, the centroid too
    supra = np.argwhere(~atlas.infratentorial[c[0], :, c[2]])
    j_far = int(supra[np.argmax(np.abs(supra[:, 0] - c[1])), 0])
    step = 1 if j_far > c[1] else -1
    lab[c[0], c[1] : j_far : step, c[2]] = 3
    majority = analyse(lab, atlas.affine, FeatureParams(infratentorial_rule="majority"), atlas)
    anyvox = analyse(lab, atlas.affine, FeatureParams(infratentorial_rule="any"), atlas)
    assert majority.lesions[0].infratentorial is False
    assert anyvox.lesions[0].infratentorial is True
    assert 0 < anyvox.lesions[0].infratentorial_fraction < 0.5


def test_placement_handles_the_brats_layouts(atlas: AtlasLabels) -> None:
    """BraTS-METS files: array-aligned with a header off the atlas; BraTS toolkit: flipped
    front-to-back with a compensating LPS header. Both must find the same lesion."""
    lab = np.zeros(atlas.shape, np.uint8)
    c = _infra_voxel(atlas)
    lab[c[0] - 1 : c[0] + 2, c[1] - 1 : c[1] + 2, c[2] - 1 : c[2] + 2] = 3
    ref = analyse(lab, atlas.affine, atlas=atlas).lesions[0]
    met = np.array([[1.0, 0, 0, 0], [0, 1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
    a = analyse(lab, met, atlas=atlas)
    assert a.placement is not None and a.placement.mode == "array"
    gli = np.array([[-1.0, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]])
    b = analyse(lab[:, ::-1, :].copy(), gli, atlas=atlas)
    assert b.placement is not None and b.placement.mode == "world"
    for other in (a.lesions[0], b.lesions[0]):
        assert other.infratentorial is True
        assert (other.centroid_x_mm, other.centroid_y_mm, other.centroid_z_mm) == (
            ref.centroid_x_mm,
            ref.centroid_y_mm,
            ref.centroid_z_mm,
        )
    with pytest.raises(ValueError, match="array alignment"):
        place_on_atlas((10, 10, 10), np.eye(4), atlas, "array")


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="connectivity"):
        FeatureParams(connectivity=8)
    with pytest.raises(ValueError, match="unknown feature parameter"):
        FeatureParams.from_mapping({"conectivity": 6})
    p = FeatureParams.from_mapping(
        {"connectivity": "18", "ratio_decimals": "", "lesion_labels": [3]}
    )
    assert (p.connectivity, p.ratio_decimals, p.lesion_labels) == (18, None, (3,))


def test_one_full_size_case_is_fast(atlas: AtlasLabels) -> None:
    lab = np.zeros(atlas.shape, np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(12):
        c = rng.integers(40, 110, 3)
        r = float(rng.uniform(2, 12))
        sl = tuple(slice(int(x - 20), int(x + 20)) for x in c)
        sub = lab[sl]
        sub[ball(sub.shape, (20, 20, 20), r * 2) & (sub == 0)] = 2
        sub[ball(sub.shape, (20, 20, 20), r)] = 3
        sub[ball(sub.shape, (20, 20, 20), r / 2)] = 1
    analyse(lab, atlas.affine, atlas=atlas)
    t0 = time.perf_counter()
    analyse(lab, atlas.affine, atlas=atlas)
    assert time.perf_counter() - t0 < 1.0


def _sphere(shape: tuple[int, int, int], c: tuple[int, int, int], r: float) -> np.ndarray:
    idx = np.indices(shape).astype(float)
    return sum((idx[a] - c[a]) ** 2 for a in range(3)) <= r * r


def test_shared_edema_is_split_by_the_annotated_lesion_when_an_instance_map_is_given() -> None:
    shape = (80, 60, 60)
    big_core = _sphere(shape, (25, 30, 30), 8)
    big_whole = _sphere(shape, (25, 30, 30), 20)
    small_core = _sphere(shape, (48, 30, 30), 2)
    small_whole = _sphere(shape, (48, 30, 30), 5)  # its own drawn oedema, touching the big one
    labels = np.zeros(shape, np.uint8)
    labels[big_whole | small_whole] = 2
    labels[big_core | small_core] = 3
    inst = np.zeros(shape, np.uint16)
    inst[big_whole] = 1
    inst[small_whole & ~big_whole] = 2
    inst[small_core] = 2
    inst[labels == 0] = 0
    drawn_small = int(((inst == 2) & (labels == 2)).sum())
    nearest = analyse(labels, np.eye(4))
    drawn = analyse(labels, np.eye(4), instances=inst)
    assert nearest.features.edema_num == drawn.features.edema_num == 1
    small_n = next(les for les in nearest.lesions if les.voxels == int(small_core.sum()))
    small_d = next(les for les in drawn.lesions if les.voxels == int(small_core.sum()))
    assert small_d.edema_voxels == drawn_small and small_d.edema_shared
    assert small_n.edema_voxels > drawn_small  # a Voronoi cell of the big lesion's oedema
    total = sum(les.edema_voxels for les in drawn.lesions)
    assert total == int((labels == 2).sum())
    with pytest.raises(ValueError, match="instance map grid"):
        analyse(labels, np.eye(4), instances=inst[:10])
