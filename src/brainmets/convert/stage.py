"""The ``convert`` pipeline stage: the four selected series to NIfTI with BIDS sidecars.

Reads ``selection.json`` of the ``classify`` stage (the chosen series and their image
files), checks each series' geometry (:mod:`brainmets.convert.geometry`), converts it with
dcm2niix (:mod:`brainmets.convert.dcm2niix`) and verifies that the volume has the checked
number of slices and matrix. Everything is written into a temporary folder inside the
stage's output folder first and renamed into place only when all four succeeded.

Outputs in ``data/derivatives/<patient>/convert/``: ``t1.nii.gz``, ``t1c.nii.gz``,
``t2.nii.gz``, ``flair.nii.gz`` (roles ``t1`` ... ``flair``), their dcm2niix BIDS sidecars
``t1.json`` ... (roles ``t1_json`` ...), and ``conversion.json`` (role ``report``: series,
geometry, corrections, dcm2niix version, warnings and the Philips scaling convention).

A series that fails a check makes the stage fail with a message naming the role, the series
and the problem. To use another series instead, mark the faulty one ``other``
(``brainmets classify --set SERIES_UID=other``) and run again.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np

from brainmets.convert.dcm2niix import (
    PHILIPS_SCALING,
    ConversionError,
    convert_files,
    dcm2niix_version,
    find_dcm2niix,
    warning_kind,
)
from brainmets.convert.geometry import check_geometry, read_frames
from brainmets.fsutil import TMP_PREFIX
from brainmets.pipeline.options import option_defaults
from brainmets.pipeline.stage import Stage, StageContext, StageResult

ROLES: tuple[str, ...] = ("t1", "t1c", "t2", "flair")


@dataclass(frozen=True)
class ConvertOptions:
    """The stage parameters (``[stages.convert]``).

    Attributes:
        philips_scaling: ``"display"`` (RescaleSlope/Intercept, dcm2niix -p n) or
            ``"precise"`` (Philips FP, -p y).
        drop_localizers: drop instances with Image Type LOCALIZER stored inside a selected
            series.
        spacing_tolerance: largest deviation of a slice step from the median step (fraction
            of the step).
        position_tolerance_mm: positions closer than this (mm) are the same slice position.
        tilt_tolerance_deg: largest angle (degrees) between the slice stacking direction and
            the slice normal.
        compress: write ``.nii.gz``.
    """

    philips_scaling: str = "display"
    drop_localizers: bool = True
    spacing_tolerance: float = 0.02
    position_tolerance_mm: float = 0.05
    tilt_tolerance_deg: float = 0.5
    compress: bool = True

    def __post_init__(self) -> None:
        if self.philips_scaling not in PHILIPS_SCALING:
            raise ValueError(
                f"[stages.convert] philips_scaling must be one of {sorted(PHILIPS_SCALING)}"
            )


DEFAULTS: dict[str, Any] = option_defaults(ConvertOptions)


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _check_volume(path: Path, rows: int, columns: int, slices: int, label: str) -> list[int]:
    img = cast(nib.Nifti1Image, nib.load(str(path)))
    shape = [int(x) for x in img.shape]
    spatial = shape[:3] + [1] * (3 - len(shape[:3]))
    extra = int(np.prod(shape[3:])) if len(shape) > 3 else 1
    if extra != 1 or sorted(spatial) != sorted([rows, columns, slices]):
        raise ConversionError(
            f"{label}: dcm2niix wrote a {'x'.join(map(str, shape))} volume, expected "
            f"{rows}x{columns} pixels x {slices} slices"
        )
    return shape


def run_convert(ctx: StageContext) -> StageResult:
    p = ctx.params
    if p["philips_scaling"] not in PHILIPS_SCALING:
        raise ValueError(
            f"[stages.convert] philips_scaling must be one of {sorted(PHILIPS_SCALING)}"
        )
    selection = json.loads(ctx.input("classify", "selection").read_text(encoding="utf-8"))
    if selection.get("excluded"):
        raise ValueError(f"{ctx.patient_id} is excluded: {selection['excluded']}")
    missing = [r for r in ROLES if r not in selection.get("selected", {})]
    if missing:
        raise ValueError(f"classify selected no series for {', '.join(missing)}")
    exe = find_dcm2niix()
    version = dcm2niix_version(exe)
    out = ctx.out_dir
    for stale in out.glob(f"{TMP_PREFIX}convert-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}convert-", dir=out))
    report: dict[str, Any] = {
        "patient": ctx.patient_id,
        "study_uid": selection.get("study_uid"),
        "dcm2niix": version,
        "philips_scaling": p["philips_scaling"],
        "series": {},
    }
    try:
        for role in ROLES:
            entry = selection["selected"][role]
            label = (
                f"{role}: series {entry.get('series_number')} {entry.get('description')!r} "
                f"({entry['series_uid']})"
            )
            files = [ctx.root / rel for rel in entry["instances"]]
            absent = [f for f in files if not f.is_file()]
            if absent:
                raise FileNotFoundError(f"{label}: {len(absent)} instance file(s) missing")
            geo = check_geometry(
                read_frames(files),
                series=label,
                drop_localizers=bool(p["drop_localizers"]),
                spacing_tolerance=float(p["spacing_tolerance"]),
                position_tolerance_mm=float(p["position_tolerance_mm"]),
                tilt_tolerance_deg=float(p["tilt_tolerance_deg"]),
            )
            for c in geo.corrections:
                ctx.warning(f"{label}: {c}")
            conv = convert_files(
                geo.files,
                tmp,
                role,
                philips_scaling=p["philips_scaling"],
                compress=bool(p["compress"]),
                exe=exe,
            )
            shape = _check_volume(conv.nifti, geo.rows, geo.columns, geo.n_slices, label)
            for w in conv.warnings:  # the console shows one of each kind (logsetup)
                kind, level = warning_kind(w)
                ctx.log(level, f"{label}: dcm2niix: {w}", repeat_kind=f"dcm2niix: {kind}")
            ctx.info(f"{label}: {'x'.join(map(str, shape))} -> {conv.nifti.name}")
            report["series"][role] = {
                "series_uid": entry["series_uid"],
                "series_number": entry.get("series_number"),
                "description": entry.get("description"),
                "geometry": geo.to_json(),
                "shape": shape,
                "intensity_scaling": conv.scaling,
                "dcm2niix_warnings": conv.warnings,
                "files": [conv.nifti.name] + ([conv.sidecar.name] if conv.sidecar else []),
            }
        (tmp / "conversion.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
        outputs: dict[str, Path] = {}
        for f in sorted(tmp.iterdir()):
            if not f.is_file():
                continue
            _fsync(f)
            os.replace(f, out / f.name)
            stem = f.name.split(".")[0]
            if f.name.endswith((".nii", ".nii.gz")):
                outputs[stem] = out / f.name
            elif f.name == "conversion.json":
                outputs["report"] = out / f.name
            elif f.name.endswith(".json"):
                outputs[f"{stem}_json"] = out / f.name
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return StageResult(
        outputs=outputs,
        metrics={
            f"{r}_shape": report["series"][r]["shape"] for r in ROLES if r in report["series"]
        },
        tools={"dcm2niix": version},
    )


def _tools() -> dict[str, str]:
    try:
        return {"dcm2niix": dcm2niix_version()}
    except (ConversionError, OSError):
        return {}


STAGE = Stage(
    name="convert",
    func=run_convert,
    scope="patient",
    version="1",
    defaults=DEFAULTS,
    options=ConvertOptions,
    summary="convert the selected series to NIfTI (dcm2niix, BIDS sidecars)",
    tools=_tools,
)
