"""Per-patient plan: which studies and series, with which scanner, placement and timing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from brainmets.synth.acquisition import (
    CONTRAST_AGENTS,
    STUDY_DESCRIPTIONS,
    VOCAB,
    GeometrySpec,
    Scanner,
    SeriesPlan,
    StudyPlan,
    acquisition_params,
    geometry_for,
    image_type,
    pick,
    placement_transform,
    series_motion,
    stored_scale,
)
from brainmets.synth.geometry import Grid, apply_affine, make_grid, rotation_xyz

INSTITUTIONS = [
    ("Northfield General Hospital", "12 Harbour Road, Northfield, NF4 2QT", "Neuroradiology"),
    (
        "St. Aldric University Medical Center",
        "400 College Ave, Millbrook, MB 02145",
        "Department of Radiology",
    ),
    ("Klinikum Ostwald", "Lindenallee 17, 34567 Ostwald", "Institut fuer Neuroradiologie"),
    ("Lakeside Cancer Institute", "88 Shore Drive, Lakeside, LS 60611", "MRI"),
    ("Hopital Saint-Ferreol", "3 Rue des Tilleuls, 69000 Ferreol", "Imagerie"),
]


@dataclass
class PatientTraits:
    """What a patient's record contains (drawn per patient; forced for the first three)."""

    n_lesions: int
    force_infratentorial: bool = False
    force_pair: bool = False
    force_large: bool = False
    followup: bool = False
    missing: list[str] = field(default_factory=list)
    screenshot: bool = False
    overlay: bool = False
    mrn_in_description: bool = False
    t1_3d: bool = False
    t1c_2d: bool = False
    flair_3d: bool = False
    dwi: bool = True
    swi: bool = False
    mpr: bool = False
    sub: bool = False


def draw_features(rng: np.random.Generator, index: int, n_lesions: int) -> PatientTraits:
    """Random features; patients 0-2 are forced so that even a tiny cohort covers the
    cases every later stage must handle (complete patient with screenshot, overlay,
    infratentorial lesion and merging edema; follow-up study with subtraction; missing
    sequence)."""
    f = PatientTraits(n_lesions=n_lesions)
    f.followup = rng.random() < 0.25
    f.screenshot = rng.random() < 0.1
    f.overlay = rng.random() < 0.3
    f.mrn_in_description = rng.random() < 0.08
    f.t1_3d = rng.random() < 0.3
    f.t1c_2d = rng.random() < 0.12
    f.flair_3d = rng.random() < 0.2
    f.dwi = rng.random() < 0.85
    f.swi = rng.random() < 0.4
    f.mpr = rng.random() < 0.4
    f.sub = rng.random() < 0.7
    if rng.random() < 0.12:
        f.missing = [str(pick(rng, ["FLAIR", "T1c", "T2", "T1"]))]
    f.force_infratentorial = rng.random() < 0.1
    if index == 0:
        f.n_lesions = max(n_lesions, 4)
        f.force_infratentorial = f.force_pair = f.force_large = True
        f.screenshot = f.overlay = True
        f.missing = []
        f.t1c_2d = False
        f.followup = False
    elif index == 1:
        f.followup = True
        f.t1_3d = True
        f.t1c_2d = False
        f.sub = True
        f.mpr = True
        f.missing = []
        f.n_lesions = max(n_lesions, 2)
    elif index == 2:
        f.missing = ["FLAIR"]
        f.n_lesions = max(n_lesions, 2)
    return f


DURATIONS = {
    "LOC": 25.0,
    "T1": 160.0,
    "T2": 170.0,
    "FLAIR": 210.0,
    "DWI": 95.0,
    "SWI": 240.0,
    "T1c": 290.0,
}


_ORIENT_TOKENS = {"AX": ("ax", "tra", "axial"), "SAG": ("sag",), "COR": ("cor",)}


def _orientation_of(text: str) -> str | None:
    words = text.lower().replace("_", " ").replace("-", " ").split()
    for orient, tokens in _ORIENT_TOKENS.items():
        if any(w in tokens for w in words):
            return orient
    return None


def _desc(
    rng: np.random.Generator, vendor: str, key: str, src: str = "", orientation: str | None = None
) -> str:
    """A vendor spelling for ``key``; when ``orientation`` is given, one whose orientation
    word (ax/tra/sag/cor), if any, agrees with it."""
    options = list(VOCAB[vendor][key])
    if orientation is not None:
        fitting = [o for o in options if _orientation_of(o) in (None, orientation)]
        options = fitting or options
    return str(pick(rng, options)).replace("{src}", src)


def _series_numbering(vendor: str, n: int) -> int:
    return n * 100 + 1 if vendor == "PHILIPS" else n


def _next_number(vendor: str, plans: list[SeriesPlan]) -> int:
    """The series number of the next series after ``plans``."""
    return _series_numbering(vendor, len(plans) + 1)


def _last(plans: list[SeriesPlan], kind: str) -> SeriesPlan | None:
    """The last series of ``kind`` in ``plans``."""
    found = [p for p in plans if p.kind == kind]
    return found[-1] if found else None


@dataclass
class StudyContext:
    """What every series of one study shares: the random stream, the scanner, the
    patient's features, where the head lies in the scanner and the vendor's pixel scale."""

    rng: np.random.Generator
    scanner: Scanner
    feats: PatientTraits
    followup: bool
    centre: np.ndarray  # brain centre, scanner world
    head_pitch: float  # the head's tilt about the left-right axis, degrees
    wm_value: float  # stored value of white matter on T1 (before per-series jitter)
    rescale_slope: float
    t1c_spec: GeometrySpec | None = None  # the 3D T1c geometry (a 3D T1 shares it)

    @property
    def vendor(self) -> str:
        return self.scanner.vendor


def study_context(
    rng: np.random.Generator,
    role: str,
    scanner: Scanner,
    feats: PatientTraits,
    brain_centre: np.ndarray,
    scale: np.ndarray,
) -> tuple[StudyContext, np.ndarray, dict]:
    """Place the head in the scanner and draw the vendor's stored-value scale.

    Returns the context, the placement (template world -> scanner world) and its record.
    """
    placement, place_info = placement_transform(rng, brain_centre, scale)
    wm_value, slope = stored_scale(scanner.vendor, rng)
    ctx = StudyContext(
        rng=rng,
        scanner=scanner,
        feats=feats,
        followup=role == "followup",
        centre=apply_affine(placement, brain_centre),
        head_pitch=place_info["rotation_deg_xyz"][0],
        wm_value=wm_value,
        rescale_slope=slope,
    )
    return ctx, placement, place_info


def series_kinds(followup: bool, feats: PatientTraits) -> list[str]:
    """The acquired kinds in scan order: a follow-up study has a fixed short protocol;
    a baseline study has the optional DWI/SWI of ``feats`` and lacks its missing kinds."""
    kinds: list[str] = ["LOC"]
    if followup:
        return [*kinds, "T2", "FLAIR", "DWI", "T1c"]
    kinds += ["T1", "T2", "FLAIR"]
    if feats.dwi:
        kinds.append("DWI")
    if feats.swi:
        kinds.append("SWI")
    kinds.append("T1c")
    return [k for k in kinds if k not in feats.missing]


def t1c_geometry(
    rng: np.random.Generator, kinds: list[str], feats: PatientTraits, vendor: str
) -> GeometrySpec | None:
    """The 3D geometry of the study's T1c, or ``None`` where it has none or a 2D one."""
    if "T1c" in kinds and not feats.t1c_2d:
        return geometry_for("T1c", "3D", rng, vendor)
    return None


def is_3d(kind: str, feats: PatientTraits, followup: bool, t1c_3d: bool) -> bool:
    """Whether ``kind`` is acquired as a 3D volume: a T1c with 3D geometry, a T1 where
    the patient has a 3D T1 and the T1c is 3D, a baseline 3D FLAIR, and SWI always."""
    return (
        (kind == "T1c" and t1c_3d)
        or (kind == "T1" and feats.t1_3d and t1c_3d)
        or (kind == "FLAIR" and feats.flair_3d and not followup)
        or kind == "SWI"
    )


def localizer_grids(rng: np.random.Generator, centre: np.ndarray) -> list[Grid]:
    """The three-plane localizer: sagittal, coronal and axial stacks of three slices."""
    return [
        make_grid(orient, np.eye(3), centre, (256, 256), (1.0, 1.0), 3, float(rng.uniform(18, 30)))
        for orient in ("SAG", "COR", "AX")
    ]


def stack_geometry(ctx: StudyContext, kind: str, is3d: bool) -> tuple[GeometrySpec, Grid]:
    """Matrix, field of view and slices of an acquired (non-localizer) series, and its
    grid: angulated by the operator, shifted about the head centre (GE sometimes stores
    axial slices top to bottom)."""
    rng, v = ctx.rng, ctx.vendor
    if kind in ("T1", "T1c") and is3d and ctx.t1c_spec is not None:
        spec = ctx.t1c_spec
    elif kind == "FLAIR" and is3d:
        spec = geometry_for("FLAIR", "3D", rng, v, orientation="SAG")
    else:
        spec = geometry_for(kind, "3D" if is3d else "2D", rng, v)
    ang = _angulation(rng, ctx.head_pitch, spec.orientation, is3d)
    shift = rng.uniform(-4, 4, 3) + (np.array([0, 0, 6.0]) if not is3d else 0.0)
    px = (spec.fov[0] / spec.matrix[0], spec.fov[1] / spec.matrix[1])
    reverse = v == "GE" and spec.orientation == "AX" and rng.random() < 0.7
    grid = make_grid(
        spec.orientation,
        ang,
        ctx.centre + shift,
        spec.matrix,
        px,
        spec.n_slices,
        spec.spacing,
        reverse,
    )
    return spec, grid


def paired_grid(kind: str, is3d: bool, earlier: list[SeriesPlan]) -> Grid | None:
    """The grid a 3D T1/T1c must share with an earlier 3D T1 or T1c (so the scanner can
    subtract the pair), or ``None``."""
    if kind not in ("T1", "T1c") or not is3d:
        return None
    for partner in ("T1", "T1c"):
        plan = _last(earlier, partner)
        if plan is not None and plan.acq_type == "3D":
            return plan.grid
    return None


def vocabulary_key(kind: str, is3d: bool) -> str:
    """The :data:`VOCAB` key of an acquired kind (FLAIR, T1 and T1c by 2D/3D)."""
    if kind in ("FLAIR", "T1c", "T1"):
        return f"{kind}{'3D' if is3d else '2D'}"
    return kind


def series_contrast(kind: str, is3d: bool) -> str:
    """The rendered contrast (a key of ``anatomy.SIGNALS``) of an acquired kind."""
    return {
        "T1": "T1_GRE" if is3d else "T1_SE",
        "T1c": "T1c_GRE" if is3d else "T1c_SE",
        "T2": "T2",
        "FLAIR": "FLAIR",
        "DWI": "DWI_B1000",
        "SWI": "SWI",
        "LOC": "T1_GRE",
    }[kind]


def series_noise(kind: str, acq_type: str, field_t: float) -> float:
    """Relative noise level: more in 3D and at 1.5 T; DWI is noisiest."""
    if kind == "DWI":
        return 0.05
    return {"3D": 0.03, "2D": 0.025}[acq_type] * (1.0 if field_t >= 2.9 else 1.35)


def acquired_series(
    ctx: StudyContext, kind: str, time_s: float, earlier: list[SeriesPlan]
) -> SeriesPlan:
    """Plan one acquired series of ``kind`` starting at ``time_s``, numbered after
    ``earlier``: motion, grid(s), description, DICOM parameters, duration and scaling."""
    rng, v, scanner = ctx.rng, ctx.vendor, ctx.scanner
    is3d = is_3d(kind, ctx.feats, ctx.followup, ctx.t1c_spec is not None)
    acq = "3D" if is3d else "2D"
    motion = series_motion(rng, ctx.centre, amount=0.0 if kind == "LOC" else 1.0)
    if kind == "LOC":
        grids = localizer_grids(rng, ctx.centre)
        thickness, spacing = 8.0, float(grids[0].spacing[2])
        desc = _desc(rng, v, "LOC")
        orientation = "MULTI"
    else:
        spec, grid = stack_geometry(ctx, kind, is3d)
        shared = paired_grid(kind, is3d, earlier)
        grids = [grid if shared is None else shared]
        thickness, spacing = spec.thickness, spec.spacing
        orientation = spec.orientation
        desc = _desc(rng, v, vocabulary_key(kind, is3d), orientation=spec.orientation)
    params = acquisition_params(kind, acq, scanner, rng)
    sp = SeriesPlan(
        kind=kind,
        contrast=series_contrast(kind, is3d),
        series_number=_next_number(v, earlier),
        description=desc,
        acq_type=acq,
        orientation=orientation,
        grids=grids,
        slice_thickness=thickness,
        spacing_between_slices=spacing,
        time_s=time_s,
        duration_s=DURATIONS[kind] * float(rng.uniform(0.8, 1.3)),
        params=params,
        post_contrast=(kind == "T1c"),
        motion=motion,
        image_type=image_type(v, kind),
        wm_value=ctx.wm_value * float(rng.uniform(0.85, 1.15)),
        noise=series_noise(kind, acq, scanner.field_t),
        bias=0.18 if scanner.field_t >= 2.9 else 0.1,
        rescale_slope=ctx.rescale_slope,
        b_values=[0, 1000] if kind == "DWI" else [],
    )
    sp.protocol_name = desc.replace(" ", "_") if v == "SIEMENS" else desc
    if ctx.feats.mrn_in_description and kind == "T2":
        sp.params["_mrn_in_description"] = True
    return sp


def adc_series(rng: np.random.Generator, vendor: str, dwi: SeriesPlan, number: int) -> SeriesPlan:
    """The ADC map the scanner derives from a DWI series (same grid, motion, parameters)."""
    adc = SeriesPlan(
        kind="ADC",
        contrast="ADC",
        series_number=number,
        description=_desc(rng, vendor, "ADC"),
        acq_type="2D",
        orientation="AX",
        grids=dwi.grids,
        slice_thickness=dwi.slice_thickness,
        spacing_between_slices=dwi.spacing_between_slices,
        time_s=dwi.time_s + 2.0,
        duration_s=0.0,
        params=dict(dwi.params),
        motion=dwi.motion,
        image_type=image_type(vendor, "ADC"),
        wm_value=1.0,
        noise=0.04,
        bias=0.0,
        derived_from=dwi.series_number,
    )
    adc.protocol_name = dwi.protocol_name
    return adc


def acquisitions(
    ctx: StudyContext, kinds: list[str], start_s: float
) -> tuple[list[SeriesPlan], float]:
    """The acquired series of ``kinds`` in order (each DWI followed by its ADC), with the
    contrast injection before the first T1c and a pause after each series.

    Returns the series and the time the last one's pause ends."""
    rng, v = ctx.rng, ctx.vendor
    plans: list[SeriesPlan] = []
    t = start_s
    for kind in kinds:
        if kind == "T1c" and _last(plans, "T1c") is None:
            t += float(rng.uniform(40, 120))  # contrast injection
        sp = acquired_series(ctx, kind, t, plans)
        plans.append(sp)
        t += sp.duration_s + float(rng.uniform(15, 60))
        if kind == "DWI":
            plans.append(adc_series(rng, v, sp, _next_number(v, plans)))
    return plans, t


def subtraction_series(
    rng: np.random.Generator, vendor: str, src: SeriesPlan, number: int
) -> SeriesPlan:
    """The scanner's post-minus-pre subtraction of a 3D T1c (on the T1c's grid)."""
    sub = SeriesPlan(
        kind="SUB",
        contrast="",
        series_number=number,
        description=_desc(rng, vendor, "SUB", src.description)[:64],
        acq_type="3D",
        orientation=src.orientation,
        grids=src.grids,
        slice_thickness=src.slice_thickness,
        spacing_between_slices=src.spacing_between_slices,
        time_s=src.time_s + src.duration_s + 20.0,
        duration_s=0.0,
        params=dict(src.params),
        post_contrast=True,
        derived_from=src.series_number,
        motion=src.motion,
        image_type=image_type(vendor, "SUB"),
        wm_value=src.wm_value,
        noise=0.0,
        bias=0.0,
        rescale_slope=src.rescale_slope,
    )
    sub.protocol_name = src.protocol_name
    return sub


def reformat_series(ctx: StudyContext, src: SeriesPlan, number: int) -> SeriesPlan:
    """A coronal 3 mm reformat (MPR) of a 3D T1c."""
    rng, v = ctx.rng, ctx.vendor
    px = 240.0 / 256.0
    ang = _angulation(rng, ctx.head_pitch, "COR", True)
    grid = make_grid(
        "COR",
        ang,
        ctx.centre + np.array([0.0, 5.0, 0.0]),
        (256, 256),
        (px, px),
        int(rng.integers(50, 61)),
        3.0,
    )
    mpr = SeriesPlan(
        kind="MPR",
        contrast=src.contrast,
        series_number=number,
        description=_desc(rng, v, "MPR", src.description, "COR")[:64],
        acq_type="3D",
        orientation="COR",
        grids=[grid],
        slice_thickness=3.0,
        spacing_between_slices=3.0,
        time_s=src.time_s + src.duration_s + 40.0,
        duration_s=0.0,
        params=dict(src.params),
        post_contrast=True,
        derived_from=src.series_number,
        motion=src.motion,
        image_type=image_type(v, "MPR"),
        wm_value=src.wm_value,
        noise=0.012,
        bias=src.bias,
        rescale_slope=src.rescale_slope,
    )
    mpr.protocol_name = src.protocol_name
    return mpr


def post_contrast_derivatives(ctx: StudyContext, plans: list[SeriesPlan]) -> list[SeriesPlan]:
    """The series a baseline 3D T1c yields: a subtraction (where the features ask for
    one and the T1 is 3D too) and a coronal reformat (where they ask for one)."""
    src = _last(plans, "T1c")
    if src is None or src.acq_type != "3D" or ctx.followup:
        return []
    t1 = _last(plans, "T1")
    out: list[SeriesPlan] = []
    if ctx.feats.sub and t1 is not None and t1.acq_type == "3D":
        out.append(
            subtraction_series(ctx.rng, ctx.vendor, src, _next_number(ctx.vendor, plans + out))
        )
    if ctx.feats.mpr:
        out.append(reformat_series(ctx, src, _next_number(ctx.vendor, plans + out)))
    return out


def screenshot_series(
    ctx: StudyContext, plans: list[SeriesPlan], time_s: float
) -> SeriesPlan | None:
    """The screen save of a baseline T1c slice (where the features ask for one), saved
    ``time_s`` + 5 minutes; ``None`` otherwise."""
    t1c = _last(plans, "T1c")
    if not ctx.feats.screenshot or ctx.followup or t1c is None:
        return None
    v = ctx.vendor
    return SeriesPlan(
        kind="SC",
        contrast="",
        series_number=_next_number(v, plans) + 9000 if v != "PHILIPS" else 99901,
        description=_desc(ctx.rng, v, "SC"),
        acq_type="2D",
        orientation="AX",
        grids=t1c.grids,
        slice_thickness=0.0,
        spacing_between_slices=0.0,
        time_s=time_s + 300.0,
        duration_s=0.0,
        derived_from=t1c.series_number,
        motion=t1c.motion,
        image_type=["DERIVED", "SECONDARY", "SCREEN SAVE"],
    )


def plan_study(
    rng: np.random.Generator,
    role: str,
    index: int,
    date: dt.date,
    scanner: Scanner,
    feats: PatientTraits,
    brain_centre: np.ndarray,
    scale: np.ndarray,
    start_s: float,
) -> tuple[StudyPlan, dict]:
    """Plan one study: placement in the scanner and the ordered list of series.

    Steps (in this order, which fixes the random draws): :func:`study_context`,
    :func:`series_kinds`, the contrast agent, :func:`t1c_geometry`,
    :func:`acquisitions`, :func:`post_contrast_derivatives`, :func:`screenshot_series`
    and the study description.
    """
    ctx, placement, place_info = study_context(rng, role, scanner, feats, brain_centre, scale)
    kinds = series_kinds(ctx.followup, feats)
    agent = pick(rng, CONTRAST_AGENTS)
    ctx.t1c_spec = t1c_geometry(rng, kinds, feats, scanner.vendor)
    plans, end_s = acquisitions(ctx, kinds, start_s)
    plans += post_contrast_derivatives(ctx, plans)
    screenshot = screenshot_series(ctx, plans, end_s)
    if screenshot is not None:
        plans.append(screenshot)
    study = StudyPlan(
        role=role,
        index=index,
        date=date,
        scanner=scanner,
        station_name="",
        device_serial="",
        institution=("", "", ""),
        study_description=str(pick(rng, STUDY_DESCRIPTIONS)),
        placement=placement,
        series=plans,
        contrast_agent=agent if _last(plans, "T1c") is not None else None,
        missing=[] if ctx.followup else list(feats.missing),
    )
    return study, place_info


def _angulation(
    rng: np.random.Generator, head_pitch: float, orientation: str, is3d: bool
) -> np.ndarray:
    if orientation == "AX" and not is3d:
        # the operator tilts the stack partly along the AC-PC line
        pitch = float(np.clip(head_pitch * rng.uniform(0.3, 1.0) + rng.uniform(-3, 3), -18, 18))
        return rotation_xyz(pitch, rng.uniform(-2, 2), rng.uniform(-3, 3))
    if rng.random() < 0.5:
        return np.eye(3)
    return rotation_xyz(rng.uniform(-5, 5), rng.uniform(-3, 3), rng.uniform(-4, 4))


def station_and_serial(rng: np.random.Generator, scanner: Scanner) -> tuple[str, str]:
    v = scanner.vendor
    n = int(rng.integers(10000, 99999))
    station = {
        "SIEMENS": f"AWP{n}",
        "GE": f"GEMR{n % 100:02d}{'3T' if scanner.field_t >= 2.9 else '15'}",
        "PHILIPS": f"PHILIPS-{n:05X}",
        "HITACHI": f"HMC-MR{n % 1000:03d}",
    }[v]
    serial = str(int(rng.integers(10000, 999999)))
    return station, serial
