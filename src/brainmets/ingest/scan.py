"""Scanning source folders into the catalog's ``source_files`` table."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from brainmets.catalog import SourceFile, utcnow
from brainmets.config import Config
from brainmets.fsutil import atomic_write_text, iter_files
from brainmets.ids import patient_key, patient_pseudonym, uid_pseudonym
from brainmets.pipeline.inputs import InputContext
from brainmets.pipeline.stage import Stage, StageContext, StageResult
from brainmets.workspace import read_key

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
_HEADER_TAGS = [
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "StudyInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
]
IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}


def classify_file(path: Path, key: bytes) -> SourceFile:
    """Read one file's header and decide what it is: ``pending`` (to de-identify) or
    ``rejected`` with the reason (original identifiers stay in memory)."""
    st = path.stat()

    def rejected(reason: str) -> SourceFile:
        return SourceFile(str(path), st.st_size, st.st_mtime_ns, status="rejected", reason=reason)

    if path.name in IGNORED_NAMES:
        return rejected("operating-system metadata file")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except InvalidDicomError:
        return rejected("not a DICOM file")
    except Exception as exc:  # truncated or corrupt files raise all sorts of errors
        return rejected(f"unreadable DICOM ({type(exc).__name__}: {exc})")
    meta_class = str(getattr(ds.file_meta, "MediaStorageSOPClassUID", "")) if ds.file_meta else ""
    if meta_class == DICOMDIR_CLASS or path.name.upper() == "DICOMDIR":
        return rejected("DICOMDIR media index, not an instance")
    if "SOPInstanceUID" not in ds or not str(ds.SOPInstanceUID).strip():
        return rejected("no SOPInstanceUID (0008,0018)")
    return SourceFile(
        str(path),
        st.st_size,
        st.st_mtime_ns,
        status="pending",
        patient_id=patient_pseudonym(key, patient_key(ds)),
        sop_uid=uid_pseudonym(key, str(ds.SOPInstanceUID)),
    )


def scan_sources(
    sources: list[Path], key: bytes, known: Mapping[str, SourceFile]
) -> tuple[list[SourceFile], Counter[str]]:
    """Classify every file; reuse the ``known`` accounting (path -> recorded file) of files
    whose size and modification time are unchanged.

    Returns new/changed entries and a count of every file by outcome.
    """
    changed: list[SourceFile] = []
    counts: Counter[str] = Counter()
    seen_sop: dict[str, str] = {}
    for path in iter_files(sources):
        st = path.stat()
        prev = known.get(str(path))
        if prev and prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns:
            entry = prev
        else:
            entry = classify_file(path, key)
            changed.append(entry)
        if entry.sop_uid and entry.status != "rejected":
            first = seen_sop.setdefault(entry.sop_uid, entry.path)
            if first != entry.path and entry.status != "duplicate":
                entry = dataclasses.replace(
                    entry, status="duplicate", reason=f"same SOPInstanceUID as {first}"
                )
                changed.append(entry)
        counts[_bucket(entry.status)] += 1
    return changed, counts


def _bucket(status: str) -> str:
    return "accepted" if status in ("pending", "deidentified") else status


def _sources(config: Config) -> list[Path]:
    return [Path(s) for s in config.data["paths"].get("sources", [])]


def _fingerprint_inputs(inp: InputContext) -> Any:
    """The source folders' files by (path, size, mtime_ns), as the scan itself compares them
    (hashing every source file would read the whole archive on every run)."""
    sources = _sources(inp.config)
    listing = []
    for p in iter_files(sources):
        st = p.stat()
        listing.append((str(p), st.st_size, st.st_mtime_ns))
    return {"sources": [str(s) for s in sources], "files": listing}


def run_ingest(ctx: StageContext) -> StageResult:
    config = Config(root=ctx.root, data=ctx.config)
    sources = _sources(config)
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise FileNotFoundError(f"source folder(s) not found: {', '.join(missing)}")
    if not sources:
        ctx.warning(
            "no source folders registered (`brainmets ingest FOLDER` adds one); only "
            "instances received by `brainmets receive` will be processed"
        )
    key = read_key(config.key_file)
    cat = ctx.catalog()
    try:
        known = {f.path: f for f in cat.source_files()}
        known_patients = set(cat.patient_ids())
    finally:
        cat.close()
    changed, counts = scan_sources(sources, key, known)
    now = utcnow()
    present = {e.path for e in changed}
    vanished = [
        {"path": p, "status": "vanished", "reason": "file no longer in the source folders"}
        for p, f in known.items()
        if f.status != "vanished" and not Path(p).exists() and p not in present
    ]
    files = [dataclasses.replace(e, seen_at=now).record() for e in changed]
    files += [
        {**v, "size": known[v["path"]].size, "mtime_ns": known[v["path"]].mtime_ns, "seen_at": now}
        for v in vanished
    ]
    new_patients = sorted({e.patient_id for e in changed if e.patient_id} - known_patients)
    records = {
        "patients": [{"id": p, "created_at": now} for p in new_patients],
        "source_files": files,
    }
    total = sum(counts.values())
    for e in changed:
        if e.status in ("rejected", "duplicate"):
            ctx.warning(f"{e.path}: {e.reason}", file=e.path)
    summary = {
        "files": total,
        "by_outcome": dict(sorted(counts.items())),
        "new_or_changed": len(changed),
        "vanished": len(vanished),
        "new_patients": len(new_patients),
    }
    out = atomic_write_text(ctx.out_dir / "scan.json", json.dumps(summary, indent=2))
    ctx.info(
        f"scanned {total} file(s): "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        + f"; {len(new_patients)} new patient(s)"
    )
    return StageResult(
        outputs={"scan": out},
        records=records,
        metrics=summary,
        tools={"pydicom": pydicom.__version__},
    )


STAGE = Stage(
    name="ingest",
    func=run_ingest,
    scope="cohort",
    version="1",
    defaults={},
    summary="account for every input file; group DICOM instances by pseudonymous patient",
    fingerprint_inputs=_fingerprint_inputs,
)
