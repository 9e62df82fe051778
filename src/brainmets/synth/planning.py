"""Per-patient plan: which studies and series, with which scanner, placement and timing."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from brainmets.synth.acquisition import (
    CONTRAST_AGENTS,
    STUDY_DESCRIPTIONS,
    VOCAB,
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
class PatientFeatures:
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


def draw_features(rng: np.random.Generator, index: int, n_lesions: int) -> PatientFeatures:
    """Random features; patients 0-2 are forced so that even a tiny cohort covers the
    cases every later stage must handle (complete patient with screenshot, overlay,
    infratentorial lesion and merging edema; follow-up study with subtraction; missing
    sequence)."""
    f = PatientFeatures(n_lesions=n_lesions)
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


def plan_study(
    rng: np.random.Generator,
    role: str,
    index: int,
    date: dt.date,
    scanner: Scanner,
    feats: PatientFeatures,
    brain_centre: np.ndarray,
    scale: np.ndarray,
    start_s: float,
) -> tuple[StudyPlan, dict]:
    """Plan one study: placement in the scanner and the ordered list of series."""
    placement, place_info = placement_transform(rng, brain_centre, scale)
    centre = apply_affine(placement, brain_centre)
    head_pitch = place_info["rotation_deg_xyz"][0]
    v = scanner.vendor
    wm_value, slope = stored_scale(v, rng)
    t = start_s
    plans: list[SeriesPlan] = []
    counter = 1
    followup = role == "followup"
    kinds: list[str] = ["LOC"]
    if followup:
        kinds += ["T2", "FLAIR", "DWI", "T1c"]
    else:
        kinds += ["T1", "T2", "FLAIR"]
        if feats.dwi:
            kinds.append("DWI")
        if feats.swi:
            kinds.append("SWI")
        kinds.append("T1c")
        kinds = [k for k in kinds if k not in feats.missing]
    agent = pick(rng, CONTRAST_AGENTS)
    t1c_plan: SeriesPlan | None = None
    t1_plan: SeriesPlan | None = None
    t1c_spec = None
    if "T1c" in kinds and not feats.t1c_2d:
        t1c_spec = geometry_for("T1c", "3D", rng, v)
    for kind in kinds:
        if kind == "T1c" and t1c_plan is None:
            t += float(rng.uniform(40, 120))  # contrast injection
        is3d = (
            (kind == "T1c" and t1c_spec is not None)
            or (kind == "T1" and feats.t1_3d and t1c_spec is not None)
            or (kind == "FLAIR" and feats.flair_3d and not followup)
            or kind == "SWI"
        )
        acq = "3D" if is3d else "2D"
        motion = series_motion(rng, centre, amount=0.0 if kind == "LOC" else 1.0)
        if kind == "LOC":
            grids = []
            for orient in ("SAG", "COR", "AX"):
                grids.append(
                    make_grid(
                        orient,
                        np.eye(3),
                        centre,
                        (256, 256),
                        (1.0, 1.0),
                        3,
                        float(rng.uniform(18, 30)),
                    )
                )
            spec_th, spec_sp = 8.0, float(grids[0].spacing[2])
            desc = _desc(rng, v, "LOC")
            orientation = "MULTI"
        else:
            if kind in ("T1", "T1c") and is3d and t1c_spec is not None:
                spec = t1c_spec
            elif kind == "FLAIR" and is3d:
                spec = geometry_for("FLAIR", "3D", rng, v, orientation="SAG")
            else:
                spec = geometry_for(kind, acq, rng, v)
            ang = _angulation(rng, head_pitch, spec.orientation, is3d)
            shift = rng.uniform(-4, 4, 3) + (np.array([0, 0, 6.0]) if not is3d else 0.0)
            px = (spec.fov[0] / spec.matrix[0], spec.fov[1] / spec.matrix[1])
            reverse = v == "GE" and spec.orientation == "AX" and rng.random() < 0.7
            grid = make_grid(
                spec.orientation,
                ang,
                centre + shift,
                spec.matrix,
                px,
                spec.n_slices,
                spec.spacing,
                reverse,
            )
            if kind in ("T1", "T1c") and is3d:
                # a 3D pre/post pair shares its grid so the scanner can subtract them
                if t1_plan is not None and t1_plan.acq_type == "3D":
                    grid = t1_plan.grid
                elif t1c_plan is not None and t1c_plan.acq_type == "3D":
                    grid = t1c_plan.grid
            grids = [grid]
            spec_th, spec_sp = spec.thickness, spec.spacing
            orientation = spec.orientation
            key = {
                "FLAIR": "FLAIR3D" if is3d else "FLAIR2D",
                "T1c": "T1c3D" if is3d else "T1c2D",
                "T1": "T13D" if is3d else "T12D",
            }.get(kind, kind)
            desc = _desc(rng, v, key, orientation=spec.orientation)
        params = acquisition_params(kind, acq, scanner, rng)
        contrast = {
            "T1": "T1_GRE" if is3d else "T1_SE",
            "T1c": "T1c_GRE" if is3d else "T1c_SE",
            "T2": "T2",
            "FLAIR": "FLAIR",
            "DWI": "DWI_B1000",
            "SWI": "SWI",
            "LOC": "T1_GRE",
        }[kind]
        noise = {"3D": 0.03, "2D": 0.025}[acq] * (1.0 if scanner.field_t >= 2.9 else 1.35)
        if kind == "DWI":
            noise = 0.05
        sp = SeriesPlan(
            kind=kind,
            contrast=contrast,
            series_number=_series_numbering(v, counter),
            description=desc,
            acq_type=acq,
            orientation=orientation,
            grids=grids,
            slice_thickness=spec_th,
            spacing_between_slices=spec_sp,
            time_s=t,
            duration_s=DURATIONS[kind] * float(rng.uniform(0.8, 1.3)),
            params=params,
            post_contrast=(kind == "T1c"),
            motion=motion,
            image_type=image_type(v, kind),
            wm_value=wm_value * float(rng.uniform(0.85, 1.15)),
            noise=noise,
            bias=0.18 if scanner.field_t >= 2.9 else 0.1,
            rescale_slope=slope,
            b_values=[0, 1000] if kind == "DWI" else [],
        )
        sp.protocol_name = desc.replace(" ", "_") if v == "SIEMENS" else desc
        if feats.mrn_in_description and kind == "T2":
            sp.params["_mrn_in_description"] = True
        plans.append(sp)
        counter += 1
        t += sp.duration_s + float(rng.uniform(15, 60))
        if kind == "T1c":
            t1c_plan = sp
        if kind == "T1":
            t1_plan = sp
        if kind == "DWI":
            adc = SeriesPlan(
                kind="ADC",
                contrast="ADC",
                series_number=_series_numbering(v, counter),
                description=_desc(rng, v, "ADC"),
                acq_type="2D",
                orientation="AX",
                grids=sp.grids,
                slice_thickness=sp.slice_thickness,
                spacing_between_slices=sp.spacing_between_slices,
                time_s=sp.time_s + 2.0,
                duration_s=0.0,
                params=dict(sp.params),
                motion=sp.motion,
                image_type=image_type(v, "ADC"),
                wm_value=1.0,
                noise=0.04,
                bias=0.0,
                derived_from=sp.series_number,
            )
            adc.protocol_name = sp.protocol_name
            plans.append(adc)
            counter += 1
    if t1c_plan is not None and t1c_plan.acq_type == "3D" and not followup:
        src = t1c_plan
        if feats.sub and t1_plan is not None and t1_plan.acq_type == "3D":
            sub = SeriesPlan(
                kind="SUB",
                contrast="",
                series_number=_series_numbering(v, counter),
                description=_desc(rng, v, "SUB", src.description)[:64],
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
                image_type=image_type(v, "SUB"),
                wm_value=src.wm_value,
                noise=0.0,
                bias=0.0,
                rescale_slope=src.rescale_slope,
            )
            sub.protocol_name = src.protocol_name
            plans.append(sub)
            counter += 1
        if feats.mpr:
            px = 240.0 / 256.0
            ang = _angulation(rng, head_pitch, "COR", True)
            grid = make_grid(
                "COR",
                ang,
                centre + np.array([0.0, 5.0, 0.0]),
                (256, 256),
                (px, px),
                int(rng.integers(50, 61)),
                3.0,
            )
            mpr = SeriesPlan(
                kind="MPR",
                contrast=src.contrast,
                series_number=_series_numbering(v, counter),
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
            plans.append(mpr)
            counter += 1
    if feats.screenshot and not followup and t1c_plan is not None:
        sc = SeriesPlan(
            kind="SC",
            contrast="",
            series_number=_series_numbering(v, counter) + 9000 if v != "PHILIPS" else 99901,
            description=_desc(rng, v, "SC"),
            acq_type="2D",
            orientation="AX",
            grids=t1c_plan.grids,
            slice_thickness=0.0,
            spacing_between_slices=0.0,
            time_s=t + 300.0,
            duration_s=0.0,
            derived_from=t1c_plan.series_number,
            motion=t1c_plan.motion,
            image_type=["DERIVED", "SECONDARY", "SCREEN SAVE"],
        )
        plans.append(sc)
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
        contrast_agent=agent if t1c_plan is not None else None,
        missing=[] if followup else list(feats.missing),
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


def grid_summary(g: Grid) -> dict:
    return {"shape": list(g.shape), "affine_ras": np.round(g.affine, 6).tolist()}
