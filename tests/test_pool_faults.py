"""A local worker process that dies in the middle of a stage (the OOM killer, SIGKILL):
every task of the broken pool fails with it; the pool is replaced and the tasks retried,
then (if the pool broke again) each alone, so that only the task that kills its worker is
recorded failed, with the reason, and its neighbours are done (issue 15)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from brainmets.catalog import utcnow
from brainmets.fsutil import atomic_write_text
from brainmets.pipeline import LocalExecutor, Pipeline, Runner, Stage, StageContext, StageResult
from brainmets.workspace import Workspace

PATIENTS = ("P-1", "P-2", "P-3", "P-4", "P-5", "P-6")


def _enrol(ctx: StageContext) -> StageResult:
    return StageResult(records={"patients": [{"id": p, "created_at": utcnow()} for p in PATIENTS]})


def _work(ctx: StageContext) -> StageResult:
    if ctx.patient_id == "P-2":  # every attempt kills its worker (and the pool with it)
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.5)  # the neighbours are running when it does
    out = atomic_write_text(ctx.out_dir / "x.txt", ctx.patient_id)
    return StageResult(outputs={"x": out})


PIPELINE = Pipeline((Stage("enrol", _enrol, scope="cohort"), Stage("work", _work)))


def test_dead_pool_worker_fails_its_task_only(tmp_path: Path, caplog) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws = Workspace.open(ws.root)
    ex = LocalExecutor(2)
    try:
        with ws.lock():
            summary = Runner(ws, PIPELINE, ex, progress=False).run()
    finally:
        ex.close()
    with ws.catalog(readonly=True) as cat:
        runs = {r.patient_id: r for r in cat.stage_runs() if r.stage == "work"}
    assert sorted(runs) == list(PATIENTS)
    assert {p: r.status for p, r in runs.items()} == {
        p: "failed" if p == "P-2" else "done" for p in PATIENTS
    }
    assert "worker process died, also when the task ran alone" in str(runs["P-2"].error)
    assert [(p, s) for p, s, _ in summary.failures] == [("P-2", "work")]
    for p in PATIENTS:
        if p != "P-2":
            assert (ws.config.path("derivatives") / p / "work" / "x.txt").read_text() == p
    assert "worker process died; retrying P-2/work" in caplog.text
