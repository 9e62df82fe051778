"""The convert stage: the four selected series to NIfTI + sidecars, atomically."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import pydicom
import pytest

from brainmets.convert.dcm2niix import ConversionError, convert_files
from brainmets.convert.geometry import GeometryError
from brainmets.convert.stage import DEFAULTS, STAGE, run_convert
from brainmets.pipeline.stage import StageContext
from brainmets.workspace import Workspace

PATIENT = "BM-TEST0001"
SERIES = {
    "t1": "siemens_prisma_t1_fl2d_patient_position/dicom/HFS/3_t1_fl2d_sag",
    "t1c": "philips_elition_2d_t1_tse_ffe/dicom/501_T1W_FFE_Sno_CS4",
    "t2": "philips_elition_2d_t1_tse_ffe/dicom/201_T1W_TSE_Sno_CSno_CSAIno/0001.dcm",
    "flair": "siemens_xa30_t1_enhanced/dicom/5_anat-T1w_acq-tfl",
}


def _setup(ws: Workspace, testdata: Path, series: dict[str, str]) -> StageContext:
    """Copy real series into the workspace and write the classify stage's selection."""
    selected = {}
    for i, (role, rel) in enumerate(series.items()):
        src = testdata / "dicom" / rel
        files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.is_file())
        dest = ws.config.path("dicom") / PATIENT / "study" / role
        dest.mkdir(parents=True)
        for f in files:
            shutil.copy(f, dest / f.name)
        selected[role] = {
            "series_uid": f"1.2.3.{i}",
            "series_number": i + 1,
            "description": rel.split("/")[-1],
            "instances": sorted(os.path.relpath(dest / f.name, ws.root) for f in files),
        }
    sel_path = ws.config.path("derivatives") / PATIENT / "classify" / "selection.json"
    sel_path.parent.mkdir(parents=True)
    sel_path.write_text(json.dumps({"excluded": None, "study_uid": "9.9", "selected": selected}))
    return StageContext(
        patient_id=PATIENT,
        stage="convert",
        params=dict(DEFAULTS),
        root=ws.root,
        config=ws.config.data,
        inputs={"classify": {"selection": os.path.relpath(sel_path, ws.root)}},
    )


def test_the_four_series_become_nifti_with_sidecars(testdata: Path, workspace: Workspace) -> None:
    ctx = _setup(workspace, testdata, SERIES)
    result = run_convert(ctx)
    out = workspace.config.path("derivatives") / PATIENT / "convert"
    roles = {"t1", "t1c", "t2", "flair", "t1_json", "t1c_json", "t2_json", "flair_json", "report"}
    assert set(result.outputs) == roles
    assert result.outputs["t1c"] == out / "t1c.nii.gz"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{r}.nii.gz" for r in ("t1", "t1c", "t2", "flair")]
        + [f"{r}.json" for r in ("t1", "t1c", "t2", "flair")]
        + ["conversion.json"]
    )  # nothing temporary left behind
    assert nib.load(out / "t1.nii.gz").shape == (256, 256, 35)
    assert nib.load(out / "t2.nii.gz").shape == (256, 256, 12)
    assert nib.load(out / "flair.nii.gz").shape == (96, 128, 128)
    # Philips display scaling: scl_slope is the DICOM RescaleSlope
    assert nib.load(out / "t1c.nii.gz").dataobj.slope == pytest.approx(21.2764347, rel=1e-6)
    sidecar = json.loads((out / "t1c.json").read_text())
    assert sidecar["Manufacturer"] == "Philips" and sidecar["EchoTime"] == pytest.approx(0.003568)
    report = json.loads((out / "conversion.json").read_text())
    assert report["philips_scaling"] == "display" and report["dcm2niix"].startswith("v1.")
    assert report["series"]["t2"]["geometry"]["slices"] == 12
    assert "display values" in report["series"]["t1c"]["intensity_scaling"]
    assert result.tools["dcm2niix"] == report["dcm2niix"]
    assert any("t1: series 1" in r["message"] for r in ctx.logs)
    assert STAGE.tools is not None and STAGE.tools()["dcm2niix"] == report["dcm2niix"]


def test_a_broken_series_fails_with_its_name_and_writes_nothing(
    testdata: Path, workspace: Workspace
) -> None:
    broken = {**SERIES, "flair": "dicom2nifti_multivendor_slabs/failing/sliceorientation/001"}
    ctx = _setup(workspace, testdata, broken)
    with pytest.raises(GeometryError, match=r"flair: series 4 '001' \(1\.2\.3\.3\): mixed slice"):
        run_convert(ctx)
    out = workspace.config.path("derivatives") / PATIENT / "convert"
    assert list(out.iterdir()) == []  # the three good volumes were not put in place


def test_excluded_or_incomplete_selections_are_refused(
    testdata: Path, workspace: Workspace
) -> None:
    ctx = _setup(workspace, testdata, {"t1": SERIES["t1"]})
    with pytest.raises(ValueError, match="no series for t1c, t2, flair"):
        run_convert(ctx)
    ctx.params["philips_scaling"] = "fp"
    with pytest.raises(ValueError, match="philips_scaling"):
        run_convert(ctx)


def test_dcm2niix_variants_are_refused(tmp_path: Path, testdata: Path) -> None:
    # two echoes would give name.nii.gz and name_e2.nii.gz: refused, never a silent choice
    src = testdata / "dicom" / "siemens_prisma_t1_fl2d_patient_position" / "dicom" / "HFS"
    files = sorted((src / "3_t1_fl2d_sag").iterdir())[:6]
    two = []
    for echo, te in ((1, 2.46), (2, 9.0)):
        for f in files:
            ds = pydicom.dcmread(f)
            ds.EchoTime, ds.EchoNumbers = te, echo
            ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{echo}"
            p = tmp_path / "in" / f"{echo}_{f.name}"
            p.parent.mkdir(exist_ok=True)
            ds.save_as(p)
            two.append(p)
    with pytest.raises(ConversionError, match="expected exactly one"):
        convert_files(two, tmp_path / "out", "x")
