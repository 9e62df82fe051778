"""Fusion of per-lesion region masks into one label map, with its conflict rules."""

from __future__ import annotations

import numpy as np
import pytest

from brainmets.segment import FusionRules, RegionMask, fuse

SHAPE = (20, 20, 20)


def rm(region: str, lesion: str, lo: tuple[int, int, int], hi: tuple[int, int, int]) -> RegionMask:
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    return RegionMask(
        region, lesion, box, np.ones([b - a for a, b in zip(lo, hi, strict=True)], bool)
    )


def test_core_minus_necrosis_and_whole_minus_core() -> None:
    masks = [
        rm("whole", "1", (2, 2, 2), (12, 12, 12)),
        rm("core", "1", (4, 4, 4), (10, 10, 10)),
        rm("necrosis", "1", (6, 6, 6), (8, 8, 8)),
    ]
    res = fuse(masks, SHAPE)
    lab = res.labels
    assert lab.dtype == np.uint8
    assert (lab == 1).sum() == 8
    assert (lab == 3).sum() == 216 - 8
    assert (lab == 2).sum() == 1000 - 216
    assert not res.conflicts
    assert res.lesions["1"] == {"necrosis": 8, "enhancing": 208, "edema": 784}


def test_necrosis_outside_core() -> None:
    masks = [rm("core", "1", (4, 4, 4), (8, 8, 8)), rm("necrosis", "1", (6, 6, 6), (10, 10, 10))]
    keep = fuse(masks, SHAPE)
    assert (keep.labels == 1).sum() == 64
    [c] = keep.conflicts
    assert (c.lesion, c.kind, c.voxels) == ("1", "necrosis outside core", 56)
    drop = fuse(masks, SHAPE, FusionRules(necrosis_outside_core="drop"))
    assert (drop.labels == 1).sum() == 8
    assert drop.conflicts[0].resolution.startswith("dropped")


def test_core_outside_whole() -> None:
    masks = [rm("whole", "2", (0, 0, 0), (6, 6, 6)), rm("core", "2", (4, 4, 4), (8, 8, 8))]
    keep = fuse(masks, SHAPE)
    assert (keep.labels == 3).sum() == 64
    [c] = keep.conflicts
    assert (c.lesion, c.kind, c.voxels) == ("2", "core outside whole tumour", 64 - 8)
    drop = fuse(masks, SHAPE, FusionRules(core_outside_whole="drop"))
    assert (drop.labels == 3).sum() == 8


def test_overlapping_lesions_follow_the_priority_and_are_reported() -> None:
    masks = [
        rm("whole", "1", (0, 0, 0), (10, 10, 10)),
        rm("core", "1", (2, 2, 2), (5, 5, 5)),
        rm("core", "2", (8, 8, 8), (12, 12, 12)),  # overlaps lesion 1's edema
        rm("whole", "2", (7, 7, 7), (13, 13, 13)),
    ]
    res = fuse(masks, SHAPE)
    assert (res.labels[8:10, 8:10, 8:10] == 3).all()  # enhancing beats edema
    kinds = [(c.lesion, c.kind, c.other_lesion, c.voxels) for c in res.conflicts]
    assert ("2", "overlapping lesions with different labels", "1", 8) in kinds
    edema_first = fuse(masks, SHAPE, FusionRules(overlap_priority=(2, 1, 3)))
    assert (edema_first.labels[8:10, 8:10, 8:10] == 2).all()


def test_same_label_overlap_is_not_a_conflict_and_whole_without_core_is_reported() -> None:
    masks = [
        rm("whole", "1", (0, 0, 0), (6, 6, 6)),
        rm("core", "1", (1, 1, 1), (3, 3, 3)),
        rm("whole", "2", (4, 4, 4), (9, 9, 9)),
    ]
    res = fuse(masks, SHAPE)
    assert [(c.lesion, c.kind) for c in res.conflicts] == [("2", "whole without core")]
    assert (res.labels == 2).sum() == 216 - 8 + 125 - 8


def test_per_region_masks_and_enhancing_edema_regions() -> None:
    masks = [
        rm("enhancing", "", (2, 2, 2), (5, 5, 5)),
        rm("necrosis", "", (3, 3, 3), (4, 4, 4)),
        rm("edema", "", (0, 0, 0), (8, 8, 8)),
    ]
    res = fuse(masks, SHAPE)
    assert (res.labels == 1).sum() == 1 and (res.labels == 3).sum() == 26
    assert (res.labels == 2).sum() == 512 - 27
    assert "(all)" in res.lesions


def test_fusing_into_a_base_label_map() -> None:
    base = np.zeros(SHAPE, np.uint8)
    base[0:3, 0:3, 0:3] = 2
    res = fuse([rm("core", "1", (2, 2, 2), (4, 4, 4))], SHAPE, base=base)
    assert res.labels[2, 2, 2] == 3 and res.labels[0, 0, 0] == 2
    assert res.conflicts[0].other_lesion == "labels"


def test_rules_validation() -> None:
    with pytest.raises(ValueError, match="necrosis_outside_core"):
        FusionRules(necrosis_outside_core="maybe")
    with pytest.raises(ValueError, match="overlap_priority"):
        FusionRules(overlap_priority=(1, 3))
    assert FusionRules.from_mapping({"overlap_priority": [3, 1, 2], "x": 1}).overlap_priority == (
        3,
        1,
        2,
    )


def _ball(shape: tuple[int, int, int], centre: tuple[float, float, float], r: float) -> np.ndarray:
    idx = np.indices(shape).astype(float)
    return sum((idx[a] - centre[a]) ** 2 for a in range(3)) <= r * r


def whole_core(whole: np.ndarray, core: np.ndarray, drawn_mm: float = 6.0) -> list[RegionMask]:
    full = tuple(slice(0, s) for s in whole.shape)
    return [
        RegionMask("whole", "1", full, whole, "Whole1_FLAIR", drawn_mm),
        RegionMask("core", "1", full, core, "Core1_PGGE", 1.0),
    ]


RAW = FusionRules(min_edema_voxels=0, detached_edema="keep", edema_shell="keep")


def test_small_edema_fragments_are_removed_and_recorded() -> None:
    shape = (40, 40, 40)
    core = _ball(shape, (20, 20, 20), 6)
    whole = _ball(shape, (20, 20, 20), 12)  # a real edema shell, 6 voxels thick
    whole[20:22, 20:22, 5:7] = True  # a detached 8-voxel crumb (not touching the core)
    raw = fuse(whole_core(whole, core), shape, RAW, voxel_mm=(1, 1, 1))
    assert (raw.labels == 2).sum() == (whole & ~core).sum() and not raw.removed
    cleaned = fuse(whole_core(whole, core), shape, FusionRules(), voxel_mm=(1, 1, 1))
    assert cleaned.removed == {"1": (1, 8)}
    assert (cleaned.labels == 2).sum() == (whole & ~core).sum() - 8
    assert cleaned.labels[20, 20, 5] == 0 and cleaned.labels[20, 20, 28] == 2
    drop5 = FusionRules(min_edema_voxels=5, detached_edema="drop")
    assert fuse(whole_core(whole, core), shape, drop5).removed == {
        "1": (1, 8)  # detached, although larger than 5
    }
    join5 = fuse(whole_core(whole, core), shape, FusionRules(min_edema_voxels=5))
    assert not join5.removed and join5.labels[20, 20, 5] == 2  # 2 mm off: joined
    kept = FusionRules(min_edema_voxels=5, detached_edema="keep", edema_shell="keep")
    assert not fuse(whole_core(whole, core), shape, kept).removed


def test_a_detached_edema_island_is_removed_only_with_detached_edema_drop() -> None:
    shape = (40, 40, 40)
    core = _ball(shape, (20, 20, 14), 5)
    whole = _ball(shape, (20, 20, 14), 9) | _ball(shape, (20, 20, 31), 4)  # + an island
    island = _ball(shape, (20, 20, 31), 4)
    keep = FusionRules(detached_edema="keep", edema_shell="keep")
    assert (fuse(whole_core(whole, core), shape, keep).labels[island] == 2).all()
    dropped = fuse(whole_core(whole, core), shape, FusionRules(detached_edema="drop"))
    assert (dropped.labels[island] == 0).all()
    assert dropped.removed["1"] == (1, int(island.sum()))


def test_a_detached_island_within_one_drawn_voxel_is_joined_to_its_lesion() -> None:
    import cc3d

    shape = (40, 40, 40)
    core = _ball(shape, (20, 20, 14), 5)
    island = _ball(shape, (20, 20, 31), 4)  # 4 mm beyond the whole tumour (z 23 -> 27)
    whole = _ball(shape, (20, 20, 14), 9) | island
    joined = fuse(whole_core(whole, core, 6.0), shape, FusionRules())  # default: join
    assert (joined.labels[island] == 2).all() and "1" not in joined.removed
    edema = (joined.labels == 2).astype(np.uint8)
    assert cc3d.connected_components(edema, connectivity=26).max() == 1
    assert (joined.labels == 2).sum() - (whole & ~core).sum() in range(1, 6)  # the line
    # drawn on a 1 mm grid the gap is four voxels: not a cut-off lobe, removed
    far = fuse(whole_core(whole, core, 1.0), shape, FusionRules(edema_shell="keep"))
    assert (far.labels[island] == 0).all() and far.removed["1"] == (1, int(island.sum()))
    with pytest.raises(ValueError, match="detached_edema"):
        FusionRules(detached_edema="bridge")


def test_a_shell_thinner_than_half_the_drawn_voxel_is_not_edema() -> None:
    shape = (40, 40, 40)
    core = _ball(shape, (20, 20, 20), 8)
    shell = _ball(shape, (20, 20, 20), 10)  # 2 mm beyond the core everywhere
    drawn_6mm = fuse(whole_core(shell, core, 6.0), shape, FusionRules(min_edema_voxels=0))
    assert (drawn_6mm.labels == 2).sum() == 0 and drawn_6mm.removed["1"][0] == 1
    drawn_1mm = fuse(whole_core(shell, core, 1.0), shape, FusionRules(min_edema_voxels=0))
    assert (drawn_1mm.labels == 2).sum() == (shell & ~core).sum() and not drawn_1mm.removed


def test_cleaning_rules_are_validated() -> None:
    with pytest.raises(ValueError, match="min_edema_voxels"):
        FusionRules(min_edema_voxels=-1)
    with pytest.raises(ValueError, match="detached_edema"):
        FusionRules(detached_edema="maybe")
    assert FusionRules.from_mapping({"min_edema_voxels": "12"}).min_edema_voxels == 12


def test_edema_without_support_on_the_drawn_grid_is_removed() -> None:
    from brainmets.segment.fusion import SUPPORT

    shape = (40, 40, 40)
    core = _ball(shape, (20, 20, 20), 6)
    whole = _ball(shape, (20, 20, 20), 11)
    full = tuple(slice(0, s) for s in shape)
    # no support at all (the whole tumour is the core at the FLAIR's resolution)
    none = [*whole_core(whole, core), RegionMask(SUPPORT, "1", full, np.zeros(shape, bool))]
    gone = fuse(none, shape, FusionRules(edema_shell="keep"))
    assert (gone.labels == 2).sum() == 0 and gone.removed["1"][0] == 1
    # support somewhere in the edema: the component is kept whole
    some = np.zeros(shape, bool)
    some[20, 20, 30] = True
    held = [*whole_core(whole, core), RegionMask(SUPPORT, "1", full, some)]
    kept = fuse(held, shape, FusionRules(edema_shell="keep"))
    assert (kept.labels == 2).sum() == (whole & ~core).sum() and not kept.removed
    # the rule off: the support is ignored
    off = fuse(none, shape, FusionRules(edema_shell="keep", edema_support="keep"))
    assert (off.labels == 2).sum() == (whole & ~core).sum()
    with pytest.raises(ValueError, match="edema_support"):
        FusionRules(edema_support="maybe")


def test_edema_support_of_a_lesion_without_edema_on_a_thick_flair_is_empty() -> None:
    from brainmets.segment.importer import edema_supports
    from brainmets.segment.sources import AnnotationMask
    from brainmets.segment.transform import WorldTransform, partial_volume, resample_mask

    shape = (40, 40, 40)
    core = _ball(shape, (20, 20, 20), 7)
    flair = np.diag([1.0, 1.0, 6.0, 1.0])
    flair[2, 3] = 2.5
    fshape = (40, 40, 7)
    pv = partial_volume(core, np.eye(4), fshape, flair)
    t = WorldTransform(np.eye(4))
    masks = {
        "1": [
            (AnnotationMask("core", "1", core, np.eye(4), "Core1_PGGE.nii.gz", "Core1_PGGE"), t),
        ]
    }

    def support(whole: np.ndarray) -> int:
        m = AnnotationMask("whole", "1", whole, flair, "Whole1_FLAIR.nii.gz", "Whole1_FLAIR")
        box, vals = resample_mask(whole, flair, shape, np.eye(4), t, "linear")
        placed = [RegionMask("whole", "1", box, vals)]
        (s,) = edema_supports({"1": [*masks["1"], (m, t)]}, placed, shape, np.eye(4))
        return int(s.mask.sum())

    assert support(pv >= 0.3) == 0  # the core as an annotator draws it on the FLAIR
    bigger = partial_volume(_ball(shape, (20, 20, 20), 12), np.eye(4), fshape, flair) >= 0.5
    assert support(bigger) > 0  # real oedema around it


def test_fusion_records_which_lesion_each_voxel_was_drawn_for(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from brainmets.labelmaps import LabelMap, LabelMapError, load_instance_map, save_instance_map

    shape = (40, 40, 40)
    full = tuple(slice(0, s) for s in shape)
    a_core, a_whole = _ball(shape, (12, 20, 20), 4), _ball(shape, (12, 20, 20), 9)
    b_core, b_whole = _ball(shape, (28, 20, 20), 3), _ball(shape, (28, 20, 20), 8)
    masks = [
        RegionMask("core", "1", full, a_core),
        RegionMask("whole", "1", full, a_whole),
        RegionMask("core", "2", full, b_core),
        RegionMask("whole", "2", full, b_whole),
    ]
    res = fuse(masks, shape, FusionRules(edema_shell="keep"))
    assert res.instances is not None and res.instance_names == ["1", "2"]
    assert ((res.instances > 0) == (res.labels > 0)).all()
    assert (res.instances[b_core] == 2).all() and (res.instances[a_core] == 1).all()
    assert res.report()["instances"] == {"1": "1", "2": "2"}
    aff = np.eye(4)
    path = save_instance_map(tmp_path / "x-lesions.nii.gz", res.instances, aff)
    back = load_instance_map(path, LabelMap(res.labels, aff))
    assert back.dtype == np.uint16 and (back == res.instances).all()
    with pytest.raises(LabelMapError, match="grid"):
        load_instance_map(path, LabelMap(res.labels[:20], aff))


def test_lesions_drawn_apart_on_thick_slices_stay_apart() -> None:
    import cc3d

    from brainmets.segment.fusion import separate_drawn_apart
    from brainmets.segment.importer import drawn_apart
    from brainmets.segment.sources import AnnotationMask
    from brainmets.segment.transform import resample_mask

    flair = np.diag([1.0, 1.0, 6.0, 1.0])
    w1 = np.zeros((40, 40, 6), bool)
    w1[5:20, 5:20, 1:3] = True  # lesion 1 on slices 1-2
    w2 = np.zeros((40, 40, 6), bool)
    w2[12:30, 12:30, 3:5] = True  # lesion 2 on slices 3-4: neighbours across a slice only
    shape = (40, 40, 36)
    c1 = np.zeros(shape, bool)
    c1[10:14, 10:14, 8:12] = True
    c2 = np.zeros(shape, bool)
    c2[20:24, 20:24, 22:26] = True
    full = tuple(slice(0, s) for s in shape)
    masks = [RegionMask("core", "1", full, c1), RegionMask("core", "2", full, c2)]
    drawn = []
    for n, w in (("1", w1), ("2", w2)):
        box, vals = resample_mask(w, flair, shape, np.eye(4), None, "volume")
        masks.append(RegionMask("whole", n, box, vals, f"Whole{n}_FLAIR", 6.0))
        drawn.append(AnnotationMask("whole", n, w, flair, f"Whole{n}_FLAIR", f"Whole{n}_FLAIR"))
    res = fuse(masks, shape, FusionRules(edema_shell="keep"))
    assert cc3d.connected_components((res.labels == 2).astype(np.uint8)).max() == 1  # merged
    apart = drawn_apart(res, drawn, np.eye(4))
    assert apart == [("1", "2", "whole")]
    separate_drawn_apart(res, apart)
    assert cc3d.connected_components((res.labels == 2).astype(np.uint8)).max() == 2
    assert any(c.kind == "whole touching a lesion drawn apart" for c in res.conflicts)
    # drawn overlapping (or touching within a slice): one oedema, as drawn
    w2[12:30, 12:30, 2] = True
    drawn[1] = AnnotationMask("whole", "2", w2, flair, "Whole2_FLAIR", "Whole2_FLAIR")
    assert drawn_apart(fuse(masks, shape, FusionRules(edema_shell="keep")), drawn, np.eye(4)) == []
