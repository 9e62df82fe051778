"""A small workspace for the report and export tests, built in seconds by stand-in stages.

Stand-ins write what the real stages record (catalog rows, selection.json, sidecars, SRI24-grid
images, transforms, label maps); the real ``features``, ``report`` and ``export`` stages run
on them through the runner. Patients (by MRN):

* ``a``: Siemens 3 T, 3D T1c / 2D FLAIR, two lesions (one necrotic), a DICOM T1c series;
* ``b``: GE 1.5 T, 2D T1c whose DICOM header lacks the slice spacing (the sidecar has it),
  FLAIR echo time only in the sidecar (seconds), one infratentorial lesion, a QC flag;
* ``c``: excluded by classification (no FLAIR);
* ``d``: fails in preprocessing (registration).

Imported by ``tests/report`` and (through its conftest) ``tests/export``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from brainmets.catalog import utcnow
from brainmets.export.conventions import SRI24_AFFINE
from brainmets.export.stage import STAGE as EXPORT
from brainmets.features.stage import STAGE as FEATURES
from brainmets.fsutil import atomic_write_text
from brainmets.ids import patient_pseudonym
from brainmets.pipeline import InlineExecutor, Pipeline, Runner, Stage, StageContext, StageResult
from brainmets.report.stage import STAGE as REPORT
from brainmets.workspace import Workspace

MRNS = {"a": "55500001", "b": "55500002", "c": "55500003", "d": "55500004"}
NAMES = {"a": "DOE^ALICE", "b": "ROE^BOB", "c": "POE^CAROL", "d": "LOE^DAN"}
SHAPE = (240, 240, 155)
#: atlas world -> native T1c world of patient a (preprocess convention: atlas_to["t1c"])
ATLAS_TO_T1C = np.array(
    [[1.0, 0, 0, 12.0], [0, 1.0, 0, -30.0], [0, 0, 1.0, 40.0], [0, 0, 0, 1.0]], dtype=float
)
#: lesions per patient: (centre voxel, enhancing radius, necrosis radius, edema radius)
LESIONS: dict[str, list[tuple[tuple[int, int, int], float, float, float]]] = {
    "a": [((150, 150, 90), 7.0, 3.0, 12.0), ((90, 120, 100), 2.5, 0.0, 5.0)],
    "b": [((120, 80, 30), 5.0, 0.0, 9.0)],
    "d": [((120, 120, 80), 4.0, 0.0, 0.0)],
}

#: selected-series headers (DICOM units: ms, mm, T) per patient and class
HEADERS: dict[str, dict[str, dict[str, Any]]] = {
    "a": {
        "t1": {"mr_acquisition_type": "3D", "echo_time": 2.5, "repetition_time": 2000.0},
        "t1c": {
            "mr_acquisition_type": "3D",
            "echo_time": 2.98,
            "repetition_time": 2300.0,
            "slice_thickness": 1.0,
            "spacing_between_slices": 1.0,
            "field_strength": 2.89362,
            "manufacturer": "SIEMENS",
            "model": "Skyra",
        },
        "t2": {"mr_acquisition_type": "2D", "echo_time": 90.0},
        "flair": {
            "mr_acquisition_type": "2D",
            "echo_time": 81.0,
            "repetition_time": 9000.0,
            "slice_thickness": 5.0,
            "spacing_between_slices": 6.5,
            "field_strength": 2.89362,
            "manufacturer": "SIEMENS",
        },
    },
    "b": {
        "t1": {"mr_acquisition_type": "2D"},
        "t1c": {
            "mr_acquisition_type": "2D",
            "echo_time": 10.0,
            "repetition_time": 500.0,
            "slice_thickness": 5.0,
            "spacing_between_slices": None,
            "field_strength": 1.5,
            "manufacturer": "GE MEDICAL SYSTEMS",
        },
        "t2": {"mr_acquisition_type": "2D"},
        "flair": {
            "mr_acquisition_type": None,
            "echo_time": None,
            "repetition_time": 8000.0,
            "slice_thickness": 4.0,
            "spacing_between_slices": 5.0,
            "field_strength": 1.5,
            "manufacturer": "GE MEDICAL SYSTEMS",
        },
    },
}
#: BIDS sidecars (seconds) of the converted series
SIDECARS: dict[str, dict[str, dict[str, Any]]] = {
    "a": {"t1c": {"EchoTime": 0.00298, "RepetitionTime": 2.3}, "flair": {"EchoTime": 0.081}},
    "b": {
        "t1c": {"EchoTime": 0.01, "SpacingBetweenSlices": 6.0},
        "flair": {"EchoTime": 0.12, "MRAcquisitionType": "2D"},
    },
}


def ball_labels(lesions: list[tuple[tuple[int, int, int], float, float, float]]) -> np.ndarray:
    lab = np.zeros(SHAPE, np.uint8)
    ii, jj, kk = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    for (ci, cj, ck), r_et, r_nec, r_ed in lesions:
        d2 = (ii - ci) ** 2 + (jj - cj) ** 2 + (kk - ck) ** 2
        lab[(d2 <= r_ed**2) & (lab == 0)] = 2
        lab[d2 <= r_et**2] = 3
        if r_nec:
            lab[d2 <= r_nec**2] = 1
    return lab


def head_image(seed: int, lab: np.ndarray | None = None) -> np.ndarray:
    """An int16 'brain': an ellipsoid of noisy tissue, brighter where labelled."""
    rng = np.random.default_rng(seed)
    ii, jj, kk = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    inside = ((ii - 120) / 70.0) ** 2 + ((jj - 125) / 85.0) ** 2 + ((kk - 75) / 60.0) ** 2 <= 1
    img = np.where(inside, 400 + rng.integers(0, 100, SHAPE), 0).astype(np.int16)
    if lab is not None:
        img[lab > 0] += 300
    return img


def save_sri24(path: Path, data: np.ndarray, dtype: Any) -> Path:
    img = nib.Nifti1Image(data.astype(dtype), SRI24_AFFINE)
    img.header.set_qform(SRI24_AFFINE, code=1)
    img.header.set_sform(SRI24_AFFINE, code=1)
    img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def uid(*parts: object) -> str:
    import hashlib

    return "2.25." + str(int(hashlib.sha256(repr(parts).encode()).hexdigest()[:30], 16))


def write_t1c_series(folder: Path, pid: str, study_uid: str, series_uid: str) -> list[Path]:
    """A 2D axial 'de-identified' T1c series around patient a's first lesion (native world =
    atlas world moved by :data:`ATLAS_TO_T1C`, the same for every patient)."""
    folder.mkdir(parents=True, exist_ok=True)
    # lesion centre in atlas world, then native world (RAS), then LPS
    centre_vox = np.array([*LESIONS["a"][0][0], 1.0])
    native = ATLAS_TO_T1C @ SRI24_AFFINE @ centre_vox
    rows, cols, n, ps, dz = 48, 40, 12, (2.0, 2.0), 3.0
    lps_c = np.array([-native[0], -native[1], native[2]])
    origin = lps_c - np.array([cols / 2 * ps[1], rows / 2 * ps[0], n / 2 * dz])
    paths = []
    for k in range(n):
        ds = Dataset()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        meta.MediaStorageSOPInstanceUID = uid(pid, "t1c", k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.SOPClassUID = meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.PatientID = pid
        ds.PatientName = pid
        ds.PatientBirthDate = ""
        ds.PatientSex = "F"
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "test"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = uid(pid, "for")
        ds.StudyDate = "20200101"
        ds.StudyTime = "120000"
        ds.AccessionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.StudyID = "1"
        ds.Modality = "MR"
        ds.SeriesNumber = 8
        ds.InstanceNumber = k + 1
        ds.Manufacturer = "SIEMENS"
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + dz * k)]
        ds.PixelSpacing = list(ps)
        ds.SliceThickness = dz
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.full((rows, cols), 100, np.uint16).tobytes()
        p = folder / f"IM{k:04d}.dcm"
        ds.save_as(str(p), enforce_file_format=True)
        paths.append(p)
    return paths


# ------------------------------------------------------------------ stand-in stages
def _enrol(ctx: StageContext) -> StageResult:
    rows = [{"id": p, "created_at": utcnow()} for p in ctx.params["patients"]]
    return StageResult(records={"patients": rows})


def _letter(ctx: StageContext) -> str:
    return ctx.params["letters"][ctx.patient_id]


def _classify(ctx: StageContext) -> StageResult:
    letter = _letter(ctx)
    pid = ctx.patient_id
    study = uid(pid, "study")
    records: dict[str, list[dict[str, Any]]] = {
        "studies": [{"uid": study, "patient_id": pid, "study_date": "20200101"}],
        "series": [],
    }
    if letter == "c":
        return StageResult(
            records=records,
            exclude="no study with all of t1, t1c, t2, flair: study 20200101 MRI BRAIN lacks flair",
        )
    headers = HEADERS.get(letter, HEADERS["a"])
    selected: dict[str, Any] = {}
    for n, cls in enumerate(("t1", "t2", "flair", "t1c"), start=2):
        suid = uid(pid, cls)
        h = {"uid": suid, "study_uid": study, **headers[cls]}
        files: list[str] = []
        if cls == "t1c":
            paths = write_t1c_series(ctx.out_dir / "dicom", pid, study, suid)
            files = [str(p.relative_to(ctx.root)) for p in paths]
        selected[cls] = {"series_uid": suid, "instances": files}
        records["series"].append(
            {
                "uid": suid,
                "study_uid": study,
                "patient_id": pid,
                "modality": "MR",
                "series_number": n,
                "header_json": json.dumps({"header": h, "selected_as": cls}),
            }
        )
    sel = atomic_write_text(
        ctx.out_dir / "selection.json",
        json.dumps({"patient": pid, "study_uid": study, "selected": selected}),
    )
    return StageResult(outputs={"selection": sel}, records=records)


def _convert(ctx: StageContext) -> StageResult:
    outputs = {}
    for cls, side in SIDECARS.get(_letter(ctx), {}).items():
        outputs[f"{cls}_json"] = atomic_write_text(ctx.out_dir / f"{cls}.json", json.dumps(side))
    return StageResult(outputs=outputs)


def _preprocess(ctx: StageContext) -> StageResult:
    from brainmets.preprocess.images import Grid
    from brainmets.preprocess.transforms import CaseTransforms

    letter = _letter(ctx)
    if letter == "d":
        raise RuntimeError("RegistrationFailed: NMI 1.02 below 1.09 after the retry")
    pid = ctx.patient_id
    lab = ball_labels(LESIONS[letter])
    outputs: dict[str, Path] = {}
    for i, role in enumerate(("t1n", "t1c", "t2w", "t2f")):
        data = head_image(i + 10 * len(pid), lab if role in ("t1c", "t2f") else None)
        outputs[role] = save_sri24(ctx.out_dir / f"{pid}-{role}.nii.gz", data, np.int16)
    tr = CaseTransforms(
        case_id=pid,
        atlas_grid=Grid(SHAPE, SRI24_AFFINE.copy()),
        atlas_to={"t1c": ATLAS_TO_T1C.copy()},
    )
    outputs["transforms"] = tr.save(ctx.out_dir / f"{pid}-transforms.json")
    flags = ["low_similarity_flair"] if letter == "b" else []
    metrics = {
        "flags": flags,
        "brain_volume_cm3": 1234.5,
        "mask_template_dice": 0.93,
        "similarity_t1c": 1.05,
        "skull_stripper": "deepbet",
    }
    return StageResult(outputs=outputs, metrics=metrics)


def _segment(ctx: StageContext) -> StageResult:
    lab = ball_labels(LESIONS[_letter(ctx)])
    seg = save_sri24(ctx.out_dir / f"{ctx.patient_id}-seg.nii.gz", lab, np.uint8)
    return StageResult(outputs={"seg": seg})


def pipeline() -> Pipeline:
    """enrol -> classify -> convert -> preprocess -> segment -> features -> report -> export."""
    return Pipeline(
        (
            Stage("enrol", _enrol, scope="cohort", defaults={"patients": []}),
            Stage("classify", _classify, defaults={"letters": {}}),
            Stage("convert", _convert, defaults={"letters": {}}),
            Stage("preprocess", _preprocess, defaults={"letters": {}}),
            Stage("segment", _segment, defaults={"letters": {}}),
            FEATURES,
            REPORT,
            EXPORT,
        )
    )


PIPELINE_SPEC = "rx_workspace:pipeline"


@dataclass
class RxWorkspace:
    ws: Workspace
    pids: dict[str, str]  # letter -> pseudonym
    sheet: Path

    @property
    def root(self) -> Path:
        return self.ws.root

    def run(self, stages: list[str] | None = None, force: list[str] | None = None) -> Any:
        ws = Workspace.open(self.root)
        with ws.lock():
            return Runner(ws, pipeline(), InlineExecutor(), progress=False).run(
                stages, None, force or []
            )

    def set(self, stage: str, **params: Any) -> None:
        ws = Workspace.open(self.root)
        for k, v in params.items():
            ws.config.set_stage_param(stage, k, v)
        ws.save_config()


def make_workspace(root: Path, clinical: bool = True) -> RxWorkspace:
    """Create and run the workspace (the report with ``figure_patients = 0``: all)."""
    ws = Workspace.init(root / "ws")
    key = ws.key()
    pids = {k: patient_pseudonym(key, v) for k, v in MRNS.items()}
    letters = {v: k for k, v in pids.items()}
    ws.config.data["runner"]["pipeline"] = PIPELINE_SPEC
    ws.config.set_stage_param("enrol", "patients", sorted(pids.values()))
    for st in ("classify", "convert", "preprocess", "segment"):
        ws.config.set_stage_param(st, "letters", letters)
    sheet = root / "clinical.csv"
    sheet.write_text(
        "MRN,Age,Sex,Ethnicity,Smoke,Primary,Extranodal,Survival,Death\n"
        f"{MRNS['a']},61.5,1,0,20,5,1,12.3,1\n"
        f"{MRNS['b']},70,0,0,,1,0,3,0\n"
        f"{MRNS['c']},50,0,0,0,4,0,1,0\n"
        "99999999,50,0,0,0,1,0,1,0\n"
    )
    if clinical:
        ws.config.set_stage_param("report", "clinical_sheet", str(sheet))
    ws.config.set_stage_param("report", "figure_patients", 0)
    ws.save_config()
    rx = RxWorkspace(Workspace.open(ws.root), pids, sheet)
    rx.run()
    return rx


def read_dicom_uids(paths: list[Path]) -> set[str]:
    return {pydicom.dcmread(str(p), stop_before_pixels=True).SOPInstanceUID for p in paths}


def full_pipeline() -> Pipeline:
    """The default pipeline (every stage, each implemented by its package)."""
    from brainmets.stages import default_pipeline

    return default_pipeline()


def enrol_report_export() -> Pipeline:
    """Only enrolment, report and export (no patient stage)."""
    return Pipeline(
        (Stage("enrol", _enrol, scope="cohort", defaults={"patients": []}), REPORT, EXPORT)
    )
