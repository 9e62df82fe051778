"""The default brainmets pipeline, in data-flow order.

ingest -> deid -> classify -> convert -> preprocess -> segment -> features -> report -> export

Each stage package owns its stage definition (``<package>.stage.STAGE``).
"""

from __future__ import annotations

from brainmets.pipeline.stage import Pipeline, Stage
from brainmets.vocab import STAGE_ORDER

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
    return {s.name: s for s in stages}


def default_pipeline() -> Pipeline:
    """Every stage, in :data:`ORDER`."""
    stages = _stages()
    return Pipeline(tuple(stages[name] for name in ORDER))
