"""The default brainmets pipeline, in data-flow order.

ingest -> deid -> classify -> convert -> preprocess -> segment -> features -> report -> export

Stages whose implementation is still to come are listed with ``func=None`` and the issue
that tracks them: the CLI says so and exits non-zero, and ``brainmets run`` runs what
exists and names what is missing. Each stage package owns its stage definition.
"""

from __future__ import annotations

from brainmets.pipeline.stage import Pipeline, Stage


def _deid_stage() -> Stage:
    try:
        from brainmets.deid.stage import STAGE
    except ImportError:  # the de-identification engine is not available in this build
        return Stage("deid", None, summary="de-identify each patient's DICOM (PS3.15)", issue=4)
    return STAGE


PLANNED: dict[str, tuple[str, int]] = {
    "preprocess": ("co-register, register to SRI24, resample 1 mm, skull strip", 6),
    "segment": ("import annotations and fuse them into one label map", 7),
    "features": ("count and measure lesions; join clinical data", 7),
    "report": ("dataset descriptor: cohort, Table 1, figures", 8),
    "export": ("write the dataset layouts with checksums", 8),
}
COHORT_STAGES = {"report", "export"}


def default_pipeline() -> Pipeline:
    from brainmets.classify.stage import STAGE as CLASSIFY
    from brainmets.convert.stage import STAGE as CONVERT
    from brainmets.ingest import STAGE as INGEST

    stages = [INGEST, _deid_stage(), CLASSIFY, CONVERT]
    for name, (summary, issue) in PLANNED.items():
        scope = "cohort" if name in COHORT_STAGES else "patient"
        stages.append(Stage(name, None, scope=scope, summary=summary, issue=issue))
    return Pipeline(tuple(stages))
