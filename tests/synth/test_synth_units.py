"""Unit tests of the generator's building blocks (no cohort needed)."""

from __future__ import annotations

import numpy as np

from brainmets.synth.dicom_writer import make_uid
from brainmets.synth.font import render_text
from brainmets.synth.geometry import (
    LPS_FROM_RAS,
    Grid,
    exact_reorient,
    make_grid,
    resample,
    rotation_angle_deg,
    rotation_xyz,
)


def test_uid_deterministic_and_valid():
    a = make_uid(0, "x", 1)
    assert a == make_uid(0, "x", 1) != make_uid(1, "x", 1)
    assert a.startswith("2.25.") and len(a) <= 64
    assert all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in a.split("."))


def test_axial_grid_orientation():
    g = make_grid("AX", np.eye(3), np.zeros(3), (4, 2), (1.0, 2.0), 3, 5.0)
    d = g.directions_lps()
    np.testing.assert_allclose(d[:, 0], [1, 0, 0])  # rows run towards the patient's left
    np.testing.assert_allclose(d[:, 1], [0, 1, 0])  # columns towards posterior
    np.testing.assert_allclose(d[:, 2], [0, 0, 1])  # slices towards superior
    np.testing.assert_allclose(g.spacing, [1.0, 2.0, 5.0])
    centre = g.affine @ np.array([1.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(centre[:3], 0.0, atol=1e-12)
    np.testing.assert_allclose(LPS_FROM_RAS @ LPS_FROM_RAS, np.eye(4))


def test_rotation_limit():
    r = rotation_xyz(10, 5, 3)
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert 10 < rotation_angle_deg(r) < 12


def test_resample_identity_and_shift():
    vol = np.random.default_rng(0).random((6, 7, 8)).astype(np.float32)
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    g = Grid((6, 7, 8), aff)
    np.testing.assert_allclose(resample(vol, aff, g, np.eye(4)), vol, atol=1e-6)
    shift = np.eye(4)
    shift[0, 3] = 1.0  # grid world x maps to source x + 1
    out = resample(vol, aff, g, shift)
    np.testing.assert_allclose(out[:-1], vol[1:], atol=1e-6)


def test_exact_reorient_flip():
    data = np.arange(24).reshape(2, 3, 4)
    a = np.diag([1.0, 1.0, 1.0, 1.0])
    b = a.copy()
    b[0, 0] = -1
    b[0, 3] = 1.0  # x flipped: voxel 0 of b is voxel 1 of a
    out = exact_reorient(data, a, b, (2, 3, 4))
    np.testing.assert_array_equal(out, data[::-1])


def test_font_renders():
    bm = render_text("AB 12")
    assert bm.shape == (7, 29) and bm.any()


def test_missing_nilearn_message(monkeypatch):
    import sys

    import pytest

    from brainmets.synth import anatomy

    monkeypatch.setitem(sys.modules, "nilearn", None)
    with pytest.raises(anatomy.TemplateError, match="nilearn"):
        anatomy._nilearn_data_dir()


def test_run_demo_data_rejects_bad_input(tmp_path, capsys):
    from brainmets.synth.cli import run_demo_data

    assert run_demo_data(tmp_path / "x", patients=0) == 2
    other = tmp_path / "not_a_cohort"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert run_demo_data(other, patients=1) == 1
    assert (other / "notes.txt").read_text() == "mine"


def test_clinical_defects_planted():
    import datetime as dt

    from brainmets.synth.clinical import make_clinical, make_identities, plant_defects

    rng = np.random.default_rng(0)
    idents = make_identities(3, 6)
    assert len({i.mrn for i in idents}) == 6
    recs = [make_clinical(rng, i, dt.date(2020, 1, 1), None) for i in idents]
    for r in recs:
        r.ethnicity = 0
    defects = plant_defects(np.random.default_rng(1), recs)
    cols = [d["column"] for d in defects]
    assert cols == ["Smoke", "Primary", "Ethnicity"]
    assert len({d["mrn"] for d in defects}) == 3


def test_explicit_atlas_dir_without_labels_is_an_error(tmp_path):
    import pytest

    from brainmets.synth.anatomy import TemplateError, get_template

    with pytest.raises(TemplateError, match="SRI24"):
        get_template(tmp_path, anatomy="sri24")
