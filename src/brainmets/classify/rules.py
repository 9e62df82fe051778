"""Classification evidence from acquisition physics and from Image Type.

:func:`physics_call` reads the weighting of an acquisition from its parameters — echo,
repetition and inversion times, flip angle, spin vs gradient echo, inversion recovery,
EPI, diffusion weighting — independently of how the series is named. The thresholds are
those of clinical brain protocols at 1.5 T and 3 T (and hold at low field, where FLAIR
uses shorter inversion times, down to about 1300 ms):

============================  =========================================================
FLAIR                         inversion recovery, TI >= 1200 ms, TE >= 50 ms (2D FLAIR
                              TI 2000-2800 ms; 3D SPACE/CUBE/VISTA FLAIR TI 1600-2200 ms,
                              effective TE 100-400 ms)
T1, inversion-prepared        inversion recovery, 250 <= TI < 1500 ms, TE < 40 ms
                              (MPRAGE, IR-SPGR/BRAVO, TFE-IR, 2D T1-FLAIR)
STIR (other)                  inversion recovery, TI < 250 ms, TE >= 30 ms
T1 spin echo                  TE < 35 ms, TR <= 1000 ms (SE, TSE, 3D SPACE/CUBE T1)
T2 spin echo                  TE >= 70 ms, TR >= 1500 ms (TSE/FSE, 3D SPACE/CUBE/VISTA)
proton density (other)        spin echo, TE < 50 ms, TR >= 1600 ms, no inversion
T1 gradient echo              TR < 30 ms, TE < 12 ms, flip <= 35 deg (3D spoiled GRE:
                              VIBE, FSPGR, LAVA, TFE); or TR >= 100 ms, TE < 12 ms,
                              flip >= 50 deg (2D FLASH/FFE/SPGR)
T2* / SWI (other)             gradient echo, TE >= 12 ms
balanced SSFP (other)         gradient echo, 3D, TR < 15 ms, flip >= 35 deg
============================  =========================================================

:func:`image_type_call` reads Image Type (and the enhanced Image Flavor / Derived Pixel
Contrast values): localizers, reformats, projections, subtractions, diffusion maps,
phase images, perfusion maps are never one of the four target sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from brainmets.classify.header import MR_IMAGE_SOP_CLASSES, SeriesHeader

STRONG, MODERATE, WEAK = 0.9, 0.7, 0.5
TARGET_WEIGHTINGS = ("t1", "t2", "flair")


@dataclass(frozen=True)
class Call:
    """A piece of evidence: a kind (t1/t2/flair or an 'other' kind), strength, reason."""

    kind: str | None
    strength: float = 0.0
    reason: str = ""


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:g}"


def _params(h: SeriesHeader) -> str:
    s = f"TE={_fmt(h.echo_time)} TR={_fmt(h.repetition_time)}"
    if h.inversion_time:
        s += f" TI={_fmt(h.inversion_time)}"
    if h.flip_angle is not None:
        s += f" flip={_fmt(h.flip_angle)}"
    seq = "\\".join(h.scanning_sequence) or h.echo_pulse_sequence or ""
    if seq:
        s += f" {seq}"
    return s + (f" {h.mr_acquisition_type}" if h.mr_acquisition_type else "")


def _families(h: SeriesHeader) -> tuple[bool, bool, bool, bool, bool]:
    """(gradient echo, spin echo, inversion recovery, EPI, magnetisation-prepared)."""
    seq = set(h.scanning_sequence)
    var = set(h.sequence_variant)
    it = set(h.image_type)
    pulse = (h.echo_pulse_sequence or "").upper()
    name = (h.sequence_name or "").lower()
    gre = "GR" in seq or pulse == "GRADIENT" or bool(it & {"M_FFE", "FFE", "R_FFE", "P_FFE"})
    se = "SE" in seq or pulse == "SPIN" or bool(it & {"M_SE", "SE", "M_TSE"})
    ir = (
        "IR" in seq
        or bool(h.inversion_recovery)
        or h.inversion_time is not None
        or bool(it & {"M_IR", "IR"})
    )
    epi = "EP" in seq or bool(h.echo_planar) or name.lstrip("*").startswith("ep")
    if pulse == "BOTH":
        gre = se = True
    if not (gre or se) and name:
        n = name.lstrip("*")
        gre = n.startswith(("fl", "tfl", "fgre", "efgre", "spgr", "fspgr", "ffe", "tfe", "fi"))
        se = n.startswith(("se", "tse", "fse", "spc", "tir", "ir", "h2d", "haste", "blade"))
        ir = ir or n.startswith(("tir", "ir", "spcir")) or "ir" in n[:6]
    mp = "MP" in var
    return gre, se, ir, epi, mp


def physics_call(h: SeriesHeader) -> Call:
    """The weighting that the acquisition parameters imply (independent of naming)."""
    te, tr, ti, fa = h.echo_time, h.repetition_time, h.inversion_time, h.flip_angle
    gre, se, ir, epi, mp = _families(h)
    three_d = h.mr_acquisition_type == "3D"
    p = _params(h)
    if any(b > 50 for b in h.diffusion_b_values):
        return Call("diffusion", STRONG, f"diffusion weighting (b={max(h.diffusion_b_values):g})")
    if h.angio:
        return Call("angiography", STRONG, "angiography (time-of-flight / phase contrast) flag")
    if epi:
        if ir and ti is not None and ti >= 1200 and te is not None and te >= 50:
            return Call("flair", MODERATE, f"EPI inversion recovery with a FLAIR TI ({p})")
        return Call("epi", MODERATE, f"echo-planar acquisition ({p}): DWI, perfusion or BOLD")
    if te is None and tr is None:
        return Call(None, 0.0, "no echo or repetition time recorded")
    if tr is None and te is not None and te < 5 and not ir:
        return Call("t1", WEAK, f"very short TE, no TR recorded ({p}): T1-weighted gradient echo")
    if ir and ti is not None:
        if te is not None and te >= 50 and ti >= 1200:
            strength = STRONG if (tr is None or tr >= 4000) else MODERATE
            return Call("flair", strength, f"inversion recovery with fluid nulling ({p})")
        if te is not None and 40 <= te < 50 and ti >= 1200:
            return Call("flair", MODERATE, f"inversion recovery with fluid nulling ({p})")
        if te is not None and te < 40 and 250 <= ti < 1500:
            return Call("t1", STRONG, f"inversion-prepared T1 ({p})")
        if ti < 250:
            if te is not None and te >= 30:
                return Call("stir", STRONG, f"short-TI inversion recovery, fat nulled ({p})")
            return Call("t1", WEAK, f"short-TI inversion-prepared gradient echo ({p})")
        if te is not None and te < 40 and ti >= 1500:
            return Call("map", WEAK, f"long-TI inversion with a short TE ({p}): PD-like image")
        return Call(None, 0.0, f"inversion recovery with unusual timing ({p})")
    if ir and ti is None and te is not None:
        if te >= 50 and (tr is None or tr >= 4000):
            return Call("flair", MODERATE, f"inversion recovery, long TE and TR ({p})")
        if te < 40 and (gre or mp or (tr is not None and tr < 3000)):
            return Call("t1", MODERATE, f"inversion-prepared, short TE ({p})")
    if gre and not se:
        if te is not None and te >= 12:
            strength = STRONG if te >= 15 else MODERATE
            return Call("susceptibility", strength, f"gradient echo with a long TE ({p}): T2*/SWI")
        if fa is not None and fa >= 35 and tr is not None and tr < 15 and three_d:
            return Call("ssfp", MODERATE, f"3D gradient echo, short TR, large flip ({p}): bSSFP")
        if mp:
            return Call("t1", STRONG, f"magnetisation-prepared gradient echo ({p})")
        if tr is not None and tr < 30 and (te is None or te < 12) and (fa is None or fa <= 35):
            return Call("t1", MODERATE, f"spoiled gradient echo, short TR and TE ({p})")
        if tr is not None and tr >= 100 and (te is None or te < 12) and fa is not None:
            if fa >= 50:
                return Call("t1", STRONG, f"2D gradient echo, short TE, large flip ({p})")
            if fa < 40:
                return Call("proton_density", WEAK, f"gradient echo, small flip, long TR ({p})")
        return Call(None, 0.0, f"gradient echo with unusual timing ({p})")
    if te is None or tr is None:
        return Call(None, 0.0, f"incomplete timing ({p})")
    # spin echo / turbo spin echo (or no sequence type recorded)
    strength = STRONG if se else MODERATE
    if te >= 70 and tr >= 1500:
        return Call("t2", strength, f"long TE and TR ({p})")
    if te >= 70:
        return Call("t2", WEAK, f"long TE ({p})")
    if te < 35 and tr <= 1000:
        return Call("t1", strength, f"short TE and TR ({p})")
    if te < 35 and tr < 1600:
        return Call("t1", WEAK, f"short TE, intermediate TR ({p})")
    if te < 50 and tr >= 1600:
        return Call("proton_density", MODERATE if se else WEAK, f"short TE, long TR ({p})")
    if 50 <= te < 70 and tr >= 1500:
        return Call("t2", WEAK, f"intermediate TE, long TR ({p})")
    if not se and tr < 30 and te < 12:
        return Call("t1", WEAK, f"short TR and TE ({p})")
    return Call(None, 0.0, f"unusual timing ({p})")


# ------------------------------------------------------------------- image type
#: Image Type values (any position) that mark a series that is not an acquired
#: target sequence, with the kind they name.
IMAGE_TYPE_OTHER: dict[str, str] = {
    "LOCALIZER": "localizer",
    "SCOUT": "localizer",
    "ADC": "diffusion",
    "TRACEW": "diffusion",
    "TRACE": "diffusion",
    "DIFFUSION": "diffusion",
    "FA": "diffusion",
    "EADC": "diffusion",
    "ISOTROPIC": "diffusion",
    "EXP": "diffusion",
    "TENSOR": "diffusion",
    "PERFUSION": "perfusion",
    "TTP": "perfusion",
    "CBF": "perfusion",
    "CBV": "perfusion",
    "MTT": "perfusion",
    "ASL": "perfusion",
    "SUB": "subtraction",
    "SUBTRACT": "subtraction",
    "SUBTRACTION": "subtraction",
    "MPR": "reformat",
    "CSA MPR": "reformat",
    "CSA MPR THICK": "reformat",
    "CSA RESAMPLED": "reformat",
    "CSAPARALLEL": "reformat",
    "REFORMATTED": "reformat",
    "RESAMPLED": "reformat",
    "CPR": "reformat",
    "VOLUME RENDER": "reformat",
    "PROJECTION IMAGE": "reformat",
    "MIP": "angiography",
    "MAXIMUM": "angiography",
    "MNIP": "susceptibility",
    "MINIP": "susceptibility",
    "MINIMUM": "susceptibility",
    "SWI": "susceptibility",
    "SWAN": "susceptibility",
    "P": "phase",
    "PHASE": "phase",
    "P_FFE": "phase",
    "P_SE": "phase",
    "P_IR": "phase",
    "R": "phase",
    "I": "phase",
    "REAL": "phase",
    "IMAGINARY": "phase",
    "FM": "calibration",
    "FIELD_MAP": "calibration",
    "B0": "calibration",
    "B1": "calibration",
    "T1 MAP": "map",
    "T2 MAP": "map",
    "T2_STAR": "susceptibility",
    "T2*": "susceptibility",
    "W": "map",
    "F": "map",
    "IP": "map",
    "OP": "map",
    "WATER": "map",
    "FAT": "map",
    "IN_PHASE": "map",
    "OUT_PHASE": "map",
    "MOSAIC": "epi",
    "SCREEN SAVE": "non_image",
    "MOCO": "calibration",
    "ANGIO": "angiography",
    "TOF": "angiography",
    "FLOW_ENCODED": "flow",
    "VELOCITY": "flow",
    "SPECTROSCOPY": "spectroscopy",
}
#: Values that Siemens writes in position 3+ for magnitude water images of Dixon, which
#: would be ambiguous with "W" above; only counted at positions >= 3 (see below).
_POSITIONAL = {"W", "F", "IP", "OP", "P", "R", "I", "FM"}
#: Enhanced MR Acquisition Contrast / Philips Image Flavor values for the weighting.
ACQUISITION_CONTRAST = {
    "T1": "t1",
    "T2": "t2",
    "FLUID_ATTENUATED": "flair",
    "FLAIR": "flair",
    "PROTON_DENSITY": "proton_density",
    "T2_STAR": "susceptibility",
    "STIR": "stir",
    "DIFFUSION": "diffusion",
    "PERFUSION": "perfusion",
    "TOF": "angiography",
    "FLOW_ENCODED": "flow",
}


def image_type_call(h: SeriesHeader) -> Call:
    """An 'other' kind named by Image Type, or a neutral call."""
    it = [v.upper() for v in h.image_type]
    for i, v in enumerate(it):
        if i < 2:
            continue  # ORIGINAL/DERIVED and PRIMARY/SECONDARY are handled by the caller
        kind = IMAGE_TYPE_OTHER.get(v)
        if kind is None:
            continue
        if v in _POSITIONAL and i != 2:
            continue  # single letters count only as the vendor's value 3 (M, P, R, I, W...)
        if v == "MOSAIC":
            continue  # a Siemens EPI storage format: physics decides what it is
        if v == "MOCO" and it[0] != "DERIVED":
            continue  # prospective motion correction of an acquired series (e.g. vNav)
        shown = "\\".join(h.image_type)
        return Call(kind, STRONG, f"Image Type {shown} marks {v}")
    if it[:2] == ["DERIVED", "SECONDARY"]:
        return Call("reformat", MODERATE, "Image Type DERIVED\\SECONDARY (post-processed)")
    return Call(None)


def contrast_flavor(h: SeriesHeader) -> int:
    """+1 / -1 when Image Type says POST_CONTRAST / PRE_CONTRAST, else 0."""
    it = {v.upper() for v in h.image_type}
    if "POST_CONTRAST" in it:
        return 1
    if "PRE_CONTRAST" in it:
        return -1
    return 0


def is_mr_image(h: SeriesHeader) -> bool:
    return h.sop_class_uid in MR_IMAGE_SOP_CLASSES
