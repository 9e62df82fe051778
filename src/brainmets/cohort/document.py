"""Assembling the dataset descriptor from a cohort: sections, tables, figures.

:func:`build_document` is used by the ``report`` stage (the workspace's report, patients by
pseudonym) and by the ``export`` stage (the copy inside an export: patients by their export
IDs, patients who are not included never named).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import brainmets
from brainmets.cohort.clinical import Clinical
from brainmets.cohort.figures import (
    LABEL_COLOURS,
    lesion_volume_histogram,
    lesions_per_patient_histogram,
)
from brainmets.cohort.model import Cohort
from brainmets.cohort.patient_figures import (
    patient_figures,
    qc_figure_patients,
    registration_figures,
    safe_name,
)
from brainmets.cohort.render import Document, Figure, Section
from brainmets.cohort.tables import (
    Table,
    clinical_characteristics,
    clinical_problems,
    cohort_flow,
    exclusion_reasons,
    exclusions,
    input_files,
    lesion_summary,
    per_patient,
    qc_table,
    review_outcome,
    sample_patients,
    scanners,
    table1,
)

#: report stage parameters and their defaults (``[stages.report]``)
DEFAULTS: dict[str, Any] = {
    # the hospital's clinical sheet (CSV/XLSX keyed by MRN; relative to the workspace or
    # absolute); "" = none. MRNs are mapped to pseudonyms with the workspace key.
    "clinical_sheet": "",
    # patients that get a figure: at most this many (0 = all), chosen by figure_selection
    "figure_patients": 12,
    "figure_selection": "random",  # random (seeded), first (by ID), largest (core volume)
    "figure_seed": 0,
    "figure_dpi": 100,  # panels of the patient figures: 4.4 in (440 px at 100 dpi)
    # lesion montage: at most this many lesions per patient, largest first (0 = all)
    "montage_max_lesions": 3,
    # registration QC figures: figures (the patients with a figure), figures+flagged (and
    # every patient with a QC flag), all (every included patient), none
    "qc_figures": "figures+flagged",
    # patient -> review status of the QC flags (e.g. "accepted", "corrected"); a flagged
    # patient without one is "pending"
    "qc_review": {},
    # stages a patient must have finished to be included ([] = the pipeline's patient stages)
    "required_stages": [],
    # the stage whose success means "all four pretreatment sequences"
    "sequence_stage": "classify",
    "title": "Brain metastases dataset: descriptor",
    # the synthetic cohort whose truth.json the report checks the results against: "" = the
    # cohort folder of a registered source (when it has one), "none" = never, else a folder
    "synthetic_truth": "",
}


def figure_name(display_id: str) -> str:
    return "patient_" + safe_name(display_id)


def build_document(
    cohort: Cohort,
    params: Mapping[str, Any],
    clinical: Clinical | None = None,
    ids: Mapping[str, str] | None = None,
    anonymous_exclusions: bool = False,
    now: dt.datetime | None = None,
    log: Callable[[str], None] | None = None,
    atlas_dir: str | os.PathLike[str] | None = None,
    extra_sections: Sequence[Section] = (),
) -> Document:
    """The descriptor of ``cohort``.

    Args:
        params: the report parameters (:data:`DEFAULTS` merged with the configuration).
        clinical: the validated clinical rows (None: no sheet configured).
        ids: pseudonym -> the ID to show (the export's IDs); default the pseudonym.
        anonymous_exclusions: list patients who are not included without their ID, and the
            clinical sheet's problems as counts only (the export's copy).
        atlas_dir: the configured SRI24 folder (``atlas.dir``; None: looked up as
            :func:`brainmets.atlas.locate_atlas` does), for the registration figures.
        extra_sections: sections appended after the others (the report stage's check
            against the synthetic truth).
    """
    p = {**DEFAULTS, **dict(params)}
    show = (lambda x: str(ids.get(x, x))) if ids else (lambda x: x)
    now = now or dt.datetime.now(dt.UTC)
    included = cohort.included
    lesions = lesion_summary(cohort)
    total_lesions = lesions.lookup("Lesions (tumour-core components, labels 1+3)")
    sections: list[Section] = [
        Section(
            "Summary",
            [
                f"{len(cohort.found)} patients found, {len(cohort.with_sequences)} with all four "
                f"pretreatment sequences, {len(included)} included; {total_lesions} lesions "
                f"({lesions.lookup('Enhancing lesions (components of label 3, ET_num)')} "
                "enhancing components).",
                "Images: T1 (t1n), T1 post-contrast (t1c), T2 (t2w), FLAIR (t2f), co-registered, "
                "registered to the SRI24 atlas, 240 x 240 x 155 at 1 mm, skull stripped. Labels: "
                "1 necrosis (non-enhancing tumour core), 2 peritumoral edema, 3 enhancing "
                "tumour; regions ET = {3}, TC = {1, 3}, WT = {1, 2, 3}.",
            ],
        ),
        Section(
            "Cohort",
            tables=[
                cohort_flow(cohort),
                input_files(cohort),
                exclusion_reasons(cohort),
                exclusions(cohort, anonymous=anonymous_exclusions),
                review_outcome(cohort),
            ],
        ),
    ]
    problems = list(clinical.problems) if clinical is not None else []
    clin_tables: list[Table] = [
        clinical_characteristics(cohort, clinical.rows if clinical is not None else None, problems)
    ]
    if clinical is not None:  # also without problems: every report has the same tables
        clin_tables.append(
            clinical_problems(problems, clinical.source, anonymous=anonymous_exclusions)
        )
    sections.append(Section("Patient characteristics", tables=clin_tables))
    sections.append(Section("Scanners", tables=[scanners(cohort)]))
    sections.append(Section("Acquisition parameters (Table 1)", tables=[table1(cohort)]))

    with_features = [x for x in included if x.features is not None]
    vols = [float(les.get("volume_cm3") or 0) for x in with_features for les in x.lesions]
    counts = [len(x.lesions) for x in with_features]
    dpi = int(p["figure_dpi"])
    sections.append(
        Section(
            "Lesions",
            tables=[lesions, per_patient(cohort, ids)],
            figures=[
                Figure(
                    "lesion_volume_histogram",
                    "Lesion (tumour-core) volumes of the included patients.",
                    lesion_volume_histogram(vols, dpi=dpi + 10),
                ),
                Figure(
                    "lesions_per_patient_histogram",
                    "Number of lesions per included patient.",
                    lesions_per_patient_histogram(counts, dpi=dpi + 10),
                ),
            ],
        )
    )

    sampled = sample_patients(
        [x for x in included if x.seg is not None and x.images()],
        int(p["figure_patients"]),
        str(p["figure_selection"]),
        int(p["figure_seed"]),
    )
    figs, figure_notes = patient_figures(sampled, show, p, log)
    colours = ", ".join(
        f"{lab} {name} ({colour})"
        for (lab, (name, _)), colour in zip(
            LABEL_COLOURS.items(), ("red", "green", "blue"), strict=True
        )
    )
    sections.append(
        Section(
            "Patient figures",
            [
                f"{len(sampled)} of {len(included)} included patients "
                + (
                    "(all)."
                    if len(sampled) == len(included)
                    else f"(selection: {p['figure_selection']}, seed {p['figure_seed']})."
                ),
                "Axial and coronal panels: radiological convention, the patient's right on the "
                "left (marked R / L); sagittal panels: anterior on the left (A / P). Labels: "
                f"{colours}.",
                *figure_notes,
            ],
            figures=figs,
        )
    )
    sections.append(Section("Quality control", tables=[qc_table(cohort, p["qc_review"], ids)]))
    reg_figs, reg_notes = registration_figures(
        qc_figure_patients(included, sampled, str(p["qc_figures"])), show, p, atlas_dir, log
    )
    sections[-1].paragraphs += reg_notes
    sections[-1].figures += reg_figs
    sections.extend(extra_sections)
    subtitle = (
        f"Generated {now.strftime('%Y-%m-%d %H:%M UTC')} by brainmets {brainmets.__version__} "
        f"from the workspace catalog; {len(included)} patients."
    )
    return Document(str(p["title"]), subtitle, sections)


def report_metrics(cohort: Cohort, doc: Document) -> dict[str, Any]:
    """Small numbers recorded with the stage run (and checked against the catalog in tests)."""
    lesions = next(t for t in doc.tables if t.name == "lesions")
    return {
        "patients_found": len(cohort.found),
        "patients_with_sequences": len(cohort.with_sequences),
        "patients_included": len(cohort.included),
        "review": cohort.review_counts(),
        "lesions": lesions.lookup("Lesions (tumour-core components, labels 1+3)"),
        "patient_figures": sum(1 for f in doc.figures if f.name.startswith("patient_")),
        "lesion_montages": sum(1 for f in doc.figures if f.name.startswith("montage_")),
        "registration_figures": sum(1 for f in doc.figures if f.name.startswith("registration_")),
    }
