"""The default pipeline's stages travel to worker processes (the process pool and Dask
pickle them): every part of every stage must pickle, callbacks included."""

from __future__ import annotations

import pickle

from brainmets.stages import default_pipeline


def test_every_default_stage_pickles_and_keeps_its_callbacks() -> None:
    for stage in default_pipeline().stages:
        copy = pickle.loads(pickle.dumps(stage))
        assert copy.name == stage.name
        assert (copy.fingerprint_inputs is None) == (stage.fingerprint_inputs is None)
        if stage.fingerprint_inputs is not None:
            assert copy.fingerprint_inputs == stage.fingerprint_inputs or callable(
                copy.fingerprint_inputs
            )
