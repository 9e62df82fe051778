"""The export layouts: ``collection`` (default), ``nnunet``, ``dicom-seg``.

Each layout is built in a staging folder beside its destination (``.tmp-export-*``), then
swapped in; a destination that exists is replaced only when it is empty or is an earlier
export (it has a ``MANIFEST.sha256``). Only included patients are written (see
:mod:`brainmets.cohort.model`); nothing is read from the workspace's private folder, and no
mapping table is written (the BraTS numbering table stays in the stage's own folder).

* ``collection``: ``<ID>/<ID>-{t1n,t1c,t2w,t2f,seg}.nii.gz``, the workbook
  ``<dataset_name>_clin_<YYYYMMDD>.xlsx`` (sheets Data, Description, Lesions, Provenance),
  ``report/`` (the descriptor with the export's IDs), ``README.md``, ``MANIFEST.sha256``.
* ``nnunet``: ``Dataset<NNN>_<name>/`` with ``imagesTr/<ID>_0000..0003.nii.gz`` (channels
  0 T1 = t1n, 1 T1c = t1c, 2 T2 = t2w, 3 FLAIR = t2f), ``labelsTr/<ID>.nii.gz``,
  ``dataset.json`` (regions ET/TC/WT by default), ``README.md``, ``MANIFEST.sha256``.
* ``dicom-seg``: ``<pseudonym>/<pseudonym>-seg.dcm`` referencing the de-identified T1c series,
  ``README.md``, ``MANIFEST.sha256``.

NIfTI files follow :mod:`brainmets.export.conventions` (parameter ``header``); files already
in the convention are hard-linked (``link``: ``auto`` = hard links for ``nnunet``, copies for
``collection``; ``hardlink``, ``symlink``, ``copy``), falling back to a copy across disks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np

from brainmets.cohort.model import Cohort, PatientRecord
from brainmets.cohort.tables import Table
from brainmets.export.card import dataset_card
from brainmets.export.conventions import conform, follows, header_affine, template_array
from brainmets.export.ids import IdTable
from brainmets.export.manifest import MANIFEST_NAME, write_manifest
from brainmets.fsutil import DiskFullError, disk_full, naming_full_disk
from brainmets.vocab import IMAGE_SUFFIXES, SUFFIX_TITLES

LAYOUTS: tuple[str, ...] = ("collection", "nnunet", "dicom-seg")
LINK_MODES: tuple[str, ...] = ("auto", "hardlink", "symlink", "copy")
#: nnU-Net channel order: channel -> (preprocessed role, channel name)
NNUNET_CHANNELS: dict[int, tuple[str, str]] = {
    i: (s, SUFFIX_TITLES[s]) for i, s in enumerate(IMAGE_SUFFIXES)
}
STAGING_PREFIX = ".tmp-export-"
OLD_PREFIX = ".tmp-old-export-"

#: export stage parameters and their defaults (``[stages.export]``)
DEFAULTS: dict[str, Any] = {
    "layout": "collection",  # collection | nnunet | dicom-seg
    "out": "",  # "" = <[paths] exports>/<layout>; relative to the workspace or absolute
    "ids": "pseudonym",  # pseudonym | brats (BraTS-MET-XXXXX-000, stable numbering)
    "id_start": 1,  # first BraTS-MET number given
    "link": "auto",  # auto | hardlink | symlink | copy
    "header": "sri24",  # sri24 | brats-met (NIfTI header convention, see conventions)
    "dataset_name": "BrainMets",
    "nnunet_dataset_id": 801,
    "nnunet_regions": True,  # dataset.json labels as regions WT/TC/ET (else the 3 labels)
    "include_report": True,  # collection: the descriptor in report/
    "licence": "Licence: to be set by the data provider before publication.",
    "citation": "",
    # true: only cases approved in the review app (brainmets review); the report follows it.
    # A case a reviewer excluded is always left out.
    "require_review": False,
}


class ExportError(ValueError):
    """The export cannot be made (nothing to export, missing inputs, unsafe destination)."""


@dataclass
class ExportResult:
    """What an export wrote."""

    layout: str
    target: Path
    patients: list[str] = field(default_factory=list)  # export IDs
    files: int = 0
    placed: dict[str, int] = field(default_factory=dict)  # how -> count (linked, copied, ...)

    def count(self, how: str) -> None:
        self.placed[how] = self.placed.get(how, 0) + 1


# ------------------------------------------------------------------------ files
def link_mode(layout: str, link: str) -> str:
    if link not in LINK_MODES:
        raise ExportError(f"link must be one of {LINK_MODES}, not {link!r}")
    if link == "auto":
        return "hardlink" if layout == "nnunet" else "copy"
    return link


def link_or_copy(src: Path, dest: Path, mode: str) -> str:
    """Place ``src`` at ``dest``: hard link (a copy across disks), symlink or copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if mode == "hardlink":
        try:
            os.link(src, dest)
            return "hard-linked"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    elif mode == "symlink":
        os.symlink(src.resolve(), dest)
        return "symlinked"
    with naming_full_disk(dest):
        shutil.copyfile(src, dest)
    return "copied"


def place_image(src: Path, dest: Path, header: str, mode: str) -> str:
    """An image in the layout's convention: linked/copied as is, or rewritten."""
    c = conform(src, header)
    if c.image is None:
        return link_or_copy(src, dest, mode)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with naming_full_disk(dest):
        nib.save(c.image, str(dest))
    return "written (" + c.how + ")"


def place_seg(src: Path, dest: Path, header: str, mode: str) -> str:
    """The label map as uint8 in the layout's convention (values checked: 0-3, integral)."""
    img = cast(nib.Nifti1Image, nib.load(str(src)))
    if img.get_data_dtype() == np.uint8 and follows(img, header):
        return link_or_copy(src, dest, mode)
    data = template_array(img)
    if not np.array_equal(data, np.round(data)) or not np.isin(np.unique(data), [0, 1, 2, 3]).all():
        raise ExportError(f"{src.name}: label values are not within {{0, 1, 2, 3}}")
    aff = header_affine(header)
    out = nib.Nifti1Image(data.astype(np.uint8), aff)
    out.header.set_qform(aff, code=1)
    out.header.set_sform(aff, code=1)
    out.header.set_xyzt_units("mm", "sec")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with naming_full_disk(dest):
        nib.save(out, str(dest))
    return "written (uint8, convention)"


def patient_sources(p: PatientRecord) -> tuple[dict[str, Path], Path]:
    """The preprocessed images (role -> file) and the label map of an included patient."""
    images = p.images()
    missing = [r for r in IMAGE_SUFFIXES if r not in images or not images[r].is_file()]
    seg = p.seg
    if missing:
        raise ExportError(
            f"{p.id}: no preprocessed {', '.join(missing)} recorded (preprocess outputs)"
        )
    if seg is None or not seg.is_file():
        raise ExportError(f"{p.id}: no label map recorded (segment output 'seg')")
    return images, seg


# -------------------------------------------------------------------- staging
def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def check_destination(target: Path, workspace_root: Path, private: Path) -> None:
    """Refuse a destination that would hold or replace the workspace or its private folder,
    or that is an existing folder which is not an earlier export."""
    if _is_within(workspace_root, target) or _is_within(target, private):
        raise ExportError(f"refusing to export into {target}: it holds workspace data")
    if target.exists():
        if not target.is_dir():
            raise ExportError(f"{target} exists and is not a folder")
        if any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
            raise ExportError(
                f"refusing to replace {target}: not empty and not a brainmets export "
                f"(no {MANIFEST_NAME}); choose another --out"
            )


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A staging folder beside ``target``; on success it replaces ``target``."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in [
        *parent.glob(f"{STAGING_PREFIX}{target.name}-*"),
        *parent.glob(f"{OLD_PREFIX}{target.name}-*"),
    ]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{target.name}-", dir=parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        old: Path | None = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f"{OLD_PREFIX}{target.name}-", dir=parent))
            os.rmdir(old)
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        full = disk_full(exc)
        if full is None:
            raise
        # name the file as it would have been in the export (the staging folder is gone)
        where = Path(str(full.filename)) if full.filename else None
        if where is not None and _is_within(where, tmp):
            where = target / where.relative_to(tmp)
        raise DiskFullError(int(full.errno or errno.ENOSPC), where or target) from exc


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# -------------------------------------------------------------------- layouts
@dataclass
class ExportJob:
    """Everything a layout needs."""

    root: Path
    cohort: Cohort
    ids: IdTable
    params: dict[str, Any]
    report_params: dict[str, Any]
    clinical_rows: dict[str, dict[str, Any]] | None = None
    clinical_source: str = ""
    #: the clinical sheet's problems (row, column, severity, message): the export's report
    #: counts them (``clinical_problems``)
    clinical_problems: list[tuple[int, str, str, str]] = field(default_factory=list)
    acquisition_tables: list[Table] = field(default_factory=list)
    log: Callable[[str], None] = lambda _msg: None
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: the workspace's SRI24 folder (``atlas.dir``), for the report's registration figures
    atlas_dir: Path | None = None

    @property
    def patients(self) -> list[PatientRecord]:
        return [p for p in self.cohort.included if p.id in self.ids.ids]


def _card(job: ExportJob, layout: str, files_md: str, n: int) -> str:
    return dataset_card(
        layout=layout,
        dataset_name=str(job.params["dataset_name"]),
        n_patients=n,
        files_md=files_md,
        header=str(job.params["header"]),
        id_scheme=job.ids.scheme,
        licence=str(job.params["licence"]),
        citation=str(job.params["citation"]),
        tables=job.acquisition_tables,
        now=job.now,
    )


def _workbook(job: ExportJob, dest: Path) -> Path:
    from brainmets.cohort.workbook import write_workbook

    feats: dict[str, Any] = {}
    lesions: dict[str, list[dict[str, Any]]] = {}
    params: dict[str, Any] = {}
    for p in job.patients:
        doc = p.features_doc
        feats[p.id] = doc["features"] if doc else None
        lesions[p.id] = list(doc.get("lesions") or []) if doc else []
        params = params or (dict(doc.get("params") or {}) if doc else {})
    clinical = {k: v for k, v in (job.clinical_rows or {}).items() if k in feats}
    return write_workbook(
        dest,
        feats,
        lesions,
        clinical if job.clinical_rows is not None else None,
        ids=job.ids.workbook_ids(),
        params=params,
        provenance={
            "source": "brainmets export",
            "clinical sheet": job.clinical_source,
            "patient IDs": job.ids.scheme,
        },
    )


def build_collection(job: ExportJob, tmp: Path, result: ExportResult) -> None:
    header = str(job.params["header"])
    mode = link_mode("collection", str(job.params["link"]))
    for p in job.patients:
        eid = job.ids.ids[p.id]
        images, seg = patient_sources(p)
        folder = tmp / eid
        for role in IMAGE_SUFFIXES:
            result.count(place_image(images[role], folder / f"{eid}-{role}.nii.gz", header, mode))
        result.count(place_seg(seg, folder / f"{eid}-seg.nii.gz", header, mode))
        result.patients.append(eid)
        job.log(f"{eid}: 5 files")
    name = f"{job.params['dataset_name']}_clin_{job.now.strftime('%Y%m%d')}.xlsx"
    _workbook(job, tmp / name)
    report_note = ""
    if job.params["include_report"]:
        from brainmets.cohort.document import build_document
        from brainmets.cohort.render import write_document

        doc = build_document(
            job.cohort,
            job.report_params,
            _clinical_for_report(job),
            ids=job.ids.ids,
            anonymous_exclusions=True,
            now=job.now,
            atlas_dir=job.atlas_dir,
        )
        write_document(doc, tmp / "report")
        report_note = (
            "\n- `report/report.html` (self-contained), `report/report.md`, `report/tables/*.csv`, "
            "`report/figures/*.png`: the dataset descriptor (cohort, Table 1, lesions, figures)"
        )
    files_md = (
        f"- `<ID>/<ID>-t1n.nii.gz`, `-t1c`, `-t2w`, `-t2f`, `-seg.nii.gz` for each of the "
        f"{len(result.patients)} patients (images as preprocessed, int16 by default; uint8 "
        "label map)\n"
        f"- `{name}`: the clinical and imaging workbook (sheets Data, Description, Lesions, "
        "Provenance; columns as the published collection's)" + report_note + "\n"
        f"- `{MANIFEST_NAME}`: SHA-256 of every file"
    )
    (tmp / "README.md").write_text(_card(job, "collection", files_md, len(result.patients)))


def _clinical_for_report(job: ExportJob) -> Any:
    if job.clinical_rows is None:
        return None
    from brainmets.cohort.clinical import Clinical

    return Clinical(
        rows=dict(job.clinical_rows),
        problems=list(job.clinical_problems),
        source=job.clinical_source,
    )


def nnunet_dataset_json(job: ExportJob, n: int) -> dict[str, Any]:
    """``dataset.json`` of the nnU-Net v2 raw dataset."""
    if job.params["nnunet_regions"]:
        labels: dict[str, Any] = {
            "background": 0,
            "whole tumor": [1, 2, 3],
            "tumor core": [1, 3],
            "enhancing tumor": [3],
        }
        extra: dict[str, Any] = {"regions_class_order": [2, 1, 3]}
    else:
        labels = {"background": 0, "necrosis": 1, "edema": 2, "enhancing tumor": 3}
        extra = {}
    return {
        "channel_names": {str(c): name for c, (_, name) in NNUNET_CHANNELS.items()},
        "labels": labels,
        **extra,
        "numTraining": n,
        "file_ending": ".nii.gz",
        "name": str(job.params["dataset_name"]),
        "description": (
            "Brain metastases on pretreatment MRI: T1, T1c, T2, FLAIR on the SRI24 grid "
            "(240x240x155, 1 mm, skull stripped); labels 1 necrosis, 2 edema, 3 enhancing."
        ),
        "reference": "see README.md",
        "licence": str(job.params["licence"]),
        "release": job.now.strftime("%Y-%m-%d"),
    }


def nnunet_folder_name(params: Mapping[str, Any]) -> str:
    n = int(params["nnunet_dataset_id"])
    if not 1 <= n <= 999:
        raise ExportError(f"nnunet_dataset_id must be 1-999, not {n}")
    name = "".join(c if c.isalnum() else "_" for c in str(params["dataset_name"]))
    return f"Dataset{n:03d}_{name}"


def build_nnunet(job: ExportJob, tmp: Path, result: ExportResult) -> None:
    header = str(job.params["header"])
    mode = link_mode("nnunet", str(job.params["link"]))
    for p in job.patients:
        case = job.ids.ids[p.id]
        images, seg = patient_sources(p)
        for c, (role, _) in NNUNET_CHANNELS.items():
            result.count(
                place_image(images[role], tmp / "imagesTr" / f"{case}_{c:04d}.nii.gz", header, mode)
            )
        result.count(place_seg(seg, tmp / "labelsTr" / f"{case}.nii.gz", header, mode))
        result.patients.append(case)
    (tmp / "dataset.json").write_text(
        json.dumps(nnunet_dataset_json(job, len(result.patients)), indent=2) + "\n"
    )
    order = ", ".join(f"`_{c:04d}` {name} ({role})" for c, (role, name) in NNUNET_CHANNELS.items())
    files_md = (
        f"nnU-Net v2 raw dataset: `imagesTr/<case>_XXXX.nii.gz` with channels {order}; "
        "`labelsTr/<case>.nii.gz` (labels 0-3); `dataset.json` (regions: whole tumor "
        "{1,2,3}, tumor core {1,3}, enhancing tumor {3}, `regions_class_order` [2, 1, 3] so "
        "that predictions convert back to labels 2, 1, 3); "
        f"{len(result.patients)} training cases; `{MANIFEST_NAME}`."
    )
    (tmp / "README.md").write_text(_card(job, "nnunet", files_md, len(result.patients)))


def t1c_series_files(root: Path, p: PatientRecord) -> list[Path]:
    """The de-identified T1c series of a patient, as the classify stage selected it."""
    sel = p.output("classify", "selection")
    if sel is None or not sel.is_file():
        raise ExportError(f"{p.id}: no series selection recorded (classify output 'selection')")
    doc = json.loads(sel.read_text())
    files = ((doc.get("selected") or {}).get("t1c") or {}).get("instances") or []
    if not files:
        raise ExportError(f"{p.id}: the selection names no T1c instance")
    return [root / f for f in files]


def build_dicom_seg(job: ExportJob, tmp: Path, result: ExportResult) -> None:
    from brainmets.export.dicomseg import write_dicom_seg
    from brainmets.spatial import CaseTransforms

    if job.ids.scheme != "pseudonym":
        raise ExportError(
            "the dicom-seg layout keeps the pseudonymous IDs (the SEG must carry the PatientID "
            "of the de-identified series it references): use ids = 'pseudonym'"
        )
    for p in job.patients:
        _, seg = patient_sources(p)
        tpath = p.output("preprocess", "transforms")
        if tpath is None or not tpath.is_file():
            raise ExportError(f"{p.id}: no preprocess transforms recorded")
        tr = CaseTransforms.load(tpath)
        if tr.index_map("t1c") is not None:
            raise ExportError(f"{p.id}: input passed through by index: no native T1c geometry")
        files = t1c_series_files(job.root, p)
        write_dicom_seg(
            files, seg, tr.native_to_atlas_matrix("t1c"), tmp / p.id / f"{p.id}-seg.dcm"
        )
        result.count("written (DICOM SEG)")
        result.patients.append(p.id)
        job.log(f"{p.id}: DICOM SEG on {len(files)} T1c instance(s)")
    files_md = (
        f"- `<ID>/<ID>-seg.dcm` for each of the {len(result.patients)} patients: a DICOM "
        "Segmentation (BINARY; segments 1 necrosis, 2 edema, 3 enhancing tumour) referencing "
        "the patient's de-identified T1 post-contrast series; load it with that series\n"
        f"- `{MANIFEST_NAME}`: SHA-256 of every file"
    )
    (tmp / "README.md").write_text(_card(job, "dicom-seg", files_md, len(result.patients)))


BUILDERS: dict[str, Callable[[ExportJob, Path, ExportResult], None]] = {
    "collection": build_collection,
    "nnunet": build_nnunet,
    "dicom-seg": build_dicom_seg,
}


def export_target(out: Path, layout: str, params: Mapping[str, Any]) -> Path:
    """The folder a layout replaces: ``out`` itself, or ``out/Dataset<NNN>_<name>`` (nnU-Net,
    so that ``out`` can be an ``nnUNet_raw`` folder holding other datasets)."""
    return out / nnunet_folder_name(params) if layout == "nnunet" else out


def run_layout(job: ExportJob, layout: str, target: Path) -> ExportResult:
    """Build ``layout`` for ``job`` into ``target`` (staged, then swapped in), with its
    manifest."""
    if layout not in BUILDERS:
        raise ExportError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if not job.patients:
        raise ExportError("no patient is included: nothing to export (see `brainmets report`)")
    result = ExportResult(layout=layout, target=target)
    with staged(target) as tmp:
        BUILDERS[layout](job, tmp, result)
        write_manifest(tmp)
        result.files = sum(1 for _ in (tmp / MANIFEST_NAME).read_text().splitlines())
    return result
