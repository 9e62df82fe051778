"""Tests of the generator's named steps: the acquisition-parameter table, the study
planning steps (planning.py) and the per-patient steps (cohort.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from brainmets.synth import lesions as L
from brainmets.synth.acquisition import (
    PROTOCOLS,
    SCANNERS,
    Scanner,
    SeriesPlan,
    acquisition_params,
    choose_scanner,
    pick,
    protocol_for,
)
from brainmets.synth.clinical import make_identities
from brainmets.synth.cohort import (
    PatientJob,
    _fresh_stage,
    _publish,
    _write_context,
    draw_lesions,
    plan_visits,
)
from brainmets.synth.geometry import make_grid
from brainmets.synth.planning import (
    INSTITUTIONS,
    PatientTraits,
    StudyContext,
    acquisitions,
    draw_features,
    is_3d,
    localizer_grids,
    paired_grid,
    plan_study,
    post_contrast_derivatives,
    screenshot_series,
    series_contrast,
    series_kinds,
    series_noise,
    study_context,
    t1c_geometry,
    vocabulary_key,
)

# ---------------------------------------------------------------------------------------
# acquisition parameters: the data table must give what the if/elif chain gave


def _legacy_acquisition_params(
    kind: str, acq_type: str, scanner: Scanner, rng: np.random.Generator
) -> dict:
    """The if/elif table acquisition_params was before it became PROTOCOLS (verbatim)."""
    v = scanner.vendor
    f = scanner.field_t
    hi = f >= 2.9
    p: dict = {"EchoTrainLength": 1, "NumberOfAverages": 1.0}
    u = rng.uniform
    if kind == "FLAIR" and acq_type == "2D":
        p.update(
            RepetitionTime=u(8000, 11000),
            EchoTime=u(85, 140),
            InversionTime=u(2450, 2800) if hi else u(2200, 2500),
            FlipAngle=150.0 if v == "SIEMENS" else 90.0,
            EchoTrainLength=int(u(14, 25)),
            ScanningSequence="SE\\IR",
            SequenceVariant="SK\\SP\\MP\\OSP",
            ScanOptions="IR",
            SequenceName="*tir2d1_16" if v == "SIEMENS" else "IR",
        )
    elif kind == "FLAIR":
        p.update(
            RepetitionTime=u(4800, 6500),
            EchoTime=u(330, 420),
            InversionTime=u(1650, 1900),
            FlipAngle=120.0,
            EchoTrainLength=int(u(140, 240)),
            ScanningSequence="SE\\IR",
            SequenceVariant="SK\\SP\\MP",
            ScanOptions="IR",
            SequenceName="*spcir_278ns" if v == "SIEMENS" else "3D FLAIR",
        )
    elif kind in ("T1", "T1c") and acq_type == "3D":
        if v == "SIEMENS":
            p.update(
                RepetitionTime=u(1900, 2300),
                EchoTime=u(2.2, 3.5),
                InversionTime=u(900, 1100),
                FlipAngle=float(pick(rng, [8.0, 9.0])),
                ScanningSequence="GR\\IR",
                SequenceVariant="SK\\SP\\MP",
                ScanOptions="IR",
                SequenceName="*tfl3d1_16ns",
            )
        elif v == "GE":
            p.update(
                RepetitionTime=u(6.0, 9.0),
                EchoTime=u(2.4, 3.6),
                InversionTime=u(400, 650),
                FlipAngle=float(pick(rng, [12.0, 13.0, 15.0])),
                ScanningSequence="GR",
                SequenceVariant="SS\\SK",
                ScanOptions="FAST_GEMS\\EDR_GEMS\\IR_GEMS",
                SequenceName="efgre3d",
            )
        elif v == "PHILIPS":
            p.update(
                RepetitionTime=u(7.0, 9.5),
                EchoTime=u(3.0, 4.6),
                InversionTime=0.0,
                FlipAngle=8.0,
                ScanningSequence="GR",
                SequenceVariant="SK\\SS",
                ScanOptions="OTHER",
                SequenceName="T1TFE",
            )
        else:
            p.update(
                RepetitionTime=u(9.0, 12.0),
                EchoTime=u(3.0, 4.5),
                FlipAngle=u(10, 15),
                ScanningSequence="GR",
                SequenceVariant="SP",
                ScanOptions="",
                SequenceName="RSSG",
            )
    elif kind in ("T1", "T1c"):
        p.update(
            RepetitionTime=u(400, 650),
            EchoTime=u(8, 15),
            FlipAngle=70.0 if v == "GE" else 90.0,
            EchoTrainLength=int(pick(rng, [1, 2, 3])),
            ScanningSequence="SE",
            SequenceVariant="SK\\SP" if v != "HITACHI" else "NONE",
            ScanOptions="SAT1" if v == "SIEMENS" else "",
            SequenceName="*se2d1" if v == "SIEMENS" else "SE",
        )
    elif kind == "T2":
        p.update(
            RepetitionTime=u(3500, 6500),
            EchoTime=u(85, 110),
            FlipAngle=150.0 if v == "SIEMENS" else 90.0,
            EchoTrainLength=int(u(10, 21)),
            ScanningSequence="SE",
            SequenceVariant="SK\\SP\\OSP",
            ScanOptions="PFP",
            SequenceName="*tse2d1_15" if v == "SIEMENS" else "TSE",
        )
    elif kind in ("DWI", "ADC"):
        p.update(
            RepetitionTime=u(3000, 8000),
            EchoTime=u(60, 100),
            FlipAngle=90.0,
            ScanningSequence="EP",
            SequenceVariant="SK\\SP",
            ScanOptions="PFP\\FS",
            SequenceName="*ep_b1000t" if v == "SIEMENS" else "EPI",
        )
    elif kind == "SWI":
        p.update(
            RepetitionTime=u(27, 50),
            EchoTime=u(20, 40),
            FlipAngle=15.0,
            ScanningSequence="GR",
            SequenceVariant="SK\\SP\\OSP",
            ScanOptions="",
            SequenceName="*swi3d1r" if v == "SIEMENS" else "SWI",
        )
    elif kind == "LOC":
        p.update(
            RepetitionTime=u(7.5, 9.0),
            EchoTime=u(3.5, 4.8),
            FlipAngle=20.0,
            ScanningSequence="GR",
            SequenceVariant="SP",
            ScanOptions="",
            SequenceName="*fl2d1",
        )
    p["PixelBandwidth"] = float(round(u(130, 300) if acq_type == "2D" else u(150, 250), 1))
    for k in ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle"):
        if k in p:
            p[k] = round(float(p[k]), 2)
    return p


def _scanner(vendor: str, model: str, field_t: float) -> Scanner:
    info = SCANNERS[vendor]
    return Scanner(
        vendor, info["manufacturer"], model, field_t, info["software"][0], info["bits"], "c"
    )


ALL_SCANNERS = [
    _scanner(v, model, f) for v, info in SCANNERS.items() for model, f in info["models"]
]
KINDS = ("FLAIR", "T1", "T1c", "T2", "DWI", "ADC", "SWI", "LOC", "MPR", "SUB", "SC", "XX")


@pytest.mark.parametrize("acq", ["2D", "3D"])
@pytest.mark.parametrize("kind", KINDS)
def test_acquisition_params_match_legacy_chain(kind: str, acq: str) -> None:
    """Same values, types, key order and random draws for every scanner model."""
    for scanner in ALL_SCANNERS:
        for seed in range(4):
            rng_new, rng_old = np.random.default_rng(seed), np.random.default_rng(seed)
            new = acquisition_params(kind, acq, scanner, rng_new)
            old = _legacy_acquisition_params(kind, acq, scanner, rng_old)
            assert list(new.items()) == list(old.items()), (scanner, seed)
            assert [type(x) for x in new.values()] == [type(x) for x in old.values()]
            # the generator continues with the same stream
            assert rng_new.random() == rng_old.random()


def _params(kind: str, acq: str, scanner: tuple[str, str, float], seed: int) -> dict:
    return acquisition_params(kind, acq, _scanner(*scanner), np.random.default_rng(seed))


def test_acquisition_params_known_values() -> None:
    """Values captured from the if/elif implementation."""
    assert _params("FLAIR", "2D", ("SIEMENS", "Skyra", 3.0), 0) == {
        "EchoTrainLength": 14,
        "NumberOfAverages": 1.0,
        "RepetitionTime": 9910.89,
        "EchoTime": 99.84,
        "InversionTime": 2464.34,
        "FlipAngle": 150.0,
        "ScanningSequence": "SE\\IR",
        "SequenceVariant": "SK\\SP\\MP\\OSP",
        "ScanOptions": "IR",
        "SequenceName": "*tir2d1_16",
        "PixelBandwidth": 268.3,
    }
    # 1.5 T: the other inversion time range, the non-Siemens flip angle and name
    low = _params("FLAIR", "2D", ("GE", "Signa HDxt", 1.5), 0)
    assert (low["InversionTime"], low["FlipAngle"], low["SequenceName"]) == (2212.29, 90.0, "IR")
    assert _params("T1c", "3D", ("GE", "Signa HDxt", 1.5), 1) == {
        "EchoTrainLength": 1,
        "NumberOfAverages": 1.0,
        "RepetitionTime": 7.54,
        "EchoTime": 3.54,
        "InversionTime": 436.04,
        "FlipAngle": 15.0,
        "ScanningSequence": "GR",
        "SequenceVariant": "SS\\SK",
        "ScanOptions": "FAST_GEMS\\EDR_GEMS\\IR_GEMS",
        "SequenceName": "efgre3d",
        "PixelBandwidth": 181.2,
    }
    assert _params("T1", "2D", ("PHILIPS", "Achieva", 3.0), 2) == {
        "EchoTrainLength": 2,
        "NumberOfAverages": 1.0,
        "RepetitionTime": 465.4,
        "EchoTime": 10.09,
        "FlipAngle": 90.0,
        "ScanningSequence": "SE",
        "SequenceVariant": "SK\\SP",
        "ScanOptions": "",
        "SequenceName": "SE",
        "PixelBandwidth": 145.6,
    }
    hitachi = _params("T1c", "3D", ("HITACHI", "Echelon", 1.5), 3)
    assert "InversionTime" not in hitachi
    assert (hitachi["FlipAngle"], hitachi["SequenceName"]) == (14.01, "RSSG")
    assert _params("MPR", "3D", ("SIEMENS", "Prisma", 3.0), 4) == {
        "EchoTrainLength": 1,
        "NumberOfAverages": 1.0,
        "PixelBandwidth": 244.3,
    }


def test_protocol_lookup_first_match() -> None:
    """A vendor's own row wins over the any-vendor row; unknown kinds have none."""
    siemens = protocol_for("T1c", "3D", "SIEMENS")
    hitachi = protocol_for("T1", "3D", "HITACHI")
    assert siemens is not None and siemens.vendor == "SIEMENS"
    assert hitachi is not None and hitachi.vendor is None and hitachi.acq_type == "3D"
    t1_2d = protocol_for("T1", "2D", "SIEMENS")
    assert t1_2d is not None and t1_2d.acq_type is None
    flair3d = protocol_for("FLAIR", "3D", "GE")
    assert flair3d is not None and dict(flair3d.params)["FlipAngle"] == 120.0
    assert protocol_for("MPR", "3D", "GE") is None
    assert protocol_for("ADC", "2D", "GE") is protocol_for("DWI", "2D", "GE")
    # every row is reachable (no row hidden behind an earlier, wider one)
    for row in PROTOCOLS:
        for kind in row.kinds:
            acq = row.acq_type or ("2D" if kind != "FLAIR" else "3D")
            vendor = row.vendor or "HITACHI"
            assert protocol_for(kind, acq, vendor) is row


# ---------------------------------------------------------------------------------------
# planning steps

CENTRE = np.array([0.5, -17.3, 12.1])


def _feats(**kw: object) -> PatientTraits:
    f = PatientTraits(n_lesions=2)
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def _ctx(
    seed: int = 0, vendor: str = "SIEMENS", role: str = "baseline", **feats: object
) -> StudyContext:
    info = SCANNERS[vendor]
    model, field_t = info["models"][0]
    scanner = _scanner(vendor, model, field_t)
    ctx, _, _ = study_context(
        np.random.default_rng(seed), role, scanner, _feats(**feats), CENTRE, np.ones(3)
    )
    return ctx


def test_study_context_places_head() -> None:
    ctx, placement, info = study_context(
        np.random.default_rng(3),
        "followup",
        _scanner("GE", "x", 3.0),
        _feats(),
        CENTRE,
        np.ones(3),
    )
    assert ctx.followup and ctx.vendor == "GE" and ctx.rescale_slope == 1.0
    np.testing.assert_allclose(ctx.centre, (placement @ np.append(CENTRE, 1.0))[:3])
    assert ctx.head_pitch == info["rotation_deg_xyz"][0]
    assert 900 <= ctx.wm_value <= 2600  # GE stored values
    assert ctx.t1c_spec is None


def test_series_kinds() -> None:
    assert series_kinds(False, _feats()) == ["LOC", "T1", "T2", "FLAIR", "DWI", "T1c"]
    assert series_kinds(False, _feats(dwi=False, swi=True, missing=["T2"])) == [
        "LOC",
        "T1",
        "FLAIR",
        "SWI",
        "T1c",
    ]
    # a follow-up has a fixed protocol, whatever the baseline lacked
    fu = ["LOC", "T2", "FLAIR", "DWI", "T1c"]
    assert series_kinds(True, _feats(missing=["FLAIR"], swi=True)) == fu


def test_t1c_geometry() -> None:
    rng = np.random.default_rng(0)
    spec = t1c_geometry(rng, ["LOC", "T1c"], _feats(), "GE")
    assert spec is not None and spec.acq_type == "3D"
    state = rng.bit_generator.state
    assert t1c_geometry(rng, ["LOC", "T1c"], _feats(t1c_2d=True), "GE") is None
    assert t1c_geometry(rng, ["LOC", "T1"], _feats(), "GE") is None
    assert rng.bit_generator.state == state  # nothing drawn without a 3D T1c


def test_is_3d() -> None:
    f = _feats(t1_3d=True, flair_3d=True)
    assert is_3d("T1c", f, False, True) and not is_3d("T1c", f, False, False)
    assert is_3d("T1", f, False, True) and not is_3d("T1", f, False, False)
    assert not is_3d("T1", _feats(t1_3d=False), False, True)
    assert is_3d("FLAIR", f, False, False) and not is_3d("FLAIR", f, True, True)
    assert is_3d("SWI", _feats(), True, False)
    assert not any(is_3d(k, f, False, True) for k in ("LOC", "T2", "DWI"))


def test_names_contrasts_noise() -> None:
    assert [vocabulary_key(k, True) for k in ("FLAIR", "T1c", "T1", "T2")] == [
        "FLAIR3D",
        "T1c3D",
        "T13D",
        "T2",
    ]
    assert vocabulary_key("T1", False) == "T12D" and vocabulary_key("LOC", False) == "LOC"
    assert series_contrast("T1c", True) == "T1c_GRE" and series_contrast("T1", False) == "T1_SE"
    assert series_contrast("DWI", False) == "DWI_B1000"
    with pytest.raises(KeyError):
        series_contrast("SUB", False)
    assert series_noise("T2", "2D", 3.0) == 0.025
    assert series_noise("T1c", "3D", 1.5) == pytest.approx(0.03 * 1.35)
    assert series_noise("DWI", "2D", 1.5) == 0.05


def test_localizer_grids() -> None:
    grids = localizer_grids(np.random.default_rng(0), CENTRE)
    assert [g.shape for g in grids] == [(256, 256, 3)] * 3
    for g in grids:
        assert 18 <= g.spacing[2] <= 30
        centre = g.affine @ np.array([127.5, 127.5, 1.0, 1.0])
        np.testing.assert_allclose(centre[:3], CENTRE, atol=1e-9)


def _plan(kind: str, acq: str, number: int = 1) -> SeriesPlan:
    g = make_grid("AX", np.eye(3), CENTRE, (4, 4), (1.0, 1.0), 2, 1.0)
    return SeriesPlan(kind, "", number, kind, acq, "AX", [g], 1.0, 1.0, 0.0, 10.0)


def test_paired_grid() -> None:
    t1_3d, t1_2d, t1c_3d = _plan("T1", "3D"), _plan("T1", "2D"), _plan("T1c", "3D")
    assert paired_grid("T1c", True, [t1_3d]) is t1_3d.grid
    assert paired_grid("T1c", True, [t1_2d]) is None
    assert paired_grid("T1", True, [t1c_3d]) is t1c_3d.grid
    assert paired_grid("T1c", False, [t1_3d]) is None
    assert paired_grid("FLAIR", True, [t1_3d]) is None


def test_acquisitions_order_numbers_and_times() -> None:
    ctx = _ctx(1, vendor="PHILIPS", t1_3d=True)
    kinds = series_kinds(False, ctx.feats)
    ctx.t1c_spec = t1c_geometry(ctx.rng, kinds, ctx.feats, ctx.vendor)
    plans, end = acquisitions(ctx, kinds, 1000.0)
    assert [p.kind for p in plans] == ["LOC", "T1", "T2", "FLAIR", "DWI", "ADC", "T1c"]
    assert [p.series_number for p in plans] == [101, 201, 301, 401, 501, 601, 701]
    adc, dwi, t1, t1c = plans[5], plans[4], plans[1], plans[6]
    assert adc.derived_from == dwi.series_number and adc.grids is dwi.grids
    assert adc.time_s == dwi.time_s + 2.0
    assert t1.acq_type == t1c.acq_type == "3D" and t1.grid is t1c.grid  # subtractable
    assert plans[0].time_s == 1000.0
    acquired = [p for p in plans if p.kind != "ADC"]
    for a, b in zip(acquired, acquired[1:], strict=False):
        assert b.time_s >= a.time_s + a.duration_s + 15.0
    # the contrast injection (40-120 s) comes on top of the pause before the T1c
    assert t1c.time_s >= dwi.time_s + dwi.duration_s + 15.0 + 40.0
    assert end >= t1c.time_s + t1c.duration_s + 15.0
    assert t1c.post_contrast and not any(p.post_contrast for p in plans[:-1])


def test_post_contrast_derivatives_and_screenshot() -> None:
    t1, t1c = _plan("T1", "3D", 2), _plan("T1c", "3D", 3)
    ctx = _ctx(2, sub=True, mpr=True, screenshot=True)
    out = post_contrast_derivatives(ctx, [_plan("LOC", "2D"), t1, t1c])
    assert [(p.kind, p.series_number, p.derived_from) for p in out] == [
        ("SUB", 4, 3),
        ("MPR", 5, 3),
    ]
    assert out[0].grids is t1c.grids and out[1].orientation == "COR"
    assert post_contrast_derivatives(ctx, [_plan("T1", "2D", 2), t1c])[0].kind == "MPR"
    assert post_contrast_derivatives(ctx, [t1, _plan("T1c", "2D", 3)]) == []
    assert post_contrast_derivatives(_ctx(2, role="followup", sub=True), [t1, t1c]) == []
    sc = screenshot_series(ctx, [t1, t1c], 500.0)
    assert sc is not None and (sc.kind, sc.series_number, sc.time_s) == ("SC", 9003, 800.0)
    philips = screenshot_series(_ctx(2, vendor="PHILIPS", screenshot=True), [t1, t1c], 0.0)
    assert philips is not None and philips.series_number == 99901
    assert screenshot_series(_ctx(2, screenshot=False), [t1, t1c], 0.0) is None
    assert screenshot_series(ctx, [t1], 0.0) is None


def _plan_summary(seed: int, index: int, role: str = "baseline") -> tuple:
    rng_f = np.random.default_rng([seed, index, 1])
    feats = draw_features(rng_f, index, L.lesion_count(rng_f))
    rng = np.random.default_rng([seed, index, 2])
    scanner = choose_scanner(rng)
    s, _ = plan_study(
        rng, role, 0, dt.date(2020, 1, 2), scanner, feats, CENTRE, np.ones(3), 36000.0
    )
    series = [
        (
            p.kind,
            p.series_number,
            p.description,
            p.acq_type,
            p.orientation,
            p.grid.shape,
            p.derived_from,
        )
        for p in s.series
    ]
    return scanner.vendor, series, s.study_description, s.contrast_agent, float(rng.random())


def test_plan_study_known_plans() -> None:
    """Plans captured from plan_study before it was split into steps (same draws)."""
    assert _plan_summary(3, 0) == (
        "GE",
        [
            ("LOC", 1, "3 Plane Loc", "2D", "MULTI", (256, 256, 3), None),
            ("T1", 2, "SAG T1 BRAVO", "3D", "SAG", (256, 256, 166), None),
            ("T2", 3, "AX T2 FSE", "2D", "AX", (384, 312, 27), None),
            ("FLAIR", 4, "AX T2 FLAIR", "2D", "AX", (320, 260, 27), None),
            ("DWI", 5, "DWI ASSET", "2D", "AX", (128, 128, 21), None),
            ("ADC", 6, "Apparent Diffusion Coefficient (mm2/s)", "2D", "AX", (128, 128, 21), 5),
            ("SWI", 7, "Ax SWAN", "3D", "AX", (256, 224, 73), None),
            ("T1c", 8, "Sag 3D T1 MPRAGE +C", "3D", "SAG", (256, 256, 166), None),
            ("SUB", 9, "SUBTRACT +C", "3D", "SAG", (256, 256, 166), 8),
            ("MPR", 10, "COR T1 REFORMAT +C", "3D", "COR", (256, 256, 60), 8),
            ("SC", 9011, "SCREEN SAVE", "2D", "AX", (256, 256, 166), 8),
        ],
        "MRI BRAIN W WO CONTRAST",
        ("Dotarem", "gadoterate meglumine", 0.2),
        0.1796905098444609,
    )
    assert _plan_summary(8, 0) == (
        "PHILIPS",
        [
            ("LOC", 101, "SmartSurvey", "2D", "MULTI", (256, 256, 3), None),
            ("T1", 201, "T1W_3D_TFE", "3D", "AX", (256, 256, 157), None),
            ("T2", 301, "T2W_TSE_AX", "2D", "AX", (320, 280, 26), None),
            ("FLAIR", 401, "3D_FLAIR", "3D", "SAG", (256, 256, 164), None),
            ("SWI", 501, "SWIp", "3D", "AX", (256, 224, 67), None),
            ("T1c", 601, "3D_T1W_TFE_GD", "3D", "AX", (256, 256, 157), None),
            ("SUB", 701, "SUB_T1W_GD", "3D", "AX", (256, 256, 157), 601),
            ("SC", 99901, "Screen Save", "2D", "AX", (256, 256, 157), 601),
        ],
        "MRI BRAIN WITH AND WITHOUT GADOLINIUM",
        ("Gadovist", "gadobutrol", 0.1),
        0.007765766643980654,
    )
    assert _plan_summary(1, 1, "followup") == (
        "GE",
        [
            ("LOC", 1, "Localizer", "2D", "MULTI", (256, 256, 3), None),
            ("T2", 2, "AX T2 FSE", "2D", "AX", (320, 280, 27), None),
            ("FLAIR", 3, "AX FLAIR", "2D", "AX", (288, 260, 28), None),
            ("DWI", 4, "AX DWI 1000b", "2D", "AX", (160, 140, 27), None),
            ("ADC", 5, "ADC", "2D", "AX", (160, 140, 27), 4),
            ("T1c", 6, "AX 3D T1 BRAVO +C", "3D", "AX", (256, 256, 170), None),
        ],
        "MRI BRAIN WITH AND WITHOUT GADOLINIUM",
        ("MultiHance", "gadobenate dimeglumine", 0.2),
        0.7885520352258883,
    )


# ---------------------------------------------------------------------------------------
# per-patient steps (cohort.py)


@pytest.fixture(scope="module")
def template(atlas_dir: Path):
    from brainmets.synth.anatomy import get_template

    return get_template(None, "auto")


def _job(index: int, out: Path, seed: int = 11) -> PatientJob:
    ident = make_identities(seed, 3)[index]
    return PatientJob(index, seed, ident, str(out), None, "auto")


@pytest.mark.atlas
def test_draw_lesions_first_patient(template, tmp_path: Path) -> None:
    les = draw_lesions(_job(0, tmp_path), template)
    assert les.feats.n_lesions >= 4 and les.feats.screenshot and les.feats.force_pair
    assert len(les.stats) == len(les.lesion_set.params) == len(les.params)
    assert any(s["infratentorial"] for s in les.stats)
    assert set(np.unique(les.lesion_set.labels)) <= {0, L.NECROSIS, L.EDEMA, L.ENHANCING}
    again = draw_lesions(_job(0, tmp_path), template)
    np.testing.assert_array_equal(again.lesion_set.labels, les.lesion_set.labels)


@pytest.mark.atlas
def test_plan_visits_match_written_cohort(template, cohort, tmp_path: Path) -> None:
    """The planned studies are the ones the cohort fixture (seed 11) wrote."""
    truth = json.loads(cohort.truth_json.read_text())
    for index in range(3):
        job = _job(index, tmp_path)
        assert job.ident.mrn == truth["patients"][index]["mrn"]
        lesions = draw_lesions(job, template)
        visits = plan_visits(job, template, lesions)
        studies = truth["patients"][index]["studies"]
        assert len(visits.studies) == len(visits.lesion_sets) == len(visits.place_infos)
        assert [s.role for s in visits.studies] == [s["role"] for s in studies]
        for s, rec, info in zip(visits.studies, studies, visits.place_infos, strict=True):
            assert [(p.kind, p.series_number, p.description) for p in s.series] == [
                (r["kind"], r["series_number"], r["description"]) for r in rec["series"]
            ]
            assert s.study_description == rec["study_description"]
            assert s.lesion_scale == rec["lesion_scale"]
            assert info == {k: v for k, v in rec["placement"].items() if k != "template_to_scanner"}
            assert s.institution in INSTITUTIONS and s.station_name and s.device_serial.isdigit()
        assert visits.clinical.mrn == job.ident.mrn
    # patient 1 has a follow-up with shrunken lesions
    job = _job(1, tmp_path)
    lesions = draw_lesions(job, template)
    visits = plan_visits(job, template, lesions)
    base, fu = visits.lesion_sets
    scale = visits.studies[1].lesion_scale
    assert scale is not None and len(scale) == len(lesions.params)
    assert all(0.35 <= s <= 0.95 for s in scale)
    assert (fu.labels > 0).sum() < (base.labels > 0).sum()
    assert base is lesions.lesion_set


@pytest.mark.atlas
def test_write_context(template, tmp_path: Path) -> None:
    job = _job(0, tmp_path)
    visits = plan_visits(job, template, draw_lesions(job, template))
    ctx = _write_context(job, tmp_path, visits.studies, visits.clinical)
    assert set(ctx.accession) == {s.index for s in visits.studies}
    assert all(
        a.startswith("A") and len(a) == 9 and a[1:].isdigit() for a in ctx.accession.values()
    )
    # patient 0 carries every kind of identifying comment
    assert set(ctx.comments) == {"history", "patient_comments", "T1c", "FLAIR"}
    assert job.ident.mrn in ctx.comments["patient_comments"]
    assert ctx.planter.to_list() == []


def test_publish_moves_staging_into_place(tmp_path: Path) -> None:
    job = _job(0, tmp_path)
    mrn = job.ident.mrn
    stage = _fresh_stage(job)
    assert stage == tmp_path / ".staging" / mrn and stage.is_dir()
    (stage / "dicom" / mrn / "ST01").mkdir(parents=True)
    (stage / "dicom" / mrn / "ST01" / "x.dcm").write_bytes(b"new")
    (tmp_path / "dicom" / mrn / "old").mkdir(parents=True)  # a previous run's folder
    _publish(job, stage, f"truth/{mrn}", {"mrn": mrn, "when": dt.date(2020, 1, 2)})
    assert (tmp_path / "dicom" / mrn / "ST01" / "x.dcm").read_bytes() == b"new"
    assert not (tmp_path / "dicom" / mrn / "old").exists()
    record = json.loads((tmp_path / "truth" / mrn / "truth.json").read_text())
    assert record == {"mrn": mrn, "when": "2020-01-02"}
    assert not stage.exists()
    # a leftover staging folder is cleared
    (stage / "junk").mkdir(parents=True)
    assert list(_fresh_stage(job).iterdir()) == []


def _plan_fingerprint(seed: int, index: int, role: str = "baseline") -> str:
    """Hash of everything a plan holds (floats rounded, so that it does not depend on
    the last bits of the platform's arithmetic)."""
    rng_f = np.random.default_rng([seed, index, 1])
    feats = draw_features(rng_f, index, L.lesion_count(rng_f))
    rng = np.random.default_rng([seed, index, 2])
    scanner = choose_scanner(rng)
    s, info = plan_study(
        rng, role, 0, dt.date(2020, 1, 2), scanner, feats, CENTRE, np.ones(3), 36000.0
    )
    rows: list = [info, np.round(s.placement, 4).tolist(), s.missing, s.contrast_agent]
    for p in s.series:
        rows.append(
            [
                p.kind,
                p.contrast,
                p.series_number,
                p.description,
                p.protocol_name,
                p.acq_type,
                p.orientation,
                [[list(g.shape), np.round(g.affine, 4).tolist()] for g in p.grids],
                round(p.slice_thickness, 4),
                round(p.spacing_between_slices, 4),
                round(p.time_s, 3),
                round(p.duration_s, 3),
                sorted(p.params.items()),
                p.post_contrast,
                p.derived_from,
                np.round(p.motion, 4).tolist(),
                p.image_type,
                round(p.wm_value, 3),
                round(p.noise, 5),
                p.bias,
                p.rescale_slope,
                p.b_values,
            ]
        )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def test_plan_study_fingerprints() -> None:
    """Fingerprints of whole plans captured before plan_study was split into steps."""
    assert {key: _plan_fingerprint(*key) for key in FINGERPRINTS} == FINGERPRINTS


#: captured with the if/elif acquisition_params and the one-piece plan_study
FINGERPRINTS = {
    (3, 0, "baseline"): "00773027ca33c9a4",
    (8, 0, "baseline"): "dd0e86f41ffebd75",
    (1, 1, "followup"): "911f7c3e654968db",
    (6, 0, "baseline"): "8cd212c1df0f679d",
    (10, 0, "baseline"): "1301c370da816f96",
    (4, 2, "baseline"): "bcc308282f6e73ba",
}
