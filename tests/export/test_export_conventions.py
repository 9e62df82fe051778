"""Array orientation and header of exported NIfTI files, against the reference files of
``shared/testdata/nifti`` (see ``shared/docs/conventions.md``, "a known trap")."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmets.export.conventions import (
    BRATS_MET_AFFINE,
    SHAPE,
    SRI24_AFFINE,
    ConventionError,
    conform,
    template_array,
)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def _save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


def _world_value(img: nib.Nifti1Image, data: np.ndarray, world: np.ndarray) -> np.ndarray:
    vox = np.rint((np.linalg.inv(img.affine) @ np.c_[world, np.ones(len(world))].T)[:3]).astype(int)
    return data[tuple(vox)]


@pytest.fixture(scope="module")
def atlas_brain(sri24_atlas: Path) -> nib.Nifti1Image:
    return nib.load(str(sri24_atlas / "t1_brain.nii.gz"))


@pytest.fixture(scope="module")
def met(testdata: Path) -> Path:
    p = testdata / "nifti" / "brats_met_00110_000" / "BraTS-MET-00110-000-t1c.nii.gz"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


def test_constants_are_the_reference_headers(atlas_brain: nib.Nifti1Image, met: Path) -> None:
    assert atlas_brain.shape == SHAPE
    assert np.allclose(atlas_brain.affine, SRI24_AFFINE)
    assert int(atlas_brain.header["qform_code"]) == 1 == int(atlas_brain.header["sform_code"])
    published = nib.load(str(met))
    assert np.allclose(published.affine, BRATS_MET_AFFINE)
    assert int(published.header["qform_code"]) == 1 == int(published.header["sform_code"])


def test_published_case_overlays_our_export(
    met: Path, atlas_brain: nib.Nifti1Image, tmp_path: Path
) -> None:
    """Our preprocessed files carry the template header with the published array order: the
    export overlays the published case by index (sri24 header) or by index and world
    (brats-met header); with the sri24 header it overlays the atlas in world coordinates."""
    published = nib.load(str(met))
    arr = np.asarray(published.dataobj)
    ours = _save(tmp_path / "ours-t1c.nii.gz", arr, SRI24_AFFINE)  # as preprocess writes it

    c = conform(ours, "sri24")
    assert c.image is None and c.how == "as is"  # linked / copied byte for byte
    exported = nib.load(str(ours))
    assert np.array_equal(np.asarray(exported.dataobj), arr)  # by index: identical
    corner = np.array([0.0, 0, 0, 1])
    assert not np.allclose(exported.affine @ corner, published.affine @ corner)  # not by world
    brain = np.asarray(atlas_brain.dataobj) > 0
    # by world with the atlas (same affine, so world = index): the brain masks agree
    assert _dice(np.asarray(exported.dataobj) != 0, brain) > 0.9

    c = conform(ours, "brats-met")
    assert c.image is not None and c.how == "header set"
    assert np.array_equal(np.asarray(c.image.dataobj), arr)  # by index
    assert np.allclose(c.image.affine, published.affine)  # and by world
    for key in ("qform_code", "sform_code"):
        assert int(c.image.header[key]) == int(published.header[key])
    assert c.image.get_data_dtype() == published.get_data_dtype()

    assert conform(met, "brats-met").image is None  # the published file already follows it
    back = conform(met, "sri24").image
    assert back is not None and np.array_equal(np.asarray(back.dataobj), arr)


@pytest.mark.parametrize(
    "rel",
    [
        "brats_gli_00001_000/t1c.nii.gz",
        "tcga_fg_6692_bratstoolkit/brats_space/raw_bet/OtherEXampleFromTCIA_fla_bet.nii.gz",
    ],
)
def test_flipped_lps_files_are_put_in_template_order(
    rel: str, testdata: Path, atlas_brain: nib.Nifti1Image
) -> None:
    """Files flipped front-to-back in array order with compensating LPS headers: the export
    reorders the array (template order, as the published METS files) and keeps every voxel
    at its world position."""
    path = testdata / "nifti" / rel
    if not path.is_file():
        pytest.skip(f"{path} not found")
    src = nib.load(str(path))
    data = np.asarray(src.dataobj)
    c = conform(path, "sri24")
    assert c.image is not None and c.how.startswith("array reordered")
    out = np.asarray(c.image.dataobj)
    assert np.allclose(c.image.affine, SRI24_AFFINE)
    brain = np.asarray(atlas_brain.dataobj) > 0
    assert _dice(out != 0, brain) > _dice(data != 0, brain) + 0.1  # now aligned by index
    assert _dice(out != 0, brain) > 0.85
    rng = np.random.default_rng(0)
    world = (SRI24_AFFINE @ np.c_[rng.integers(0, 155, (500, 3)), np.ones(500)].T).T[:, :3]
    assert np.array_equal(_world_value(src, data, world), _world_value(c.image, out, world))
    assert np.array_equal(template_array(src), out)


def test_refuses_other_grids(tmp_path: Path) -> None:
    p = _save(tmp_path / "x.nii.gz", np.zeros(SHAPE, np.int16), np.diag([1.2, 1, 1, 1]))
    with pytest.raises(ConventionError):
        conform(p, "sri24")
    shifted = SRI24_AFFINE.copy()
    shifted[:3, 3] = [0.5, 0, 0]
    p = _save(tmp_path / "y.nii.gz", np.zeros(SHAPE, np.int16), shifted)
    with pytest.raises(ConventionError):
        conform(p, "sri24")
    p = _save(tmp_path / "z.nii.gz", np.zeros((10, 10, 10), np.int16), SRI24_AFFINE)
    with pytest.raises(ConventionError):
        conform(p, "sri24")
    with pytest.raises(ValueError):
        conform(p, "mni")


def test_scaled_images_keep_stored_values(tmp_path: Path) -> None:
    lps = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
    raw = np.zeros(SHAPE, np.int16)
    raw[10, 20, 30] = 1000
    img = nib.Nifti1Image(raw, lps)
    img.header.set_slope_inter(2.5, 0.0)
    img.header.set_qform(lps, code=1)
    img.header.set_sform(lps, code=1)
    p = tmp_path / "scaled.nii.gz"
    nib.save(img, str(p))
    out = conform(p, "sri24").image
    assert out is not None
    nib.save(out, str(tmp_path / "out.nii.gz"))
    back = nib.load(str(tmp_path / "out.nii.gz"))
    assert back.get_data_dtype() == np.int16
    assert back.dataobj.slope == pytest.approx(2.5)
    assert np.asarray(back.dataobj.get_unscaled())[10, 239 - 20, 30] == 1000  # j flipped
    assert np.asarray(back.dataobj)[10, 239 - 20, 30] == pytest.approx(2500.0)
