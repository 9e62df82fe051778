"""Vocabulary, physics and Image Type evidence, and the study-level classifier."""

from __future__ import annotations

import pytest

from brainmets.classify.classifier import classify_series, classify_study, compile_site_rules
from brainmets.classify.header import SeriesHeader
from brainmets.classify.rules import image_type_call, physics_call
from brainmets.classify.vocabulary import describe, normalise

MR = "1.2.840.10008.5.1.4.1.1.4"


def hdr(uid: str = "1", **kw: object) -> SeriesHeader:
    base: dict[str, object] = {
        "uid": uid,
        "study_uid": "S",
        "modality": "MR",
        "sop_class_uid": MR,
        "n_instances": 30,
        "image_type": ["ORIGINAL", "PRIMARY", "M", "ND"],
    }
    base.update(kw)
    return SeriesHeader(**base)  # type: ignore[arg-type]


T1_SE = {"scanning_sequence": ["SE"], "echo_time": 12.0, "repetition_time": 500.0}
T2_SE = {"scanning_sequence": ["SE"], "echo_time": 100.0, "repetition_time": 5000.0}
FLAIR = {
    "scanning_sequence": ["SE", "IR"],
    "echo_time": 90.0,
    "repetition_time": 9000.0,
    "inversion_time": 2500.0,
}
MPRAGE = {
    "scanning_sequence": ["GR", "IR"],
    "sequence_variant": ["SK", "SP", "MP"],
    "mr_acquisition_type": "3D",
    "echo_time": 2.3,
    "repetition_time": 2000.0,
    "inversion_time": 900.0,
    "flip_angle": 8.0,
}


# --------------------------------------------------------------------- vocabulary
def test_normalise_keeps_plus_and_star_and_drops_accents() -> None:
    assert normalise("+C Ax T1") == " +c ax t1 "
    assert normalise("T2*_FFE") == " t2* ffe "
    assert normalise("T1 pós-contraste") == " t1 pos contraste "
    assert normalise("T1 w/o") == " t1 without "
    assert normalise("T1 AXIAL S/C") == " t1 axial sin contraste "


@pytest.mark.parametrize(
    ("text", "weighting", "contrast"),
    [
        ("t1_mprage_sag_p2_iso_KM", "t1", 1),  # Siemens, German site
        ("+C Ax T1 FLAIR", "t1", 1),  # GE: T1-FLAIR is T1-weighted
        ("sT1W_3D_TFE_GD", "t1", 1),  # Philips
        ("T1WI+Gd", "t1", 1),  # Hitachi
        ("T1 3D GADO", "t1", 1),  # French
        ("T1 AXIAL SIN CONTRASTE", "t1", -1),  # Spanish
        ("T1 SE ASSIALE POST MDC", "t1", 1),  # Italian
        ("T1 TSE tra voor contrast", "t1", -1),  # Dutch
        ("T1 tra po kontrascie", "t1", 1),  # Polish
        ("AX T1 W/O", "t1", -1),
        ("SAG T1 PRE", "t1", -1),
        ("t2_tirm_tra_dark-fluid", "flair", 0),
        ("t2_spc_da-fl_sag_p2_iso", "flair", 0),
        ("3D_Brain_VIEW_FLAIR_SHC", "flair", 0),
        ("Ax T2 FSE", "t2", 0),
        ("AX T2 PROPELLER", "t2", 0),
        ("T2 post fossa", "t2", 0),  # posterior fossa, not post-contrast
    ],
)
def test_describe_weighting_and_contrast(text: str, weighting: str, contrast: int) -> None:
    d = describe(text)
    assert d.other is None, d
    assert (d.weighting, d.contrast) == (weighting, contrast)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("AAHead_Scout_64ch-head-coil", "localizer"),
        ("3Plane Loc SSFSE", "localizer"),
        ("Survey_32ch_HeadCoil", "localizer"),
        ("ep2d_diff_3scan_trace_p2", "diffusion"),
        ("DIFUSION", "diffusion"),
        ("Apparent Diffusion Coefficient (mm2/s)", "diffusion"),
        ("T2* Haemo tra", "susceptibility"),
        ("AX T2 GRE", "susceptibility"),
        ("T2 EG AX", "susceptibility"),  # French echo de gradient
        ("SWIp", "susceptibility"),
        ("tof_fl3d_tra_p2", "angiography"),
        ("ep2d_perf_p2", "perfusion"),
        ("Ax 3D pCASL", "perfusion"),
        ("pd_tse_tra", "proton_density"),
        ("Sag 3D FIESTA-C IAC", "ssfp"),
        ("Cor T1 +C Pituitary", "limited_coverage"),
        ("t1_mprage_sag_p2_iso_KM_SUB", "subtraction"),
        ("t1_mprage_sag_p2_iso_MPR_Tra", "reformat"),
    ],
)
def test_describe_other_kinds(text: str, kind: str) -> None:
    d = describe(text)
    assert d.other == kind and not d.other_weak, d


def test_mpr_in_an_mprage_protocol_name_is_only_weak_evidence_of_a_reformat() -> None:
    d = describe("t1_mpr_sag_p2_iso")
    assert d.other == "reformat" and d.other_weak and d.weighting == "t1"


def test_planning_volumes_are_flagged() -> None:
    assert describe("t1_mpr_tra_gk_v4").planning
    assert describe("Ax T1 3D BRAVO NAV").planning
    assert not describe("t1_mprage_sag").planning


# ------------------------------------------------------------------------ physics
@pytest.mark.parametrize(
    ("params", "kind"),
    [
        (T1_SE, "t1"),
        (T2_SE, "t2"),
        (FLAIR, "flair"),
        (MPRAGE, "t1"),
        (  # GE IR-SPGR (BRAVO): prep time stored as TI
            {
                "scanning_sequence": ["GR"],
                "mr_acquisition_type": "3D",
                "echo_time": 3.2,
                "repetition_time": 8.2,
                "inversion_time": 450.0,
                "flip_angle": 12.0,
            },
            "t1",
        ),
        (  # 2D FLASH
            {
                "scanning_sequence": ["GR"],
                "echo_time": 2.5,
                "repetition_time": 250.0,
                "flip_angle": 70.0,
            },
            "t1",
        ),
        (  # T2* GRE
            {
                "scanning_sequence": ["GR"],
                "echo_time": 20.0,
                "repetition_time": 650.0,
                "flip_angle": 20.0,
            },
            "susceptibility",
        ),
        (  # STIR
            {
                "scanning_sequence": ["SE", "IR"],
                "echo_time": 50.0,
                "repetition_time": 4000.0,
                "inversion_time": 150.0,
            },
            "stir",
        ),
        (
            {"scanning_sequence": ["SE"], "echo_time": 12.0, "repetition_time": 3000.0},
            "proton_density",
        ),
        ({"scanning_sequence": ["EP"], "echo_time": 89.0, "repetition_time": 6700.0}, "epi"),
        (
            {"echo_time": 89.0, "repetition_time": 6700.0, "diffusion_b_values": [0.0, 1000.0]},
            "diffusion",
        ),
        (  # no sequence type recorded: TE/TR alone
            {"echo_time": 100.0, "repetition_time": 4500.0},
            "t2",
        ),
    ],
)
def test_physics(params: dict, kind: str) -> None:
    assert physics_call(hdr(**params)).kind == kind


def test_image_type_marks_derived_series() -> None:
    assert image_type_call(hdr(image_type=["DERIVED", "PRIMARY", "DIFFUSION", "ADC"])).kind == (
        "diffusion"
    )
    assert image_type_call(hdr(image_type=["DERIVED", "SECONDARY", "MPR"])).kind == "reformat"
    assert image_type_call(hdr(image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])).kind == (
        "localizer"
    )
    assert image_type_call(hdr(image_type=["ORIGINAL", "PRIMARY", "P", "ND"])).kind == "phase"
    # "M" magnitude and Siemens NORM/DIS2D are ordinary
    assert (
        image_type_call(hdr(image_type=["ORIGINAL", "PRIMARY", "M", "NORM", "DIS2D"])).kind is None
    )


# --------------------------------------------------------------------- classifier
def test_description_and_physics_agree_with_high_confidence() -> None:
    c = classify_series(hdr(description="t2_tse_tra", **T2_SE))
    assert c.cls == "t2" and c.confidence > 0.9
    assert "acquisition agrees" in c.reason


def test_physics_overrides_a_misleading_description() -> None:
    c = classify_series(hdr(description="FLAIR", **MPRAGE))
    assert c.cls == "t1"
    assert "although" in c.reason


def test_unlabelled_t1_after_a_perfusion_bolus_is_post_contrast() -> None:
    series = [
        hdr("a", series_number=2, description="AX T1 SE", **T1_SE),
        hdr("b", series_number=5, description="AX PERFUSION", scanning_sequence=["EP"],
            echo_time=45.0, repetition_time=1500.0),
        hdr("c", series_number=7, description="AX T1 SE", **T1_SE),
    ]  # fmt: skip
    out = classify_study(series)
    assert [out[u].cls for u in "abc"] == ["t1", "other", "t1c"]
    assert "after the first contrast-enhanced series" in out["c"].reason
    assert "before the first contrast-enhanced series" in out["a"].reason


def test_an_agent_recorded_on_every_series_says_nothing() -> None:
    series = [
        hdr("loc", series_number=1, description="localizer", contrast_agent="GADOVIST",
            scanning_sequence=["GR"], echo_time=4.0, repetition_time=8.6, flip_angle=20.0),
        hdr("pre", series_number=4, description="t1_mpr_sag", contrast_agent="GADOVIST", **MPRAGE),
        hdr("post", series_number=6, description="t1_mpr_sag", contrast_agent="GADOVIST", **MPRAGE),
    ]  # fmt: skip
    out = classify_study(series)
    assert out["pre"].cls == "t1" and out["post"].cls == "t1c"
    assert "recorded on every series" in out["pre"].reason
    assert "repeat of the T1" in out["post"].reason


def test_a_discriminative_agent_field_decides() -> None:
    series = [
        hdr("a", series_number=2, description="t1_fl2d_tra", **T1_SE),
        hdr("b", series_number=7, description="t1_fl2d_tra", contrast_agent="Dotarem", **T1_SE),
    ]
    out = classify_study(series)
    assert (out["a"].cls, out["b"].cls) == ("t1", "t1c")


def test_an_explicit_pre_statement_beats_the_agent_field() -> None:
    series = [
        hdr("a", series_number=2, description="T1 SE nativ", contrast_agent="X", **T1_SE),
        hdr("b", series_number=3, description="T2", **T2_SE),
    ]
    assert classify_study(series)["a"].cls == "t1"


def test_a_study_wide_protocol_name_is_ignored() -> None:
    # GE writes the exam protocol into ProtocolName: "BRAIN W/WO" must not make series post
    series = [
        hdr("a", series_number=2, description="AX T1 SE", protocol_name="BRAIN POST GAD", **T1_SE),
        hdr("b", series_number=3, description="AX T2", protocol_name="BRAIN POST GAD", **T2_SE),
    ]
    assert classify_study(series)["a"].cls == "t1"


def test_site_rules_and_manual_overrides() -> None:
    h = hdr("x", description="Sequenz 7", **T1_SE)
    assert classify_series(h).cls == "t1"
    c = classify_series(h, site_rules={r"^sequenz 7$": "t1c"})
    assert (c.cls, c.source) == ("t1c", "site rule")
    c = classify_series(h, site_rules={r"^sequenz 7$": "t1c"}, overrides={"x": "other"})
    assert (c.cls, c.source) == ("other", "manual override")
    with pytest.raises(ValueError, match="unknown class"):
        compile_site_rules({"x": "t3"})
    with pytest.raises(ValueError, match="not a valid regular expression"):
        compile_site_rules({"(": "t1"})


def test_non_images_and_other_modalities_are_other() -> None:
    assert classify_series(hdr(modality="CT", **T1_SE)).cls == "other"
    c = classify_series(hdr(sop_class_uid="1.2.840.10008.5.1.4.1.1.7", **T1_SE))
    assert c.cls == "other" and c.kind == "non_image"
    assert classify_series(hdr(n_instances=0)).cls == "other"
