"""Multi-vendor, multi-language vocabulary of MR series descriptions.

Series descriptions are free text typed by vendors' protocol designers and technologists:
``t1_mprage_sag_p2_iso_KM`` (Siemens, German site), ``+C Ax T1 FLAIR`` (GE),
``sT1W_3D_TFE_GD`` (Philips), ``T1WI+Gd`` (Hitachi), ``T1 3D GADO`` (French site),
``T1 AXIAL SIN CONTRASTE`` (Spanish site). :func:`normalise` turns them into a canonical
token string (lower case, accents dropped, separators to single blanks, ``+`` and ``*``
kept) and :func:`describe` matches the patterns below against it.

The patterns are written from clinical protocol naming, not from any generator's output.
Each pattern is a regular expression over the normalised text; ``\\b``-like boundaries are
spelled ``(?<![a-z0-9])`` / ``(?![a-z0-9])`` because ``+`` and ``*`` are kept.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

B = r"(?<![a-z0-9])"  # token start
E = r"(?![a-z0-9])"  # token end


def _w(*alternatives: str) -> re.Pattern[str]:
    """A pattern matching any of the alternatives as whole tokens."""
    return re.compile(B + "(?:" + "|".join(alternatives) + ")" + E)


# Rewrites applied to the raw (lower-cased) text before separators are dropped: slashes
# carry meaning in "w/o", "s/c" (sin contraste), "c/c" (con contraste).
_PRE_REWRITES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![a-z0-9])w\s*/\s*o(?![a-z0-9])"), " without "),
    (re.compile(r"(?<![a-z0-9])wo\s*/"), " without "),
    (re.compile(r"(?<![a-z0-9])s\s*/\s*c(?![a-z0-9])"), " sin contraste "),
    (re.compile(r"(?<![a-z0-9])c\s*/\s*c(?![a-z0-9])"), " con contraste "),
    (re.compile(r"(?<![a-z0-9])w\s*/\s*"), " with "),
    (re.compile(r"(?<![a-z0-9])s\s*/\s*(?=[a-z])"), " sin "),
    (re.compile(r"(?<![a-z0-9])c\s*/\s*(?=[a-z])"), " con "),
    (re.compile(r"t2\s*\*"), " t2* "),
    (re.compile(r"t2\s*star"), " t2* "),
    (re.compile(r"t2\s*etoile"), " t2* "),
)


def normalise(text: str | None) -> str:
    """Canonical token string of a description: ``'+C Ax T1'`` -> ``' +c ax t1 '``."""
    if not text:
        return " "
    s = unicodedata.normalize("NFKD", text)
    s = "".join(ch for ch in s if not unicodedata.combining(ch)).lower()
    s = s.replace("ß", "ss")
    for pattern, repl in _PRE_REWRITES:
        s = pattern.sub(repl, s)
    s = re.sub(r"[^a-z0-9+*]+", " ", s)
    s = re.sub(r"\s+", " ", s).strip()
    return f" {s} "


# ---------------------------------------------------------------------- contrast
AGENT_WORDS = (
    r"contrast|contraste|contrasto|kontrast|kontrastmittel|kontrastu|kontrascie|kontrastem|km"
    r"|mdc|mc|pdc|gad|gado"
    r"|gadolinium|gadolinio|gd|gd dtpa|dtpa|gbca|inj|injection|injecte|injectee"
)
#: what may follow "without", "sin", "ohne", "pre" ... in a pre-contrast statement
CONTRAST_WORDS = AGENT_WORDS + r"|iv|c"
#: Explicit statements that the series was acquired without contrast agent.
NEGATIVE_CONTRAST: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            B + r"(?:without|w o|wo|sin|sans|ohne|senza|sem|zonder|non|no|pre|prae|vor|avant"
            r"|before|fore|uten|utan|bez|pred|przed|voor)[ ]?(?:" + CONTRAST_WORDS + ")" + E
        ),
        "says 'without/before contrast'",
    ),
    (
        _w(
            "pre",
            "precontrast",
            "pregad",
            "pregd",
            "pre gado",
            "prekm",
            "nativ",
            "native",
            "nat",
            "nc",
            "unenhanced",
            "noncontrast",
            "non contrast",
            "non enhanced",
            "nonenhanced",
            "plain",
            "kontrastsiz",
            "t1pre",
            "sans",
            "sin",
            "ohne",
            "senza",
            "without",
            "basal",
            "basale",
            "simple",
        ),
        "has a pre-contrast token",
    ),
)
#: Explicit statements that the series was acquired after contrast agent.
POSITIVE_CONTRAST: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\+ ?(?:c|ce|gd|gad|gado|km|mdc|k|kontrast|contrast|contraste|iv)" + E), "'+C'"),
    (re.compile(B + r"(?:c|gd|gad|km|k) ?\+"), "'C+'"),
    (
        _w(
            r"post(?! fossa)(?! op)",
            "postcontrast",
            "postcontraste",
            "poscontraste",
            "postgad",
            "postgado",
            "postgd",
            "postkm",
            "postinj",
            "pgd",
            "t1post",
            "t1gd",
            "t1c",
            "t1ce",
            "t1 ce",
            "t1 c",
            "t1wce",
            "t1w ce",
            "ce ?t1(?:w|wi)?",
            "ce ?3d ?t1(?:w|wi)?",
            "gd ?t1(?:w|wi)?",
            "t1 km",
            "t1km",
            "apres",
            "nach",
            "dopo",
            "efter",
            "etter",
            "tras",
            "despues",
            "pos contraste",
            "na contrast",
            "enhanced",
            "enh",
            "kontrastli",
            "delayed",
            "delay",
            "late",
            "spat",
        ),
        "has a post-contrast token",
    ),
    (_w(AGENT_WORDS), "names the contrast agent"),
    (
        _w(
            "gadovist",
            "gadavist",
            "dotarem",
            "magnevist",
            "multihance",
            "prohance",
            "omniscan",
            "clariscan",
            "elucirem",
            "vueway",
            "dotagraf",
            "cyclolux",
            "optimark",
            "primovist",
            "eovist",
            "gadobutrol",
            "gadoterate",
            "gadoteridol",
            "gadobenate",
            "gadopentetate",
            "gadodiamide",
            "gadopiclenol",
            "gadoxetate",
            "artirem",
            "magnescope",
            "gadogita",
        ),
        "names a gadolinium agent",
    ),
)
#: Stereotactic radiosurgery / navigation planning volumes: contrast-enhanced by practice
#: (Gamma Knife, CyberKnife, LINAC SRS and neuronavigation T1 volumes are post-gadolinium).
PLANNING_CONTRAST = _w(
    "gk",
    "gamma ?knife",
    "gammaknife",
    "cyberknife",
    "srs",
    "sbrt",
    "stereo",
    "stereotaxy",
    "stereotaxie",
    "stereotactic",
    "stereotaxia",
    "radiosurgery",
    "nav",
    "navi",
    "navigation",
    "neuronav",
    "neuronavigation",
    "stealth",
    "stealthstation",
    "brainlab",
    "icon",
)


# ------------------------------------------------------------------ other kinds
#: Series kinds that are never one of the four target sequences, with their patterns.
OTHER_KINDS: dict[str, re.Pattern[str]] = {
    "localizer": _w(
        "localizer",
        "localiser",
        "localizador",
        "localizzatore",
        "locator",
        "scano",
        "scanogram",
        "localisateur",
        "loc",
        "locs",
        "3 ?plane",
        "three ?plane",
        "3pl",
        "tri ?pilot",
        "tripilot",
        "scout",
        "survey",
        "surview",
        "aahead",
        "aa ?head",
        "autoalign",
        "auto align",
        "pilot",
        "smartbrain",
        "smartexam",
        "planning",
        "plan",
        "reperage",
        "repere",
        "posicionamiento",
        "topogram",
    ),
    "calibration": _w(
        "calibration",
        "cal",
        "asset ?cal",
        "pure ?cal",
        "coil ?survey",
        "coilsurvey",
        "sense ?ref",
        "ref ?scan",
        "reference ?scan",
        "refscan",
        "prescan",
        "b1 ?map",
        "b0 ?map",
        "field ?map",
        "fieldmap",
        "gre field",
        "shim",
        "noise",
        "mocoseries",
        "moco",
    ),
    "diffusion": _w(
        "dwi",
        "dwis",
        "dw",
        "diff",
        "diffusion",
        "difusion",
        "diffusie",
        "diffusione",
        "diffusao",
        "difusao",
        "trace",
        "tracew",
        "adc",
        "dadc",
        "eadc",
        "exp",
        "fa",
        "colfa",
        "dti",
        "dki",
        "hardi",
        "dsi",
        "ep2d diff",
        "ep ?diff",
        "resolve",
        "readout segmented",
        "b ?1000",
        "b ?2000",
        "b ?0",
        "b ?500",
        "isodwi",
        "tensor",
        "zoomit dwi",
        "focus dwi",
        "musedwi",
        "muse",
    ),
    "perfusion": _w(
        "perf",
        "perfusion",
        "perfusie",
        "perfusao",
        "dsc",
        "dce",
        "asl",
        "pcasl",
        "pasl",
        "casl",
        "3d ?asl",
        "cbf",
        "cbv",
        "rcbv",
        "relcbv",
        "mtt",
        "ttp",
        "tmax",
        "ktrans",
        "dyn",
        "dynamic",
        "dynamique",
        "dinamico",
        "dynamisch",
        "twist",
        "tricks",
        "4d ?trak",
        "bolus",
        "ep2d perf",
        "leakage",
    ),
    "susceptibility": _w(
        "swi",
        "swip",
        "swan",
        "swan 2 0",
        "venobold",
        "venbold",
        "sweep",
        "susceptibility",
        "t2\\*",
        "t2\\* ?(?:ffe|gre|fl2d|fl3d|medic|hemo|haemo|hamo|we|w)",
        "hemo",
        "haemo",
        "hamo",
        "haem",
        "hemosiderin",
        "hemosiderine",
        "hemosiderina",
        "sang",
        "medic",
        "merge",
        "mnip",
        "minip",
        "min ip",
        "mip",
        "pha",
        "phase",
        "mag",
        "qsm",
        "t2 gre",
        "gre t2",
        "t2 eg",
        "eg t2",
        "t2 fe",
        "t2 ffe",
        "t2 fl2d",
        "t2 fl3d",
        "fl2d t2",
        "t2w ffe",
        "eco de gradiente",
        "gradient echo t2",
        "gradientenecho",
        "esweep",
    ),
    "angiography": _w(
        "tof",
        "tof3d",
        "3d ?tof",
        "2d ?tof",
        "mra",
        "mrv",
        "angio",
        "angiography",
        "angiographie",
        "angiografia",
        "venography",
        "veno",
        "arterial",
        "pc ?angio",
        "pcangio",
        "phase ?contrast",
        "inhance",
        "ce ?mra",
        "timeresolved",
        "vessel",
        "carotid",
        "carotids",
        "circle of willis",
        "cow",
    ),
    "spectroscopy": _w(
        "svs",
        "csi",
        "spectro",
        "spectroscopy",
        "spectroscopie",
        "espectroscopia",
        "spektroskopie",
        "mrs",
        "press",
        "steam",
        "semilaser",
        "naa",
        "choline",
    ),
    "functional": _w(
        "bold",
        "fmri",
        "rs ?fmri",
        "rsfmri",
        "resting",
        "resting state",
        "task",
        "motor",
        "language",
        "finger",
        "ep2d bold",
        "epi bold",
    ),
    "flow": _w("cine", "csf ?flow", "flow", "qflow", "velocity", "venc", "4d ?flow"),
    "proton_density": _w(
        "pd",
        "pdw",
        "pd ?w",
        "pd ?tse",
        "pd ?fse",
        "pdfs",
        "dp",
        "densite de protons",
        "proton density",
        "densidad protonica",
        "pd t2",
        "t2 pd",
        "dual ?echo",
        "double ?echo",
    ),
    "stir": _w("stir", "t2 ?stir", "tirm stir"),
    "ssfp": _w(
        "ciss",
        "fiesta",
        "fiesta ?c",
        "trufi",
        "truefisp",
        "true ?fisp",
        "bffe",
        "b ffe",
        "balanced",
        "basg",
        "true ?ssfp",
        "cosmic",
        "psif",
    ),
    "limited_coverage": _w(
        "iac",
        "cai",
        "mai",
        "cpa",
        "khbw",
        "kha",
        "inner ear",
        "cochlea",
        "cochlear",
        "labyrinth",
        "ohr",
        "ear",
        "oido",
        "oreille",
        "orbit",
        "orbits",
        "orbita",
        "orbitae",
        "orbite",
        "orbites",
        "optic",
        "sella",
        "selle",
        "hypophysis",
        "hypophyse",
        "hipofisis",
        "ipofisi",
        "pituitary",
        "pit",
        "hypo",
        "cavernous",
        "trigeminal",
        "spine",
        "cspine",
        "c spine",
        "cervical",
        "hws",
        "bws",
        "lws",
        "rachis",
        "columna",
        "neck",
        "hals",
        "cou",
        "cuello",
        "tmj",
        "face",
        "sinus",
        "nasopharynx",
    ),
    "subtraction": _w(
        "sub",
        "subs",
        "subtraction",
        "subtract",
        "subtracted",
        "subtraktion",
        "soustraction",
        "sustraccion",
        "sottrazione",
        "subtr",
        "diff image",
        "minus",
    ),
    "reformat": _w(
        "reformat",
        "reformatted",
        "reformation",
        "rfmt",
        "mpr ?(?:tra|ax|axial|cor|coronal|sag|sagittal|obl)",
        "mprs",
        "mpr recon",
        "reko",
        "rekon",
        "rekonstruktion",
        "recon",
        "reconstruction",
        "reconstruccion",
        "reconstrucao",
        "3d ?recon",
        "vr",
        "volume rendering",
        "curved",
        "thick",
        "thin mip",
        "collapse",
        "average",
        "avg",
        "composed",
        "composite",
    ),
    "map": _w(
        "t1 ?map",
        "t1map",
        "t1 ?mapping",
        "t2 ?map",
        "t2map",
        "t2 ?mapping",
        "mapping",
        "map",
        "maps",
        "qmap",
        "relaxometry",
        "magic",
        "synthetic",
        "synthmr",
        "mdme",
        "mp2rage ?(?:inv1|inv2|t1map|t1 ?images)",
        "inv1",
        "inv2",
        "mt",
        "mtr",
        "mtc on",
        "dir",
        "double ?ir",
        "psir",
        "t1rho",
        "dixon ?(?:fat|f|opp|op|in|ip)",
        "fat",
        "opp",
        "in phase",
        "out phase",
        "opposed",
        "f only",
    ),
    "non_image": _w(
        "screen",
        "screenshot",
        "save",
        "report",
        "dose",
        "key ?image",
        "key ?images",
        "protocol",
        "phoenix",
        "phoenixzipreport",
        "exam ?card",
        "evidence",
        "summary",
        "results",
        "series ?summary",
        "annotation",
        "measurement",
        "presentation",
        "cad",
        "graph",
        "chart",
    ),
}


# ----------------------------------------------------------------- target kinds
#: Sequence weighting vocabulary. A FLAIR token together with a T1 token (and no T2
#: token) is a T1-FLAIR, i.e. T1; handled in :func:`describe`.
T1_WORDS = _w(
    "[sc]?t1",
    "[sc]?t1w",
    "t1wi",
    "t1 ?weighted",
    "t1 ?w",
    "t1 ?se",
    "t1 ?tse",
    "t1 ?fse",
    "t1se",
    "t1tse",
    "t1fse",
    "t1 ?flair",
    "t1flair",
    "t1 ?ffe",
    "t1ffe",
    "t1 ?tfe",
    "t1tfe",
    "t1 ?irtse",
    "t1 ?ir",
    "t1 ?3d",
    "t1 ?3d ?ffe",
    "3d ?t1",
    "t1 ?iso",
    "t1 ?space",
    "t1 ?cube",
    "t1 ?vista",
    "cube ?t1",
    "space ?t1",
    "vista ?t1",
    "t1c",
    "t1ce",
    "t1gd",
    "t1km",
    "t1post",
    "t1pre",
    "t1n",
    "t1wce",
    "cet1",
    "mprage",
    "mp ?rage",
    "mpr",
    "tfl",
    "tfl3d",
    "tfl3d1",
    "bravo",
    "spgr",
    "fspgr",
    "ir ?spgr",
    "irspgr",
    "ir ?fspgr",
    "irfspgr",
    "efgre3d",
    "fgre",
    "3d ?fgre",
    "vibe",
    "lava",
    "thrive",
    "flash",
    "fl3d",
    "fl2d",
    "3d ?tfe",
    "tfe",
    "rssg",
    "3d ?rssg",
    "geir",
    "3d ?geir",
    "ge ?ir",
    "mp2rage",
    "mp2rage uni",
    "uni",
    "uni images",
    "black ?blood",
    "bb",
    "sandwich",
    "dante",
    "turboflash",
    "volumetric t1",
    "fse t1",
    "tse t1",
    "se t1",
    "eg t1",
    "t1 eg",
    "t1 ge",
    "ffe3d",
    "3d ?ffe",
    "fspgr3d",
    "3d ?spgr",
    "3dt1",
    "t13d",
    "mp rage",
    "ir ?tfe",
    "ir ?ffe",
)
T2_WORDS = _w(
    "[sc]?t2",
    "[sc]?t2w",
    "t2wi",
    "t2 ?weighted",
    "t2 ?w",
    "t2 ?tse",
    "t2 ?fse",
    "t2tse",
    "t2fse",
    "t2 ?frfse",
    "frfse",
    "fse t2",
    "tse t2",
    "t2 ?3d",
    "3d ?t2",
    "t2 ?space",
    "t2 ?spc",
    "t2 ?cube",
    "cube ?t2",
    "t2 ?vista",
    "vista ?t2",
    "t2 ?blade",
    "t2 ?propeller",
    "t2 ?multivane",
    "t2 ?drive",
    "t2w ?drive",
    "t2 ?haste",
    "t2 ?ssfse",
    "t2 ?fase",
    "t2w",
    "t2 ?rtse",
)
#: Sequence families that, without a weighting word, are usually T2 (weaker evidence).
T2_FAMILY_WORDS = _w(
    "propeller",
    "blade",
    "multivane",
    "haste",
    "ssfse",
    "fase",
    "space",
    "spc",
    "cube",
    "vista",
    "drive",
    "tse",
    "fse",
    "rtse",
    "turbo spin echo",
)
FLAIR_WORDS = _w(
    "flair",
    "[sc]?flair",
    "t2 ?flair",
    "t2flair",
    "t2 ?fl",
    "t2w ?flair",
    "flair ?t2",
    "3d ?flair",
    "flair ?3d",
    "t2f",
    "dark ?fluid",
    "darkfluid",
    "da ?fl",
    "dafl",
    "tirm",
    "t2 ?tirm",
    "tir",
    "spc ?ir",
    "space ?ir",
    "spcir",
    "fluid ?att",
    "fluid ?attenuated",
    "fluid ?suppressed",
    "cube ?flair",
    "vista ?flair",
    "flair ?vista",
    "flair ?cube",
    "flair ?space",
    "space ?flair",
    "spc ?flair",
    "ir ?fse",
    "irfse",
    "ir ?tse",
    "fast ?flair",
    "flair ?long",
    "flairlong",
    "t2 ?ir",
)


#: "Other" tokens that are also ordinary words in target series names ("T1 fat sat",
#: "T1 SE MT", "T2 flow comp", "MPRAGE planning"): they decide only when the description
#: has no weighting word.
AMBIGUOUS_OTHER_TOKENS = frozenset(
    {
        "mag",
        "fat",
        "delay",
        "delayed",
        "bolus",
        "plan",
        "planning",
        "flow",
        "average",
        "avg",
        "mt",
        "thick",
        "dyn",
        "dynamic",
        "pit",
        "hypo",
        "vessel",
        "arterial",
        "exp",
        "fa",
        "dw",
        "moco",
        "noise",
        "motor",
        "task",
        "language",
        "face",
        "cal",
        "save",
    }
)


@dataclass
class DescriptionCall:
    """What a description says, by vocabulary alone.

    Attributes:
        other: an :data:`OTHER_KINDS` key the description names (DWI, localizer...), or None.
        other_token: the token that named it.
        other_weak: the token is ambiguous (see :data:`AMBIGUOUS_OTHER_TOKENS`) or is the
            Siemens ``MPR <plane>`` reformat suffix, which also occurs in original MPRAGE
            protocol names (``t1_mpr_sag_p2_iso``): the caller weighs it against Image Type.
        weighting: ``t1`` / ``t2`` / ``flair`` or None.
        strength: confidence of ``weighting`` (0..1).
        reason: why, in words.
        contrast: +1 post-contrast, -1 pre-contrast, 0 nothing said.
        contrast_reason: the words that said so.
        planning: a stereotactic or navigation planning volume (contrast-enhanced by practice).
        norm: the normalised text.
    """

    other: str | None = None
    other_token: str | None = None
    other_weak: bool = False
    weighting: str | None = None
    strength: float = 0.0
    reason: str = ""
    contrast: int = 0
    contrast_reason: str = ""
    planning: bool = False
    norm: str = " "
    tokens: list[str] = field(default_factory=list)


def _find(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    return m.group(0).strip() if m else None


def contrast_statement(norm: str) -> tuple[int, str]:
    """+1 / -1 / 0 for an explicit post / pre / no contrast statement in normalised text."""
    for pattern, why in NEGATIVE_CONTRAST:
        tok = _find(pattern, norm)
        if tok:
            return -1, f"{why} ({tok!r})"
    for pattern, why in POSITIVE_CONTRAST:
        tok = _find(pattern, norm)
        if tok:
            return 1, f"{why} ({tok!r})"
    return 0, ""


def _weighting(norm: str) -> tuple[str | None, float, str, list[str]]:
    t1 = _find(T1_WORDS, norm)
    t2 = _find(T2_WORDS, norm)
    flair = _find(FLAIR_WORDS, norm)
    if flair and t1 and not t2 and "t2" not in flair:
        why = f"description names a T1-FLAIR / T1 inversion recovery ({t1!r} + {flair!r})"
        return "t1", 0.85, why, [t1, flair]
    if flair:
        return "flair", 0.9, f"description names a FLAIR ({flair!r})", [flair]
    if t1 and t2:
        return None, 0.0, f"description names both T1 and T2 ({t1!r}, {t2!r})", [t1, t2]
    if t1:
        return "t1", 0.85, f"description names a T1-weighted series ({t1!r})", [t1]
    if t2:
        return "t2", 0.85, f"description names a T2-weighted series ({t2!r})", [t2]
    fam = _find(T2_FAMILY_WORDS, norm)
    if fam:
        why = f"description names a sequence family that is usually T2-weighted ({fam!r})"
        return "t2", 0.5, why, [fam]
    return None, 0.0, "", []


def _mpr_may_be_mprage(norm: str, m: re.Match[str]) -> bool:
    """``mpr sag`` right after ``t1`` (or alone) may be an MPRAGE protocol name; after a
    whole protocol name (``..._iso_MPR_Tra``) it is the scanner's reformat suffix."""
    before = norm[: m.start()].split()
    return not before or before[-1] in ("t1", "t1w", "3d", "t1 3d", "st1w", "ct1w")


def describe(text: str | None) -> DescriptionCall:
    """Read a series description: named series kind, T1/T2/FLAIR weighting, contrast."""
    norm = normalise(text)
    sign, why = contrast_statement(norm)
    weighting, strength, reason, tokens = _weighting(norm)
    call = DescriptionCall(
        weighting=weighting,
        strength=strength,
        reason=reason,
        contrast=sign,
        contrast_reason=why,
        planning=PLANNING_CONTRAST.search(norm) is not None,
        norm=norm,
        tokens=tokens,
    )
    for kind, pattern in OTHER_KINDS.items():
        for m in pattern.finditer(norm):
            tok = m.group(0).strip()
            weak = (tok in AMBIGUOUS_OTHER_TOKENS and weighting is not None) or (
                kind == "reformat" and tok.startswith("mpr") and _mpr_may_be_mprage(norm, m)
            )
            if call.other is None or (call.other_weak and not weak):
                call.other, call.other_token, call.other_weak = kind, tok, weak
            if not weak:
                break
        if call.other is not None and not call.other_weak:
            break
    return call
