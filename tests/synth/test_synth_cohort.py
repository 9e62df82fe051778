"""Tests of the synthetic cohort generator against its own ground truth."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from brainmets.synth.lesions import EDEMA, ENHANCING, NECROSIS

pytestmark = pytest.mark.atlas


def _truth(summary) -> dict:
    return json.loads(summary.truth_json.read_text())


def _read_series(root: Path, series: dict) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    files = sorted((root / series["dir"]).glob("*.dcm"))
    dss = sorted((pydicom.dcmread(f) for f in files), key=lambda d: int(d.InstanceNumber))
    arr = np.stack([d.pixel_array.T for d in dss], axis=-1)
    return arr, dss


def test_layout_and_summary(cohort):
    truth = _truth(cohort)
    assert len(cohort.mrns) == 3
    assert cohort.clinical_sheet.is_file()
    for mrn in cohort.mrns:
        assert (cohort.out_dir / "dicom" / mrn).is_dir()
        assert (cohort.out_dir / "truth" / mrn / "truth.json").is_file()
    p0, p1, p2 = truth["patients"]
    assert p0["expected_included"] and p1["expected_included"]
    assert not p2["expected_included"] and p2["missing_sequences"] == ["FLAIR"]
    assert cohort.excluded == [p2["mrn"]]
    assert [s["role"] for s in p1["studies"]] == ["baseline", "followup"]
    assert p1["studies"][1]["date"] > p1["studies"][0]["date"]
    kinds1 = {s["kind"] for s in p1["studies"][0]["series"]}
    assert {"LOC", "T1", "T1c", "T2", "FLAIR", "SUB"} <= kinds1
    assert any(s["kind"] == "SC" for s in p0["studies"][0]["series"])
    assert not (cohort.out_dir / ".staging").exists()


def test_dicom_headers(cohort):
    truth = _truth(cohort)
    root = cohort.out_dir
    for pat in truth["patients"]:
        for study in pat["studies"]:
            times = []
            for s in study["series"]:
                f = sorted((root / s["dir"]).glob("*.dcm"))[0]
                ds = pydicom.dcmread(f)
                times.append((ds.SeriesTime, s["kind"]))
                assert ds.PatientID == pat["mrn"]
                assert ds.StudyDate == study["date"].replace("-", "")
                assert ds.StudyInstanceUID.startswith("2.25.")
                if s["kind"] == "SC":
                    assert ds.BurnedInAnnotation == "YES"
                    continue
                assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.4"
                assert ds.MRAcquisitionType in ("2D", "3D")
                assert float(ds.MagneticFieldStrength) in (1.0, 1.5, 3.0)
                assert ds.Manufacturer == study["scanner"]["manufacturer"]
                for kw in (
                    "ImagePositionPatient",
                    "ImageOrientationPatient",
                    "PixelSpacing",
                    "SliceThickness",
                    "SpacingBetweenSlices",
                    "RepetitionTime",
                    "EchoTime",
                    "FlipAngle",
                    "ScanningSequence",
                    "SequenceVariant",
                ):
                    assert kw in ds, kw
                if s["kind"] == "T1c":
                    assert ds.ContrastBolusAgent
                if s["kind"] == "FLAIR":
                    assert float(ds.InversionTime) > 1000
            # post-contrast T1 after the pre-contrast sequences
            order = [k for _, k in sorted(times)]
            if "T1c" in order and "T2" in order:
                assert order.index("T1c") > order.index("T2")


def test_geometry_matches_dcm2niix(cohort, tmp_path):
    exe = shutil.which("dcm2niix") or str(
        Path(__file__).resolve().parents[2] / ".venv/bin/dcm2niix"
    )
    if not Path(exe).exists():
        pytest.skip("dcm2niix not available")
    truth = _truth(cohort)
    pat = truth["patients"][0]
    study = pat["studies"][0]
    out = tmp_path / "nii"
    out.mkdir()
    subprocess.run(
        [exe, "-z", "n", "-f", "%s", "-o", str(out), str(cohort.out_dir / study["dir"])],
        check=True,
        capture_output=True,
    )
    checked = 0
    for s in study["series"]:
        if s["kind"] in ("LOC", "SC"):
            continue
        nii = out / f"{s['series_number']}.nii"
        assert nii.is_file(), s["dir"]
        conv = nib.as_closest_canonical(nib.load(str(nii)))
        arr, dss = _read_series(cohort.out_dir, s)
        n = s["grids"][0]["shape"][2]
        affine = np.array(s["grids"][0]["affine_ras"])
        ours = nib.as_closest_canonical(nib.Nifti1Image(arr[:, :, :n].astype(np.float32), affine))
        np.testing.assert_allclose(conv.affine, ours.affine, atol=1e-3)
        data = np.asarray(conv.dataobj)
        if data.ndim == 4:
            data = data[..., 0]
        np.testing.assert_array_equal(data, np.asarray(ours.dataobj))
        # the DICOM header's own geometry gives the same affine (LPS -> RAS)
        d0, d1 = dss[0], dss[1]
        iop = np.array(d0.ImageOrientationPatient, dtype=float)
        ps = np.array(d0.PixelSpacing, dtype=float)
        step = np.array(d1.ImagePositionPatient, dtype=float) - np.array(
            d0.ImagePositionPatient, dtype=float
        )
        lps = np.eye(4)
        lps[:3, 0] = iop[:3] * ps[1]
        lps[:3, 1] = iop[3:] * ps[0]
        lps[:3, 2] = step
        lps[:3, 3] = np.array(d0.ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ lps, affine, atol=1e-4)
        checked += 1
    assert checked >= 6


def test_lesion_volumes_equal_mask_voxel_counts(cohort):
    truth = _truth(cohort)
    for pat in truth["patients"]:
        tf = pat["truth_files"]
        labels = np.asarray(nib.load(str(cohort.out_dir / tf["label_map"])).dataobj)
        inst = np.asarray(nib.load(str(cohort.out_dir / tf["instance_map"])).dataobj)
        assert labels.shape == (240, 240, 155) and labels.dtype == np.uint8
        assert set(np.unique(labels)) <= {0, 1, 2, 3}
        for les in pat["lesions"]:
            m = inst == les["id"]
            v = les["volume_voxels"]
            assert v["enhancing"] == int((m & (labels == ENHANCING)).sum())
            assert v["necrosis"] == int((m & (labels == NECROSIS)).sum())
            assert v["edema"] == int((m & (labels == EDEMA)).sum())
            assert v["core"] == v["enhancing"] + v["necrosis"]
            assert v["whole"] == int(m.sum())
            assert v["core"] > 0
            assert les["has_necrosis"] == (v["necrosis"] > 0)
        s = pat["summary"]
        assert s["ET_vol"] == round(int((labels == ENHANCING).sum()) / 1000, 3)
        assert s["Edema_vol"] == round(int((labels == EDEMA).sum()) / 1000, 3)


def test_lesions_inside_brain_and_flags(cohort, atlas_dir):
    tis = np.asarray(nib.load(str(atlas_dir / "tissues.nii.gz")).dataobj)
    sup = np.asarray(nib.load(str(atlas_dir / "suptent.nii.gz")).dataobj)
    truth = _truth(cohort)
    aff = np.array(truth["template"]["affine"])
    for pat in truth["patients"]:
        labels = np.asarray(nib.load(str(cohort.out_dir / pat["truth_files"]["label_map"])).dataobj)
        assert not ((labels > 0) & (tis == 0)).any(), "label outside the brain"
        for les in pat["lesions"]:
            ijk = np.round(np.linalg.inv(aff) @ np.array([*les["centre_template_mm"], 1.0]))
            i, j, k = (int(v) for v in ijk[:3])
            infra = bool(tis[i, j, k] > 0 and sup[i, j, k] == 0)
            if infra:
                assert les["infratentorial"]
    p0 = truth["patients"][0]
    assert any(les["infratentorial"] for les in p0["lesions"])
    assert p0["merged_edema_groups"], "patient 0 has lesions whose edema merges"
    assert any(les["has_necrosis"] for les in p0["lesions"])
    assert max(les["max_diameter_mm"] for les in p0["lesions"]) >= 20


def test_series_masks_and_seg(cohort):
    truth = _truth(cohort)
    pat = truth["patients"][0]
    masks = pat["truth_files"]["masks"]
    assert "Core1_PGGE" in masks and "Whole1_FLAIR" in masks
    t1c = next(s for s in pat["studies"][0]["series"] if s["kind"] == "T1c")
    core = nib.load(str(cohort.out_dir / masks["Core1_PGGE"]["path"]))
    np.testing.assert_allclose(core.affine, np.array(t1c["grids"][0]["affine_ras"]), atol=1e-5)
    assert tuple(core.shape) == tuple(t1c["grids"][0]["shape"])
    # resampled core volume close to the template-space volume (physical, scaled patient)
    les1 = pat["lesions"][0]
    vox = float(abs(np.linalg.det(core.affine[:3, :3])))
    scale = np.prod(pat["studies"][0]["placement"]["scale"])
    got = float(np.asarray(core.dataobj).sum()) * vox
    want = les1["volume_voxels"]["core"] * scale
    assert abs(got - want) / want < 0.25
    seg_info = pat["truth_files"]["seg"]["core"]
    seg = pydicom.dcmread(cohort.out_dir / seg_info["path"])
    assert seg.Modality == "SEG"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == t1c["series_instance_uid"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == seg_info["segments"]


def test_planted_identifiers_listed(cohort):
    """Every occurrence of the patient's MRN / family name in the DICOM tree is in a file
    and tag that truth.json lists, and every listed value is really there."""
    truth = _truth(cohort)
    root = cohort.out_dir
    for pat in truth["patients"]:
        listed: dict[tuple[str, str], set[str]] = {}
        specific: set[Path] = set()
        for entry in pat["identifiers"]:
            for loc in entry["locations"]:
                files = loc["files"]
                names = (
                    [p.name for p in (root / loc["series"]).glob("*.dcm")]
                    if files == "all"
                    else files
                )
                for name in names:
                    listed.setdefault((loc["series"], name), set()).add(entry["tag_path"])
                    if files != "all":
                        specific.add(root / loc["series"] / name)
        family = pat["patient_name"].split("^")[0]
        secrets = [pat["mrn"].encode(), family.encode(), family.title().encode()]
        # first, middle and last file of every series, and every file named in a location
        to_scan: set[Path] = set()
        for series_dir in {p.parent for p in (root / "dicom" / pat["mrn"]).rglob("*.dcm")}:
            files = sorted(series_dir.glob("*.dcm"))
            to_scan |= {files[0], files[len(files) // 2], files[-1]}
        to_scan |= specific
        for f in sorted(to_scan):
            key = (str(f.parent.relative_to(root)), f.name)
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            found: set[str] = set()

            def walk(
                d: pydicom.Dataset,
                prefix: str,
                found: set[str] = found,
                secrets: list[bytes] = secrets,
            ) -> None:
                for elem in d:
                    if elem.tag == 0x7FE00010:
                        continue
                    if elem.VR == "SQ":
                        for n, item in enumerate(elem.value):
                            walk(item, f"{prefix}{elem.keyword}[{n}].")
                        continue
                    raw = elem.value if isinstance(elem.value, bytes) else str(elem.value).encode()
                    if any(s in raw for s in secrets):
                        if elem.tag.is_private:
                            found.add("private")
                        elif elem.tag.group == 0x6000:
                            found.add("overlay")
                        else:
                            found.add(prefix + elem.keyword)

            walk(ds, "")
            have = listed.get(key, set())
            for path in found:
                if path == "private":
                    assert any("[" in p for p in have), (key, path)
                elif path == "overlay":
                    assert any(p.startswith("Overlay") for p in have), (key, path)
                else:
                    assert path in have, (key, path)
            assert key in listed, key
            assert "PatientName" in have and "PatientID" in have
        # the listed values are really present
        for entry in pat["identifiers"]:
            if entry["category"] in ("burned_in_text", "overlay") or "[" in entry["tag_path"]:
                continue
            loc = entry["locations"][0]
            f = (
                sorted((root / loc["series"]).glob("*.dcm"))[0]
                if loc["files"] == "all"
                else root / loc["series"] / loc["files"][0]
            )
            ds = pydicom.dcmread(f)
            node = ds
            parts = entry["tag_path"].split(".")
            for part in parts[:-1]:
                kw, idx = part.rstrip("]").split("[")
                node = getattr(node, kw)[int(idx)]
            val = getattr(node, parts[-1])
            shown = (
                "\\".join(str(v) for v in val)
                if isinstance(val, pydicom.multival.MultiValue)
                else str(val)
            )
            assert shown == entry["value"], entry
    categories = {e["category"] for p in truth["patients"] for e in p["identifiers"]}
    assert {
        "patient_name",
        "patient_id",
        "birth_date",
        "accession_number",
        "institution",
        "physician",
        "operator",
        "device",
        "private",
        "overlay",
        "burned_in_text",
        "free_text",
        "uid",
        "date",
    } <= categories
    paths = {e["tag_path"] for p in truth["patients"] for e in p["identifiers"]}
    assert any(p.startswith("RequestAttributesSequence[0].") for p in paths)
    assert any(p.startswith("ReferencedStudySequence[0].") for p in paths)


def test_clinical_sheet(cohort):
    truth = _truth(cohort)
    df = pd.read_excel(cohort.clinical_sheet, sheet_name="Data", dtype={"MRN": str})
    assert list(df["MRN"]) == cohort.mrns
    for col in ("Age", "Sex", "Ethnicity", "Smoke", "Primary", "Extranodal", "Survival", "Death"):
        assert col in df.columns
    defects = truth["clinical_defects"]
    kinds = {d["column"] for d in defects}
    assert {"Smoke", "Primary"} <= kinds
    for d in defects:
        row = df[df["MRN"] == d["mrn"]].iloc[0]
        if d["kind"] == "missing":
            assert pd.isna(row[d["column"]])
        else:
            assert str(row[d["column"]]) == d["value"]
    desc = pd.read_excel(cohort.clinical_sheet, sheet_name="Description")
    assert "Primary" in set(desc["Column"])


def test_reproducible(cohort, tmp_path):
    """Same seed, other worker count and cohort size: patient 0 is byte-identical (DICOM,
    NIfTI, SEG, its truth.json); the workbook writer is byte-stable."""
    import datetime as dt

    from brainmets.synth import generate_cohort
    from brainmets.synth.clinical import write_workbook

    again = generate_cohort(tmp_path / "again", 1, seed=11, workers=1)
    mrn = cohort.mrns[0]
    assert again.mrns == [mrn]
    for sub in ("dicom", "truth"):
        a_root, b_root = cohort.out_dir / sub / mrn, again.out_dir / sub / mrn
        a_files = sorted(p.relative_to(a_root) for p in a_root.rglob("*") if p.is_file())
        b_files = sorted(p.relative_to(b_root) for p in b_root.rglob("*") if p.is_file())
        assert a_files == b_files
        for rel in a_files:
            assert (a_root / rel).read_bytes() == (b_root / rel).read_bytes(), rel
    truth = _truth(cohort)
    records = []
    from brainmets.synth.clinical import ClinicalRecord

    for p in truth["patients"]:
        c = dict(p["clinical"])
        for k in ("diagnosis_date", "last_contact_date"):
            c[k] = dt.date.fromisoformat(c[k])
        records.append(ClinicalRecord(**c))
    when = dt.datetime(2024, 1, 1)
    x = write_workbook(tmp_path / "a.xlsx", records, when).read_bytes()
    y = write_workbook(tmp_path / "b.xlsx", records, when).read_bytes()
    assert x == y
