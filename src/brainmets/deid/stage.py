"""The ``deid`` pipeline stage: de-identify one patient's source files into the workspace.

Each of the patient's accepted source files (see the ``ingest`` stage) is read, de-identified
in memory by :class:`brainmets.deid.Deidentifier` and written, only in de-identified form,
to ``data/dicom/<patient>/<study>/<series>/<sop>.dcm``. Quarantined instances (burned-in
annotation, screen captures) are recorded with the reason and never written anywhere: the
original stays in the source folder. The studies, series and instances are indexed in the
catalog.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pydicom

from brainmets.catalog import Catalog
from brainmets.config import Config
from brainmets.deid.engine import Deidentifier, DeidOptions, DeidResult
from brainmets.deid.tree import read_instance
from brainmets.fsutil import atomic_path, atomic_write_text, sha256_file
from brainmets.pipeline.inputs import InputContext
from brainmets.pipeline.stage import Stage, StageContext, StageResult
from brainmets.workspace import read_key

_ACCEPTED = ("pending", "deidentified", "quarantined", "received")
# DeidOptions fields exposed as stage parameters (the key never is one).
DEFAULTS: dict[str, Any] = DeidOptions.defaults()


def _source_rows(cat: Catalog, patient: str) -> list[dict[str, Any]]:
    return [
        {
            "path": f.path,
            "size": f.size,
            "mtime_ns": f.mtime_ns,
            "status": f.status,
            "seen_at": f.seen_at,
        }
        for f in cat.source_files(patient_id=patient, statuses=_ACCEPTED)
    ]


def _fingerprint_inputs(inp: InputContext) -> Any:
    """The patient's accepted source files by (path, size, mtime_ns), as ingest recorded them."""
    return inp.catalog.source_file_stats(inp.patient_id, _ACCEPTED)


def _text(ds: pydicom.Dataset, keyword: str) -> str | None:
    v = ds.get(keyword)
    return None if v is None or str(v) == "" else str(v)


def run_deid(ctx: StageContext) -> StageResult:
    config = Config(root=ctx.root, data=ctx.config)
    options = DeidOptions(**ctx.params)
    deid = Deidentifier(read_key(config.key_file), options)
    dicom_root = config.path("dicom")
    cat = ctx.catalog()
    try:
        sources = _source_rows(cat, ctx.patient_id)
    finally:
        cat.close()
    if not sources:
        raise ValueError(f"no source files recorded for {ctx.patient_id}; run `brainmets ingest`")

    files: list[dict[str, Any]] = []
    studies: dict[str, dict[str, Any]] = {}
    series: dict[str, dict[str, Any]] = {}
    instances: list[dict[str, Any]] = []
    outcome: Counter[str] = Counter()
    for src in sources:
        path = Path(src["path"])
        row = {**src, "patient_id": ctx.patient_id}
        received = src["status"] == "received"
        moved = None if received else _changed_since_ingest(path, src)
        if moved is not None:  # not what ingest classified: accounted for, not read
            status, reason = moved
            files.append({**row, "status": status, "reason": reason})
            ctx.warning(f"{path}: {reason}", file=str(path))
            outcome[status] += 1
            continue
        try:
            result = (
                _already_deidentified(path) if received else deid.deidentify(read_instance(path))
            )
            if not received and _changed_since_ingest(path, src) is not None:
                raise _ChangedWhileRead()  # replaced while it was being read
        except _ChangedWhileRead:
            reason = CHANGED_REASON
            files.append({**row, "status": "pending", "reason": reason})
            ctx.warning(f"{path}: {reason}", file=str(path))
            outcome["pending"] += 1
            continue
        except Exception as exc:  # one bad file never stops the patient
            reason = f"cannot de-identify ({type(exc).__name__}: {exc})"
            files.append({**row, "status": "rejected", "reason": reason, "sop_uid": None})
            ctx.warning(f"{path}: {reason}", file=str(path))
            outcome["rejected"] += 1
            continue
        if result.quarantined:
            reason = f"quarantined: {result.reason}; not written to the workspace"
            files.append({**row, "status": "quarantined", "reason": reason})
            ctx.warning(f"{path}: {reason}", file=str(path))
            outcome["quarantined"] += 1
            continue
        if result.patient_id != ctx.patient_id:
            raise RuntimeError(
                f"{path}: de-identified patient {result.patient_id} differs from ingest's "
                f"{ctx.patient_id} (was the key changed? re-run `brainmets ingest`)"
            )
        ds = result.dataset
        assert ds is not None
        dest = dicom_root / result.relative_path()
        with atomic_path(dest) as tmp:
            tmp.write_bytes(path.read_bytes() if received else result.to_bytes())
        rel = os.path.relpath(dest, ctx.root)
        instances.append(
            {
                "sop_uid": result.sop_uid,
                "series_uid": result.series_uid,
                "patient_id": ctx.patient_id,
                "path": rel,
                "sha256": sha256_file(dest),
                "size": dest.stat().st_size,
            }
        )
        studies.setdefault(
            str(result.study_uid),
            {
                "uid": result.study_uid,
                "patient_id": ctx.patient_id,
                "study_date": _text(ds, "StudyDate"),
                "study_time": _text(ds, "StudyTime"),
                "description": _text(ds, "StudyDescription"),
                "accession": _text(ds, "AccessionNumber"),
            },
        )
        se = series.setdefault(
            str(result.series_uid),
            {
                "uid": result.series_uid,
                "study_uid": result.study_uid,
                "patient_id": ctx.patient_id,
                "modality": _text(ds, "Modality"),
                "sop_class_uid": result.sop_class_uid,
                "series_number": int(ds.SeriesNumber) if _text(ds, "SeriesNumber") else None,
                "description": _text(ds, "SeriesDescription"),
                "n_instances": 0,
            },
        )
        se["n_instances"] += 1
        status = "received" if received else "deidentified"
        files.append({**row, "status": status, "reason": None, "sop_uid": result.sop_uid})
        outcome[status] += 1
    if not instances:
        raise ValueError(
            f"none of the {len(sources)} file(s) of {ctx.patient_id} could be de-identified: "
            + ", ".join(f"{v} {k}" for k, v in sorted(outcome.items()))
        )
    _remove_stale(dicom_root / ctx.patient_id, {ctx.root / i["path"] for i in instances})
    manifest = {
        "patient": ctx.patient_id,
        "method": options.method_text(),
        "outcome": dict(sorted(outcome.items())),
        "instances": sorted((i["path"], i["sha256"]) for i in instances),
    }
    out = atomic_write_text(ctx.out_dir / "manifest.json", json.dumps(manifest, indent=1))
    return StageResult(
        outputs={"manifest": out},
        records={
            "studies": list(studies.values()),
            "series": list(series.values()),
            "instances": instances,
            "source_files": files,
        },
        metrics={**outcome, "studies": len(studies), "series": len(series)},
        tools={"pydicom": pydicom.__version__},
    )


#: why a source file that changed after ingest is left ``pending``
CHANGED_REASON = (
    "changed since ingest (size or modification time): not de-identified in this run; "
    "the next `brainmets ingest` or `brainmets run` takes in the new content"
)
#: why a source file removed after ingest is ``vanished``
VANISHED_REASON = "removed from the source folder after ingest: nothing to de-identify"


class _ChangedWhileRead(Exception):
    pass


def _changed_since_ingest(path: Path, src: dict[str, Any]) -> tuple[str, str] | None:
    """``("vanished", reason)`` or ``("pending", reason)`` when the file is gone or is not
    the file ingest classified (size or modification time differ), else None."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "vanished", VANISHED_REASON
    if st.st_size != src["size"] or st.st_mtime_ns != src["mtime_ns"]:
        return "pending", CHANGED_REASON
    return None


def _already_deidentified(path: Path) -> DeidResult:
    """A file de-identified on receipt (``brainmets receive``): filed as it is."""
    ds = read_instance(path)
    if str(ds.get("PatientIdentityRemoved", "")).upper() != "YES":
        raise ValueError("received file is not marked PatientIdentityRemoved=YES")
    return DeidResult(
        status="deidentified",
        dataset=ds,
        patient_id=str(ds.PatientID),
        study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
    )


def _remove_stale(folder: Path, keep: set[Path]) -> None:
    """Delete de-identified files of this patient that the current sources no longer give."""
    if not folder.is_dir():
        return
    for p in folder.rglob("*.dcm"):
        if p not in keep:
            p.unlink()


STAGE = Stage(
    name="deid",
    func=run_deid,
    scope="patient",
    version="1",
    defaults=DEFAULTS,
    options=DeidOptions,
    summary="de-identify each patient's DICOM (PS3.15 + options, keyed pseudonyms)",
    fingerprint_inputs=_fingerprint_inputs,
)
