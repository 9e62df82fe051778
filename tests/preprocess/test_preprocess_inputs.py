"""Bad input is refused with the patient and the file named; implausible registrations
never succeed; already-preprocessed input is passed through."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainmets.preprocess import PreprocessError, PreprocessOptions, preprocess_case
from brainmets.preprocess.errors import RegistrationFailed

FAST = PreprocessOptions(iterations=(40, 20, 0), skull_stripper="atlas")


def _write(path: Path, data: np.ndarray, zooms=(1.0, 1.0, 1.0)) -> Path:
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = -np.asarray(data.shape) * np.asarray(zooms) / 2
    nib.save(nib.Nifti1Image(data, aff), str(path))
    return path


def _case(tmp_path: Path, tcga: dict[str, Path], **replace: Path | None) -> dict:
    inputs = {k: tcga[k] for k in ("t1", "t1c", "t2", "flair")}
    inputs.update(replace)
    return inputs


def test_missing_sequence_names_patient(tmp_path: Path, tcga: dict[str, Path]) -> None:
    with pytest.raises(PreprocessError, match=r"patient P7.*missing sequence.*FLAIR"):
        preprocess_case(_case(tmp_path, tcga, flair=None), tmp_path / "o", "P7", FAST)
    ghost = tmp_path / "nothere.nii.gz"
    with pytest.raises(PreprocessError, match=r"patient P7, file .*nothere.nii.gz"):
        preprocess_case(_case(tmp_path, tcga, t2=ghost), tmp_path / "o", "P7", FAST)


@pytest.mark.parametrize(
    ("what", "data", "zooms", "message"),
    [
        ("empty", np.zeros((64, 64, 40), np.int16), (3.5, 3.5, 4.0), "empty"),
        ("constant", np.full((64, 64, 40), 7, np.int16), (3.5, 3.5, 4.0), "constant"),
        ("tiny voxels", np.ones((64, 64, 40), np.int16), (0.01, 0.01, 0.01), "voxel size"),
        ("huge voxels", np.ones((64, 64, 40), np.int16), (30.0, 30.0, 30.0), "voxel size"),
        ("wrong voxel size", np.ones((64, 64, 40), np.int16), (0.5, 0.5, 0.5), "field of view"),
    ],
)
def test_bad_images_are_refused(
    tmp_path: Path, tcga: dict[str, Path], what: str, data: np.ndarray, zooms, message: str
) -> None:
    data = data.copy()
    if what.endswith("voxels") or what == "wrong voxel size":
        data[10:50, 10:50, 5:35] = 100  # not constant, so the voxel size is what is wrong
    bad = _write(tmp_path / "bad_t2.nii.gz", data, zooms)
    with pytest.raises(
        PreprocessError, match=rf"patient P9, file .*bad_t2.nii.gz: T2: .*{message}"
    ):
        preprocess_case(_case(tmp_path, tcga, t2=bad), tmp_path / "o", "P9", FAST)


def test_not_a_head_fails_registration(tmp_path: Path, tcga: dict[str, Path]) -> None:
    rng = np.random.default_rng(3)
    blobs = ndimage.gaussian_filter(rng.random((96, 96, 60)).astype(np.float32), 4)
    body = (blobs > np.percentile(blobs, 40)) * (800 * blobs / blobs.max())
    notahead = _write(tmp_path / "phantom_t1c.nii.gz", body.astype(np.float32), (2.5, 2.5, 3.0))
    opts = PreprocessOptions(iterations=(30, 10, 0), n4_for_registration=False)
    with pytest.raises(RegistrationFailed, match=r"patient P3, file .*phantom_t1c.*NMI"):
        preprocess_case(_case(tmp_path, tcga, t1c=notahead), tmp_path / "o", "P3", opts)
    assert not (tmp_path / "o" / "P3-t1c.nii.gz").exists()


def _brats(testdata: Path, folder: str, pattern: str) -> dict[str, Path]:
    d = testdata / "nifti" / folder
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    suffix = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}
    return {k: d / pattern.format(s) for k, s in suffix.items()}


def test_brats_met_passthrough_by_index(tmp_path: Path, testdata: Path) -> None:
    """BraTS-METS files line up with SRI24 by array index but not by header: the arrays
    are kept byte for byte and written with the template's header."""
    inputs = _brats(testdata, "brats_met_00110_000", "BraTS-MET-00110-000-{}.nii.gz")
    res = preprocess_case(inputs, tmp_path, "M110", FAST)
    assert res.qc["passthrough"] == "index"
    tmpl = nib.load(str(Path(res.transforms.inputs["t1c"]).parent / inputs["t1c"].name))
    for role, suffix in (("t1c", "t1c"), ("flair", "t2f")):
        src = nib.load(str(inputs[role]))
        out = nib.load(str(res.outputs[suffix]))
        assert np.array_equal(np.asarray(out.dataobj), np.asarray(src.dataobj))
        assert np.allclose(out.affine, res.transforms.atlas_grid.affine)
    assert tmpl is not None
    assert "registration_s" in res.timings and res.timings["registration_s"] < 5


def test_brats_gli_passthrough_by_world(tmp_path: Path, testdata: Path) -> None:
    """BraTS-GLI files are flipped front-to-back in array order with a compensating header:
    on the template by world coordinates; the output is the exact permutation."""
    inputs = _brats(testdata, "brats_gli_00001_000", "{}.nii.gz")
    res = preprocess_case(inputs, tmp_path, "G1", FAST)
    assert res.qc["passthrough"] == "world"
    src = np.asarray(nib.load(str(inputs["t1c"])).dataobj)
    out = np.asarray(nib.load(str(res.outputs["t1c"])).dataobj)
    assert np.array_equal(out, src[:, ::-1, :])
