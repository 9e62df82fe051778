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
