"""The MNI152 fallback anatomy (needs nilearn, the `template` extra)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nilearn")

pytestmark = pytest.mark.slow


def test_mni152_template_and_lesions():
    from brainmets.synth import lesions as L
    from brainmets.synth.anatomy import MNI_NAME, get_template

    t = get_template(None, anatomy="mni152")
    assert t.name == MNI_NAME
    assert t.original_shape == (197, 233, 189)
    brain = t.brain
    assert 1.0e6 < brain.sum() < 2.0e6  # ~1.5 l of brain at 1 mm
    assert (t.head >= brain).all()
    assert (t.head & ~brain).sum() > 5e5  # synthetic scalp and skull around it
    assert 0 < t.infratentorial.sum() < 0.2 * brain.sum()
    for kind in ("T1_GRE", "T2", "FLAIR"):
        img = t.normal_image(kind)
        m = [float(np.median(img[t.tissues == c])) for c in (1, 2, 3)]
        if kind == "T2":
            assert m[0] > m[1] > m[2]  # CSF bright on T2
        elif kind == "FLAIR":
            assert m[0] < m[2] < m[1]  # CSF dark, GM brighter than WM
        else:
            assert m[0] < m[1] < m[2]
    rng = np.random.default_rng(0)
    params = L.place_lesions(t, rng, 3, force_infratentorial=True)
    ls = L.rasterise_set(t, params)
    assert ((ls.labels > 0) <= brain).all()
    labels = t.crop_to_original(ls.labels)
    assert labels.shape == t.original_shape
    assert (labels > 0).sum() == (ls.labels > 0).sum()
