"""Geometry checks: every way a series can fail to be one regular volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from brainmets.convert.geometry import Frame, GeometryError, check_geometry, read_frames

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def stack(
    n: int = 10,
    spacing: float = 5.0,
    orientation: tuple[float, ...] = AXIAL,
    shift_per_slice: tuple[float, float, float] = (0.0, 0.0, 0.0),
    **kw: object,
) -> list[Frame]:
    o = np.asarray(orientation)
    normal = np.cross(o[:3], o[3:])
    out = []
    for i in range(n):
        pos = (
            np.array([-100.0, -120.0, -30.0])
            + i * spacing * normal
            + i * np.asarray(shift_per_slice)
        )
        args: dict[str, object] = {
            "file": Path(f"f{i:03d}.dcm"),
            "index": 0,
            "position": tuple(float(x) for x in pos),
            "orientation": orientation,
            "rows": 256,
            "columns": 256,
            "pixel_spacing": (0.9, 0.9),
            "image_type": ("ORIGINAL", "PRIMARY", "M"),
            "echo_time": 12.0,
        }
        args.update(kw)
        out.append(Frame(**args))  # type: ignore[arg-type]
    return out


def test_a_regular_stack_passes() -> None:
    rep = check_geometry(stack(), series="s")
    assert (rep.n_slices, rep.slice_spacing, rep.rows, rep.columns) == (10, 5.0, 256, 256)
    assert rep.corrections == [] and len(rep.files) == 10
    # slice order in the files does not matter
    frames = stack()
    assert check_geometry(frames[::-1] + [], series="s").n_slices == 10


def test_a_missing_slice_is_named() -> None:
    frames = stack(12)
    del frames[6]
    with pytest.raises(GeometryError, match=r"series 7: missing slice.*about 1 slice"):
        check_geometry(frames, series="series 7")


def test_uneven_spacing() -> None:
    frames = stack(10)
    f = frames[4]
    frames[4] = Frame(
        **{**f.__dict__, "position": (f.position[0], f.position[1], f.position[2] + 0.8)}
    )  # type: ignore[index]
    with pytest.raises(GeometryError, match="uneven slice spacing"):
        check_geometry(frames)


def test_mixed_orientations_suggest_a_localizer() -> None:
    frames = stack(10) + stack(3, orientation=SAGITTAL)
    with pytest.raises(GeometryError, match=r"mixed slice orientations.*3 sagittal.*localizer"):
        check_geometry(frames)


def test_a_localizer_stored_in_the_series_is_dropped_and_recorded() -> None:
    loc = stack(3, orientation=SAGITTAL, image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    loc = [Frame(**{**f.__dict__, "file": Path(f"loc{i}.dcm")}) for i, f in enumerate(loc)]
    rep = check_geometry(stack(10) + loc)
    assert rep.n_slices == 10 and rep.corrections == [
        "dropped 3 localizer instance(s) stored in the series"
    ]
    assert all(not p.name.startswith("loc") for p in rep.files)
    with pytest.raises(GeometryError, match="localizer instance"):
        check_geometry(stack(10) + loc, drop_localizers=False)


def test_mixed_sizes_and_pixel_spacings() -> None:
    frames = stack(6)
    frames[5] = Frame(**{**frames[5].__dict__, "rows": 512})
    with pytest.raises(GeometryError, match=r"mixed image sizes \(5 x 256x256, 1 x 512x256\)"):
        check_geometry(frames)
    frames = stack(6)
    frames[2] = Frame(**{**frames[2].__dict__, "pixel_spacing": (0.45, 0.45)})
    with pytest.raises(GeometryError, match="mixed pixel spacings"):
        check_geometry(frames)


def test_gantry_tilt_or_shear_is_refused() -> None:
    # each slice 0.5 mm further along the row direction: a 5.7 degree shear
    with pytest.raises(GeometryError, match=r"gantry tilt of about 5\.7"):
        check_geometry(stack(10, shift_per_slice=(0.5, 0.0, 0.0)))
    # an oblique but straight stack is fine
    oblique = (1.0, 0.0, 0.0, 0.0, float(np.cos(0.3)), float(np.sin(0.3)))
    assert check_geometry(stack(10, orientation=oblique)).n_slices == 10


def test_several_volumes_in_one_series() -> None:
    two = stack(8) + [Frame(**{**f.__dict__, "echo_time": 90.0}) for f in stack(8)]
    with pytest.raises(GeometryError, match=r"2 echoes \(TE 12, 90 ms\)"):
        check_geometry(two)
    with pytest.raises(GeometryError, match="2 frames at every position"):
        check_geometry(stack(8) + stack(8))
    with pytest.raises(GeometryError, match="duplicate slices at 1 of 8"):
        check_geometry(stack(8) + stack(1))


def test_too_few_slices_and_mosaics() -> None:
    with pytest.raises(GeometryError, match="single slice"):
        check_geometry(stack(1))
    with pytest.raises(GeometryError, match="only 2 slices"):
        check_geometry(stack(2))
    with pytest.raises(GeometryError, match="mosaic"):
        check_geometry(stack(3, image_type=("ORIGINAL", "PRIMARY", "M", "MOSAIC")))
    with pytest.raises(GeometryError, match="no image frames"):
        check_geometry([])


def test_the_deliberately_broken_real_series(testdata: Path) -> None:
    base = testdata / "dicom" / "dicom2nifti_multivendor_slabs" / "failing"
    with pytest.raises(GeometryError, match="mixed slice orientations.*2 sagittal, 2 axial"):
        check_geometry(read_frames(sorted((base / "sliceorientation/001").iterdir())))
    with pytest.raises(GeometryError, match="only 2 slices"):
        check_geometry(read_frames(sorted((base / "slicecount/001").iterdir())))


def test_enhanced_frames_and_non_images(testdata: Path) -> None:
    folder = testdata / "dicom/philips_elition_2d_t1_tse_ffe/dicom/201_T1W_TSE_Sno_CSno_CSAIno"
    frames = read_frames(sorted(folder.iterdir()))  # the Raw Data Storage object is skipped
    rep = check_geometry(frames)
    assert (rep.n_frames, rep.n_slices, rep.slice_spacing, len(rep.files)) == (12, 12, 5.0, 1)
