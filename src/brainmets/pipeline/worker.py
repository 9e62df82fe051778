"""The function executed for one (patient, stage) in a worker process or Dask worker."""

from __future__ import annotations

import datetime as _dt
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brainmets.fsutil import sha256_file
from brainmets.logsetup import collect_warnings, warning_record
from brainmets.pipeline.stage import Stage, StageContext, StageResult


@dataclass
class StageOutcome:
    """What a worker sends back to the runner (picklable)."""

    patient_id: str
    stage: str
    status: str  # done | failed | excluded | waiting
    started_at: str
    duration_s: float
    error: str | None = None
    outputs: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    exclude_reason: str | None = None
    waiting_reason: str | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    host: str = ""


def execute_stage(stage: Stage, ctx: StageContext) -> StageOutcome:
    """Run one stage for one patient; never raises (a failure becomes an outcome)."""
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
    t0 = time.perf_counter()
    host = os.uname().nodename
    try:
        with collect_warnings() as caught:
            try:
                result = stage.func(ctx)
            finally:
                _log_warnings(ctx, caught)
        if not isinstance(result, StageResult):
            raise TypeError(f"stage {stage.name} returned {type(result).__name__}, not StageResult")
        outputs = {role: _describe_output(ctx.root, Path(p)) for role, p in result.outputs.items()}
        tools = dict(stage.tools() if stage.tools else {})
        tools.update(result.tools)
        return StageOutcome(
            patient_id=ctx.patient_id,
            stage=stage.name,
            status="waiting" if result.waiting else "excluded" if result.exclude else "done",
            started_at=started,
            duration_s=time.perf_counter() - t0,
            outputs=outputs,
            records=result.records,
            metrics=result.metrics,
            tools=tools,
            exclude_reason=None if result.waiting else result.exclude,
            waiting_reason=result.waiting,
            logs=ctx.logs,
            host=host,
        )
    except Exception as exc:  # a failing patient must not stop the others
        ctx.log("ERROR", f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        return StageOutcome(
            patient_id=ctx.patient_id,
            stage=stage.name,
            status="failed",
            started_at=started,
            duration_s=time.perf_counter() - t0,
            error=f"{type(exc).__name__}: {exc}",
            logs=ctx.logs,
            host=host,
        )


def _log_warnings(ctx: StageContext, caught: list[Any]) -> None:
    """The Python warnings a stage raised (pydicom's, say) as its log records, one per
    message and place, with how often; not printed to the worker's stderr."""
    seen: dict[tuple[str, str, int], list[Any]] = {}
    for w in caught:
        seen.setdefault((str(w.message), w.filename, w.lineno), []).append(w)
    for ws in seen.values():
        w = ws[0]
        text, fields = warning_record(w.message, w.category, w.filename, w.lineno)
        ctx.log("WARNING", text, count=len(ws), **fields)


def _describe_output(root: Path, path: Path) -> tuple[str, str, int]:
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise FileNotFoundError(f"stage reported output {path} but it does not exist")
    rel = os.path.relpath(path.resolve(), root.resolve())
    if rel.startswith(".."):
        raise ValueError(f"stage output {path} is outside the workspace {root}")
    return rel, sha256_file(path), path.stat().st_size
