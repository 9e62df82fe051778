"""The default brainmets pipeline, in data-flow order.

ingest -> deid -> classify -> convert -> preprocess -> segment -> features -> report -> export

Each stage package owns its stage definition (``<package>.stage.STAGE``). Stages whose
implementation is still to come are listed in :data:`PLANNED` with the issue that tracks
them: the CLI says so and exits non-zero, and ``brainmets run`` runs what exists and names
what is missing.
"""

from __future__ import annotations

from brainmets.pipeline.stage import Pipeline, Stage
from brainmets.vocab import COHORT_STAGES, STAGE_ORDER

#: the stages in order (one definition: :data:`brainmets.vocab.STAGE_ORDER`)
ORDER = STAGE_ORDER

#: stages not implemented yet: name -> (summary, issue)
PLANNED: dict[str, tuple[str, int]] = {}


def _implemented() -> dict[str, Stage]:
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
    implemented = _implemented()
    stages: list[Stage] = []
    for name in ORDER:
        if name in implemented:
            stages.append(implemented[name])
        else:
            summary, issue = PLANNED[name]
            scope = "cohort" if name in COHORT_STAGES else "patient"
            stages.append(Stage(name, None, scope=scope, summary=summary, issue=issue))
    return Pipeline(tuple(stages))
