"""Reading and checking label maps: values, types, grids, mappings."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmets.lesions import (
    LabelMapError,
    as_label_array,
    check_same_grid,
    load_label_map,
    parse_mapping,
    save_label_map,
)


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def test_float_seg_with_integral_values_is_cast(tmp_path: Path) -> None:
    data = np.zeros((6, 5, 4), np.float64)
    data[1, 1, 1], data[2, 2, 2], data[3, 3, 3] = 1.0, 2.0, 3.0
    lm = load_label_map(_save(tmp_path / "seg.nii.gz", data))
    assert lm.data.dtype == np.uint8
    assert np.array_equal(lm.data, data.astype(np.uint8))


def test_non_integral_float_names_the_file(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 1, 1] = 2.5
    path = _save(tmp_path / "bad-seg.nii.gz", data)
    with pytest.raises(LabelMapError, match=r"bad-seg\.nii\.gz.*non-integral.*2\.5"):
        load_label_map(path)


def test_nan_is_an_error() -> None:
    data = np.zeros((3, 3, 3), np.float32)
    data[0, 0, 0] = np.nan
    with pytest.raises(LabelMapError, match="NaN"):
        as_label_array(data, "x.nii.gz")


def test_labels_outside_the_set_name_the_file_and_suggest_a_mapping(tmp_path: Path) -> None:
    data = np.zeros((4, 4, 4), np.uint8)
    data[1, 1, 1] = 4
    path = _save(tmp_path / "old-brats.nii.gz", data)
    with pytest.raises(LabelMapError, match=r"old-brats\.nii\.gz.*\[4\].*brats-2021"):
        load_label_map(path)
    lm = load_label_map(path, mapping=parse_mapping("brats-2021"))
    assert lm.data[1, 1, 1] == 3


def test_negative_and_unmapped_values() -> None:
    with pytest.raises(LabelMapError, match="out of range"):
        as_label_array(np.full((2, 2, 2), -1, np.int16), "neg.nii")
    data = np.zeros((2, 2, 2), np.uint8)
    data[0, 0, 0] = 5
    with pytest.raises(LabelMapError, match=r"\[5\] are not in the label mapping"):
        as_label_array(data, "m.nii", parse_mapping("1:1,2:2,4:3"))


def test_mapping_specs() -> None:
    assert parse_mapping("1:1,2:3,3:2") == {0: 0, 1: 1, 2: 3, 3: 2}
    assert parse_mapping("nec-et-edema") == {0: 0, 1: 1, 2: 3, 3: 2}
    assert parse_mapping(None) is None
    with pytest.raises(ValueError, match="source:target"):
        parse_mapping("1-1")
    with pytest.raises(ValueError, match="targets"):
        parse_mapping({1: 7})


def test_shape_checks_and_singleton_4d() -> None:
    assert as_label_array(np.zeros((3, 3, 3, 1), np.uint8), "x").shape == (3, 3, 3)
    with pytest.raises(LabelMapError, match="3D"):
        as_label_array(np.zeros((3, 3)), "flat.nii")


def test_empty_seg_is_valid(tmp_path: Path) -> None:
    lm = load_label_map(_save(tmp_path / "empty.nii.gz", np.zeros((5, 5, 5), np.uint8)))
    assert not lm.data.any()


def test_grid_mismatch_names_both_files(tmp_path: Path) -> None:
    seg = load_label_map(_save(tmp_path / "c-seg.nii.gz", np.zeros((5, 5, 5), np.uint8)))
    img = _save(tmp_path / "c-t1c.nii.gz", np.zeros((5, 5, 6), np.int16))
    with pytest.raises(LabelMapError, match=r"c-seg\.nii\.gz.*c-t1c\.nii\.gz.*shape"):
        check_same_grid(seg, img)
    shifted = np.eye(4)
    shifted[0, 3] = 2.0
    img2 = _save(tmp_path / "c-t2f.nii.gz", np.zeros((5, 5, 5), np.int16), shifted)
    with pytest.raises(LabelMapError, match="affine differs"):
        check_same_grid(seg, img2)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(LabelMapError, match="no such file"):
        load_label_map(tmp_path / "nope.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(LabelMapError, match=r"junk\.nii\.gz: cannot read"):
        load_label_map(tmp_path / "junk.nii.gz")


def test_save_writes_uint8_with_the_affine(tmp_path: Path) -> None:
    aff = np.diag([-1.0, 1.0, 2.0, 1.0])
    data = np.zeros((4, 4, 4), np.int64)
    data[1, 2, 3] = 3
    out = save_label_map(tmp_path / "o-seg.nii.gz", data, aff)
    img = nib.load(str(out))
    assert img.get_data_dtype() == np.uint8
    assert np.allclose(img.affine, aff)
    assert np.asarray(img.dataobj)[1, 2, 3] == 3
    assert not list(tmp_path.glob(".tmp-*"))
