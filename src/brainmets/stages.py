"""The default brainmets pipeline, in data-flow order.

ingest -> deid -> classify -> convert -> preprocess -> segment -> features -> report -> export

Each stage package owns its stage definition (``<package>.stage.STAGE``).
"""

from __future__ import annotations

from brainmets.pipeline.stage import Pipeline, PipelineOutline, Stage, StageOutline
from brainmets.vocab import COHORT_STAGES, STAGE_ORDER

#: the ``[runner] pipeline`` spec of the default pipeline
DEFAULT_SPEC = "brainmets.stages:default_pipeline"

#: the stages in order (one definition: :data:`brainmets.vocab.STAGE_ORDER`)
ORDER = STAGE_ORDER


def _stages() -> dict[str, Stage]:
    from brainmets.classify.stage import STAGE as CLASSIFY
    from brainmets.convert.stage import STAGE as CONVERT
    from brainmets.deid.stage import STAGE as DEID
    from brainmets.export.stage import STAGE as EXPORT
    from brainmets.features.stage import STAGE as FEATURES
    from brainmets.ingest import STAGE as INGEST
    from brainmets.preprocess.stage import STAGE as PREPROCESS
    from brainmets.report.stage import STAGE as REPORT
    from brainmets.segment.stage import STAGE as SEGMENT

    stages = [INGEST, DEID, CLASSIFY, CONVERT, PREPROCESS, SEGMENT, FEATURES, REPORT, EXPORT]
    for s in stages:  # the vocabulary's scopes are what status shows without loading stages
        if (s.scope == "cohort") != (s.name in COHORT_STAGES):
            raise RuntimeError(f"stage {s.name} has scope {s.scope}; brainmets.vocab disagrees")
    return {s.name: s for s in stages}


def default_outline() -> PipelineOutline:
    """The default pipeline's stages by name and scope, without importing them
    (:data:`brainmets.vocab.STAGE_ORDER`, :data:`brainmets.vocab.COHORT_STAGES`)."""
    return PipelineOutline(
        tuple(
            StageOutline(name, "cohort" if name in COHORT_STAGES else "patient")
            for name in STAGE_ORDER
        )
    )


def default_pipeline() -> Pipeline:
    """Every stage, in :data:`ORDER`."""
    stages = _stages()
    return Pipeline(tuple(stages[name] for name in ORDER))
