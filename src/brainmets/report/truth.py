"""The report's check against the synthetic truth (a workspace made from the synthetic cohort).

A workspace built from :func:`brainmets.synth.generate_cohort` (``brainmets demo``, or a
workspace whose source is a cohort's ``dicom/`` folder) can be compared with the cohort's
``truth.json``: :func:`brainmets.synth.check.check_workspace`. When such a truth is found
(:func:`find_truth`), the report gets a section "Check against the synthetic truth": one row
per patient and label (truth vs measured component counts and volumes, pass/fail of each
per-patient target, the patient's median core Dice), ``tables/truth_check.csv``, and the
cohort's measures against :data:`brainmets.synth.check.TARGETS`
(``tables/truth_check_targets.csv``). No truth: no section.

Where the truth is looked for (parameter ``synthetic_truth``): ``""`` (default) the cohort
folder of a registered source (the source itself or its parent holds ``truth.json``; a demo
workspace reads ``<cohort>/dicom``); ``"none"`` never; else a cohort folder or its
``truth.json`` (relative to the workspace or absolute).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brainmets.cohort.render import Section
from brainmets.cohort.tables import Table, fmt_num
from brainmets.synth.check import (
    COUNT_NAMES,
    LARGE_LESION_MM,
    TARGETS,
    VOLUME_LABELS,
    VOLUME_TOLERANCE,
    TruthCheck,
    check_workspace,
)

TRUTH_FILE = "truth.json"
#: ``synthetic_truth`` value that turns the check off
OFF = "none"
#: count column of the features -> label of the volume checks
COUNT_LABEL: dict[str, str] = dict(zip(COUNT_NAMES, VOLUME_LABELS, strict=True))
#: target -> how the report names it
TARGET_NAMES: dict[str, str] = {
    "counts_exact": "Component counts exact (patient x label cells)",
    "volumes_within": "Lesion volumes within tolerance (lesion x label)",
    "core_dice_median": "Median per-lesion core Dice",
    "infratentorial_exact": "Infratentorial flag exact (patients)",
}


def find_truth(root: Path, sources: Iterable[str | Path], setting: str | None = "") -> Path | None:
    """The synthetic cohort folder whose ``truth.json`` describes this workspace, or None.

    ``setting`` is the ``synthetic_truth`` parameter (see the module docstring); a folder or
    file given explicitly that holds no truth is None as well (the report then has no
    section, as for a hospital workspace).
    """
    text = str(setting or "").strip()
    if text.lower() == OFF:
        return None
    if text:
        p = Path(text).expanduser()
        p = p if p.is_absolute() else root / p
        folder = p.parent if p.name == TRUTH_FILE else p
        return folder if (folder / TRUTH_FILE).is_file() else None
    for src in sources:
        s = Path(src)
        for folder in (s, s.parent):
            if (folder / TRUTH_FILE).is_file():
                return folder
    return None


def workspace_sources(config: Mapping[str, Any]) -> list[str]:
    """The source folders registered in a workspace configuration."""
    return [str(s) for s in ((config.get("paths") or {}).get("sources") or [])]


def truth_check(
    root: Path, config: Mapping[str, Any], params: Mapping[str, Any]
) -> TruthCheck | None:
    """The workspace's results against the synthetic truth (None when there is none)."""
    folder = find_truth(root, workspace_sources(config), params.get("synthetic_truth"))
    return None if folder is None else check_workspace(folder, root)


def _ok(flag: bool) -> str:
    return "pass" if flag else "fail"


def _cm3(mm3: float) -> str:
    return fmt_num(mm3 / 1000.0, 3)


def truth_table(check: TruthCheck, ids: Mapping[str, str] | None = None) -> Table:
    """One row per patient and label: truth vs measured (``truth_check``)."""
    show = (lambda x: str(ids.get(x, x))) if ids else (lambda x: x)
    cols = [
        "Patient",
        "Label",
        "Components (truth)",
        "Components (measured)",
        "Count",
        "Volume truth (cm^3)",
        "Volume measured (cm^3)",
        "Lesion volumes within tolerance",
        "Volumes",
        "Infratentorial (truth / measured)",
        "Core Dice (median over lesions)",
    ]
    rows: list[list[Any]] = []
    for p in check.patients:
        dice = statistics.median(p.core_dice.values()) if p.core_dice else None
        infra = (
            f"{p.infratentorial_truth} / "
            f"{'?' if p.infratentorial_got is None else p.infratentorial_got}"
        )
        for count, label in COUNT_LABEL.items():
            vols = [v for v in p.volumes if v.label == label]
            got = p.counts_got.get(count)
            n_ok = sum(v.ok for v in vols)
            rows.append(
                [
                    show(p.patient_id),
                    f"{label} ({count})",
                    p.counts_truth[count],
                    "" if got is None else got,
                    _ok(got == p.counts_truth[count]),
                    _cm3(sum(v.truth_mm3 for v in vols)),
                    _cm3(sum(v.got_mm3 for v in vols)),
                    f"{n_ok}/{len(vols)}",
                    _ok(n_ok == len(vols)),
                    infra,
                    "-" if dice is None else f"{dice:.3f}",
                ]
            )
    for pid in check.missing:
        for count, label in COUNT_LABEL.items():
            rows.append(
                [show(pid), f"{label} ({count})", "", "no result", "fail", *[""] * 3, "fail"]
                + ["", ""]
            )
    large, small = VOLUME_TOLERANCE
    return Table(
        "truth_check",
        "Truth vs measured, per patient and label",
        cols,
        rows,
        note=(
            "Components: connected components per label (the features stage's ET_num, Nec_num, "
            "Edema_num), exact match required. Volumes: the measured voxels of each label are "
            "given to the nearest true lesion; a lesion's volume passes within "
            f"{large:.0%} (lesions >= {LARGE_LESION_MM:g} mm) or {small:.0%} (smaller); the "
            "volume columns sum the lesions. Core Dice: enhancing + necrosis per lesion, "
            "median over the patient's lesions. 'no result': an expected-included patient "
            "without published features and label map."
        ),
    )


def targets_table(check: TruthCheck) -> Table:
    """The cohort's measures against :data:`TARGETS` (``truth_check_targets``)."""
    measures = check.measures()
    failed = set(check.failed_targets())
    rows: list[list[Any]] = []
    for key, goal in TARGETS.items():
        m = measures[key]
        dice = key == "core_dice_median"
        rows.append(
            [
                TARGET_NAMES[key],
                "-" if m is None else (f"{m:.3f}" if dice else f"{m:.1%}"),
                f">= {goal:g}" if dice else f">= {goal:.0%}",
                "fail" if key in failed else "pass",
            ]
        )
    return Table(
        "truth_check_targets",
        "Measures against the targets",
        ["Measure", "Measured", "Target", "Result"],
        rows,
    )


def truth_section(check: TruthCheck, ids: Mapping[str, str] | None = None) -> Section:
    """The report section "Check against the synthetic truth"."""
    verdict = (
        "All targets are met."
        if check.ok
        else "Targets not met: "
        + (", ".join(TARGET_NAMES[k] for k in check.failed_targets()) or "missing results")
        + "."
    )
    return Section(
        "Check against the synthetic truth",
        [
            "This workspace was made from the synthetic cohort, whose truth (truth.json) knows "
            "every patient's lesions: the published features and label maps of the "
            f"{len(check.patients) + len(check.missing)} expected-included patients compared "
            "with it, in the published space (brainmets.synth.check). " + verdict,
            *[
                f"volumes within tolerance, {line.strip()}" if line.startswith("  ") else line
                for line in check.summary_lines()[:-1]
            ],
        ],
        tables=[truth_table(check, ids), targets_table(check)],
    )
