"""Annotation readers: mask names, NIfTI masks, DICOM SEG, RTSTRUCT, combined label maps."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from brainmets.segment import (
    AnnotationError,
    ImportOptions,
    MaskNamer,
    read_annotations,
    read_dicom_seg,
    read_nifti_masks,
    read_rtstruct,
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Core2_PGGE.nii.gz", ("core", "2")),
        ("Necrosis2_PGGE.nii.gz", ("necrosis", "2")),
        ("Whole2_FLAIR.nii.gz", ("whole", "2")),
        ("whole12_flair.nii", ("whole", "12")),
        ("Core_PGGE.nii.gz", ("core", "")),
        ("core.nii.gz", ("core", "")),
        ("Edema-3.nii.gz", ("edema", "3")),
        ("ET1", ("enhancing", "1")),
        ("t1c.nii.gz", None),
        ("Core2_PGGE_old.nii.gz", None),
    ],
)
def test_default_names(name: str, expected: tuple[str, str] | None) -> None:
    assert MaskNamer().match(name) == expected


def test_configurable_names() -> None:
    namer = MaskNamer({"core": ["Tumor{n}_T1c"], "whole": ["Oedema{n}"]})
    assert namer.match("tumor4_t1c.nii.gz") == ("core", "4")
    assert namer.match("Core4_PGGE.nii.gz") is None
    with pytest.raises(ValueError, match="unknown region"):
        MaskNamer({"tumour": ["x{n}"]})


def _nii(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def test_nifti_masks(tmp_path: Path) -> None:
    m = np.zeros((5, 5, 5), np.uint8)
    m[1:3, 1:3, 1:3] = 255
    _nii(tmp_path / "masks" / "Core1_PGGE.nii.gz", m)
    frac = np.zeros((5, 5, 5), np.float32)
    frac[2, 2, 2], frac[3, 3, 3] = 0.7, 0.2
    _nii(tmp_path / "Whole1_FLAIR.nii.gz", frac)
    _nii(tmp_path / "t1c.nii.gz", m)
    masks, skipped = read_nifti_masks(tmp_path, MaskNamer())
    assert skipped == ["t1c.nii.gz"]
    by = {(x.region, x.lesion): x for x in masks}
    assert by["core", "1"].data.sum() == 8 and by["core", "1"].source == "masks/Core1_PGGE.nii.gz"
    assert by["whole", "1"].data.sum() == 1  # fractional mask thresholded at 0.5


def test_non_binary_and_duplicate_masks_are_errors(tmp_path: Path) -> None:
    m = np.zeros((4, 4, 4), np.uint8)
    m[0, 0, 0], m[1, 1, 1] = 1, 2
    _nii(tmp_path / "a" / "Core1.nii.gz", m)
    with pytest.raises(AnnotationError, match=r"Core1\.nii\.gz: a mask must be binary"):
        read_nifti_masks(tmp_path / "a", MaskNamer())
    _nii(tmp_path / "b" / "Core1.nii.gz", (m > 0).astype(np.uint8))
    _nii(tmp_path / "b" / "sub" / "core_1.nii.gz", (m > 0).astype(np.uint8))
    with pytest.raises(AnnotationError, match="both name the core mask of lesion 1"):
        read_nifti_masks(tmp_path / "b", MaskNamer())


def test_label_map_with_a_mapping(tmp_path: Path) -> None:
    lab = np.zeros((6, 6, 6), np.uint8)
    lab[1, 1, 1], lab[2, 2, 2], lab[3, 3, 3] = 1, 2, 4
    _nii(tmp_path / "seg.nii.gz", lab)
    with pytest.raises(AnnotationError, match=r"seg\.nii\.gz.*\[4\]"):
        read_annotations(tmp_path, ImportOptions(format="label-map"))
    fmt, masks, _ = read_annotations(tmp_path, ImportOptions(label_mapping="brats-2021"))
    assert fmt == "label-map"
    assert masks[0].region == "labels" and masks[0].data[3, 3, 3] == 3


def test_no_annotations_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="no annotations found"):
        read_annotations(tmp_path, ImportOptions())
    with pytest.raises(AnnotationError, match="does not exist"):
        read_annotations(tmp_path / "nope", ImportOptions())


# ------------------------------------------------------------------------ DICOM SEG
def test_dicom_seg_from_highdicom_test_files(testdata: Path) -> None:
    d = testdata / "seg" / "highdicom_test_files" / "data" / "test_files"
    path = d / "seg_image_ct_binary.dcm"
    with pytest.raises(AnnotationError, match="cannot tell the region of segment 1"):
        read_dicom_seg(path, MaskNamer(), path.name)
    [m] = read_dicom_seg(path, MaskNamer({"core": ["first segment"]}), path.name)
    ds = pydicom.dcmread(path)
    assert (m.region, m.lesion) == ("core", "")
    assert m.data.dtype == bool and m.data.sum() == int((ds.pixel_array > 0).sum())
    # RAS affine: LPS flipped; in-plane spacing from the SEG
    assert np.allclose(sorted(np.abs(np.linalg.norm(m.affine[:3, :3], axis=0)))[:2], [0.488281] * 2)
    fr = d / "seg_image_ct_true_fractional.dcm"
    [f] = read_dicom_seg(fr, MaskNamer({"core": ["first segment"]}), fr.name)
    assert f.data.dtype == bool and f.data.any()


# ------------------------------------------------------------------------ RTSTRUCT
def _rtstruct(path: Path, rois: dict[str, list[list[tuple[float, float, float]]]]) -> None:
    """A minimal RTSTRUCT; points in RAS mm (converted to DICOM LPS)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StructureSetROISequence = []
    ds.ROIContourSequence = []
    for n, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = n
        roi.ROIName = name
        ds.StructureSetROISequence.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = n
        rc.ContourSequence = []
        for pts in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [v for x, y, z in pts for v in (-x, -y, z)]
            rc.ContourSequence.append(c)
        ds.ROIContourSequence.append(rc)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _square(
    x0: float, x1: float, y0: float, y1: float, z: float
) -> list[tuple[float, float, float]]:
    return [(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]


def test_rtstruct_on_a_reference_grid_and_on_its_own_grid(tmp_path: Path) -> None:
    path = tmp_path / "rt" / "rs.dcm"
    _rtstruct(
        path,
        {
            "Core1": [
                _square(2.5, 7.5, 2.5, 6.5, 4.0),
                _square(4.5, 5.5, 4.5, 5.5, 4.0),
                _square(2.5, 4.5, 2.5, 4.5, 6.0),
            ],
            "BODY": [_square(0, 9, 0, 9, 4.0)],
        },
    )
    ref_aff = np.diag([1.0, 1.0, 2.0, 1.0])
    [m] = read_rtstruct(path, MaskNamer(), "rs.dcm", ((12, 12, 5), ref_aff))
    assert (m.region, m.lesion) == ("core", "1")  # BODY is not a tumour region: ignored
    assert m.data[:, :, 2].sum() == 5 * 4 - 1  # inner contour is a hole
    assert m.data[5, 5, 2] == 0 and m.data[3, 3, 2] and m.data[7, 6, 2]
    assert m.data[:, :, 3].sum() == 4 and m.data.sum() == 23
    [own] = read_rtstruct(path, MaskNamer(), "rs.dcm", None, pixel_mm=0.5)
    assert np.allclose(abs(own.affine[2, 2]), 2.0)  # slices 2 mm apart, like the contours
    assert 60 <= own.data.sum() <= 110  # ~ (20 - 1 + 4) mm^2 at 0.25 mm^2 per pixel
    fmt, masks, _ = read_annotations(path.parent, ImportOptions(format="auto"))
    assert fmt == "rtstruct" and len(masks) == 1


def test_rtstruct_from_rt_utils_mock_data(testdata: Path) -> None:
    path = testdata / "seg" / "rt_utils_mock_data" / "tests" / "mock_data" / "rt.dcm"
    masks = read_rtstruct(path, MaskNamer({"core": ["ROI{n}"]}), "rt.dcm")
    assert [(m.region, m.lesion) for m in masks] == [("core", "1")]
    assert masks[0].data.sum() > 0


def test_import_with_transforms_json_and_missing_transform(tmp_path: Path) -> None:
    import json

    from brainmets.segment import annotation_transforms, import_annotations

    target_aff = np.diag([-1.0, 1.0, 1.0, 1.0])
    shape = (40, 40, 30)
    native_aff = np.diag([0.5, 0.5, 2.0, 1.0])
    m = np.zeros((40, 40, 10), np.uint8)
    m[10:20, 10:20, 2:5] = 1  # 5 x 5 x 6 mm
    _nii(tmp_path / "Core1.nii.gz", m, native_aff)
    with pytest.raises(AnnotationError, match="no transform for it"):
        import_annotations(tmp_path, shape, target_aff, ImportOptions())
    shift = np.eye(4)
    shift[:3, 3] = [30.0, 0.0, 0.3]  # template world -> native world
    (tmp_path / "transforms.json").write_text(json.dumps({"t1c": {"matrix": shift.tolist()}}))
    tr = annotation_transforms(tmp_path)
    res = import_annotations(tmp_path, shape, target_aff, ImportOptions(), tr)
    assert (res.labels == 3).sum() == 5 * 5 * 6
    assert res.sources[0]["placement"] == "native -> template via transforms.json:t1c"


def test_a_mask_that_lands_nowhere_is_an_error_naming_the_file(tmp_path: Path) -> None:
    """A non-empty annotation on the wrong grid (2 mm voxels, origin far away) is never
    imported as "no lesion"."""
    import json

    from brainmets.segment import annotation_transforms, import_annotations

    m = np.zeros((20, 20, 10), np.uint8)
    m[5:10, 5:10, 2:5] = 1
    wrong = np.diag([2.0, 2.0, 2.0, 1.0])
    wrong[:3, 3] = [500.0, 500.0, 500.0]
    _nii(tmp_path / "Core1.nii.gz", m, wrong)
    (tmp_path / "transforms.json").write_text(json.dumps({"t1c": {"matrix": np.eye(4).tolist()}}))
    with pytest.raises(AnnotationError, match=r"Core1\.nii\.gz: 75 annotated voxel\(s\), none"):
        import_annotations(
            tmp_path, (40, 40, 30), np.eye(4), ImportOptions(), annotation_transforms(tmp_path)
        )
