"""Folder mode: de-identify every file of a tree, in parallel over files.

Every input file ends up in exactly one of three states, so the report's counts add up to the
number of input files:

* **de-identified**: written (atomically) to ``dst/<patient>/<study>/<series>/<sop>.dcm``,
  every path component a pseudonym;
* **quarantined**: an instance whose pixels may show identifying text (see
  :meth:`Deidentifier.quarantine_reason`); nothing is written to ``dst``. When a quarantine
  folder is given, the original file is copied there (it is identifiable: keep that folder in
  the protected area) under a content-hash name, with ``quarantine.csv`` giving the reasons;
* **rejected**: not DICOM, unreadable, cut off, an image without Pixel Data, not a composite
  instance (e.g. DICOMDIR), or failed.

Identifying values never appear in the report's messages; source paths do (they are inside
the protected input area already).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from brainmets.deid._parallel import parallel_map
from brainmets.deid.engine import (
    Deidentifier,
    DeidOptions,
    NotAnInstanceError,
)
from brainmets.dicomfile import missing_pixels, truncation  # the one definition; re-exported here
from brainmets.fsutil import (
    TMP_PREFIX,
    atomic_path,
    atomic_write_bytes,
    default_workers,
    iter_files,
    naming_full_disk,
    sync_files,
)

#: folder mode's record, in the output folder, of the key(s) its files were made with
OUTPUT_MARKER = ".brainmets-deid.json"

DEIDENTIFIED = "deidentified"
QUARANTINED = "quarantined"
REJECTED = "rejected"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass
class FileOutcome:
    """What happened to one input file."""

    source: str  # path relative to the source root
    status: str  # DEIDENTIFIED, QUARANTINED or REJECTED
    reason: str | None = None
    output: str | None = None  # relative to the destination (or quarantine) root
    patient_id: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    mapping: dict[str, dict[str, str]] | None = None


@dataclass
class TreeReport:
    """Result of :func:`deidentify_tree`; ``total == deidentified + quarantined + rejected``."""

    total: int = 0
    deidentified: int = 0
    quarantined: int = 0
    rejected: int = 0
    duplicates: int = 0  # de-identified files whose SOP Instance UID was already written
    outcomes: list[FileOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    workers: int = 1
    mapping: dict[str, dict[str, str]] | None = field(default=None, repr=False)

    @property
    def consistent(self) -> bool:
        return self.total == self.deidentified + self.quarantined + self.rejected

    @property
    def files_per_s(self) -> float:
        return self.total / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def patients(self) -> set[str]:
        return {o.patient_id for o in self.outcomes if o.patient_id}

    @property
    def studies(self) -> set[str]:
        return {o.study_uid for o in self.outcomes if o.study_uid}

    @property
    def series(self) -> set[str]:
        return {o.series_uid for o in self.outcomes if o.series_uid}

    def reasons(self, status: str) -> Counter[str]:
        """How many files got each reason, for ``QUARANTINED`` or ``REJECTED``."""
        return Counter(o.reason or "" for o in self.outcomes if o.status == status)

    @property
    def not_deidentified(self) -> list[FileOutcome]:
        """The files quarantined or rejected, in input order."""
        return [o for o in self.outcomes if o.status != DEIDENTIFIED]

    def file_rows(self) -> list[dict[str, str]]:
        """One row per input file, in input order: ``input`` (relative to the source),
        ``outcome`` (deidentified, quarantined or rejected), ``reason`` and ``output``
        (relative to the destination; empty when nothing was written there). A file whose
        output an earlier file had already written (the same SOP Instance UID) says so."""
        first: dict[str, str] = {}
        rows = []
        for o in self.outcomes:
            reason, output = o.reason or "", ""
            if o.status == DEIDENTIFIED and o.output is not None:
                output = o.output
                earlier = first.setdefault(output, o.source)
                if earlier != o.source:
                    reason = f"duplicate: the same instance as {earlier} (same output file)"
            rows.append(
                {"input": o.source, "outcome": o.status, "reason": reason, "output": output}
            )
        return rows


# -- worker side ------------------------------------------------------------------------------
@dataclass
class _WorkerState:
    deid: Deidentifier
    src: Path
    dst: Path
    quarantine: Path | None
    mapping: bool


_WORKER: list[_WorkerState] = []  # the current process's state (set by _init_worker)


def _init_worker(
    key: bytes,
    options: DeidOptions,
    src: str,
    dst: str,
    quarantine: str | None,
    mapping: bool,
) -> None:
    _WORKER[:] = [
        _WorkerState(
            deid=Deidentifier(key, options),
            src=Path(src),
            dst=Path(dst),
            quarantine=Path(quarantine) if quarantine else None,
            mapping=mapping,
        )
    ]


class TruncatedError(ValueError):
    """The file ends before the data set does."""


class NoPixelDataError(ValueError):
    """An image instance (by its SOP class) whose data set, complete as far as it goes, holds
    no Pixel Data: nothing to put in the dataset."""


def read_instance(path: Path) -> pydicom.Dataset:
    """Read a complete DICOM image or other instance.

    Files without the Part 10 header are accepted if they parse as an instance. Raises
    InvalidDicomError for anything else, :class:`TruncatedError` for a cut-off file
    (pydicom silently returns what it could read) and :class:`NoPixelDataError` for an image
    instance without Pixel Data.
    """
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        ds = pydicom.dcmread(path, force=True)
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise InvalidDicomError("not a DICOM file") from None
    problem = truncation(ds)
    if problem:
        raise TruncatedError(problem)
    problem = missing_pixels(ds)
    if problem:
        raise NoPixelDataError(problem)
    return ds


def _process_one(path_str: str) -> FileOutcome:
    state = _WORKER[0]
    path = Path(path_str)
    rel = str(path.relative_to(state.src))
    try:
        ds = read_instance(path)
    except InvalidDicomError:
        return FileOutcome(rel, REJECTED, "not DICOM")
    except (TruncatedError, NoPixelDataError) as exc:
        return FileOutcome(rel, REJECTED, str(exc))
    except Exception as exc:  # corrupt files
        return FileOutcome(rel, REJECTED, f"unreadable ({type(exc).__name__})")
    try:
        meta = getattr(ds, "file_meta", None)
        if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == (
            MEDIA_STORAGE_DIRECTORY
        ):
            return FileOutcome(rel, REJECTED, "DICOMDIR (not an instance)")
        result = state.deid.deidentify(ds, collect_mapping=state.mapping)
    except NotAnInstanceError as exc:
        return FileOutcome(rel, REJECTED, f"not an instance ({exc})")
    except Exception as exc:
        return FileOutcome(rel, REJECTED, f"de-identification failed ({type(exc).__name__})")
    if result.quarantined:
        q = state.quarantine
        copy = _copy_to_quarantine(path, q) if q is not None else None
        return FileOutcome(rel, QUARANTINED, result.reason, output=copy)
    try:
        data = result.to_bytes()
    except Exception as exc:
        return FileOutcome(rel, REJECTED, f"cannot be written ({type(exc).__name__})")
    out_rel = result.relative_path()
    write_atomic_nosync(state.dst / out_rel, data)
    return FileOutcome(
        rel,
        DEIDENTIFIED,
        output=str(out_rel),
        patient_id=result.patient_id,
        study_uid=result.study_uid,
        series_uid=result.series_uid,
        mapping=result.mapping,
    )


def write_atomic_nosync(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically (temporary name + rename), without fsync.

    Same convention as :func:`brainmets.fsutil.atomic_path` (the temporary name starts with
    ``TMP_PREFIX``, so :func:`brainmets.fsutil.remove_stale_temporaries` clears leftovers): a
    killed process never leaves a partial file under the final name. Durability is obtained
    once per run (:func:`brainmets.fsutil.sync_files` of the run's outputs at the end of
    :func:`deidentify_tree`, in parallel) instead of one fsync per file as it is written,
    which costs more than the de-identification itself.
    """
    with naming_full_disk(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".dcm", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp_name, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise


def _copy_to_quarantine(path: Path, quarantine: Path) -> str:
    """Copy an original to the quarantine folder under a content-hash name; return the name."""
    name = f"{hashlib.sha256(path.read_bytes()).hexdigest()}.dcm"
    with atomic_path(quarantine / name) as tmp:
        shutil.copyfile(path, tmp)
    return name


# -- parent side ------------------------------------------------------------------------------
def tree_files(root: Path) -> list[Path]:
    """The files of a tree to de-identify or verify: regular files under ``root`` (sorted,
    symlinks neither followed nor listed, temporaries of atomic writes skipped)."""
    return list(iter_files(root, symlinked_files=False, skip_temporaries=True))


def check_destination(src: Path, dst: Path) -> tuple[Path, Path]:
    """``src`` and ``dst`` resolved; raises NotADirectoryError when ``src`` is not a folder
    and ValueError when ``dst`` is ``src`` or inside it."""
    src = Path(src).resolve()
    dst = Path(dst).resolve()
    if not src.is_dir():
        raise NotADirectoryError(src)
    if dst == src or src in dst.parents:
        raise ValueError("the destination must not be inside the source tree")
    return src, dst


def output_files(dst: Path) -> list[Path]:
    """The files of an output tree (:func:`tree_files`) without folder mode's own marker."""
    marker = Path(dst) / OUTPUT_MARKER
    return [p for p in tree_files(Path(dst)) if p != marker]


def output_key_problem(dst: Path, fingerprint: str) -> str | None:
    """Why adding output made with the key of ``fingerprint`` to ``dst`` would mix keys
    (None when it would not): its marker (:data:`OUTPUT_MARKER`) records other keys only,
    cannot be read, or is absent although ``dst`` holds files."""
    dst = Path(dst)
    marker = dst / OUTPUT_MARKER
    if marker.is_file():
        try:
            recorded = _marker_fingerprints(marker)
        except (OSError, ValueError) as exc:
            return f"{marker} cannot be read ({exc}), so the key that made {dst} is unknown"
        if fingerprint in recorded:
            return None
        return (
            f"{dst} holds output made with another key (key fingerprint "
            f"{', '.join(f[:12] for f in recorded)}; this key's: {fingerprint[:12]}): adding to "
            "it would give the same patients a second pseudonym"
        )
    n = len(output_files(dst)) if dst.is_dir() else 0
    if n:
        return (
            f"{dst} already holds {n} file(s) but no record of the key they were made with "
            f"({OUTPUT_MARKER}): they may be another key's output"
        )
    return None


def record_output_key(dst: Path, fingerprint: str) -> Path:
    """Add ``fingerprint`` (:func:`brainmets.ids.key_fingerprint`: one-way, not the key)
    to the marker of ``dst``; return the marker's path."""
    marker = Path(dst) / OUTPUT_MARKER
    try:
        recorded = _marker_fingerprints(marker) if marker.is_file() else []
    except (OSError, ValueError):
        recorded = []
    if fingerprint not in recorded:
        recorded.append(fingerprint)
    doc = {
        "written_by": "brainmets deid (folder mode)",
        "key_fingerprints": recorded,
        "about": "fingerprints of the keys this folder's files were made with "
        "(brainmets.ids.key_fingerprint: one-way, they do not reveal the keys)",
    }
    atomic_write_bytes(marker, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    return marker


def _marker_fingerprints(marker: Path) -> list[str]:
    doc = json.loads(marker.read_text(encoding="utf-8"))
    fps = doc.get("key_fingerprints") if isinstance(doc, dict) else None
    if not isinstance(fps, list) or not all(isinstance(f, str) for f in fps):
        raise ValueError("no list of key fingerprints")
    return list(fps)


def deidentify_tree(
    src: Path,
    dst: Path,
    key: bytes,
    options: DeidOptions | None = None,
    workers: int | None = None,
    quarantine_dir: Path | None = None,
    progress: bool = True,
    collect_mapping: bool = False,
) -> TreeReport:
    """De-identify every file under ``src`` into ``dst`` (see the module docstring).

    ``workers``: processes (default: one per core; 1 runs in this process). With
    ``collect_mapping`` the report's ``mapping`` holds, per kind (``patient``, ``accession``,
    ``uid``), original -> pseudonym (identifying: write it only to the protected area).
    """
    src, dst = check_destination(src, dst)
    options = options or DeidOptions()
    Deidentifier(key, options)  # validate the key and options before starting workers
    dst.mkdir(parents=True, exist_ok=True)
    files = [str(p) for p in tree_files(src)]
    n_workers = workers if workers is not None else default_workers()
    init_args = (
        key,
        options,
        str(src),
        str(dst),
        str(Path(quarantine_dir).resolve()) if quarantine_dir else None,
        collect_mapping,
    )
    t0 = time.perf_counter()
    try:
        outcomes = parallel_map(
            _process_one,
            files,
            workers=n_workers,
            initializer=_init_worker,
            initargs=init_args,
            progress=progress,
            label="de-identifying",
        )
    finally:
        _WORKER.clear()
    # make the run's output durable at once (see write_atomic_nosync): these files only
    sync_files(dst / o.output for o in outcomes if o.status == DEIDENTIFIED and o.output)
    report = TreeReport(
        total=len(files),
        outcomes=outcomes,
        elapsed_s=time.perf_counter() - t0,
        workers=max(1, min(n_workers, len(files) or 1)),
    )
    _tally(report, collect_mapping)
    if quarantine_dir is not None and report.quarantined:
        _write_quarantine_index(Path(quarantine_dir), report)
    return report


def _tally(report: TreeReport, collect_mapping: bool) -> None:
    seen: set[str] = set()
    mapping: dict[str, dict[str, str]] = {}
    for o in report.outcomes:
        if o.status == DEIDENTIFIED:
            report.deidentified += 1
            if o.output in seen:
                report.duplicates += 1
            seen.add(str(o.output))
            if o.mapping:
                for kind, pairs in o.mapping.items():
                    mapping.setdefault(kind, {}).update(pairs)
                o.mapping = None
        elif o.status == QUARANTINED:
            report.quarantined += 1
        else:
            report.rejected += 1
    if collect_mapping:
        report.mapping = mapping


def _write_quarantine_index(quarantine_dir: Path, report: TreeReport) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["source", "file", "reason"])
    for o in report.outcomes:
        if o.status == QUARANTINED:
            writer.writerow([o.source, o.output or "", o.reason or ""])
    atomic_write_bytes(quarantine_dir / "quarantine.csv", buf.getvalue().encode("utf-8"))
