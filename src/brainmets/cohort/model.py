"""The cohort as the catalog records it: who was found, who has the four sequences, who is in
the dataset, and why every other patient is not.

:func:`load_cohort` reads the catalog (read-only) and the recorded stage outputs of every
patient and returns a :class:`Cohort`. It is the single definition of the dataset's
membership, used by the report and by the export (which never writes a patient that is not
:attr:`PatientRecord.included`).

Definitions (``docs/report_export.md``):

* **found**: every patient of the catalog (``patients``);
* **with all four sequences**: the classification stage (``sequence_stage``, default
  ``classify``) finished without excluding the patient: one study holds T1, T1c, T2, FLAIR;
* **included**: every required patient stage finished (``done``) and the patient is active;
  a result made from an upstream result that has since been replaced (its recorded
  ``inputs.upstream`` is no fingerprint the patient has now: ``stale`` in ``brainmets
  status``) does not count, so report and export leave the patient out until it is redone.
  The required stages are the patient stages of the workspace's pipeline (or the list given).

A patient that is not included has one reason: the first required stage, in pipeline order,
that did not finish — its exclusion reason, its error, what it waits for ("segment:
awaiting annotation: ..."), or "not processed" — else the review
(:mod:`brainmets.cohort.review`): a case a reviewer excluded is never included ("review:
excluded: <reason>"), and with ``[stages.export] require_review = true`` only approved cases
are ("review: pending (not reviewed yet)").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainmets.catalog import COHORT, Catalog, PatientCounts, StageRun
from brainmets.cohort.review import ReviewSettings, ReviewState, review_settings, review_states
from brainmets.vocab import IMAGE_SUFFIXES, PATIENT_STAGES, SEQUENCES

#: the four sequences, as classify names them, in the order the reports list them
SEQUENCE_CLASSES: tuple[str, ...] = SEQUENCES
#: patient stages of the default pipeline, used when the workspace's pipeline cannot be loaded
DEFAULT_PATIENT_STAGES: tuple[str, ...] = PATIENT_STAGES
#: preprocess output roles of the four images (the published collection's suffixes)
IMAGE_ROLES: tuple[str, ...] = IMAGE_SUFFIXES


@dataclass
class PatientRecord:
    """One patient of the catalog with what the report and the export need.

    Attributes:
        id: the pseudonymous patient ID.
        status: ``patients.status`` (``active`` / ``excluded``).
        excluded_reason: ``patients.excluded_reason`` (``"<stage>: <reason>"``) or None.
        runs: stage -> recorded run (this patient's).
        outputs: stage -> role -> absolute path of the recorded output.
        has_sequences: passed the sequence stage (all four pretreatment sequences).
        included: every required stage done, patient active, kept by the review.
        stopped_stage: the first required stage that did not finish, ``"review"`` when the
            review keeps the patient out (None when included).
        reason: why the patient is not included (None when included).
        selected: sequence class -> indexed DICOM header of the selected series (ms, mm).
        sidecars: sequence class -> BIDS sidecar of the converted series (seconds, mm).
        study_uid: the selected (pretreatment) study.
        review: the case's review state (:mod:`brainmets.cohort.review`).
    """

    id: str
    status: str = "active"
    excluded_reason: str | None = None
    runs: dict[str, StageRun] = field(default_factory=dict)
    outputs: dict[str, dict[str, Path]] = field(default_factory=dict)
    has_sequences: bool = False
    included: bool = False
    stopped_stage: str | None = None
    reason: str | None = None
    selected: dict[str, dict[str, Any]] = field(default_factory=dict)
    sidecars: dict[str, dict[str, Any]] = field(default_factory=dict)
    study_uid: str | None = None
    review: ReviewState = field(default_factory=lambda: ReviewState("pending", "not reviewed yet"))
    _features: dict[str, Any] | None = field(default=None, repr=False)

    def output(self, stage: str, role: str) -> Path | None:
        """Absolute path of a recorded output, or None."""
        return self.outputs.get(stage, {}).get(role)

    @property
    def features_doc(self) -> dict[str, Any] | None:
        """The recorded ``features.json`` (features, details, lesions, params), or None."""
        if self._features is None:
            p = self.output("features", "features")
            if p is None or not p.is_file() or "features" not in self.runs:
                return None
            if self.runs["features"].status != "done":
                return None
            self._features = json.loads(p.read_text())
        return self._features

    @property
    def features(self) -> dict[str, Any] | None:
        doc = self.features_doc
        return None if doc is None else dict(doc.get("features") or {})

    @property
    def lesions(self) -> list[dict[str, Any]]:
        doc = self.features_doc
        return [] if doc is None else list(doc.get("lesions") or [])

    @property
    def qc(self) -> dict[str, Any]:
        """Preprocessing QC values (the preprocess stage's metrics), possibly empty."""
        run = self.runs.get("preprocess")
        return dict(run.metrics) if run is not None and run.status == "done" else {}

    @property
    def qc_flags(self) -> list[str]:
        return [str(f) for f in (self.qc.get("flags") or [])]

    def images(self) -> dict[str, Path]:
        """Role (``t1n``, ``t1c``, ``t2w``, ``t2f``) -> preprocessed image, as recorded."""
        out = self.outputs.get("preprocess", {})
        return {r: out[r] for r in IMAGE_ROLES if r in out}

    @property
    def seg(self) -> Path | None:
        return self.output("segment", "seg")


@dataclass
class Cohort:
    """Every patient of a workspace, sorted by ID, and the stages that define inclusion.

    ``counts``: patient -> studies, series and de-identified instances the catalog records;
    ``files``: what became of the input files, ``(status, reason, files)`` grouped by status
    and reason (ingest and de-identification: deidentified, quarantined, rejected, duplicate,
    ...).
    """

    root: Path
    patients: list[PatientRecord]
    required_stages: list[str]
    sequence_stage: str = "classify"
    counts: dict[str, PatientCounts] = field(default_factory=dict)
    files: list[tuple[str, str | None, int]] = field(default_factory=list)
    review: ReviewSettings = field(default_factory=ReviewSettings)

    def review_counts(self, patients: Iterable[PatientRecord] | None = None) -> dict[str, int]:
        """Patients (default: every patient found) per review state, in the order of
        :data:`brainmets.cohort.review.REVIEW_STATES` (states nobody is in: 0)."""
        from brainmets.cohort.review import REVIEW_STATES

        out = dict.fromkeys(REVIEW_STATES, 0)
        for p in self.patients if patients is None else patients:
            out[p.review.state] = out.get(p.review.state, 0) + 1
        return out

    def totals(self, patients: Iterable[PatientRecord]) -> PatientCounts:
        """Studies, series and instances of ``patients`` together."""
        got = [self.counts.get(p.id) or PatientCounts(p.id) for p in patients]
        return PatientCounts(
            "",
            sum(c.studies for c in got),
            sum(c.series for c in got),
            sum(c.instances for c in got),
        )

    @property
    def found(self) -> list[PatientRecord]:
        return list(self.patients)

    @property
    def with_sequences(self) -> list[PatientRecord]:
        return [p for p in self.patients if p.has_sequences]

    @property
    def included(self) -> list[PatientRecord]:
        return [p for p in self.patients if p.included]

    @property
    def not_included(self) -> list[PatientRecord]:
        return [p for p in self.patients if not p.included]

    def get(self, patient_id: str) -> PatientRecord:
        for p in self.patients:
            if p.id == patient_id:
                return p
        raise KeyError(f"no patient {patient_id!r} in the catalog")


def workspace_patient_stages(config: Mapping[str, Any] | None) -> list[str]:
    """The patient-scope stages of a workspace's pipeline, in order (the default pipeline's
    when the configuration names none).

    A pipeline spec (``runner.pipeline``) that cannot be loaded raises ``ValueError`` naming
    the spec: the inclusion rule of a cohort must not silently become another pipeline's.
    """
    from brainmets.pipeline.stage import load_pipeline

    spec = str(((config or {}).get("runner") or {}).get("pipeline") or "")
    if not spec:
        return list(DEFAULT_PATIENT_STAGES)
    try:
        pipe = load_pipeline(spec)
    except Exception as exc:
        raise ValueError(
            f"runner.pipeline {spec!r} cannot be loaded ({type(exc).__name__}: {exc}); "
            "the cohort's required stages come from it"
        ) from exc
    return [s.name for s in pipe.stages if s.scope == "patient"]


def _reason(p: PatientRecord, stage: str) -> str:
    run = p.runs.get(stage)
    if run is None:
        return f"not processed by {stage}"
    if run.status == "excluded":
        reason = p.excluded_reason or run.error or "excluded"
        return reason if reason.startswith(f"{stage}: ") else f"{stage}: {reason}"
    if run.status == "failed":
        return f"{stage} failed: {run.error or 'unknown error'}"
    if run.status == "waiting":
        return f"{stage}: {run.error or 'waiting'}"
    return f"{stage} {run.status}"


def _missing_classes(text: str) -> list[str]:
    found: list[str] = []
    for m in re.finditer(r"lacks ([a-z0-9_, ]+?)(?:$|;|\.|\))", text):
        for part in re.split(r",\s*|\s+and\s+", m.group(1)):
            part = part.strip()
            if part and part not in found:
                found.append(part)
    return found


def reason_category(reason: str | None) -> str:
    """A short category of an exclusion reason, to count reasons across patients.

    ``classify: no study with all of ... lacks flair`` -> ``classify: missing flair``;
    ``preprocess failed: RegistrationFailed: ...`` -> ``preprocess failed: RegistrationFailed``.
    """
    if not reason:
        return ""
    stage, _, rest = reason.partition(": ")
    if stage.endswith(" failed"):
        return f"{stage}: {rest.split(':', 1)[0].strip()}" if rest else stage
    if not rest:
        return reason
    missing = _missing_classes(rest)
    if missing:
        return f"{stage}: missing {', '.join(missing)}"
    return f"{stage}: {rest.split(':', 1)[0].strip()}"


def load_cohort(
    root: str | Path,
    catalog: Catalog,
    required_stages: Sequence[str] | None = None,
    sequence_stage: str = "classify",
    review: ReviewSettings | None = None,
) -> Cohort:
    """Read every patient of the catalog (see the module docstring for the definitions).

    Args:
        root: the workspace root (recorded paths are relative to it).
        catalog: an open catalog (read-only is enough).
        required_stages: patient stages a patient must have finished to be included, in
            pipeline order (default: :data:`DEFAULT_PATIENT_STAGES`).
        sequence_stage: the stage whose success means "all four sequences".
        review: the approval rule and whether only approved cases are included (default:
            one approval; a reviewer's exclusion is always honoured).
    """
    root = Path(root)
    stages = list(required_stages or DEFAULT_PATIENT_STAGES)
    review = review or ReviewSettings()
    reviewed = review_states(catalog, review.rule)
    runs: dict[str, dict[str, StageRun]] = {}
    for r in catalog.stage_runs():
        if r.patient_id != COHORT:
            runs.setdefault(r.patient_id, {})[r.stage] = r
    outputs: dict[str, dict[str, dict[str, Path]]] = {}
    for out in catalog.output_files(cohort=False):
        outputs.setdefault(out.patient_id, {}).setdefault(out.stage, {})[out.role] = root / out.path
    selected: dict[str, dict[str, dict[str, Any]]] = {}
    studies: dict[str, str] = {}
    for se in catalog.selected_series():
        assert se.selected_as is not None
        selected.setdefault(se.patient_id, {})[se.selected_as] = dict(se.header)
        studies[se.patient_id] = se.study_uid

    patients: list[PatientRecord] = []
    for row in catalog.patients():
        pid = row.id
        p = PatientRecord(
            id=pid,
            status=row.status or "active",
            excluded_reason=row.excluded_reason,
            runs=runs.get(pid, {}),
            outputs=outputs.get(pid, {}),
        )
        seq_run = p.runs.get(sequence_stage)
        p.has_sequences = seq_run is not None and seq_run.status == "done"
        fingerprints = {r.fingerprint for r in p.runs.values() if r.fingerprint}
        for stage in stages:
            run = p.runs.get(stage)
            if run is None or run.status != "done":
                p.stopped_stage = stage
                p.reason = _reason(p, stage)
                break
            upstream = (run.inputs or {}).get("upstream")
            if upstream and upstream not in fingerprints:  # made from a result now replaced
                p.stopped_stage = stage
                p.reason = (
                    f"{stage}: stale (made from an earlier result of the stage before it; "
                    "run the pipeline again)"
                )
                break
        if p.stopped_stage is None and p.status == "excluded":
            p.stopped_stage = (p.excluded_reason or "").split(":", 1)[0] or None
            p.reason = p.excluded_reason or "excluded"
        p.review = reviewed.get(pid, p.review)
        if p.stopped_stage is None and not review.keeps(p.review):
            p.stopped_stage = "review"
            p.reason = p.review.as_reason()
        p.included = p.stopped_stage is None
        if p.has_sequences:
            p.selected = selected.get(pid, {})
            p.study_uid = studies.get(pid)
            p.sidecars = _sidecars(p)
        patients.append(p)
    return Cohort(
        root=root,
        patients=patients,
        required_stages=stages,
        sequence_stage=sequence_stage,
        counts=catalog.patient_counts(),
        files=catalog.source_file_reasons(),
        review=review,
    )


def _sidecars(p: PatientRecord) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    conv = p.outputs.get("convert", {})
    for cls in SEQUENCE_CLASSES:
        path = conv.get(f"{cls}_json")
        if path is None or not path.is_file():
            continue
        try:
            out[cls] = json.loads(path.read_text())
        except ValueError:
            continue
    return out


def open_cohort(
    root: str | Path,
    config: Mapping[str, Any] | None = None,
    required_stages: Iterable[str] | None = None,
    sequence_stage: str = "classify",
) -> Cohort:
    """Open the workspace's catalog read-only and :func:`load_cohort` it, with the review
    settings of ``config`` (:func:`brainmets.cohort.review.review_settings`)."""
    from brainmets.workspace import CATALOG_NAME

    root = Path(root)
    stages = list(required_stages or []) or workspace_patient_stages(config)
    settings = review_settings(config)
    cat = Catalog.open(root / CATALOG_NAME, readonly=True)
    try:
        return load_cohort(root, cat, stages, sequence_stage, settings)
    finally:
        cat.close()


def cohort_for(root: Path, config: Mapping[str, Any], params: Mapping[str, Any]) -> Cohort:
    """The workspace's cohort with the dataset's inclusion parameters (``required_stages``,
    ``sequence_stage``: the report stage's, ``[stages.report]``), as report and export read it."""
    return open_cohort(
        root,
        config,
        list(params.get("required_stages") or []),
        str(params.get("sequence_stage") or "classify"),
    )
