"""Run a workspace from Python: what the ``brainmets`` commands do, as functions that
return reports.

    >>> from brainmets import api
    >>> api.init("ws")                                   # doctest: +SKIP
    >>> api.ingest("ws", ["/mnt/pacs-export/batch1"])    # doctest: +SKIP
    >>> rep = api.run("ws", workers=8)                   # doctest: +SKIP
    >>> rep.ok, rep.failures                             # doctest: +SKIP
    >>> api.status("ws").excluded                        # doctest: +SKIP

Each function takes a workspace folder or an open :class:`~brainmets.workspace.Workspace`
and returns a report (a dataclass); none prints and none exits. Progress bars go to
``console`` when ``progress`` is true. Problems are raised: ``WorkspaceError`` /
``CatalogError`` / ``ConfigError`` (workspace missing, locked, newer schema, bad config),
``KeyError`` / ``ValueError`` (unknown stage, bad argument), ``FileNotFoundError``. A
patient or stage that fails is not an exception: it is in the report (``ok`` is false).
The ``brainmets`` command line calls these functions and prints their reports.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from brainmets.workspace import Workspace

if TYPE_CHECKING:
    from rich.console import Console

    from brainmets.catalog import PatientRow, SourceFile, StageRun
    from brainmets.cohort.review import ReviewState
    from brainmets.deid.verify import VerifyReport
    from brainmets.pipeline import Pipeline, RunSummary
    from brainmets.pipeline.stage import PipelineOutline
    from brainmets.pipeline.states import StageState
    from brainmets.synth.check import TruthCheck
    from brainmets.synth.cohort import CohortSummary

__all__ = [
    "DemoReport",
    "ExportStatus",
    "InitReport",
    "RunReport",
    "StatusReport",
    "demo",
    "ingest",
    "init",
    "run",
    "status",
]

#: a workspace folder or an open workspace
WorkspaceLike = Workspace | str | os.PathLike[str]

#: source-file statuses that ``status`` lists one by one (the files not taken in)
NOT_TAKEN = ("rejected", "quarantined", "duplicate", "vanished")


def _workspace(workspace: WorkspaceLike) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace.open(workspace)


def pipeline_of(workspace: WorkspaceLike) -> Pipeline:
    """The pipeline the workspace runs (``[runner] pipeline`` of its config)."""
    from brainmets.pipeline import load_pipeline

    return load_pipeline(_workspace(workspace).config.data["runner"]["pipeline"])


def outline_of(workspace: WorkspaceLike) -> PipelineOutline:
    """The workspace's pipeline by stage name and scope: the default pipeline's without
    importing its stages (so ``status`` does not load the imaging libraries), any other
    pipeline's by loading it."""
    from brainmets.stages import DEFAULT_SPEC, default_outline

    ws = _workspace(workspace)
    if ws.config.data["runner"]["pipeline"] == DEFAULT_SPEC:
        return default_outline()
    return pipeline_of(ws).outline()


# --------------------------------------------------------------------------- init
@dataclass(frozen=True)
class InitReport:
    """What :func:`init` created."""

    root: Path
    config: Path
    catalog: Path
    key_file: Path


def init(
    directory: str | os.PathLike[str], atlas: str | os.PathLike[str] | None = None
) -> InitReport:
    """Create a workspace: config, catalog, secret key (mode 0600) and data folders;
    ``atlas``: an SRI24 folder to record in the config."""
    ws = Workspace.init(directory, str(atlas) if atlas else None)
    return InitReport(
        root=ws.root,
        config=ws.root / "brainmets.toml",
        catalog=ws.catalog_path,
        key_file=ws.config.key_file,
    )


# ---------------------------------------------------------------------------- run
@dataclass(frozen=True)
class RunReport:
    """What :func:`run` (or :func:`ingest`) did: the runner's summary and the pipeline.

    ``summary.counts[stage][status]`` counts done / skipped / excluded / waiting / failed /
    blocked; ``failures``, ``blocked`` and ``waiting`` are ``(patient, stage, message)``
    (waiting: what the stage waits for, e.g. "awaiting annotation: ..."; not a failure).
    """

    workspace: Path
    pipeline: Pipeline
    summary: RunSummary

    @property
    def ok(self) -> bool:
        """No patient failed or was blocked (waiting and excluded patients are fine)."""
        return self.summary.ok

    @property
    def failures(self) -> list[tuple[str, str, str]]:
        return self.summary.failures

    @property
    def blocked(self) -> list[tuple[str, str, str]]:
        return self.summary.blocked

    @property
    def waiting(self) -> list[tuple[str, str, str]]:
        return self.summary.waiting

    def count(self, stage: str, status: str) -> int:
        return self.summary.count(stage, status)


def run(
    workspace: WorkspaceLike,
    stages: Sequence[str] | None = None,
    *,
    patients: Sequence[str] | None = None,
    force: Sequence[str] = (),
    workers: int = 0,
    scheduler: str = "",
    console: Console | None = None,
    progress: bool | None = False,
) -> RunReport:
    """Run ``stages`` (default: every stage) for ``patients`` (default: all), skipping
    what is up to date; ``force``: stages to redo anyway.

    ``workers`` (0: the config's, else all cores) and ``scheduler`` (a Dask address; "":
    the config's) choose the executor. Holds the workspace lock while it runs.
    ``progress``: show progress bars on ``console`` (None: when it is a terminal).

    Before anything runs, the workspace key is checked (:meth:`Workspace.checked_key`): a
    missing or unusable key file raises ``WorkspaceError``, another key than the one the
    workspace was created with ``KeyMismatch`` (a ``WorkspaceError``).
    """
    ws = _workspace(workspace)
    pipeline = pipeline_of(ws)
    for name in stages or ():
        pipeline.get(name)  # KeyError for an unknown stage
    from brainmets.pipeline import Runner, make_executor

    runner_cfg = ws.config.data["runner"]
    workers = workers or int(runner_cfg.get("workers") or 0)
    scheduler = scheduler or str(runner_cfg.get("scheduler") or "")
    with ws.lock():
        ws.checked_key(command=" ".join(stages) if stages else "run")
        executor = make_executor(workers or None, scheduler or None)
        try:
            runner = Runner(ws, pipeline, executor, console=console, progress=progress)
            summary = runner.run(list(stages) if stages else None, patients, list(force))
        finally:
            executor.close()
    return RunReport(ws.root, pipeline, summary)


def ingest(
    workspace: WorkspaceLike,
    sources: Iterable[str | os.PathLike[str]] = (),
    *,
    console: Console | None = None,
    progress: bool | None = False,
) -> RunReport:
    """Add ``sources`` (folders of DICOM files) to the workspace's config, then run the
    ``ingest`` stage, which accounts for every file in every source. The key is checked
    first (as :func:`run` does), so a refused key leaves the config unchanged."""
    ws = _workspace(workspace)
    with ws.lock():
        ws.checked_key(command="ingest")
        for src in sources:
            if not Path(src).exists():
                raise FileNotFoundError(f"{src}: no such folder")
            ws.config.add_source(Path(src))
        ws.config.save()
    return run(ws, ["ingest"], console=console, progress=progress)


# ------------------------------------------------------------------------- status
@dataclass(frozen=True)
class ExportStatus:
    """A recorded export folder (``target``: relative to the workspace when inside it) and
    what changed in the workspace since it was written (empty: it is current)."""

    target: str
    layout: str
    exported_at: str
    patients: int
    changes: list[str]

    @property
    def stale(self) -> bool:
        return bool(self.changes)


@dataclass(frozen=True)
class StatusReport:
    """A workspace's state: its patients, each (patient, stage) run and the input files.

    ``runs`` holds the cohort stages under the patient ID :data:`brainmets.catalog.COHORT`,
    as the catalog records them; ``states`` what each means now
    (:mod:`brainmets.pipeline.states`: a ``running`` row whose command has ended is
    ``interrupted``, a result made from an upstream result that is no longer current is
    ``stale``); ``included`` the patients in the dataset now (active, every required stage
    shown ``done``); ``exports`` the recorded export folders, most recent first, each with
    what changed since (the export stage is shown ``stale`` when its latest export is);
    ``review`` the review state of each patient with a label map or a decision
    (:mod:`brainmets.cohort.review`; a case a
    reviewer excluded is not ``included``, nor, with ``require_review``, one not approved:
    those are ``left_out_by_review``);
    ``files`` counts input files by status; ``not_taken`` lists those rejected,
    quarantined, duplicate or vanished. ``key_problem``: why the commands that use the key
    would refuse it (missing, unusable, not the workspace's key), None when they would not.
    """

    workspace: Path
    pipeline: PipelineOutline
    patients: list[PatientRow]
    runs: list[StageRun]
    files: dict[str, int]
    not_taken: list[SourceFile]
    key_problem: str | None = None
    states: dict[tuple[str, str], StageState] = field(default_factory=dict)
    included: list[str] = field(default_factory=list)
    exports: list[ExportStatus] = field(default_factory=list)
    review: dict[str, ReviewState] = field(default_factory=dict)
    require_review: bool = False
    left_out_by_review: list[str] = field(default_factory=list)

    def review_counts(self) -> dict[str, int]:
        """Patients per review state (every state, 0 when nobody is in it)."""
        from brainmets.cohort.review import REVIEW_STATES

        out = dict.fromkeys(REVIEW_STATES, 0)
        for st in self.review.values():
            out[st.state] = out.get(st.state, 0) + 1
        return out

    def run(self, patient_id: str, stage: str) -> StageRun | None:
        """The recorded run of ``stage`` for ``patient_id`` (None when it never ran)."""
        return next((r for r in self.runs if r.patient_id == patient_id and r.stage == stage), None)

    def state(self, patient_id: str, stage: str) -> str | None:
        """What the run of ``stage`` for ``patient_id`` means now (None when it never ran)."""
        st = self.states.get((patient_id, stage))
        if st is not None:
            return st.state
        r = self.run(patient_id, stage)
        return r.status if r is not None else None

    @property
    def excluded(self) -> list[PatientRow]:
        return [p for p in self.patients if p.status == "excluded"]

    @property
    def errors(self) -> list[StageRun]:
        """Runs that failed or were interrupted (a ``running`` row whose command has ended
        is given with status ``interrupted`` and the reason as its error)."""
        out = []
        for r in self.runs:
            st = self.states.get((r.patient_id, r.stage))
            if st is not None and st.state != r.status:
                if st.state != "interrupted":
                    continue
                r = dataclasses.replace(r, status=st.state, error=st.reason)
            if r.status in ("failed", "interrupted"):
                out.append(r)
        return out

    @property
    def waiting(self) -> list[StageState]:
        """Patient stages shown ``waiting`` (they could not run yet, e.g. "awaiting
        annotation: ..." at segment), with what they wait for as the reason."""
        return sorted(
            (s for s in self.states.values() if s.state == "waiting"),
            key=lambda s: (s.patient_id, s.stage),
        )

    @property
    def waiting_patients(self) -> dict[str, str]:
        """Active patients not included because a stage waits: patient -> what for, the
        reason's first part (``"awaiting annotation"``)."""
        out: dict[str, str] = {}
        for s in self.waiting:
            if s.patient_id in self.included or s.patient_id in self.failed_patients:
                continue
            if any(p.id == s.patient_id and p.status == "excluded" for p in self.patients):
                continue
            out.setdefault(s.patient_id, (s.reason or "waiting").split(":", 1)[0])
        return out

    @property
    def stale(self) -> list[StageState]:
        """Recorded results shown ``stale``, with the reason."""
        return [s for s in self.states.values() if s.state == "stale"]

    @property
    def failed_patients(self) -> list[str]:
        """Active patients not included because a stage failed or was interrupted."""
        bad = {r.patient_id for r in self.errors}
        return [
            p.id
            for p in self.patients
            if p.id in bad and p.status != "excluded" and p.id not in self.included
        ]


def _required_stages(ws: Workspace, pipeline: Pipeline | PipelineOutline) -> list[str]:
    """The stages that define "included": the report stage's ``required_stages`` (as the
    report and export read them: ``[stages.report]``, default none), else every patient
    stage of the pipeline."""
    names = [s.name for s in pipeline.stages if s.scope == "patient"]
    if "report" in pipeline.names:
        given = (ws.config.data.get("stages", {}).get("report") or {}).get("required_stages")
        if given:
            return [str(s) for s in given]
    return names


def status(workspace: WorkspaceLike) -> StatusReport:
    """What the catalog records about the workspace, and what it means now (read-only;
    takes no lock). A key that would be refused is reported (``key_problem``), not raised:
    status does not use it."""
    from brainmets.catalog import COHORT
    from brainmets.cohort.review import review_settings, review_states
    from brainmets.pipeline.states import StageState, changes_since, included_patients, stage_states

    ws = _workspace(workspace)
    pipeline = outline_of(ws)
    settings = review_settings(ws.config.data)
    cat = ws.catalog(readonly=True)
    try:
        patients = cat.patients()
        review = review_states(cat, settings.rule)
        runs = cat.stage_runs(summary=True)  # without the JSON columns status does not use
        states = stage_states(pipeline, runs, cat.runs())
        records = cat.exports()
        decisions = cat.review_decisions()
        exports = [
            ExportStatus(
                e.target,
                e.layout,
                e.exported_at,
                e.patients,
                changes_since(e.stage_runs, runs, e.stage)
                + [  # a review decision since can change who is in the dataset
                    f"review: {d.decision} {d.patient_id} by {d.user_name} at {d.decided_at}"
                    for d in decisions
                    if d.decided_at > e.exported_at
                ],
            )
            for e in records
        ]
        if exports and exports[0].stale:
            key = (COHORT, records[0].stage)
            shown = states.get(key)
            if shown is not None and shown.state == "done":
                states[key] = StageState(
                    COHORT,
                    records[0].stage,
                    "stale",
                    shown.recorded,
                    f"the export in {exports[0].target} was made before the workspace changed "
                    f"({len(exports[0].changes)} stage run(s) differ: "
                    f"{exports[0].changes[0]}...)",
                )
        done = included_patients(patients, states, _required_stages(ws, pipeline))
        # a patient with nothing to review (no label map, no decision) is not counted
        labelled = {o.patient_id for o in cat.output_files(stage="segment", role="seg")}
        review = {pid: st for pid, st in review.items() if pid in labelled or st.last is not None}
        return StatusReport(
            workspace=ws.root,
            pipeline=pipeline,
            patients=patients,
            runs=runs,
            files=cat.source_file_counts(),
            not_taken=cat.source_files(statuses=NOT_TAKEN),
            key_problem=ws.key_problem(),
            states=states,
            included=[pid for pid in done if pid not in review or settings.keeps(review[pid])],
            exports=exports,
            review=review,
            require_review=settings.require_review,
            left_out_by_review=[
                pid for pid in done if pid in review and not settings.keeps(review[pid])
            ],
        )
    finally:
        cat.close()


# --------------------------------------------------------------------------- demo
@dataclass
class DemoReport:
    """What :func:`demo` did, filled in step by step (``on_step`` sees it as it grows).

    ``cohort`` is None when an existing synthetic cohort was used; ``deid_check`` is None
    when the pipeline wrote no de-identified files; ``truth_check`` (the published features
    and label maps against the cohort's truth) None when there is nothing to compare;
    ``report`` the HTML report, if any.
    """

    directory: Path
    cohort_dir: Path
    workspace_dir: Path
    cohort: CohortSummary | None = None
    cohort_seconds: float = 0.0
    run: RunReport | None = None
    status: StatusReport | None = None
    deid_check: VerifyReport | None = None
    truth_check: TruthCheck | None = None
    report: Path | None = None
    steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The pipeline ran without failures and the de-identified files leak nothing (and the
        leak check could check everything). The truth check is a measurement, reported with
        its targets met or not (``truth_check.ok``), not part of this verdict."""
        run_ok = self.run is not None and self.run.ok
        check = self.deid_check
        return run_ok and (check is None or (check.ok and check.complete))


#: the steps of :func:`demo`, in order, as ``on_step`` names them ("cohort" only when
#: the cohort is generated, "deid-check" only when there are de-identified files,
#: "truth-check" only when there is a truth and a pipeline with segment and features)
DEMO_STEPS = ("cohort", "workspace", "pipeline", "status", "deid-check", "truth-check")


def demo(
    directory: str | os.PathLike[str] = "brainmets-demo",
    patients: int = 6,
    seed: int = 0,
    workers: int = 0,
    *,
    console: Console | None = None,
    progress: bool | None = False,
    on_step: Callable[[str, DemoReport], None] | None = None,
) -> DemoReport:
    """The whole pipeline on a synthetic cohort (no patient data needed).

    Generates ``patients`` synthetic patients into ``DIRECTORY/cohort`` (unless a cohort is
    there already), sets up ``DIRECTORY/workspace`` to read it, runs every stage, checks
    the de-identified files against the originals and the results against the truth.
    ``on_step(step, report)`` is called as each step of :data:`DEMO_STEPS` begins.
    """
    from brainmets import demo as _demo

    root = Path(directory).resolve()
    rep = DemoReport(root, root / _demo.COHORT_DIR, root / _demo.WORKSPACE_DIR)

    def step(name: str) -> None:
        rep.steps.append(name)
        if on_step is not None:
            on_step(name, rep)

    if not _demo.has_cohort(rep.cohort_dir):
        step("cohort")
        rep.cohort, rep.cohort_seconds = _demo.make_cohort(rep.cohort_dir, patients, seed, workers)
    step("workspace")
    ws = _demo.prepare_workspace(rep.workspace_dir, rep.cohort_dir)
    step("pipeline")
    rep.run = run(ws, workers=workers, console=console, progress=progress)
    rep.status = status(ws)
    step("status")
    if _demo.deidentified_dir(ws) is not None:
        step("deid-check")
        rep.deid_check = _demo.check_deidentification(rep.cohort_dir, ws)
    truth = _demo.check_against_truth(rep.cohort_dir, ws)
    if truth is not None:
        step("truth-check")
        rep.truth_check = truth
    rep.report = _demo.report_file(ws)
    return rep
