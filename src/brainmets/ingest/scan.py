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
from brainmets.dicomfile import read_complete, same_content
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
    whose size and modification time are unchanged; choose between files that carry the
    same SOP Instance UID (:func:`resolve_copies`).

    Returns new/changed entries (in scan order) and a count of every file by outcome.
    """
    entries: list[SourceFile] = []
    fresh: set[str] = set()  # paths (re)classified by this scan
    for path in iter_files(sources):
        st = path.stat()
        prev = known.get(str(path))
        if prev and prev.size == st.st_size and prev.mtime_ns == st.st_mtime_ns:
            entries.append(prev)
        else:
            entries.append(classify_file(path, key))
            fresh.add(str(path))
    scanned = {e.path for e in entries}
    groups: dict[str, list[SourceFile]] = {}
    for e in entries:
        if _takes_part(e):
            groups.setdefault(str(e.sop_uid), []).append(e)
    known_by_sop: dict[str, list[str]] = {}
    for f in known.values():
        if _takes_part(f) and f.status != "received":
            known_by_sop.setdefault(str(f.sop_uid), []).append(f.path)

    def same_as_last_scan(sop: str, members: set[str]) -> bool:
        """The group holds the files that shared the UID at the last scan (those since
        removed from the sources count: their copies must be decided again)."""
        before = {p for p in known_by_sop.get(sop, []) if p in scanned or not Path(p).exists()}
        return members == before

    final = {e.path: e for e in entries}
    for sop, group in groups.items():
        members = {e.path for e in group}
        if len(group) > 1 and not (members & fresh) and same_as_last_scan(sop, members):
            continue  # the files decided at the last scan: nothing is read again
        for e in resolve_copies(group):
            final[e.path] = e
    changed: list[SourceFile] = []
    counts: Counter[str] = Counter()
    for e in entries:
        entry = final[e.path]
        if e.path in fresh or entry != known.get(e.path):
            changed.append(entry)
        counts[_bucket(entry.status)] += 1
    return changed, counts


def _takes_part(f: SourceFile) -> bool:
    """Whether a file is one of the copies of its SOP Instance UID (rejected and vanished
    files are not: their UID is not an instance the dataset may get)."""
    return bool(f.sop_uid) and f.status not in ("rejected", "vanished")


def resolve_copies(group: list[SourceFile]) -> list[SourceFile]:
    """Decide between the files (in scan order) that carry one SOP Instance UID.

    One file: it is kept (a file set aside as a ``duplicate`` whose other copies are gone
    becomes ``pending`` again). Several: each is read completely
    (:func:`brainmets.dicomfile.read_complete`; only colliding files are read past their
    header) and

    * the first complete one is kept; a copy that does not read completely (truncated) is a
      ``duplicate`` whose reason names the kept file and why this copy is not used; a complete
      copy with the same content is a ``duplicate`` "same SOPInstanceUID as <kept>";
    * when complete copies differ in content, none is kept: every copy is a ``duplicate``
      whose reason names the other files (which one is right is for a person to decide;
      removing the wrong one and ingesting again keeps the other);
    * when no copy reads completely, the first is kept (de-identification then rejects it
      with the reason) and the others are duplicates of it.

    Returns the entries with their decided status and reason (the kept one's other fields
    unchanged).
    """

    def keep(e: SourceFile) -> SourceFile:
        return (
            dataclasses.replace(e, status="pending", reason=None) if e.status == "duplicate" else e
        )

    def aside(e: SourceFile, reason: str) -> SourceFile:
        return dataclasses.replace(e, status="duplicate", reason=reason)

    if len(group) == 1:
        return [keep(group[0])]
    read = [(e, *read_complete(e.path)) for e in group]
    complete = [(e, ds) for e, ds, why in read if why is None]
    if not complete:
        first = group[0]
        return [keep(first)] + [
            aside(
                e,
                f"same SOPInstanceUID as {first.path}, which is kept; neither reads "
                f"completely (this copy: {why})",
            )
            for e, _, why in read[1:]
        ]
    kept, kept_ds = complete[0]
    differ = [e for e, ds in complete[1:] if not same_content(kept.path, e.path, kept_ds, ds)]
    if differ:
        copies = [e for e, _ in complete]
        out = []
        for e, _, why in read:
            others = ", ".join(o.path for o in copies if o.path != e.path)
            if why is None:
                reason = (
                    f"same SOPInstanceUID as {others}, with different content: none of the "
                    "copies is kept (remove the wrong one and run `brainmets ingest` again)"
                )
            else:
                reason = (
                    f"same SOPInstanceUID as {others} and incomplete ({why}); the complete "
                    "copies differ in content: none is kept"
                )
            out.append(aside(e, reason))
        return out
    out = []
    for e, _, why in read:
        if e.path == kept.path:
            out.append(keep(e))
        elif why is None:
            out.append(aside(e, f"same SOPInstanceUID as {kept.path}"))
        else:
            out.append(
                aside(
                    e,
                    f"same SOPInstanceUID as {kept.path}, which is kept: this copy does not "
                    f"read completely ({why})",
                )
            )
    return out


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
        # the files recorded inside the source folders (an index range per folder): not
        # every file of the catalog, which at 10,000 patients is tens of millions
        known = {f.path: f for f in cat.source_files_under(str(s) for s in sources)}
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
    version="2",  # 2: copies of one SOPInstanceUID decided by completeness and content
    defaults={},
    summary="account for every input file; group DICOM instances by pseudonymous patient",
    fingerprint_inputs=_fingerprint_inputs,
)
