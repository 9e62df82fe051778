"""``brainmets validate DIR``: check an exported (or published) dataset.

Collection layout (one folder per patient, ``<ID>/<ID>-{t1n,t1c,t2w,t2f,seg}.nii.gz``):

* every file present and readable (the whole compressed stream is decoded);
* grid 240 x 240 x 155 at 1 mm, and the same affine for all files of a patient;
* images finite (an all-zero image is a warning); seg values integral and within {0,1,2,3}
  (a seg stored as float with integral values is a warning, as in the published collection);
* ``MANIFEST.sha256``: every listed file present with the same SHA-256, every file listed;
* workbook (``*.xlsx`` at the top, sheet ``Data``, column ``BraTS_MET_ID``): one row per
  patient folder and one folder per row (``86`` <-> ``BraTS-MET-00086-000``).

A folder laid out like the published Pretreat-MetsToBrain-Masks collection has no manifest
and may have no workbook beside it: those are warnings, not errors. Folders named ``report``
and hidden entries are not patient folders. An nnU-Net raw dataset (``dataset.json``) is
checked as such: channels per case, labels, identical geometry, ``numTraining``, manifest.

:func:`check_current` (``brainmets validate``, not the export stage's own check) compares an
export folder with the workspace it came from: a folder whose workspace has changed since
it was exported is **stale**.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np

from brainmets.export.conventions import SHAPE
from brainmets.export.manifest import MANIFEST_NAME, check_manifest
from brainmets.problems import Problems
from brainmets.vocab import IMAGE_SUFFIXES

SUFFIXES: tuple[str, ...] = (*IMAGE_SUFFIXES, "seg")
LABELS: frozenset[int] = frozenset({0, 1, 2, 3})
NON_PATIENT_FOLDERS = frozenset({"report"})


@dataclass
class Problem:
    """One finding: a path relative to the dataset (or ``.``), a message, a severity."""

    path: str
    message: str
    severity: str = "error"  # error | warning

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


@dataclass
class ValidationReport(Problems[Problem]):
    """What :func:`validate` found (``errors`` and ``warnings``: see :class:`Problems`)."""

    root: Path
    layout: str
    patients: int = 0
    files_checked: int = 0
    checksums_checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    #: the workspace the folder was compared with (:func:`check_current`), or None
    workspace: Path | None = None
    #: what changed in that workspace since the folder was exported (empty: current)
    changes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, path: str | Path, message: str, severity: str = "error") -> None:
        rel = os.path.relpath(path, self.root) if Path(path).is_absolute() else str(path)
        self.problems.append(Problem(Path(rel).as_posix(), message, severity))

    def summary(self) -> str:
        return (
            f"{self.layout} {self.root}: {self.patients} patient(s), {self.files_checked} "
            f"image file(s), {self.checksums_checked} checksum(s); {len(self.errors)} error(s), "
            f"{len(self.warnings)} warning(s)"
        )


# ------------------------------------------------------------------------------ files
@dataclass
class _Loaded:
    affine: np.ndarray
    shape: tuple[int, ...]
    zooms: tuple[float, ...]
    data: np.ndarray
    dtype: np.dtype[Any]


def _load(path: Path, rep: ValidationReport) -> _Loaded | None:
    try:
        img = cast(nib.Nifti1Image, nib.load(str(path)))
        data = np.asanyarray(img.dataobj)  # reads (and CRC-checks) the whole stream
    except Exception as exc:
        rep.add(path, f"unreadable: {type(exc).__name__}: {exc}")
        return None
    rep.files_checked += 1
    return _Loaded(
        img.affine,
        tuple(img.shape),
        tuple(float(z) for z in img.header.get_zooms()[:3]),
        data,
        img.get_data_dtype(),
    )


def check_image(path: Path, img: _Loaded, rep: ValidationReport, is_seg: bool) -> None:
    """Grid, voxel size and values of one file."""
    if img.shape != SHAPE:
        rep.add(path, f"shape {img.shape}, expected {SHAPE}")
    if not np.allclose(img.zooms, (1.0, 1.0, 1.0), atol=1e-3):
        rep.add(path, f"voxel size {img.zooms} mm, expected 1 x 1 x 1 mm")
    data = img.data
    if is_seg:
        if np.issubdtype(data.dtype, np.floating):
            if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
                rep.add(path, "label values are not integers")
                return
            rep.add(path, f"label map stored as {img.dtype} (values integral)", "warning")
        values = {int(v) for v in np.unique(data)}
        bad = sorted(values - LABELS)
        if bad:
            rep.add(path, f"labels {bad} outside {{0, 1, 2, 3}}")
    else:
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
            rep.add(path, "non-finite voxel values (NaN/inf)")
        elif not np.any(data):
            rep.add(path, "image is all zero", "warning")


def _patient_folders(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in NON_PATIENT_FOLDERS
    )


def check_patient(folder: Path, rep: ValidationReport) -> None:
    """Every file of one patient folder, and that they share one grid."""
    pid = folder.name
    # the T1c first: the others are compared with its grid (BraTS' reference sequence)
    order = ("t1c", *[s for s in SUFFIXES if s != "t1c"])
    expected = {f"{pid}-{s}.nii.gz": s for s in order}
    present = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    for name in sorted(present - set(expected)):
        rep.add(folder / name, "unexpected file in a patient folder", "warning")
    ref: tuple[str, np.ndarray] | None = None
    for name, suffix in expected.items():
        path = folder / name
        if name not in present:
            rep.add(path, "missing")
            continue
        img = _load(path, rep)
        if img is None:
            continue
        check_image(path, img, rep, suffix == "seg")
        if ref is None:
            ref = (name, img.affine)
        elif not np.allclose(img.affine, ref[1], atol=1e-3):
            rep.add(path, f"grid differs from {ref[0]} (affine)")


# --------------------------------------------------------------------------- workbook
def _workbooks(root: Path) -> list[Path]:
    return sorted(
        p for p in root.glob("*.xlsx") if p.is_file() and not p.name.startswith((".", "~$"))
    )


def check_workbook(root: Path, folders: Iterable[Path], rep: ValidationReport) -> None:
    """Rows of each workbook's ``Data`` sheet vs the patient folders."""
    from brainmets.ids import normalise_id

    books = _workbooks(root)
    if not books:
        rep.add(".", "no workbook (*.xlsx) beside the patient folders: rows not checked", "warning")
        return
    by_key = {normalise_id(f.name): f.name for f in folders}
    for book in books:
        try:
            from openpyxl import load_workbook

            wb = load_workbook(book, read_only=True, data_only=True)
            try:
                if "Data" not in wb.sheetnames:
                    rep.add(book, f"no sheet 'Data' (sheets: {wb.sheetnames})")
                    continue
                rows = list(wb["Data"].iter_rows(values_only=True))
            finally:
                wb.close()
        except Exception as exc:
            rep.add(book, f"unreadable workbook: {type(exc).__name__}: {exc}")
            continue
        if not rows:
            rep.add(book, "sheet Data is empty")
            continue
        header = [str(h).strip() if h is not None else "" for h in rows[0]]
        if "BraTS_MET_ID" not in header:
            rep.add(book, "sheet Data has no column BraTS_MET_ID")
            continue
        col = header.index("BraTS_MET_ID")
        seen: dict[str, int] = {}
        for i, row in enumerate(rows[1:], start=2):
            value = row[col] if col < len(row) else None
            if value is None or str(value).strip() == "":
                if any(v is not None for v in row):
                    rep.add(book, f"Data row {i}: no BraTS_MET_ID")
                continue
            key = normalise_id(value)
            if key in seen:
                rep.add(book, f"Data row {i}: ID {value} repeats row {seen[key]}")
                continue
            seen[key] = i
            if key not in by_key:
                rep.add(book, f"Data row {i}: ID {value} has no patient folder")
        for key, name in sorted(by_key.items()):
            if key not in seen:
                rep.add(book, f"folder {name} has no row in sheet Data")


def _check_manifest(root: Path, rep: ValidationReport, required: bool = False) -> None:
    if not (root / MANIFEST_NAME).is_file():
        rep.add(
            ".",
            f"no {MANIFEST_NAME}: checksums not verified",
            "error" if required else "warning",
        )
        return
    res = check_manifest(root)
    rep.checksums_checked = res.checked
    for rel in res.mismatched:
        rep.add(rel, f"SHA-256 differs from {MANIFEST_NAME} (file changed or corrupted)")
    for rel in res.missing:
        rep.add(rel, f"listed in {MANIFEST_NAME} but missing")
    for rel in res.unlisted:
        rep.add(rel, f"not listed in {MANIFEST_NAME}")
    for line in res.malformed:
        rep.add(MANIFEST_NAME, f"line {line} is not '<sha256>  <path>'")


def validate_collection(
    root: str | os.PathLike[str], require_manifest: bool = False
) -> ValidationReport:
    """Check a collection-layout dataset folder (see the module docstring)."""
    root = Path(root)
    rep = ValidationReport(root=root, layout="collection")
    if not root.is_dir():
        rep.add(root, "not a folder")
        return rep
    folders = _patient_folders(root)
    rep.patients = len(folders)
    if not folders:
        rep.add(".", "no patient folder")
    for f in folders:
        check_patient(f, rep)
    stray = sorted(p.name for p in root.glob("*.nii*") if p.is_file())
    for name in stray:
        rep.add(name, "image file outside a patient folder", "warning")
    check_workbook(root, folders, rep)
    _check_manifest(root, rep, require_manifest)
    return rep


# ----------------------------------------------------------------------------- nnU-Net
_CASE_FILE = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})(?P<ext>\..+)$")


def validate_nnunet(root: str | os.PathLike[str]) -> ValidationReport:
    """Check an nnU-Net v2 raw dataset folder (``dataset.json``, ``imagesTr``, ``labelsTr``)."""
    root = Path(root)
    rep = ValidationReport(root=root, layout="nnunet")
    try:
        meta = json.loads((root / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        rep.add("dataset.json", f"unreadable: {exc}")
        return rep
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in meta:
            rep.add("dataset.json", f"no {key!r}")
    if rep.errors:
        return rep
    ending = str(meta["file_ending"])
    channels = sorted(int(c) for c in meta["channel_names"])
    allowed: set[int] = set()
    for v in meta["labels"].values():
        allowed.update(int(x) for x in (v if isinstance(v, list | tuple) else [v]))
    if (
        "regions_class_order" in meta
        and len(meta["regions_class_order"]) != len(meta["labels"]) - 1
    ):
        rep.add("dataset.json", "regions_class_order must have one entry per region")
    cases: dict[str, set[int]] = {}
    for p in sorted((root / "imagesTr").glob(f"*{ending}")):
        m = _CASE_FILE.match(p.name)
        if not m or m.group("ext") != ending:
            rep.add(p, "name is not <case>_<XXXX><file_ending>")
            continue
        cases.setdefault(m.group("case"), set()).add(int(m.group("ch")))
    labels = {p.name[: -len(ending)] for p in (root / "labelsTr").glob(f"*{ending}")}
    rep.patients = len(cases)
    if int(meta["numTraining"]) != len(cases):
        rep.add("dataset.json", f"numTraining {meta['numTraining']} but {len(cases)} cases")
    for case in sorted(set(cases) | labels):
        if case not in labels:
            rep.add(f"labelsTr/{case}{ending}", "missing")
        got = cases.get(case, set())
        if got != set(channels):
            rep.add(f"imagesTr/{case}", f"channels {sorted(got)}, expected {channels}")
        ref: np.ndarray | None = None
        paths = [root / "imagesTr" / f"{case}_{c:04d}{ending}" for c in sorted(got)]
        paths.append(root / "labelsTr" / f"{case}{ending}")
        for path in paths:
            if not path.is_file():
                continue
            img = _load(path, rep)
            if img is None:
                continue
            if path.parent.name == "labelsTr":
                values = {int(v) for v in np.unique(img.data)}
                if values - allowed:
                    rep.add(path, f"labels {sorted(values - allowed)} not in dataset.json")
            else:
                check_image(path, img, rep, is_seg=False)
            if ref is None:
                ref = img.affine
            elif not np.allclose(img.affine, ref, atol=1e-3):
                rep.add(path, "geometry differs from the case's first channel")
    _check_manifest(root, rep)
    return rep


def validate(root: str | os.PathLike[str]) -> ValidationReport:
    """Check a dataset folder: an nnU-Net raw dataset when it has ``dataset.json`` (or holds
    exactly one ``Dataset*`` folder that has one), else the collection layout."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return validate_nnunet(root)
    inner = (
        [p for p in root.glob("Dataset*") if (p / "dataset.json").is_file()]
        if root.is_dir()
        else []
    )
    if len(inner) == 1 and not _workbooks(root):
        return validate_nnunet(inner[0])
    return validate_collection(root)


# ------------------------------------------------------------------------- currency
def target_key(root: Path, target: Path) -> str:
    """How the catalog's ``exports`` table names an export folder: relative to the
    workspace ``root`` (POSIX) when it lies inside it (a moved workspace still finds its
    exports), else the absolute resolved path."""
    t = Path(target).resolve()
    try:
        return t.relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(t)


def check_current(
    rep: ValidationReport,
    workspace: str | os.PathLike[str] | None = None,
    allow_stale: bool = False,
) -> ValidationReport:
    """Whether the validated folder is still what its workspace would export.

    The workspace is ``workspace`` or the one that holds the folder (none: nothing to
    compare, nothing reported). The export stage recorded the folder (``exports`` table)
    with the status and fingerprint of every other stage run when it wrote it; any
    difference now (a stage that failed, ran again with other inputs or parameters, was
    interrupted, a new patient...) makes the folder **stale**: an error, or a warning with
    ``allow_stale``, naming what changed. So is a folder whose ``MANIFEST.sha256`` is not
    the one the export recorded. A folder the workspace has no record of is a warning.
    """
    from brainmets.catalog import Catalog, CatalogError
    from brainmets.pipeline.states import changes_since
    from brainmets.workspace import CATALOG_NAME, find_workspace

    ws = Path(workspace).expanduser().resolve() if workspace else find_workspace(rep.root)
    if ws is None:
        return rep
    rep.workspace = ws
    severity = "warning" if allow_stale else "error"
    try:
        cat = Catalog.open(ws / CATALOG_NAME, readonly=True)
    except CatalogError as exc:
        rep.add(".", f"cannot read the catalog of workspace {ws}: {exc}", "warning")
        return rep
    try:
        record = cat.export_record(target_key(ws, rep.root))
        runs = cat.stage_runs()
    finally:
        cat.close()
    if record is None:
        rep.add(
            ".",
            f"not recorded as an export of workspace {ws}: whether it is current is not "
            "checked (export it again with `brainmets export`)",
            "warning",
        )
        return rep
    manifest = rep.root / MANIFEST_NAME
    if record.manifest_sha256 and manifest.is_file():
        from brainmets.fsutil import sha256_file

        if sha256_file(manifest) != record.manifest_sha256:
            rep.add(
                MANIFEST_NAME,
                f"stale: not the export workspace {ws} recorded here at {record.exported_at} "
                "(another manifest)",
                severity,
            )
    rep.changes = changes_since(record.stage_runs, runs, record.stage)
    if rep.changes:
        shown = "; ".join(rep.changes[:5])
        more = f"; and {len(rep.changes) - 5} more" if len(rep.changes) > 5 else ""
        rep.add(
            ".",
            f"stale: workspace {ws} has changed since this export ({record.exported_at}): "
            f"{len(rep.changes)} stage run(s) differ: {shown}{more}. Export again "
            "(`brainmets run` or `brainmets export`)",
            severity,
        )
    return rep
