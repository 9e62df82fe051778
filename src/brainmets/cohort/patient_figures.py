"""The descriptor's per-patient figures, as report sections use them.

* :func:`patient_figures`: for every sampled patient, the patient figure (six axial panels)
  and the lesion montage (:func:`brainmets.cohort.figures.lesion_montage`, at most
  ``montage_max_lesions`` lesions, largest first), and the sentences that say which
  lesions were left out and which patients have no lesion (so no montage);
* :func:`registration_figures`: the registration QC figure (SRI24 template brain outline
  over the preprocessed T1c) of the patients chosen by ``qc_figures``.

Lesions are those of the patient's recorded ``features.json`` (tumour-core components,
numbered largest first by :func:`brainmets.lesions.analyse`), the same the lesion tables
count. Figure names: ``patient_<ID>``, ``montage_<ID>``, ``registration_<ID>``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from brainmets.atlas import AtlasError, atlas_file
from brainmets.cohort.figures import (
    lesion_centre_mm,
    lesion_montage,
    patient_figure,
    registration_figure,
)
from brainmets.cohort.model import PatientRecord
from brainmets.cohort.planes import Volume
from brainmets.cohort.render import Figure

#: ``qc_figures`` values: which included patients get a registration QC figure
QC_FIGURE_CHOICES: dict[str, str] = {
    "figures": "the patients with a patient figure",
    "figures+flagged": "the patients with a patient figure and every patient with a QC flag",
    "all": "every included patient",
    "none": "no patient",
}
#: the SRI24 file whose brain outline the registration figure draws
TEMPLATE_FILE = "t1_brain.nii.gz"


def safe_name(display_id: str) -> str:
    """A patient's ID as it may appear in a file name."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in display_id)


def _ranges(numbers: Sequence[int]) -> str:
    """``[4, 5, 6, 9]`` -> ``"4-6, 9"``."""
    out: list[str] = []
    start = prev = None
    for n in sorted(numbers):
        if start is not None and prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = n
    if start is not None:
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(out)


def _lesion_number(rec: Mapping[str, Any], default: int) -> int:
    try:
        return int(rec.get("lesion") or default)
    except (TypeError, ValueError):
        return default


def _volumes(paths: Mapping[str, os.PathLike[str] | str]) -> dict[str, Volume]:
    return {role: Volume.load(path) for role, path in paths.items()}


def patient_figures(
    patients: Iterable[PatientRecord],
    show: Callable[[str], str],
    params: Mapping[str, Any],
    log: Callable[[str], None] | None = None,
) -> tuple[list[Figure], list[str]]:
    """Patient figures and lesion montages of ``patients`` (each with a label map and
    images), in order; and the sentences on montages left out or shortened."""
    dpi = int(params["figure_dpi"])
    cap = int(params["montage_max_lesions"])
    figs: list[Figure] = []
    no_lesion: list[str] = []
    unplaced: list[str] = []
    shortened: list[str] = []
    for x in patients:
        did = show(x.id)
        assert x.seg is not None
        vols = _volumes(x.images())
        seg = Volume.load(x.seg)
        lesions = sorted(
            x.lesions, key=lambda r: _lesion_number(r, 10**9)
        )  # features.json: largest first
        centre = lesion_centre_mm(seg, lesions[0]) if lesions else None
        n = len(lesions)
        figs.append(
            Figure(
                "patient_" + safe_name(did),
                f"{did}: T1, T1 post-contrast, T2, FLAIR on "
                + ("the axial slice through the largest lesion" if n else "an axial slice")
                + "; T1 post-contrast and FLAIR with the label map (edema green, enhancing "
                "blue, necrosis red)."
                + ("" if n else " No lesion in the label map: no lesion montage."),
                patient_figure(vols, seg, did, centre, dpi=dpi).png,
            )
        )
        montage = lesion_montage(vols, seg, lesions, did, cap, dpi=dpi) if n else None
        if montage is None:
            (unplaced if n else no_lesion).append(did)
        else:
            shown = n if cap <= 0 else min(n, cap)
            left = [_lesion_number(r, i + 1) for i, r in enumerate(lesions)][shown:]
            if n == 1:
                which = "its lesion"
            elif left:
                which = f"lesions 1-{shown} of {n} (largest first)"
            else:
                which = f"all {n} lesions (largest first)"
            caption = (
                f"{did}: lesion montage, {which}: axial, coronal and sagittal planes through "
                "the lesion centroid on T1 post-contrast and FLAIR with the label map; field "
                "of view and scale bar on every panel."
            )
            if left:
                caption += f" Lesion(s) {_ranges(left)} left out (montage_max_lesions = {cap})."
                shortened.append(f"{did} ({shown} of {n} shown)")
            figs.append(Figure("montage_" + safe_name(did), caption, montage.png))
        if log:
            log(f"figures of {did}")
    notes: list[str] = []
    if cap > 0:
        notes.append(
            f"Lesion montages show at most {cap} lesion(s) per patient (montage_max_lesions), "
            "the largest first; "
            + (
                "lesions were left out for " + ", ".join(shortened) + "."
                if shortened
                else "no lesion was left out."
            )
        )
    if no_lesion:
        notes.append(
            "No lesion montage (no lesion in the label map): " + ", ".join(no_lesion) + "."
        )
    if unplaced:
        notes.append(
            "No lesion montage (no lesion centroid in features.json, or no T1 post-contrast "
            "and FLAIR): " + ", ".join(unplaced) + "."
        )
    return figs, notes


def qc_figure_patients(
    included: Sequence[PatientRecord], sampled: Sequence[PatientRecord], choice: str
) -> list[PatientRecord]:
    """The included patients (with a T1c) that get a registration figure, by ID."""
    if choice not in QC_FIGURE_CHOICES:
        raise ValueError(f"qc_figures = {choice!r}: allowed {sorted(QC_FIGURE_CHOICES)}")
    ids = {x.id for x in sampled}
    if choice == "none":
        return []
    chosen = [
        x
        for x in included
        if choice == "all" or x.id in ids or (choice == "figures+flagged" and x.qc_flags)
    ]
    return sorted((x for x in chosen if "t1c" in x.images()), key=lambda x: x.id)


def registration_figures(
    patients: Sequence[PatientRecord],
    show: Callable[[str], str],
    params: Mapping[str, Any],
    atlas_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[list[Figure], list[str]]:
    """Registration QC figures of ``patients``, and the sentence that describes them (or
    says why there are none: no SRI24 template)."""
    choice = str(params["qc_figures"])
    if not patients:
        return [], []
    try:
        template_path: Path = atlas_file(TEMPLATE_FILE, atlas_dir)
    except AtlasError as exc:
        return [], [f"Registration figures left out: {exc}"]
    template = Volume.load(template_path)
    dpi = int(params["figure_dpi"])
    figs: list[Figure] = []
    for x in patients:
        did = show(x.id)
        qc = x.qc
        extra = []
        if qc.get("mask_template_dice") is not None:
            extra.append(f"brain mask / template Dice {qc['mask_template_dice']}")
        if x.qc_flags:
            extra.append("QC flags: " + ", ".join(x.qc_flags))
        figs.append(
            Figure(
                "registration_" + safe_name(did),
                f"{did}: outline of the SRI24 template brain (cyan) on the preprocessed T1 "
                "post-contrast, axial, coronal and sagittal planes through the template "
                "brain's centre" + (f" ({'; '.join(extra)})." if extra else "."),
                registration_figure(x.images()["t1c"], template, did, dpi=dpi).png,
            )
        )
        if log:
            log(f"registration figure of {did}")
    sentence = (
        "Registration QC: the outline of the SRI24 template brain (the skull-stripped "
        f"template {TEMPLATE_FILE} > 0, cyan) drawn on each patient's preprocessed T1 "
        "post-contrast in three planes; after a good registration it follows the patient's "
        f"brain edge. Figures for {QC_FIGURE_CHOICES[choice]} (qc_figures = {choice!r}): "
        f"{len(figs)}."
    )
    return figs, [sentence]
