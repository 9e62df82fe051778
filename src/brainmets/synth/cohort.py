"""Generate a synthetic brain-metastasis cohort: DICOM export tree, ground truth, clinical
workbook. One process per patient (a process pool over patients), deterministic per seed."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brainmets import fsutil
from brainmets.fsutil import atomic_write_text
from brainmets.synth import lesions as L
from brainmets.synth.acquisition import MAIN_KINDS, SeriesPlan, StudyPlan, choose_scanner
from brainmets.synth.anatomy import SRI24_NAME, Template, get_template
from brainmets.synth.clinical import (
    PRIMARY,
    ClinicalRecord,
    Identity,
    make_clinical,
    make_identities,
    plant_defects,
    write_workbook,
)
from brainmets.synth.dicom_writer import (
    Planter,
    WriteContext,
    make_uid,
    series_uid,
    write_mr_series,
    write_screenshot,
)
from brainmets.synth.geometry import Grid, apply_affine, set_resample_threads
from brainmets.synth.imaging import PatientImages, acquire, render, series_transform
from brainmets.synth.planning import (
    INSTITUTIONS,
    PatientTraits,
    draw_features,
    plan_study,
    station_and_serial,
)
from brainmets.synth.truth import MASK_NAMES, lesion_ids_on_grid, save_nifti, write_seg

SCHEMA_VERSION = 1
STAGING = ".staging"


@dataclass
class CohortSummary:
    """What :func:`generate_cohort` wrote."""

    out_dir: Path
    seed: int
    template: str
    mrns: list[str]
    patient_dirs: list[Path]
    truth_dirs: list[Path]
    clinical_sheet: Path
    truth_json: Path
    n_files: int = 0
    n_series: int = 0
    excluded: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PatientJob:
    index: int
    seed: int
    ident: Identity
    out_dir: str
    atlas_dir: str | None
    anatomy: str


def _r(m: np.ndarray, nd: int = 6) -> list:
    return np.round(np.asarray(m, dtype=float), nd).tolist()


def _rng(seed: int, index: int, part: str) -> np.random.Generator:
    code = int.from_bytes(part.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng([seed, index, code])


def _comments(
    rng: np.random.Generator, ident: Identity, rec: ClinicalRecord, force: bool
) -> dict[str, str]:
    c: dict[str, str] = {}
    if force or rng.random() < 0.5:
        c["history"] = f"{PRIMARY[int(rec.primary)]} - {ident.display_name}, r/o brain mets"
    if force or rng.random() < 0.3:
        c["patient_comments"] = f"MRN {ident.mrn}: claustrophobic, mild sedation"
    if force or rng.random() < 0.3:
        c["T1c"] = f"Pt {ident.family.title()} moved slightly after contrast"
    if force or rng.random() < 0.2:
        c["FLAIR"] = f"repeat for motion ({ident.mrn})"
    return c


def _study_dates(rng: np.random.Generator) -> tuple[dt.date, dt.date, float]:
    baseline = dt.date(2014, 1, 6) + dt.timedelta(days=int(rng.integers(0, 3650)))
    followup = baseline + dt.timedelta(days=int(rng.integers(60, 150)))
    start = float(rng.uniform(7.5, 17.5) * 3600.0)
    return baseline, followup, start


def _lesion_centre_on_grid(t: Template, ls: L.LesionSet, study: StudyPlan, plan: SeriesPlan) -> int:
    """Slice index (k) of the T1c grid through the largest lesion core."""
    vols = [int((ls.lesion_mask(n, "core")[1]).sum()) for n in range(1, len(ls.params) + 1)]
    n = int(np.argmax(vols)) + 1
    lo, core = ls.lesion_mask(n, "core")
    c_vox = np.argwhere(core).mean(axis=0) + lo
    world = apply_affine(t.affine, c_vox)
    scanner = apply_affine(series_transform(study, plan), world)
    k = apply_affine(np.linalg.inv(plan.grid.affine), scanner)[2]
    return int(np.clip(round(float(k)), 0, plan.grid.shape[2] - 1))


def _write_study(
    t: Template,
    ls: L.LesionSet,
    study: StudyPlan,
    ctx: WriteContext,
    rng: np.random.Generator,
    feats,
    image_seed: int,
) -> tuple[list[dict], dict]:
    imgs = PatientImages(t, ls, image_seed)
    bits = study.scanner.bits_stored
    arrays: dict[str, np.ndarray] = {}
    records = []
    files_by_kind: dict[str, tuple[str, list[str]]] = {}
    screenshot_info: dict = {}
    for plan in study.series:
        volumes: list[tuple[Grid, np.ndarray, dict]] = []
        if plan.kind == "LOC":
            for g in plan.grids:
                volumes.append((g, acquire(render(t, imgs, study, plan, g), plan, rng, bits), {}))
        elif plan.kind == "DWI":
            for b, contrast in ((0, "DWI_B0"), (1000, "DWI_B1000")):
                sig = render(t, imgs, study, plan, plan.grid, contrast)
                volumes.append(
                    (plan.grid, acquire(sig, plan, rng, bits), {"DiffusionBValue": float(b)})
                )
        elif plan.kind == "ADC":
            sig = render(t, imgs, study, plan, plan.grid)
            dwi = arrays.get("DWI")
            arr = acquire(sig, plan, rng, 16, rician=False)
            if dwi is not None:
                arr[dwi < np.percentile(dwi, 35)] = 0
            arr = (arr.astype(np.float32) * 1000.0).clip(0, 65535).astype(np.uint16)
            volumes.append((plan.grid, arr, {}))
        elif plan.kind == "SUB":
            post = arrays["T1c"].astype(np.int32)
            pre = arrays["T1"].astype(np.int32)
            sub = np.clip(post - pre, 0, 2**bits - 1).astype(np.uint16)
            volumes.append((plan.grid, sub, {}))
        elif plan.kind == "SC":
            k = _lesion_centre_on_grid(t, ls, study, plan)
            sdir, names, info = write_screenshot(ctx, study, plan, arrays["T1c"][:, :, k].T)
            screenshot_info = {"series": sdir, "file": names[0], **info}
            records.append(_series_record(study, plan, sdir, names, ctx))
            continue
        else:
            sig = render(t, imgs, study, plan, plan.grid)
            volumes.append((plan.grid, acquire(sig, plan, rng, bits), {}))
        if plan.kind in ("T1", "T1c", "T2", "FLAIR", "DWI"):
            arrays[plan.kind] = volumes[-1][1] if plan.kind != "DWI" else volumes[0][1]
        overlay: tuple[int, ...] = ()
        if feats.overlay and plan.kind == "T2" and study.role == "baseline":
            mid = plan.grid.shape[2] // 2
            overlay = (mid, mid + 1)
        sdir, names = write_mr_series(ctx, study, plan, volumes, overlay)
        files_by_kind.setdefault(plan.kind, (sdir, names))
        records.append(_series_record(study, plan, sdir, names, ctx))
    return records, {"files": files_by_kind, "screenshot": screenshot_info}


def _series_record(
    study: StudyPlan, plan: SeriesPlan, sdir: str, names: list[str], ctx: WriteContext
) -> dict:
    params = {k: v for k, v in plan.params.items() if not k.startswith("_")}
    return {
        "dir": sdir,
        "kind": plan.kind,
        "series_number": plan.series_number,
        "series_instance_uid": series_uid(ctx, study, plan),
        "description": plan.description,
        "acquisition_type": plan.acq_type,
        "orientation": plan.orientation,
        "derived_from": plan.derived_from,
        "post_contrast": plan.post_contrast,
        "image_type": plan.image_type,
        "n_files": len(names),
        "slice_thickness": plan.slice_thickness,
        "spacing_between_slices": plan.spacing_between_slices,
        "b_values": plan.b_values,
        "rescale_slope": plan.rescale_slope,
        "params": params,
        "template_to_scanner": _r(series_transform(study, plan)),
        "grids": [{"shape": list(g.shape), "affine_ras": _r(g.affine)} for g in plan.grids],
    }


@dataclass
class PatientLesions:
    """A patient's drawn features and lesions (on the template grid)."""

    feats: PatientTraits
    params: list  # per-lesion parameters (lesions.place_lesions)
    lesion_set: L.LesionSet
    stats: list[dict]


@dataclass
class PatientVisits:
    """A patient's planned studies, with what goes with each (same order), and the
    clinical record."""

    studies: list[StudyPlan]
    place_infos: list[dict]  # placement record per study
    lesion_sets: list[L.LesionSet]  # lesions as each study sees them
    clinical: ClinicalRecord


def _fresh_stage(job: PatientJob) -> Path:
    """An empty staging folder for the patient (a leftover one is removed)."""
    stage = Path(job.out_dir) / STAGING / job.ident.mrn
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def draw_lesions(job: PatientJob, t: Template) -> PatientLesions:
    """Draw the patient's features, then place and rasterise the lesions."""
    rng_f = _rng(job.seed, job.index, "features")
    feats = draw_features(rng_f, job.index, L.lesion_count(rng_f))
    rng_l = _rng(job.seed, job.index, "lesions")
    params = L.place_lesions(
        t, rng_l, feats.n_lesions, feats.force_infratentorial, feats.force_pair, feats.force_large
    )
    ls = L.rasterise_set(t, params)
    return PatientLesions(feats, params, ls, L.lesion_stats(t, ls))


def plan_visits(job: PatientJob, t: Template, lesions: PatientLesions) -> PatientVisits:
    """Plan the baseline study and, where the features ask for one, a follow-up study
    (maybe on another scanner, with shrunken lesions); draw the clinical record; give
    each study its institution, station name and device serial."""
    feats, params = lesions.feats, lesions.params
    rng_p = _rng(job.seed, job.index, "plan")
    baseline_date, followup_date, start = _study_dates(rng_p)
    diagnosis = baseline_date - dt.timedelta(days=int(rng_p.integers(0, 21)))
    clinical = make_clinical(
        _rng(job.seed, job.index, "clinical"),
        job.ident,
        diagnosis,
        followup_date if feats.followup else None,
    )
    scanner = choose_scanner(rng_p)
    scale = rng_p.uniform(0.93, 1.07, 3)
    centre = t.brain_centre_world()
    institution = INSTITUTIONS[int(rng_p.integers(len(INSTITUTIONS)))]
    base, info = plan_study(
        rng_p, "baseline", 0, baseline_date, scanner, feats, centre, scale, start
    )
    visits = PatientVisits([base], [info], [lesions.lesion_set], clinical)
    if feats.followup:
        fu_scanner = scanner if rng_p.random() < 0.7 else choose_scanner(rng_p)
        fu_start = float(rng_p.uniform(7.5, 17.5) * 3600.0)
        fu, info = plan_study(
            rng_p, "followup", 1, followup_date, fu_scanner, feats, centre, scale, fu_start
        )
        fu.lesion_scale = [float(v) for v in rng_p.uniform(0.35, 0.95, len(params))]
        visits.studies.append(fu)
        visits.place_infos.append(info)
        visits.lesion_sets.append(L.rasterise_set(t, params, fu.lesion_scale))
    for s in visits.studies:
        s.institution = institution
        s.station_name, s.device_serial = station_and_serial(
            _rng(job.seed, job.index, f"stat{s.index}"), s.scanner
        )
    return visits


def _write_context(
    job: PatientJob, stage: Path, studies: list[StudyPlan], clinical: ClinicalRecord
) -> WriteContext:
    """What the DICOM writer needs: accession numbers, free-text comments (with planted
    identifiers) and the planter that records every identifier written."""
    rng_c = _rng(job.seed, job.index, "comments")
    return WriteContext(
        seed=job.seed,
        ident=job.ident,
        out_root=stage,
        planter=Planter(),
        accession={s.index: f"A{int(rng_c.integers(10**7, 10**8 - 1))}" for s in studies},
        comments=_comments(rng_c, job.ident, clinical, job.index == 0),
    )


def _study_record(
    job: PatientJob,
    s: StudyPlan,
    ctx: WriteContext,
    place_info: dict,
    series_records: list[dict],
    screenshot: dict,
) -> dict:
    """The truth record of one written study."""
    return {
        "role": s.role,
        "index": s.index,
        "dir": f"dicom/{job.ident.mrn}/ST{s.index + 1:02d}",
        "date": s.date.isoformat(),
        "accession_number": ctx.accession[s.index],
        "study_instance_uid": make_uid(job.seed, job.ident.mrn, s.index, "study"),
        "study_description": s.study_description,
        "scanner": {
            "manufacturer": s.scanner.manufacturer,
            "vendor": s.scanner.vendor,
            "model": s.scanner.model,
            "field_strength_t": s.scanner.field_t,
            "software": s.scanner.software,
        },
        "contrast_agent": s.contrast_agent[0] if s.contrast_agent else None,
        "placement": {**place_info, "template_to_scanner": _r(s.placement)},
        "missing_sequences": s.missing,
        "lesion_scale": s.lesion_scale,
        "series": series_records,
        "screenshot": screenshot or None,
    }


def write_studies(
    job: PatientJob,
    t: Template,
    visits: PatientVisits,
    ctx: WriteContext,
    feats: PatientTraits,
) -> tuple[list[dict], dict[int, dict]]:
    """Render and write every study's series (one noise stream for the patient).

    Returns the study records and, per study index, the files written per kind and the
    screenshot."""
    rng_n = _rng(job.seed, job.index, "noise")
    study_records = []
    written: dict[int, dict] = {}
    for s, lset, pinfo in zip(visits.studies, visits.lesion_sets, visits.place_infos, strict=True):
        series_records, extra = _write_study(
            t, lset, s, ctx, rng_n, feats, job.seed * 1000 + job.index * 10 + s.index
        )
        written[s.index] = extra
        study_records.append(_study_record(job, s, ctx, pinfo, series_records, extra["screenshot"]))
    return study_records, written


def _patient_record(
    job: PatientJob,
    t: Template,
    lesions: PatientLesions,
    study_records: list[dict],
    truth_files: dict,
    planter: Planter,
) -> dict:
    """The patient's truth record; inclusion follows from the baseline's kinds."""
    ident = job.ident
    kinds_present = {r["kind"] for r in study_records[0]["series"]}
    return {
        "index": job.index,
        "mrn": ident.mrn,
        "patient_name": ident.dicom_name,
        "birth_date": ident.birth_date.isoformat(),
        "sex": ident.sex,
        "expected_included": all(k in kinds_present for k in MAIN_KINDS),
        "missing_sequences": [k for k in MAIN_KINDS if k not in kinds_present],
        "features": asdict(lesions.feats),
        "template": t.name,
        "infratentorial_method": t.infratentorial_method,
        "lesions": lesions.stats,
        "merged_edema_groups": L.merged_edema_groups(lesions.lesion_set),
        "summary": _summary(t, lesions.lesion_set, lesions.stats),
        "studies": study_records,
        "truth_files": truth_files,
        "identifiers": planter.to_list(),
        "identifying_paths": [f"dicom/{ident.mrn}"],
    }


def _publish(job: PatientJob, stage: Path, truth_rel: str, record: dict) -> None:
    """Write the patient's truth.json, move its dicom/ and truth/ folders from the
    staging area into place (replacing older ones) and remove the staging folder."""
    out = Path(job.out_dir)
    mrn = job.ident.mrn
    text = json.dumps(record, indent=1, sort_keys=True, default=_json_default)
    (stage / truth_rel).mkdir(parents=True, exist_ok=True)
    (stage / truth_rel / "truth.json").write_text(text)
    for sub in ("dicom", "truth"):
        dest = out / sub / mrn
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / sub / mrn, dest)
    shutil.rmtree(stage)


def generate_patient(job: PatientJob) -> dict:
    """Generate one patient into the staging area and move it into place; return its
    truth record (plus the clinical record under ``_clinical``).

    Steps: :func:`draw_lesions`, :func:`plan_visits`, :func:`write_studies`, the truth
    files (masks, SEG, label maps), the truth record, and publishing from staging."""
    stage = _fresh_stage(job)
    t = get_template(Path(job.atlas_dir) if job.atlas_dir else None, job.anatomy)
    lesions = draw_lesions(job, t)
    visits = plan_visits(job, t, lesions)
    ctx = _write_context(job, stage, visits.studies, visits.clinical)
    study_records, written = write_studies(job, t, visits, ctx, lesions.feats)
    truth_rel = f"truth/{job.ident.mrn}"
    truth_files = _write_truth(
        t, lesions.lesion_set, visits.lesion_sets, visits.studies, written, stage, truth_rel, job
    )
    record = _patient_record(job, t, lesions, study_records, truth_files, ctx.planter)
    _publish(job, stage, truth_rel, record)
    record["_clinical"] = visits.clinical
    return record


def _json_default(o: object) -> object:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, dt.date):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _summary(t: Template, ls: L.LesionSet, stats: list[dict]) -> dict:
    """The per-patient features of the reference sheet, computed on the template grid."""
    labels = t.crop_to_original(ls.labels)
    counts = L.component_counts(labels)
    vox_cm3 = float(abs(np.linalg.det(t.affine[:3, :3]))) / 1000.0
    et = int((labels == L.ENHANCING).sum())
    nec = int((labels == L.NECROSIS).sum())
    ed = int((labels == L.EDEMA).sum())
    core = et + nec
    return {
        **counts,
        "ET_vol": round(et * vox_cm3, 3),
        "Nec_vol": round(nec * vox_cm3, 3),
        "Edema_vol": round(ed * vox_cm3, 3),
        "Nec_ET_ratio": round(nec / core, 4) if core else None,
        "Edema_ET_ratio": round(ed / core, 4) if core else None,
        "Infratentorial": int(any(s["infratentorial"] for s in stats)),
        "n_lesions": len(stats),
        "connectivity": 26,
    }


def _write_truth(
    t: Template,
    ls: L.LesionSet,
    lesion_sets: list[L.LesionSet],
    studies: list[StudyPlan],
    written: dict[int, dict],
    stage: Path,
    truth_rel: str,
    job: PatientJob,
) -> dict:
    tdir = stage / truth_rel
    space = "sri24" if t.name == SRI24_NAME else "mni152"
    files: dict = {"space": space, "masks": {}, "seg": {}}
    aff = t.original_affine
    save_nifti(tdir / f"label_map_{space}.nii.gz", t.crop_to_original(ls.labels), aff)
    save_nifti(tdir / f"lesion_instances_{space}.nii.gz", t.crop_to_original(ls.instances), aff)
    files["label_map"] = f"{truth_rel}/label_map_{space}.nii.gz"
    files["instance_map"] = f"{truth_rel}/lesion_instances_{space}.nii.gz"
    if len(lesion_sets) > 1:
        save_nifti(
            tdir / f"label_map_{space}_followup.nii.gz",
            t.crop_to_original(lesion_sets[1].labels),
            aff,
        )
        files["followup_label_map"] = f"{truth_rel}/label_map_{space}_followup.nii.gz"
    base = studies[0]
    when = dt.datetime.combine(base.date + dt.timedelta(days=30), dt.time(12, 0, 0))
    for kind, whiches in (("T1c", ("core", "necrosis")), ("FLAIR", ("whole",))):
        plan = base.series_of(kind)
        if plan is None:
            continue
        sdir, names = written[0]["files"][kind]
        to_template = np.linalg.inv(series_transform(base, plan))
        for which in whiches:
            ids = lesion_ids_on_grid(t, ls, plan.grid, to_template, which, plan.slice_thickness)
            present = [n for n in range(1, len(ls.params) + 1) if (ids == n).any()]
            for n in present:
                stem = MASK_NAMES[which].format(n=n)
                save_nifti(
                    tdir / "masks" / f"{stem}.nii.gz", (ids == n).astype(np.uint8), plan.grid.affine
                )
                files["masks"][stem] = {
                    "path": f"{truth_rel}/masks/{stem}.nii.gz",
                    "series": sdir,
                    "lesion": n,
                    "region": which,
                }
            if not present:
                continue

            def uidf(*parts: object, _w: str = which) -> str:
                return make_uid(job.seed, job.ident.mrn, "seg", _w, *parts)

            seg_path = tdir / "seg" / f"seg_{which}.dcm"
            write_seg(
                seg_path,
                [stage / sdir / n for n in names],
                ids,
                present,
                which,
                uidf("series"),
                uidf("sop"),
                900 + len(files["seg"]),
                when,
                uidf,
            )
            files["seg"][which] = {
                "path": f"{truth_rel}/seg/seg_{which}.dcm",
                "series": sdir,
                "segments": [MASK_NAMES[which].format(n=n) for n in present],
            }
    return files


#: peak memory of one worker process (template, cached contrasts, a 3D series), bytes
WORKER_MEMORY = 2 * 1024**3


def default_workers() -> int:
    """One worker per core, no more than the machine's memory holds (:data:`WORKER_MEMORY`)."""
    return fsutil.default_workers(memory_per_worker=WORKER_MEMORY)


class CohortDirError(RuntimeError):
    """The output folder holds something other than a synthetic cohort."""


def _clear_previous(out_dir: Path, keep: set[str]) -> None:
    """Refuse a non-empty folder that is not a cohort; remove the patient folders of a
    previous cohort that the new one does not overwrite (so no stale patients remain)."""
    entries = [p for p in out_dir.iterdir() if p.name != STAGING]
    if not entries:
        return
    old = out_dir / "truth.json"
    if not old.is_file():
        raise CohortDirError(
            f"{out_dir} is not empty and holds no synthetic cohort; choose an empty or new folder"
        )
    try:
        mrns = [p["mrn"] for p in json.loads(old.read_text())["patients"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CohortDirError(f"{old} is not a synthetic cohort's truth.json") from exc
    for mrn in mrns:
        if mrn in keep:
            continue
        for sub in ("dicom", "truth"):
            shutil.rmtree(out_dir / sub / mrn, ignore_errors=True)


def generate_cohort(
    out_dir: Path,
    n_patients: int,
    seed: int,
    workers: int | None = None,
    atlas_dir: Path | None = None,
    anatomy: str = "auto",
) -> CohortSummary:
    """Generate ``n_patients`` synthetic patients into ``out_dir``.

    Layout: ``dicom/<MRN>/STnn/SEnnnnn/IMnnnn.dcm`` (hospital export), ``truth/<MRN>/``
    (masks, SEG, label maps, per-patient truth.json), ``truth.json`` (cohort),
    ``clinical.xlsx``. ``workers`` processes (default: CPU count, capped by memory at
    ~2 GB each) work on patients in parallel; the output is identical for any number of
    workers. ``anatomy``: ``"auto"`` (SRI24 if found, else MNI152), ``"sri24"``,
    ``"mni152"``. A folder holding a previous cohort is updated in place (its patients
    that the new cohort lacks are removed); any other non-empty folder is refused.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    idents = make_identities(seed, n_patients)
    _clear_previous(out_dir, {i.mrn for i in idents})
    template = get_template(atlas_dir, anatomy)  # fail early, and warm the parent's cache
    jobs = [
        PatientJob(i, seed, idents[i], str(out_dir), str(atlas_dir) if atlas_dir else None, anatomy)
        for i in range(n_patients)
    ]
    n_workers = max(1, min(workers or default_workers(), n_patients))
    set_resample_threads(max(1, (os.cpu_count() or 1) // n_workers))
    if n_workers == 1:
        records = [generate_patient(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=n_workers) as ex:
            records = list(ex.map(generate_patient, jobs))
    shutil.rmtree(out_dir / STAGING, ignore_errors=True)
    clinical = [r.pop("_clinical") for r in records]
    defects = plant_defects(np.random.default_rng([seed, 99]), clinical)
    fixed = dt.datetime(2024, 1, 1, 0, 0, 0) + dt.timedelta(minutes=seed % 100000)
    sheet = write_workbook(out_dir / "clinical.xlsx", clinical, fixed)
    for rec, clin in zip(records, clinical, strict=True):
        rec["clinical"] = {
            k: (None if isinstance(v, float) and np.isnan(v) else v)
            for k, v in asdict(clin).items()
        }
    cohort = {
        "schema_version": SCHEMA_VERSION,
        "generator": "brainmets.synth",
        "seed": seed,
        "n_patients": n_patients,
        "template": {
            "name": template.name,
            "affine": _r(template.original_affine),
            "shape": list(template.original_shape),
        },
        "labels": {"1": "necrosis", "2": "edema (whole tumour minus core)", "3": "enhancing"},
        "volume_definition": "voxel counts of the label/instance maps on the template grid "
        "(SRI24: 240x240x155, 1 mm^3 voxels)",
        "clinical_sheet": "clinical.xlsx",
        "clinical_defects": defects,
        "patients": records,
    }
    truth_json = out_dir / "truth.json"
    atomic_write_text(
        truth_json, json.dumps(cohort, indent=1, sort_keys=True, default=_json_default)
    )
    n_files = sum(s["n_files"] for r in records for st in r["studies"] for s in st["series"])
    n_series = sum(len(st["series"]) for r in records for st in r["studies"])
    return CohortSummary(
        out_dir=out_dir,
        seed=seed,
        template=template.name,
        mrns=[r["mrn"] for r in records],
        patient_dirs=[out_dir / "dicom" / r["mrn"] for r in records],
        truth_dirs=[out_dir / "truth" / r["mrn"] for r in records],
        clinical_sheet=sheet,
        truth_json=truth_json,
        n_files=n_files,
        n_series=n_series,
        excluded=[r["mrn"] for r in records if not r["expected_included"]],
    )
