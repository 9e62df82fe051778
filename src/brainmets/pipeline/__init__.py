"""Pipeline model and runner: stages, contexts, results, executors.

See ``docs/architecture.md`` for how data flows through the stages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainmets.pipeline.executors import (
        DaskExecutor,
        Executor,
        InlineExecutor,
        LocalExecutor,
        default_workers,
        make_executor,
    )
    from brainmets.pipeline.runner import Runner, RunSummary, fingerprint
    from brainmets.pipeline.stage import (
        Pipeline,
        Stage,
        StageContext,
        StageResult,
        load_pipeline,
    )
    from brainmets.pipeline.worker import StageOutcome, execute_stage

#: name -> the module defining it (imported on first use: ``brainmets status`` needs the
#: stage model, not the runner and its executors)
_WHERE = {
    **dict.fromkeys(
        ("DaskExecutor", "Executor", "InlineExecutor", "LocalExecutor", "make_executor"),
        "executors",
    ),
    "default_workers": "executors",
    **dict.fromkeys(("Runner", "RunSummary", "fingerprint"), "runner"),
    **dict.fromkeys(("Pipeline", "Stage", "StageContext", "StageResult", "load_pipeline"), "stage"),
    **dict.fromkeys(("StageOutcome", "execute_stage"), "worker"),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DaskExecutor",
    "Executor",
    "InlineExecutor",
    "LocalExecutor",
    "Pipeline",
    "RunSummary",
    "Runner",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StageResult",
    "default_workers",
    "execute_stage",
    "fingerprint",
    "load_pipeline",
    "make_executor",
]
