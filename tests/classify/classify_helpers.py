"""Helpers for the classify tests: clone real series with changed headers into a workspace."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.uid import generate_uid

from brainmets.catalog import utcnow
from brainmets.pipeline.stage import StageContext
from brainmets.workspace import Workspace


@dataclass
class SeriesSpec:
    """A series to clone from real files, with header changes."""

    description: str
    number: int
    time: str  # SeriesTime / AcquisitionTime HHMMSS
    attrs: dict[str, Any] = field(default_factory=dict)
    uid: str = field(default_factory=generate_uid)


@dataclass
class StudySpec:
    date: str
    series: list[SeriesSpec]
    description: str = "MRT Schaedel"
    uid: str = field(default_factory=generate_uid)


def clone_series(
    files: Sequence[Path], dest: Path, study_uid: str, date: str, spec: SeriesSpec
) -> list[Path]:
    """Copies of ``files`` as a new series of a new study, with ``spec`` applied."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = spec.uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber = spec.number
        ds.SeriesDescription = spec.description
        ds.ProtocolName = spec.description
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
        ds.SeriesTime = ds.AcquisitionTime = spec.time
        for k, v in spec.attrs.items():
            if v is None:
                if k in ds:
                    delattr(ds, k)
            else:
                setattr(ds, k, v)
        p = dest / f"{i:04d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append(p)
    return out


def build_patient(
    ws: Workspace, patient: str, studies: Sequence[StudySpec], template: Sequence[Path]
) -> None:
    """Write the studies into ``data/dicom/<patient>`` and record them in the catalog
    as the ``deid`` stage would."""
    dicom = ws.config.path("dicom")
    rows: dict[str, list[dict[str, Any]]] = {
        "patients": [{"id": patient, "created_at": utcnow()}],
        "studies": [],
        "series": [],
        "instances": [],
    }
    for st in studies:
        rows["studies"].append(
            {
                "uid": st.uid,
                "patient_id": patient,
                "study_date": st.date,
                "study_time": "080000",
                "description": st.description,
            }
        )
        for se in st.series:
            files = clone_series(template, dicom / patient / st.uid / se.uid, st.uid, st.date, se)
            rows["series"].append(
                {
                    "uid": se.uid,
                    "study_uid": st.uid,
                    "patient_id": patient,
                    "modality": "MR",
                    "series_number": se.number,
                    "description": se.description,
                    "n_instances": len(files),
                }
            )
            for f in files:
                rows["instances"].append(
                    {
                        "sop_uid": pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID,
                        "series_uid": se.uid,
                        "patient_id": patient,
                        "path": os.path.relpath(f, ws.root),
                        "sha256": "0" * 64,
                        "size": f.stat().st_size,
                    }
                )
    with ws.lock(), ws.catalog() as cat, cat.transaction():
        cat.apply_records(rows)


def stage_context(ws: Workspace, patient: str, stage: str, params: dict[str, Any]) -> StageContext:
    return StageContext(
        patient_id=patient, stage=stage, params=params, root=ws.root, config=ws.config.data
    )


# Header changes that turn the cloned 2D T1 into other acquisitions (physics only matters).
T2_ATTRS = {"EchoTime": 95, "RepetitionTime": 5000, "ScanningSequence": "SE", "FlipAngle": 150}
FLAIR_ATTRS = {
    "EchoTime": 85,
    "RepetitionTime": 9000,
    "InversionTime": 2500,
    "ScanningSequence": ["SE", "IR"],
    "FlipAngle": 150,
}
DWI_ATTRS = {"EchoTime": 89, "RepetitionTime": 6700, "ScanningSequence": "EP"}
