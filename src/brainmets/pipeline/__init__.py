"""Pipeline model and runner: stages, contexts, results, executors.

See ``docs/architecture.md`` for how data flows through the stages.
"""

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
