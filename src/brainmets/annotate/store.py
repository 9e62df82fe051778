"""Saving annotations: per-lesion masks, versioned, where the ``segment`` stage reads them.

A patient's masks are NIfTI files on the preprocessed grid with the reference dataset's names
(``Core{n}_PGGE.nii.gz``, ``Necrosis{n}_PGGE.nii.gz``, ``Whole{n}_FLAIR.nii.gz``; ``uint8``,
1 inside). Every save is a new **version**: its files go to their own folder,
``annotations/.versions/<patient>/<NNNN>/``, never changed afterwards, and a row in the
catalog's ``annotation_versions`` (who, when, tool, parent version, file hashes; the catalog
refuses to change or delete one). The latest version is then copied to
``annotations/<patient>/`` — the segment stage's default ``annotations_dir`` — replacing the
folder in one rename, so the next ``brainmets run`` fuses it unchanged and redoes segment,
features, report and export for that patient only. The case is pending review from the
save on (a version newer than the last review decision, and then a new label map: an
approval of the old one is stale).

Masks that were in ``annotations/<patient>/`` before the first save (imported from elsewhere)
are kept as version 1 (tool ``import``) first. Two annotators saving the same patient at once
get two versions; the later is current, the earlier is kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np

from brainmets.catalog import AnnotationVersion, Catalog
from brainmets.fsutil import sha256_file
from brainmets.workspace import Workspace

__all__ = [
    "ANNOTATIONS_DIR",
    "AnnotationStoreError",
    "Lesion",
    "current_lesions",
    "mask_names",
    "save_version",
]

#: the workspace folder of annotations (the segment stage's default ``annotations/{patient}``)
ANNOTATIONS_DIR = "annotations"
VERSIONS_DIR = ".versions"
#: the segment stage's ``annotations_dir`` that this store writes for
SEGMENT_FOLDER = "annotations/{patient}"
_NAME = re.compile(r"^(Core|Necrosis|Whole)(\d+)_(PGGE|FLAIR)\.nii\.gz$")


class AnnotationStoreError(ValueError):
    """Masks that cannot be saved (another annotation folder configured, a bad mask)."""


@dataclass
class Lesion:
    """One lesion's masks on the whole grid: core (enhancing + necrosis), necrosis, whole."""

    core: np.ndarray
    necrosis: np.ndarray
    whole: np.ndarray

    def __post_init__(self) -> None:
        self.core = np.asarray(self.core, bool)
        self.necrosis = np.asarray(self.necrosis, bool) & self.core
        self.whole = np.asarray(self.whole, bool) | self.core


def mask_names(n: int) -> dict[str, str]:
    """File names of lesion ``n``'s masks (the reference's naming)."""
    return {
        "core": f"Core{n}_PGGE.nii.gz",
        "necrosis": f"Necrosis{n}_PGGE.nii.gz",
        "whole": f"Whole{n}_FLAIR.nii.gz",
    }


def _patient_folder(ws: Workspace, patient_id: str) -> Path:
    return ws.root / ANNOTATIONS_DIR / patient_id


def _versions_folder(ws: Workspace, patient_id: str) -> Path:
    return ws.root / ANNOTATIONS_DIR / VERSIONS_DIR / patient_id


def check_segment_folder(ws: Workspace) -> None:
    """Refuse when the segment stage reads annotations from another folder (the saved masks
    would never be fused)."""
    params = (ws.config.data.get("stages") or {}).get("segment") or {}
    folder = str(params.get("annotations_dir", SEGMENT_FOLDER))
    if folder.rstrip("/") != SEGMENT_FOLDER:
        raise AnnotationStoreError(
            f"[stages.segment] annotations_dir is {folder!r}: masks saved by brainmets "
            f"annotate go to {SEGMENT_FOLDER!r} (the default), which this workspace's segment "
            "stage does not read; set annotations_dir back to the default or copy the masks"
        )


def current_lesions(ws: Workspace, patient_id: str) -> list[Lesion]:
    """The lesions of ``annotations/<patient>/`` (files with the reference's names on one
    grid), by lesion number."""
    folder = _patient_folder(ws, patient_id)
    found: dict[int, dict[str, np.ndarray]] = {}
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            m = _NAME.match(p.name)
            if not m:
                continue
            region = {"Core": "core", "Necrosis": "necrosis", "Whole": "whole"}[m.group(1)]
            img = cast(nib.Nifti1Image, nib.load(str(p)))
            found.setdefault(int(m.group(2)), {})[region] = np.asarray(img.dataobj) > 0
    out = []
    for n in sorted(found):
        r = found[n]
        if "core" not in r:
            continue
        core = r["core"]
        out.append(
            Lesion(core, r.get("necrosis", np.zeros_like(core)), r.get("whole", core.copy()))
        )
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_masks(folder: Path, lesions: Sequence[Lesion], affine: np.ndarray) -> dict[str, str]:
    folder.mkdir(parents=True)
    files: dict[str, str] = {}
    for n, les in enumerate(lesions, start=1):
        names = mask_names(n)
        for region in ("core", "necrosis", "whole"):
            data = getattr(les, region)
            if region == "necrosis" and not data.any():
                continue
            img = nib.Nifti1Image(data.astype(np.uint8), affine)
            img.header.set_data_dtype(np.uint8)
            p = folder / names[region]
            nib.save(img, str(p))
            files[p.name] = sha256_file(p)
    return files


def _materialise(ws: Workspace, patient_id: str, version: AnnotationVersion) -> None:
    """Make ``version`` the content of ``annotations/<patient>/`` (one rename)."""
    src = ws.root / version.folder
    dest = _patient_folder(ws, patient_id)
    tmp = dest.parent / f".tmp-{patient_id}-{uuid.uuid4().hex[:8]}"
    shutil.copytree(src, tmp)
    old = None
    if dest.exists():
        old = dest.parent / f".old-{patient_id}-{uuid.uuid4().hex[:8]}"
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_version(
    ws: Workspace,
    patient_id: str,
    lesions: Sequence[Lesion],
    affine: np.ndarray,
    user: str,
    tool: str,
    parent: int | None = None,
    note: str | None = None,
) -> AnnotationVersion:
    """Save ``lesions`` as the patient's next version and make it current (see the module
    docstring). ``parent``: the version the masks were edited from (default: the current)."""
    check_segment_folder(ws)
    if not lesions:
        raise AnnotationStoreError("nothing to save: no lesion")
    shape = lesions[0].core.shape
    if any(les.core.shape != shape for les in lesions):
        raise AnnotationStoreError("the lesions' masks are not on one grid")
    vroot = _versions_folder(ws, patient_id)
    with _locked(vroot / ".lock"):
        with Catalog.open(ws.catalog_path, migrate=False) as cat:
            if cat.patient(patient_id) is None:
                raise AnnotationStoreError(f"no patient {patient_id!r} in this workspace")
            history = cat.annotation_versions(patient_id)
            here = _patient_folder(ws, patient_id)
            if not history and here.is_dir() and any(here.iterdir()):
                # what was there before the first save (imported masks): version 1
                tmp = vroot / f".tmp-{uuid.uuid4().hex[:8]}"
                shutil.copytree(here, tmp)
                files = {
                    str(p.relative_to(tmp)): sha256_file(p) for p in tmp.rglob("*") if p.is_file()
                }
                rel = (vroot / "{v:04d}").relative_to(ws.root).as_posix()
                first = cat.add_annotation_version(
                    patient_id,
                    user,
                    "import",
                    lambda v: rel.format(v=v),
                    files,
                    lesions=len(current_lesions(ws, patient_id)),
                    note="the masks found before the first save",
                )
                os.rename(tmp, ws.root / first.folder)
                history = [first]
            if parent is None and history:
                parent = history[-1].version
            tmp = vroot / f".tmp-{uuid.uuid4().hex[:8]}"
            try:
                files = _write_masks(tmp, lesions, affine)
                rel = (vroot / "{v:04d}").relative_to(ws.root).as_posix()
                rec = cat.add_annotation_version(
                    patient_id,
                    user,
                    tool,
                    lambda v: rel.format(v=v),
                    files,
                    len(lesions),
                    parent,
                    note,
                )
                os.rename(tmp, ws.root / rec.folder)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            latest = cat.annotation_versions(patient_id)[-1]
        _materialise(ws, patient_id, latest)
    return rec
