"""The pipeline runner: decides what to (re)run, dispatches tasks, records results.

Rules:

* A (patient, stage) is **skipped** when its last recorded run succeeded with the same
  fingerprint and its recorded outputs are still intact. The fingerprint hashes the stage's
  name, version and merged parameters, the fingerprint of the patient's previous stage,
  and (for stages that read outside inputs: sources, atlas, clinical sheet, annotations) a
  description of those inputs with their content hashes (:mod:`brainmets.pipeline.inputs`).
  A changed parameter, version or outside input therefore re-runs that stage and every
  later stage, and nothing before it. A stage whose outside inputs cannot be described
  fails for that patient with the reason; its later stages wait.
* Work is dispatched per patient, stage after stage, to an executor; a failing patient is
  recorded with its error and its later stages are left for the next run; other patients
  go on. A stage that returns an exclusion stops that patient's chain with the reason.
* A stage that returns ``waiting`` (it cannot run yet, e.g. segment before the patient's
  annotations are supplied) is recorded ``waiting`` with what it waits for. It is not a
  failure (the run stays ok); the patient's later stages are not run; the next run tries
  the stage again (a waiting result is never reused).
* Only this process writes the catalog, one transaction per finished stage. A run killed
  at any moment leaves at most some stage rows marked ``running`` (recovered as
  ``interrupted`` by the next run, under the workspace lock) and some ``.tmp-*`` files
  (removed); both are redone.
"""

from __future__ import annotations

import collections
import concurrent.futures.process as cfp
import hashlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

import brainmets
from brainmets.catalog import COHORT, Catalog, StageRun
from brainmets.fsutil import remove_stale_temporaries, sha256_file
from brainmets.logsetup import KIND, log_repeat_summary, reset_repeats
from brainmets.pipeline.executors import Executor, InlineExecutor
from brainmets.pipeline.inputs import InputContext, OutsideInputError
from brainmets.pipeline.stage import Pipeline, Stage, StageContext, canonical_json
from brainmets.pipeline.states import epoch_seconds
from brainmets.pipeline.worker import StageOutcome, execute_stage
from brainmets.workspace import Workspace

log = logging.getLogger("brainmets.runner")

REUSABLE = ("done", "excluded")


@dataclass
class RunSummary:
    """What a run did, per stage and status, with the failures and blocked patients.

    ``waiting`` lists the (patient, stage, what it waits for) that could not run yet: not
    failures, they leave :attr:`ok` true."""

    run_id: int
    counts: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    blocked: list[tuple[str, str, str]] = field(default_factory=list)
    waiting: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.blocked

    def count(self, stage: str, status: str) -> int:
        return self.counts[stage][status]


@dataclass
class _Chain:
    """Progress of one patient through a run."""

    pos: int = 0
    last_fp: str | None = None
    stopped: str | None = None  # why the chain ended early (excluded/failed/blocked/waiting)


#: outputs modified more than this long after their run ended are hash-checked on reuse
#: (file-system timestamps are coarse, and a worker's clock may run a little ahead)
MTIME_SLACK_S = 2.0


def fingerprint(payload: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


class Runner:
    """Runs (a selection of) a pipeline's stages over a workspace's patients.

    The caller holds the workspace lock for the duration of :meth:`run`.
    """

    def __init__(
        self,
        workspace: Workspace,
        pipeline: Pipeline,
        executor: Executor | None = None,
        *,
        console: Console | None = None,
        progress: bool | None = None,
        verify_hashes: bool = False,
        command: str | None = None,
    ) -> None:
        self.ws = workspace
        self.pipeline = pipeline
        self.executor = executor or InlineExecutor()
        self.console = console or Console(stderr=True)
        self.show_progress = self.console.is_terminal if progress is None else progress
        self.verify_hashes = verify_hashes
        self.command = command or " ".join(["brainmets", *sys.argv[1:]])

    # --------------------------------------------------------------------- API
    def run(
        self,
        stages: Sequence[str] | None = None,
        patients: Sequence[str] | None = None,
        force: Sequence[str] = (),
    ) -> RunSummary:
        """Run the selected stages (default all) for the selected patients (default all).

        Stages not selected must already be up to date for a patient to go past them;
        otherwise that patient is reported as blocked. ``force`` lists stages to redo even
        when up to date (later stages then follow through their fingerprints).
        """
        if not self.ws.locked:
            raise RuntimeError("Runner.run needs the workspace lock")
        for name in list(stages or []) + list(force):
            self.pipeline.get(name)  # unknown names fail early
        selected = set(stages or self.pipeline.names)
        self._force = set(force)
        cat = self.ws.catalog()
        reset_repeats()
        try:
            history = cat.runs()
            ended_badly = bool(history) and history[-1].status in ("running", "interrupted")
            recovered = cat.recover_interrupted()
            if recovered:
                log.warning("%d stage run(s) of an interrupted run will be redone", recovered)
            if recovered or ended_badly:
                # a killed run leaves temporaries anywhere it was writing; a run that ended
                # cleared those of its finished tasks (_clear_temporaries), so the whole tree
                # (millions of files in a large workspace) is walked only after a kill
                for folder in ("derivatives", "dicom", "exports"):
                    path = self.ws.config.path(folder)
                    if path.exists():
                        remove_stale_temporaries(path)
            run_id = cat.start_run(self.command, brainmets.__version__)
            summary = RunSummary(run_id=run_id)
            status = "failed"
            try:
                self._run(cat, selected, patients, summary)
                status = "done" if summary.ok else "failed"
            finally:
                cat.end_run(run_id, status)
            return summary
        finally:
            cat.close()
            log_repeat_summary(log)  # one line per kind of repeated warning

    # --------------------------------------------------------------- internals
    def _segments(self, selected: set[str]) -> list[list[Stage]]:
        """Consecutive patient stages grouped; stages after the last selected one dropped."""
        last = max(self.pipeline.index(n) for n in selected)
        segs: list[list[Stage]] = []
        for st in self.pipeline.stages[: last + 1]:
            if st.scope == "cohort" or not segs or segs[-1][0].scope == "cohort":
                segs.append([st])
            else:
                segs[-1].append(st)
        return segs

    def _run(
        self,
        cat: Catalog,
        selected: set[str],
        only_patients: Sequence[str] | None,
        summary: RunSummary,
    ) -> None:
        self._chains: dict[str, _Chain] = {}
        self._cohort_fp: str | None = None
        with self._progress_ctx() as progress:
            self._progress = progress
            overall = progress.add_task("[bold]all stages", total=None) if progress else None
            self._overall = overall
            for seg in self._segments(selected):
                if seg[0].scope == "cohort":
                    self._run_cohort(cat, seg[0], selected, summary)
                else:
                    pids = cat.patient_ids()
                    if only_patients is not None:
                        unknown = sorted(set(only_patients) - set(pids))
                        if unknown:
                            raise KeyError(f"unknown patient(s): {', '.join(unknown)}")
                        pids = [p for p in pids if p in set(only_patients)]
                    self._run_patients(cat, seg, pids, selected, summary)

    def _progress_ctx(self) -> Any:
        if not self.show_progress:
            import contextlib

            return contextlib.nullcontext(None)
        return Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )

    def _advance(self, task: Any, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(task, n)
            self._progress.advance(self._overall, n)

    def _add_task(self, name: str, total: int) -> Any:
        if self._progress is None:
            return None
        ov = self._progress.tasks[self._overall].total or 0
        self._progress.update(self._overall, total=ov + total)
        return self._progress.add_task(name, total=total)

    # ------------------------------------------------------------ fingerprints
    def _params(self, st: Stage) -> dict[str, Any]:
        return self.ws.config.stage_params(st.name, st.defaults)

    def _fingerprint(
        self, cat: Catalog, st: Stage, patient: str, upstream: Any
    ) -> tuple[str, dict[str, Any]]:
        """The stage's fingerprint, and what is recorded as its inputs.

        Recorded: the upstream fingerprint(s), a hash of the outside inputs, and the SHA-256
        of every earlier-stage output the stage can read.
        """
        params = self._params(st)
        extra = self._outside_inputs(cat, st, patient, params)
        payload = {
            "stage": st.name,
            "version": st.version,
            "params": params,
            "upstream": upstream,
            "extra": extra,
        }
        files = {
            f"{stage}/{role}": sha
            for stage, outs in self._input_outputs(cat, patient, st.name).items()
            for role, (_, sha, _) in outs.items()
        }
        recorded = {
            "upstream": upstream,
            "outside_inputs_sha256": fingerprint({"x": extra}),
            "files_sha256": files,
        }
        return fingerprint(payload), recorded

    def _outside_inputs(self, cat: Catalog, st: Stage, patient: str, params: dict[str, Any]) -> Any:
        """The stage's description of its outside inputs (see :mod:`.inputs`), given the
        merged parameters; a callback that raises is an :class:`OutsideInputError`."""
        if st.fingerprint_inputs is None:
            return None
        inp = InputContext(workspace=self.ws, catalog=cat, patient_id=patient, params=params)
        try:
            return st.fingerprint_inputs(inp)
        except Exception as exc:
            raise OutsideInputError(
                f"cannot describe the outside inputs of stage '{st.name}' for {patient}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _reusable(self, cat: Catalog, prev: StageRun | None, fp: str, st: Stage) -> bool:
        if prev is None or prev.status not in REUSABLE or prev.fingerprint != fp:
            return False
        if st.name in self._force:
            return False
        ended = epoch_seconds(prev.ended_at)
        for rel, sha, size in cat.stage_outputs(prev.patient_id, st.name).values():
            path = self.ws.abspath(rel)
            try:
                info = path.stat()
            except OSError:
                return False
            if not path.is_file() or info.st_size != size:
                return False
            # a file changed after the run that recorded it (same size: bytes overwritten)
            # is checked against its recorded hash: a damaged output is redone
            touched = ended is None or info.st_mtime > ended + MTIME_SLACK_S
            if (self.verify_hashes or touched) and sha256_file(path) != sha:
                return False
        return True

    def _input_outputs(
        self, cat: Catalog, patient: str, upto: str
    ) -> dict[str, dict[str, tuple[str, str, int]]]:
        """Recorded outputs of the stages before ``upto`` (this patient's and the cohort's)."""
        found: dict[str, dict[str, tuple[str, str, int]]] = {}
        for st in self.pipeline.stages:
            if st.name == upto:
                break
            owner = COHORT if st.scope == "cohort" else patient
            outs = cat.stage_outputs(owner, st.name)
            if outs:
                found[st.name] = outs
        return found

    def _inputs_for(self, cat: Catalog, patient: str, upto: str) -> dict[str, dict[str, str]]:
        return {
            stage: {role: rel for role, (rel, _, _) in outs.items()}
            for stage, outs in self._input_outputs(cat, patient, upto).items()
        }

    def _context(self, cat: Catalog, st: Stage, patient: str, run_id: int) -> StageContext:
        # a worker on another machine must not read the SQLite file (see patient_snapshot)
        remote = getattr(self.executor, "remote", False) and patient != COHORT
        return StageContext(
            patient_id=patient,
            stage=st.name,
            params=self._params(st),
            root=self.ws.root,
            config=self.ws.config.data,
            inputs=self._inputs_for(cat, patient, st.name),
            run_id=run_id,
            catalog_snapshot=cat.patient_snapshot(patient) if remote else None,
        )

    # ----------------------------------------------------------------- cohort
    def _run_cohort(self, cat: Catalog, st: Stage, selected: set[str], summary: RunSummary) -> None:
        task = self._add_task(st.name, 1)
        upstream = {
            "previous": self._cohort_fp,
            "patients": {p: (c.last_fp, c.stopped) for p, c in sorted(self._chains.items())},
        }
        try:
            fp, inputs = self._fingerprint(cat, st, COHORT, upstream)
        except OutsideInputError as exc:
            self._record(cat, st, _infrastructure_failure(COHORT, st, str(exc)), "", {}, summary)
            self._cohort_fp = None
            self._advance(task)
            return
        prev = cat.stage_run(COHORT, st.name)
        if self._reusable(cat, prev, fp, st):
            summary.counts[st.name]["skipped"] += 1
            self._cohort_fp = fp
            self._advance(task)
            return
        if st.name not in selected:
            # Patient stages do not depend on cohort stages' fingerprints: going on is safe,
            # the catalog holds what the cohort stage recorded last time.
            log.info("cohort stage '%s' is not selected and not up to date; not run", st.name)
            self._cohort_fp = None
            self._advance(task)
            return
        cat.mark_stage_running(COHORT, st.name, fp, summary.run_id)
        ctx = self._context(cat, st, COHORT, summary.run_id)
        outcome = execute_stage(st, ctx)  # cohort stages run in this process
        self._record(cat, st, outcome, fp, inputs, summary)
        self._cohort_fp = fp if outcome.status == "done" else None
        self._advance(task)

    # ---------------------------------------------------------------- patients
    def _run_patients(
        self,
        cat: Catalog,
        seg: list[Stage],
        pids: list[str],
        selected: set[str],
        summary: RunSummary,
    ) -> None:
        tasks = {st.name: self._add_task(st.name, len(pids)) for st in seg}
        for p in pids:
            self._chains.setdefault(p, _Chain())
            self._chains[p].pos = 0
        pending: dict[Any, tuple[str, Stage, str, dict[str, Any], int]] = {}
        ready = collections.deque(pids)
        capacity = max(1, self.executor.workers * 2)

        def finish_chain(p: str, why: str) -> None:
            chain = self._chains[p]
            for st in seg[chain.pos :]:
                self._advance(tasks[st.name])
            chain.pos = len(seg)
            chain.stopped = why

        def advance(p: str) -> None:
            chain = self._chains[p]
            while chain.pos < len(seg):
                st = seg[chain.pos]
                try:
                    fp, inputs = self._fingerprint(cat, st, p, chain.last_fp)
                except OutsideInputError as exc:
                    failure = _infrastructure_failure(p, st, str(exc))
                    self._record(cat, st, failure, "", {}, summary)
                    finish_chain(p, f"failed in {st.name}")
                    return
                prev = cat.stage_run(p, st.name)
                if self._reusable(cat, prev, fp, st):
                    assert prev is not None
                    summary.counts[st.name]["skipped"] += 1
                    chain.last_fp = fp
                    self._advance(tasks[st.name])
                    chain.pos += 1
                    if prev.status == "excluded":
                        summary.counts[st.name]["excluded"] += 1
                        finish_chain(p, f"excluded by {st.name}")
                        return
                    continue
                if st.name not in selected and prev is not None and prev.status == "waiting":
                    # not run now: still waiting, as far as the catalog knows (not blocked)
                    reason = (
                        f"{prev.error or 'waiting'} (as last recorded; run "
                        f"`brainmets {st.name}` or `brainmets run` once it can go on)"
                    )
                    summary.waiting.append((p, st.name, reason))
                    summary.counts[st.name]["waiting"] += 1
                    finish_chain(p, f"waiting in {st.name}")
                    return
                if st.name not in selected:
                    reason = (
                        f"'{st.name}' is not up to date for this patient; run "
                        f"`brainmets {st.name}` or `brainmets run`"
                    )
                    summary.blocked.append((p, st.name, reason))
                    summary.counts[st.name]["blocked"] += 1
                    finish_chain(p, reason)
                    return
                cat.mark_stage_running(p, st.name, fp, summary.run_id)
                ctx = self._context(cat, st, p, summary.run_id)
                handle = self.executor.submit(execute_stage, st, ctx)
                pending[handle] = (p, st, fp, inputs, 1)
                return

        def fill() -> None:
            while ready and len(pending) < capacity:
                advance(ready.popleft())

        fill()
        while pending:
            for handle in self.executor.wait_any(list(pending)):
                p, st, fp, inputs, attempt = pending.pop(handle)
                try:
                    outcome = self.executor.result(handle)
                except cfp.BrokenProcessPool as exc:
                    # every task of a broken pool fails with it: retry each once in the new
                    # pool, then, if the pool broke again, alone, so that only the task that
                    # kills its worker is recorded failed, not the neighbours it took down
                    reset = getattr(self.executor, "reset", None)
                    run_alone = getattr(self.executor, "run_alone", None)
                    if reset is None or run_alone is None:
                        outcome = _infrastructure_failure(p, st, f"worker process died: {exc}")
                    elif attempt < 2:
                        log.warning("worker process died; retrying %s/%s", p, st.name)
                        reset(handle)
                        ctx = self._context(cat, st, p, summary.run_id)
                        pending[self.executor.submit(execute_stage, st, ctx)] = (
                            p,
                            st,
                            fp,
                            inputs,
                            attempt + 1,
                        )
                        continue
                    else:
                        reset(handle)
                        log.warning("worker process died again; running %s/%s alone", p, st.name)
                        try:
                            outcome = run_alone(
                                execute_stage, st, self._context(cat, st, p, summary.run_id)
                            )
                        except cfp.BrokenProcessPool:
                            outcome = _infrastructure_failure(
                                p,
                                st,
                                "worker process died, also when the task ran alone (killed: "
                                "out of memory? see the system log): " + str(exc),
                            )
                except Exception as exc:  # executor-level failure (lost worker...)
                    outcome = _infrastructure_failure(p, st, f"{type(exc).__name__}: {exc}")
                self._record(cat, st, outcome, fp, inputs, summary)
                chain = self._chains[p]
                self._advance(tasks[st.name])
                chain.pos += 1
                if outcome.status == "done":
                    chain.last_fp = fp
                    ready.appendleft(p)  # keep going with this patient first
                elif outcome.status == "excluded":
                    chain.last_fp = fp
                    finish_chain(p, f"excluded by {st.name}")
                elif outcome.status == "waiting":
                    finish_chain(p, f"waiting in {st.name}")
                else:
                    finish_chain(p, f"failed in {st.name}")
            fill()

    # --------------------------------------------------------------- recording
    def _clear_temporaries(self, st: Stage, outcome: StageOutcome) -> None:
        """Remove what an earlier attempt of this task left half-written (a worker killed
        in the middle, whose task the pool or the Dask scheduler then ran again): in the
        task's own folder and beside its recorded outputs."""
        base = self.ws.config.path("derivatives")
        own = base / ("_cohort" if outcome.patient_id == COHORT else outcome.patient_id) / st.name
        folders = {own, *((self.ws.root / rel).parent for rel, _, _ in outcome.outputs.values())}
        for folder in folders:
            if folder.is_dir():
                remove_stale_temporaries(folder)

    def _record(
        self,
        cat: Catalog,
        st: Stage,
        outcome: StageOutcome,
        fp: str,
        inputs: dict[str, Any],
        summary: RunSummary,
    ) -> None:
        for rec in outcome.logs:
            level = logging.getLevelName(rec.get("level", "INFO"))
            fields = {k: v for k, v in rec.items() if k not in ("level", "message", "time")}
            extra = {"patient": outcome.patient_id, "stage": st.name, "fields": fields}
            kind = fields.pop(KIND, None)
            if kind:  # one of many alike: the console shows the first (logsetup)
                extra[KIND] = f"{st.name}: {kind}"
            log.log(
                level if isinstance(level, int) else logging.INFO,
                "%s %s: %s",
                outcome.patient_id,
                st.name,
                rec.get("message", ""),
                extra=extra,
            )
        tools = {"brainmets": brainmets.__version__, **outcome.tools}
        ok = outcome.status in REUSABLE
        cat.finish_stage_run(
            outcome.patient_id,
            st.name,
            status=outcome.status,
            fingerprint=fp if ok else None,
            started_at=outcome.started_at,
            duration_s=outcome.duration_s,
            error=outcome.error or outcome.exclude_reason or outcome.waiting_reason,
            params=self._params(st),
            tools=tools,
            inputs=inputs,
            metrics=outcome.metrics,
            outputs=outcome.outputs if ok else None,
            records=outcome.records if ok else None,
            run_id=summary.run_id,
        )
        if outcome.patient_id != COHORT:
            self._update_patient_status(cat, st, outcome)
        if ok:
            self._clear_temporaries(st, outcome)
        summary.counts[st.name][outcome.status] += 1
        if outcome.status == "waiting":
            reason = outcome.waiting_reason or "waiting"
            summary.waiting.append((outcome.patient_id, st.name, reason))
            log.info(
                "%s %s waiting: %s",
                outcome.patient_id,
                st.name,
                reason,
                extra={"patient": outcome.patient_id, "stage": st.name},
            )
        if outcome.status == "failed":
            summary.failures.append((outcome.patient_id, st.name, outcome.error or "failed"))
            log.error(
                "%s %s failed: %s",
                outcome.patient_id,
                st.name,
                outcome.error,
                extra={"patient": outcome.patient_id, "stage": st.name},
            )

    def _update_patient_status(self, cat: Catalog, st: Stage, outcome: StageOutcome) -> None:
        patient = cat.patient(outcome.patient_id)
        if patient is None:
            return
        tag = f"{st.name}: "
        with cat.transaction():
            if outcome.status == "excluded":
                cat.set_patient_status(
                    outcome.patient_id, "excluded", tag + (outcome.exclude_reason or "")
                )
            elif outcome.status == "done" and (patient.excluded_reason or "").startswith(tag):
                cat.set_patient_status(outcome.patient_id, "active", None)


def _infrastructure_failure(patient: str, st: Stage, message: str) -> StageOutcome:
    import datetime as _dt

    return StageOutcome(
        patient_id=patient,
        stage=st.name,
        status="failed",
        started_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds"),
        duration_s=0.0,
        error=message,
    )
