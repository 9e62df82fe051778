"""Scanner protocols: vendors, field strengths, series vocabulary and acquisition planning.

A :class:`StudyPlan` says what one MR visit holds: the scanner (vendor, model, field
strength), the head's placement in the scanner (template world -> scanner world, RAS) and
an ordered list of :class:`SeriesPlan` (grid, orientation, timing, DICOM parameters).
Descriptions are drawn from each vendor's usual vocabulary, with several spellings per
sequence type, so that series classification has realistic work to do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from brainmets.synth.geometry import Grid, homogeneous, rotation_xyz

#: Kinds of series the generator writes. The first four are the ones the pipeline keeps.
MAIN_KINDS = ("T1", "T1c", "T2", "FLAIR")
ALL_KINDS = (*MAIN_KINDS, "LOC", "DWI", "ADC", "SWI", "MPR", "SUB", "SC")


@dataclass(frozen=True)
class Scanner:
    vendor: str  # short key: SIEMENS, GE, PHILIPS, HITACHI
    manufacturer: str
    model: str
    field_t: float
    software: str
    bits_stored: int
    coil: str


SCANNERS: dict[str, dict] = {
    "SIEMENS": {
        "manufacturer": "SIEMENS",
        "models": [
            ("Avanto", 1.5),
            ("Aera", 1.5),
            ("Skyra", 3.0),
            ("Prisma", 3.0),
            ("Verio", 3.0),
            ("MAGNETOM Harmony", 1.0),
        ],
        "software": ["syngo MR B17", "syngo MR E11", "syngo MR XA30"],
        "bits": 12,
        "coils": ["HeadNeck_20", "Head_32", "HE1-4"],
        "weight": 0.35,
    },
    "GE": {
        "manufacturer": "GE MEDICAL SYSTEMS",
        "models": [
            ("Signa HDxt", 1.5),
            ("Signa HDxt", 3.0),
            ("DISCOVERY MR750", 3.0),
            ("Optima MR450w", 1.5),
            ("SIGNA Architect", 3.0),
            ("SIGNA Explorer", 1.5),
        ],
        "software": [
            "24\\LX\\MR Software release:DV24.0_R01_1344.a",
            "27\\LX\\MR Software release:DV26.0_R03_2033.a",
            "HD23.0_V01_1210.a",
        ],
        "bits": 16,
        "coils": ["8HRBRAIN", "HNS Head", "32Ch Head"],
        "weight": 0.33,
    },
    "PHILIPS": {
        "manufacturer": "Philips Medical Systems",
        "models": [
            ("Achieva", 1.5),
            ("Achieva", 3.0),
            ("Ingenia", 1.5),
            ("Ingenia", 3.0),
            ("Panorama HFO", 1.0),
            ("Ingenia Elition X", 3.0),
        ],
        "software": ["5.3.1\\5.3.1.0", "5.6.1\\5.6.1.2", "3.2.3\\3.2.3.1"],
        "bits": 12,
        "coils": ["SENSE-Head-8", "dS Head 32ch", "HeadNeck_20"],
        "weight": 0.22,
    },
    "HITACHI": {
        "manufacturer": "Hitachi Medical Corporation",
        "models": [("ECHELON_OVAL", 1.5), ("Echelon", 1.5), ("TRILLIUM OVAL", 3.0)],
        "software": ["V5.0A", "V6.1B"],
        "bits": 12,
        "coils": ["HEAD", "Head Coil QD"],
        "weight": 0.10,
    },
}

#: Series descriptions per vendor and kind (several spellings each). ``{pc}`` marks
#: post-contrast vocabulary variants.
VOCAB: dict[str, dict[str, list[str]]] = {
    "SIEMENS": {
        "FLAIR2D": [
            "t2_tirm_tra_dark-fluid",
            "t2_tirm_tra_dark-fluid_5mm",
            "t2_flair_tra",
            "FLAIR_TRA",
        ],
        "FLAIR3D": ["t2_space_dark-fluid_sag_p2_iso", "t2_spc_da-fl_sag_p2_iso", "SPACE_FLAIR_SAG"],
        "T1c3D": [
            "t1_mprage_sag_p2_iso_POST",
            "t1_mprage_tra_iso_KM",
            "T1_MPRAGE_SAG_GD",
            "t1_mpr_sag_p2_iso+C",
        ],
        "T1c2D": ["t1_se_tra_KM", "t1_se_tra_post", "T1_SE_TRA+C"],
        "T13D": ["t1_mprage_sag_p2_iso", "t1_mprage_tra_iso", "T1_MPRAGE_SAG"],
        "T12D": ["t1_se_tra", "t1_fl2d_tra", "T1_SE_TRA"],
        "T2": ["t2_tse_tra", "t2_tse_tra_512", "T2_TSE_AX", "t2_tse_tra_p2"],
        "LOC": ["localizer", "AAHead_Scout", "localizer_3plane"],
        "DWI": ["ep2d_diff_3scan_trace", "ep2d_diff_tra", "DWI_tra_b1000"],
        "ADC": ["ep2d_diff_3scan_trace_ADC", "ep2d_diff_tra_ADC"],
        "SWI": ["SWI_Images", "swi_tra", "t2_swi_tra_p2_2mm"],
        "MPR": ["{src}_MPR_cor", "{src}_MPR_tra", "MPR cor +C"],
        "SUB": ["{src}_SUB", "SUB_t1_mprage_POST-PRE"],
        "SC": ["Screen Save", "Key Images"],
    },
    "GE": {
        "FLAIR2D": ["AX T2 FLAIR", "Ax T2 FLAIR", "AX FLAIR", "AXIAL FLAIR"],
        "FLAIR3D": ["Sag CUBE FLAIR", "SAG 3D FLAIR CUBE", "3D FLAIR SAG"],
        "T1c3D": [
            "Ax T1 FSPGR 3D +C",
            "SAG T1 BRAVO POST",
            "AX 3D T1 BRAVO +C",
            "Sag 3D T1 MPRAGE +C",
        ],
        "T1c2D": ["AX T1 SE +C", "Ax T1 +C", "AX T1 FLAIR POST"],
        "T13D": ["SAG T1 BRAVO", "Ax T1 FSPGR 3D", "Sag 3D T1"],
        "T12D": ["AX T1", "Ax T1 SE", "AX T1 FLAIR"],
        "T2": ["AX T2 FSE", "Ax T2 FRFSE", "AX T2", "Ax T2 PROPELLER"],
        "LOC": ["3 Plane Loc", "3-pl T2* FGRE S", "Localizer"],
        "DWI": ["AX DWI 1000b", "Ax DWI", "DWI ASSET"],
        "ADC": ["Apparent Diffusion Coefficient (mm2/s)", "ADC"],
        "SWI": ["Ax SWAN", "AX SWAN 2mm"],
        "MPR": ["COR {src} REFORMAT", "Reformatted", "COR T1 REFORMAT +C"],
        "SUB": ["SUB {src}", "SUBTRACT +C"],
        "SC": ["Screen Save", "SCREEN SAVE"],
    },
    "PHILIPS": {
        "FLAIR2D": ["T2W_FLAIR", "FLAIR_longTR", "AX FLAIR", "T2W_FLAIR_SENSE"],
        "FLAIR3D": ["3D_FLAIR", "VISTA_FLAIR_SAG", "3D FLAIR VISTA"],
        "T1c3D": ["3D_T1W_TFE_GD", "T1W_3D_TFE +C", "sT1W_3D_TFE_gado", "T1W_3D_TFE_POST"],
        "T1c2D": ["T1W_SE_GD", "T1W_SE +C", "T1W_IR_gado"],
        "T13D": ["T1W_3D_TFE", "3D_T1W_TFE", "sT1W_3D_TFE"],
        "T12D": ["T1W_SE", "T1W_IR", "T1_SE_tra"],
        "T2": ["T2W_TSE", "T2W_TSE_AX", "T2_TSE_tra", "T2W_TSE_SENSE"],
        "LOC": ["SURVEY", "Survey_SHC", "SmartSurvey"],
        "DWI": ["DWI_SENSE", "Reg - DWI SENSE", "DWI_b1000"],
        "ADC": ["dADC", "DWI_SENSE_ADC", "ADC"],
        "SWI": ["SWIp", "SWI_tra"],
        "MPR": ["{src} MPR cor", "MPR_cor", "COR MPR"],
        "SUB": ["{src}_SUB", "SUB_T1W_GD"],
        "SC": ["Screen Save", "Dynamic Screen Capture"],
    },
    "HITACHI": {
        "FLAIR2D": ["FLAIR_AX", "AX FLAIR", "Flair Ax"],
        "FLAIR3D": ["3D FLAIR ISO", "FLAIR 3D SAG"],
        "T1c3D": ["T1 3D GE +C", "3D T1 GE AX +C", "T1_3D_RSSG+C"],
        "T1c2D": ["T1_SE_AX+C", "T1 SE AX +C", "T1SE AX Gd"],
        "T13D": ["T1 3D GE", "3D T1 GE AX"],
        "T12D": ["T1_SE_AX", "T1 SE AX"],
        "T2": ["T2_FSE_AX", "T2 FSE AX", "T2W_FSE"],
        "LOC": ["SCOUT", "Scanogram", "3 PLANE SCOUT"],
        "DWI": ["DWI_AX", "DWI b1000"],
        "ADC": ["ADC_AX", "ADC map"],
        "SWI": ["BSI", "SWI_AX"],
        "MPR": ["MPR COR", "{src} MPR"],
        "SUB": ["SUB", "{src} SUB"],
        "SC": ["Screen Save", "SCREEN CAPTURE"],
    },
}

CONTRAST_AGENTS = [
    ("Gadovist", "gadobutrol", 0.1),
    ("Dotarem", "gadoterate meglumine", 0.2),
    ("MultiHance", "gadobenate dimeglumine", 0.2),
    ("Magnevist", "gadopentetate dimeglumine", 0.2),
    ("Clariscan", "gadoterate meglumine", 0.2),
    ("ProHance", "gadoteridol", 0.2),
]

STUDY_DESCRIPTIONS = [
    "MRI BRAIN W WO CONTRAST",
    "MR HEAD W/WO CONTRAST",
    "MRT Schaedel mit KM",
    "BRAIN METS PROTOCOL",
    "MRI BRAIN WITH AND WITHOUT GADOLINIUM",
    "MR Brain Tumour",
]


@dataclass
class SeriesPlan:
    """One series: what it shows, its grid and its DICOM acquisition parameters."""

    kind: str
    contrast: str  # key of anatomy.SIGNALS, or "" for derived kinds computed otherwise
    series_number: int
    description: str
    acq_type: str  # "2D" | "3D"
    orientation: str  # "AX" | "SAG" | "COR" | "MULTI" (localizer)
    grids: list[Grid]
    slice_thickness: float
    spacing_between_slices: float
    time_s: float  # seconds after midnight
    duration_s: float
    params: dict = field(default_factory=dict)
    post_contrast: bool = False
    derived_from: int | None = None  # series number of the source series
    motion: np.ndarray = field(default_factory=lambda: np.eye(4))
    image_type: list[str] = field(default_factory=lambda: ["ORIGINAL", "PRIMARY", "M", "ND"])
    wm_value: float = 500.0
    noise: float = 0.03
    bias: float = 0.1
    rescale_slope: float = 1.0
    b_values: list[int] = field(default_factory=list)
    protocol_name: str = ""

    @property
    def grid(self) -> Grid:
        return self.grids[0]


@dataclass
class StudyPlan:
    role: str  # "baseline" | "followup"
    index: int
    date: dt.date
    scanner: Scanner
    station_name: str
    device_serial: str
    institution: tuple[str, str, str]  # name, address, department
    study_description: str
    placement: np.ndarray  # 4x4 template world -> scanner world (RAS), before motion
    series: list[SeriesPlan]
    contrast_agent: tuple[str, str, float] | None
    lesion_scale: list[float] | None = None  # follow-up: per-lesion shrink factors
    missing: list[str] = field(default_factory=list)

    def series_of(self, kind: str) -> SeriesPlan | None:
        for s in self.series:
            if s.kind == kind:
                return s
        return None


def pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(0, len(items)))]


def choose_scanner(rng: np.random.Generator) -> Scanner:
    keys = list(SCANNERS)
    w = np.array([SCANNERS[k]["weight"] for k in keys])
    v = keys[int(rng.choice(len(keys), p=w / w.sum()))]
    info = SCANNERS[v]
    model, field_t = pick(rng, info["models"])
    return Scanner(
        vendor=v,
        manufacturer=info["manufacturer"],
        model=model,
        field_t=field_t,
        software=pick(rng, info["software"]),
        bits_stored=info["bits"],
        coil=pick(rng, info["coils"]),
    )


def placement_transform(
    rng: np.random.Generator, brain_centre: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Template world -> scanner world: per-patient size, head rotation (<= 15 deg total)
    and offset in the scanner."""
    angles = np.array([rng.uniform(-14.0, 14.0), rng.uniform(-6.0, 6.0), rng.uniform(-7.0, 7.0)])
    r = rotation_xyz(*angles)
    from brainmets.synth.geometry import rotation_angle_deg

    total = rotation_angle_deg(r)
    if total > 15.0:
        angles *= 15.0 / total * 0.98
        r = rotation_xyz(*angles)
    offset = np.array([rng.uniform(-8, 8), rng.uniform(-15, 15), rng.uniform(-25, 30)])
    lin = r @ np.diag(scale)
    m = homogeneous(lin, offset - lin @ brain_centre)
    info = {
        "rotation_deg_xyz": [round(float(a), 3) for a in angles],
        "offset_mm": [round(float(o), 3) for o in offset],
        "scale": [round(float(s), 4) for s in scale],
    }
    return m, info


def series_motion(rng: np.random.Generator, centre: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Small head motion between series (about the head centre, scanner world)."""
    r = rotation_xyz(*(rng.uniform(-1.2, 1.2, 3) * amount))
    t = rng.uniform(-1.2, 1.2, 3) * amount
    return homogeneous(r, centre - r @ centre + t)


@dataclass(frozen=True)
class GeometrySpec:
    acq_type: str
    orientation: str
    matrix: tuple[int, int]
    fov: tuple[float, float]
    n_slices: int
    thickness: float
    spacing: float


def geometry_for(
    kind: str, acq_type: str, rng: np.random.Generator, vendor: str, orientation: str | None = None
) -> GeometrySpec:
    """Typical matrix, field of view and slices of one sequence type."""
    if acq_type == "3D":
        orient = orientation or ("SAG" if rng.random() < 0.6 else "AX")
        vox = float(pick(rng, [1.0, 1.0, 0.9375, 1.0]))
        n = int(rng.integers(160, 177)) if orient == "SAG" else int(rng.integers(150, 171))
        m = (256, 256) if orient == "SAG" else (256, int(pick(rng, [224, 240, 256])))
        th = float(pick(rng, [1.0, 1.0, 1.2])) if kind != "SWI" else 2.0
        if kind == "SWI":
            orient = "AX"
            m = (256, 224)
            n = int(rng.integers(64, 76))
        return GeometrySpec("3D", orient, m, (m[0] * vox, m[1] * vox), n, th, th)
    fov = float(pick(rng, [220.0, 230.0, 240.0]))
    if kind == "T2":
        cols = int(pick(rng, [256, 320, 384]))
    elif kind in ("DWI", "ADC"):
        cols = int(pick(rng, [128, 160, 192]))
    else:
        cols = int(pick(rng, [256, 288, 320]))
    phase = float(pick(rng, [0.8125, 0.875, 0.90625, 1.0]))
    rows = int(round(cols * phase / 2.0) * 2)
    th = float(pick(rng, [5.0, 5.0, 5.0, 4.0, 6.0]))
    gap = (
        float(pick(rng, [0.5, 1.0, 1.0, 1.5, 2.0]))
        if vendor != "PHILIPS"
        else float(pick(rng, [0.0, 1.0, 1.0]))
    )
    spacing = th + gap
    n = int(np.ceil(float(rng.uniform(140, 165)) / spacing))
    px = fov / cols
    return GeometrySpec("2D", "AX", (cols, rows), (fov, px * rows), n, th, spacing)


class ParamRule:
    """A parameter value that depends on the scanner or is drawn at random."""

    def value(self, rng: np.random.Generator, scanner: Scanner) -> object:
        raise NotImplementedError


@dataclass(frozen=True)
class Uniform(ParamRule):
    """``rng.uniform(lo, hi)``."""

    lo: float
    hi: float

    def value(self, rng: np.random.Generator, scanner: Scanner) -> object:
        return rng.uniform(self.lo, self.hi)


@dataclass(frozen=True)
class IntUniform(ParamRule):
    """``int(rng.uniform(lo, hi))`` (an echo train length, say)."""

    lo: float
    hi: float

    def value(self, rng: np.random.Generator, scanner: Scanner) -> object:
        return int(rng.uniform(self.lo, self.hi))


@dataclass(frozen=True)
class Choice(ParamRule):
    """One of ``options``, drawn with :func:`pick`."""

    options: tuple

    def value(self, rng: np.random.Generator, scanner: Scanner) -> object:
        return pick(rng, list(self.options))


@dataclass(frozen=True)
class ByVendor(ParamRule):
    """``values[vendor]``, else ``default`` (constants: nothing is drawn)."""

    values: dict[str, object]
    default: object

    def value(self, rng: np.random.Generator, scanner: Scanner) -> object:
        return self.values.get(scanner.vendor, self.default)


@dataclass(frozen=True)
class ByField(ParamRule):
    """``high`` at 3 T (``field_t >= 2.9``), else ``low``; only the one used is drawn."""

    high: ParamRule
    low: ParamRule

    def value(self, rng: np.random.Generator, scanner: Scanner) -> object:
        rule = self.high if scanner.field_t >= 2.9 else self.low
        return rule.value(rng, scanner)


@dataclass(frozen=True)
class ProtocolRow:
    """One row of :data:`PROTOCOLS`: the DICOM parameters of the series of ``kinds``
    acquired as ``acq_type`` on a ``vendor`` scanner (``None``: any). ``params`` are set
    in their order, so random ones are drawn in that order."""

    kinds: tuple[str, ...]
    acq_type: str | None
    vendor: str | None
    params: tuple[tuple[str, object], ...]

    def matches(self, kind: str, acq_type: str, vendor: str) -> bool:
        return (
            kind in self.kinds
            and self.acq_type in (None, acq_type)
            and self.vendor in (None, vendor)
        )


_SIEMENS_150 = ByVendor({"SIEMENS": 150.0}, 90.0)

#: Sequence parameters per kind, acquisition type and vendor; the first matching row
#: applies (so a row for one vendor precedes the row for any vendor).
PROTOCOLS: tuple[ProtocolRow, ...] = (
    ProtocolRow(
        ("FLAIR",),
        "2D",
        None,
        (
            ("RepetitionTime", Uniform(8000, 11000)),
            ("EchoTime", Uniform(85, 140)),
            ("InversionTime", ByField(Uniform(2450, 2800), Uniform(2200, 2500))),
            ("FlipAngle", _SIEMENS_150),
            ("EchoTrainLength", IntUniform(14, 25)),
            ("ScanningSequence", "SE\\IR"),
            ("SequenceVariant", "SK\\SP\\MP\\OSP"),
            ("ScanOptions", "IR"),
            ("SequenceName", ByVendor({"SIEMENS": "*tir2d1_16"}, "IR")),
        ),
    ),
    ProtocolRow(
        ("FLAIR",),
        None,
        None,
        (
            ("RepetitionTime", Uniform(4800, 6500)),
            ("EchoTime", Uniform(330, 420)),
            ("InversionTime", Uniform(1650, 1900)),
            ("FlipAngle", 120.0),
            ("EchoTrainLength", IntUniform(140, 240)),
            ("ScanningSequence", "SE\\IR"),
            ("SequenceVariant", "SK\\SP\\MP"),
            ("ScanOptions", "IR"),
            ("SequenceName", ByVendor({"SIEMENS": "*spcir_278ns"}, "3D FLAIR")),
        ),
    ),
    ProtocolRow(
        ("T1", "T1c"),
        "3D",
        "SIEMENS",
        (
            ("RepetitionTime", Uniform(1900, 2300)),
            ("EchoTime", Uniform(2.2, 3.5)),
            ("InversionTime", Uniform(900, 1100)),
            ("FlipAngle", Choice((8.0, 9.0))),
            ("ScanningSequence", "GR\\IR"),
            ("SequenceVariant", "SK\\SP\\MP"),
            ("ScanOptions", "IR"),
            ("SequenceName", "*tfl3d1_16ns"),
        ),
    ),
    ProtocolRow(
        ("T1", "T1c"),
        "3D",
        "GE",
        (
            ("RepetitionTime", Uniform(6.0, 9.0)),
            ("EchoTime", Uniform(2.4, 3.6)),
            ("InversionTime", Uniform(400, 650)),
            ("FlipAngle", Choice((12.0, 13.0, 15.0))),
            ("ScanningSequence", "GR"),
            ("SequenceVariant", "SS\\SK"),
            ("ScanOptions", "FAST_GEMS\\EDR_GEMS\\IR_GEMS"),
            ("SequenceName", "efgre3d"),
        ),
    ),
    ProtocolRow(
        ("T1", "T1c"),
        "3D",
        "PHILIPS",
        (
            ("RepetitionTime", Uniform(7.0, 9.5)),
            ("EchoTime", Uniform(3.0, 4.6)),
            ("InversionTime", 0.0),
            ("FlipAngle", 8.0),
            ("ScanningSequence", "GR"),
            ("SequenceVariant", "SK\\SS"),
            ("ScanOptions", "OTHER"),
            ("SequenceName", "T1TFE"),
        ),
    ),
    ProtocolRow(
        ("T1", "T1c"),
        "3D",
        None,
        (
            ("RepetitionTime", Uniform(9.0, 12.0)),
            ("EchoTime", Uniform(3.0, 4.5)),
            ("FlipAngle", Uniform(10, 15)),
            ("ScanningSequence", "GR"),
            ("SequenceVariant", "SP"),
            ("ScanOptions", ""),
            ("SequenceName", "RSSG"),
        ),
    ),
    ProtocolRow(
        ("T1", "T1c"),
        None,
        None,
        (
            ("RepetitionTime", Uniform(400, 650)),
            ("EchoTime", Uniform(8, 15)),
            ("FlipAngle", ByVendor({"GE": 70.0}, 90.0)),
            ("EchoTrainLength", Choice((1, 2, 3))),
            ("ScanningSequence", "SE"),
            ("SequenceVariant", ByVendor({"HITACHI": "NONE"}, "SK\\SP")),
            ("ScanOptions", ByVendor({"SIEMENS": "SAT1"}, "")),
            ("SequenceName", ByVendor({"SIEMENS": "*se2d1"}, "SE")),
        ),
    ),
    ProtocolRow(
        ("T2",),
        None,
        None,
        (
            ("RepetitionTime", Uniform(3500, 6500)),
            ("EchoTime", Uniform(85, 110)),
            ("FlipAngle", _SIEMENS_150),
            ("EchoTrainLength", IntUniform(10, 21)),
            ("ScanningSequence", "SE"),
            ("SequenceVariant", "SK\\SP\\OSP"),
            ("ScanOptions", "PFP"),
            ("SequenceName", ByVendor({"SIEMENS": "*tse2d1_15"}, "TSE")),
        ),
    ),
    ProtocolRow(
        ("DWI", "ADC"),
        None,
        None,
        (
            ("RepetitionTime", Uniform(3000, 8000)),
            ("EchoTime", Uniform(60, 100)),
            ("FlipAngle", 90.0),
            ("ScanningSequence", "EP"),
            ("SequenceVariant", "SK\\SP"),
            ("ScanOptions", "PFP\\FS"),
            ("SequenceName", ByVendor({"SIEMENS": "*ep_b1000t"}, "EPI")),
        ),
    ),
    ProtocolRow(
        ("SWI",),
        None,
        None,
        (
            ("RepetitionTime", Uniform(27, 50)),
            ("EchoTime", Uniform(20, 40)),
            ("FlipAngle", 15.0),
            ("ScanningSequence", "GR"),
            ("SequenceVariant", "SK\\SP\\OSP"),
            ("ScanOptions", ""),
            ("SequenceName", ByVendor({"SIEMENS": "*swi3d1r"}, "SWI")),
        ),
    ),
    ProtocolRow(
        ("LOC",),
        None,
        None,
        (
            ("RepetitionTime", Uniform(7.5, 9.0)),
            ("EchoTime", Uniform(3.5, 4.8)),
            ("FlipAngle", 20.0),
            ("ScanningSequence", "GR"),
            ("SequenceVariant", "SP"),
            ("ScanOptions", ""),
            ("SequenceName", "*fl2d1"),
        ),
    ),
)

#: Parameters every series starts with (a protocol row may override them).
BASE_PARAMS: tuple[tuple[str, object], ...] = (("EchoTrainLength", 1), ("NumberOfAverages", 1.0))

#: PixelBandwidth range per acquisition type (drawn last, for every series).
PIXEL_BANDWIDTH: dict[str, tuple[float, float]] = {"2D": (130, 300), "3D": (150, 250)}

#: Parameters rounded to two decimals.
ROUNDED_PARAMS = ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle")


def protocol_for(kind: str, acq_type: str, vendor: str) -> ProtocolRow | None:
    """The first row of :data:`PROTOCOLS` for this series, or ``None`` (no sequence
    parameters beyond the base ones)."""
    return next((row for row in PROTOCOLS if row.matches(kind, acq_type, vendor)), None)


def acquisition_params(
    kind: str, acq_type: str, scanner: Scanner, rng: np.random.Generator
) -> dict:
    """TR/TE/TI, flip angle, ScanningSequence/SequenceVariant and friends, from the row
    of :data:`PROTOCOLS` for this series."""
    p: dict = dict(BASE_PARAMS)
    row = protocol_for(kind, acq_type, scanner.vendor)
    rules = row.params if row is not None else ()
    for name, rule in rules:
        p[name] = rule.value(rng, scanner) if isinstance(rule, ParamRule) else rule
    lo, hi = PIXEL_BANDWIDTH["2D" if acq_type == "2D" else "3D"]
    p["PixelBandwidth"] = float(round(rng.uniform(lo, hi), 1))
    for k in ROUNDED_PARAMS:
        if k in p:
            p[k] = round(float(p[k]), 2)
    return p


def image_type(vendor: str, kind: str) -> list[str]:
    derived = kind in ("ADC", "MPR", "SUB", "SWI")
    base = ["DERIVED", "PRIMARY"] if derived else ["ORIGINAL", "PRIMARY"]
    if kind == "MPR":
        return (
            ["DERIVED", "SECONDARY", "MPR"]
            if vendor != "GE"
            else ["DERIVED", "SECONDARY", "REFORMATTED", "AVERAGE"]
        )
    if kind == "SUB":
        return (
            ["DERIVED", "PRIMARY", "SUBTRACTION"]
            if vendor != "GE"
            else ["DERIVED", "SECONDARY", "SUBTRACT"]
        )
    if kind == "ADC":
        return [*base, "DIFFUSION", "ADC"]
    if kind == "DWI":
        return [*base, "DIFFUSION", "TRACEW"]
    if kind == "LOC":
        return [*base, "LOCALIZER"] if vendor != "SIEMENS" else [*base, "M", "NORM", "DIS2D"]
    if vendor == "SIEMENS":
        return [*base, "M", "ND", "NORM"]
    if vendor == "GE":
        return [*base, "OTHER"]
    if vendor == "PHILIPS":
        return [
            *base,
            "M_SE" if kind in ("T2", "FLAIR") else "M_FFE",
            "M",
            "SE" if kind in ("T2", "FLAIR") else "FFE",
        ]
    return [*base, "MR"]


def stored_scale(vendor: str, rng: np.random.Generator) -> tuple[float, float]:
    """(WM stored value on T1, rescale slope) typical of the vendor's pixel ranges."""
    if vendor == "GE":
        return float(rng.uniform(900, 2600)), 1.0
    if vendor == "PHILIPS":
        slope = float(pick(rng, [1.0, 1.4652, 2.1978, 3.0]))
        return float(rng.uniform(350, 900)), slope
    if vendor == "HITACHI":
        return float(rng.uniform(250, 700)), 1.0
    return float(rng.uniform(380, 800)), 1.0
