"""The cohort's required stages come from the workspace's pipeline; a broken spec is an error."""

from __future__ import annotations

import pytest

from brainmets.cohort.model import DEFAULT_PATIENT_STAGES, workspace_patient_stages


def test_patient_stages_of_the_configured_pipeline() -> None:
    config = {"runner": {"pipeline": "brainmets.pipeline.toy:pipeline"}}
    assert workspace_patient_stages(config) == ["make", "digest"]


def test_no_pipeline_configured_gives_the_default_stages() -> None:
    assert workspace_patient_stages(None) == list(DEFAULT_PATIENT_STAGES)
    assert workspace_patient_stages({"runner": {}}) == list(DEFAULT_PATIENT_STAGES)


@pytest.mark.parametrize(
    "spec",
    [
        "brainmets.pipeline.toy:no_such_pipeline",
        "brainmets_no_such_module:pipeline",
        "not-a-spec",
        "brainmets.vocab:PATIENT_STAGES",  # not a Pipeline
    ],
)
def test_a_broken_pipeline_spec_is_reported(spec: str) -> None:
    with pytest.raises(ValueError, match="runner.pipeline") as info:
        workspace_patient_stages({"runner": {"pipeline": spec}})
    assert repr(spec) in str(info.value)
