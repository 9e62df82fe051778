"""The preprocessing of one case, BraTS convention (shared by the pipeline stage and the
standalone command).

1. Read and check the four images (T1, T1c, T2, FLAIR); reorient each to RAS (array order
   only; world positions unchanged).
2. Already-preprocessed input (240 x 240 x 155, 1 mm, skull stripped, on the SRI24 template
   by world coordinates or by array index) is passed through without registration.
3. Register the T1c to the SRI24 T1 template (rigid by default, or affine), with NMI,
   three resolution levels (100x50x10 iterations) initialised on the image centres; register
   T1, T2 and FLAIR to the T1c the same way (rigid). N4 bias correction is applied to copies
   used only to estimate the transforms. Each result must reach a plausible similarity,
   else the registration is retried from another start and then refused.
4. Resample every image once, with its composed transform, onto the template's grid
   (240 x 240 x 155, 1 mm, header of ``t1_brain.nii.gz``), linear (or cubic).
5. Extract the brain in atlas space (see :mod:`brainmets.preprocess.skullstrip`) and apply
   the mask to all four images.
6. QC values, outputs in the reference collection's naming, transforms for ``--to-native``.

Each step is a function of this module working on a :class:`CaseState` (:func:`read_case`,
:func:`register_case`, :func:`resample_case`, :func:`strip_case`, :func:`collect_qc`,
:func:`write_case`, :func:`map_segmentations`, :func:`write_qc`); :func:`preprocess_case`
runs them in that order.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainmets.atlas import AtlasError, atlas_file
from brainmets.fsutil import atomic_path, atomic_write_text
from brainmets.preprocess.errors import PreprocessError, RegistrationFailed
from brainmets.preprocess.images import (
    OUTPUT_SUFFIX,
    SEQUENCE_NAMES,
    SEQUENCES,
    Grid,
    Volume,
    check_volume,
    load_volume,
    reorient,
    save_nifti,
)
from brainmets.preprocess.qc import case_qc, dice
from brainmets.preprocess.registration import (
    RegistrationOptions,
    RegistrationResult,
    default_backend,
    n4_array,
    register,
    resample_array,
    rotation_angle_deg,
    scales,
    similarity_after,
)
from brainmets.preprocess.skullstrip import extract_brain
from brainmets.preprocess.transforms import (
    CaseTransforms,
    closest_rigid,
    compose,
    itk_transform_text,
    map_to_atlas,
)

#: NMI a registration must reach on its fixed grid (see docs/preprocessing.md for how these
#: were set: correct registrations of the real and synthetic cases reach >= 1.11 (atlas)
#: and >= 1.13 (co-registration); 15-40 mm shifts or 20-90 degree rotations give 1.03-1.09)
MIN_ATLAS_NMI = 1.09
MIN_COREG_NMI = 1.07


@dataclass(frozen=True)
class PreprocessOptions:
    """Parameters of the preprocessing step (also the stage's defaults).

    Attributes:
        atlas_registration: T1c -> SRI24: ``"rigid"`` (BraTS-compatible output: the head
            keeps its size; estimated as a 12-dof fit reduced to its closest rigid
            transform over the template brain), ``"rigid-direct"`` (greedy ``-dof 6``, the
            CaPTk command) or ``"affine"`` (12 dof kept). Co-registration to the T1c is
            always rigid.
        skull_stripper: ``"auto"``, ``"deepbet"`` or ``"atlas"`` (see skullstrip module).
        iterations: iterations per resolution level (coarse to fine).
        metric: registration metric (``"NMI"``; greedy also knows ``"MI"``, ``"NCC 2x2x2"``).
        backend: ``"auto"`` (greedy when installed), ``"greedy"`` or ``"sitk"``.
        n4_for_registration: bias-correct the copies used to estimate transforms.
        fixed_image: which image of each registration pair the metric is evaluated on:
            ``"reference"`` (the CaPTk directions: T1c onto the template, T1, T2, FLAIR onto
            the T1c) or ``"auto"`` (the image with fewer voxels, usually the thick-slice
            series; the optimum is inverted, so the result is the same transform). ``"auto"``
            is 2-3x faster with thick-slice series and was more accurate on the synthetic
            cohort; with a T1c that covers only part of the head it also keeps the template
            outside the T1c's field of view out of the metric (docs/preprocessing.md).
        atlas_target: ``"auto"`` (template with skull unless the input is skull stripped),
            ``"head"`` or ``"brain"``.
        interpolation: ``"linear"`` or ``"cubic"`` (B-spline, clipped to the input range).
        label_interpolation: ``"linear"`` (per-label linear + argmax) or ``"nearest"``.
        output_dtype: ``"int16"`` (as the reference collection; rounded, scaled only when the
            values do not fit) or ``"float32"``.
        strip_sequences: the T1-weighted images the skull stripper looks at.
        protect_lesions: add abnormal tissue at the brain's edge back into the mask.
        detect_preprocessed: pass already-preprocessed SRI24 input through.
        threads: threads for registration (0: all cores). The default, 1, gives the same
            bytes on every run: greedy's multi-threaded optimisation does not (the last
            digits of the transforms vary from run to run), though one case registers
            about 1.4x faster with 2 threads. A pool with one worker per core loses nothing.
        seed: random seed of the registration's sampling (deterministic results).
    """

    atlas_registration: str = "rigid"
    skull_stripper: str = "auto"
    iterations: tuple[int, ...] = (100, 50, 10)
    metric: str = "NMI"
    backend: str = "auto"
    n4_for_registration: bool = True
    fixed_image: str = "auto"
    atlas_target: str = "auto"
    interpolation: str = "linear"
    label_interpolation: str = "linear"
    output_dtype: str = "int16"
    strip_sequences: tuple[str, ...] = ("t1c",)
    protect_lesions: bool = True
    detect_preprocessed: bool = True
    threads: int = 1
    seed: int = 1

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PreprocessOptions:
        """Options from stage/CLI parameters (unknown keys refused, lists made tuples)."""
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"unknown preprocess parameter(s): {sorted(unknown)}")
        kw: dict[str, Any] = {}
        for k, v in params.items():
            if k in ("iterations", "strip_sequences") and isinstance(v, str):
                v = [x for x in v.replace(",", "x").split("x") if x]
                v = [int(x) for x in v] if k == "iterations" else v
            kw[k] = tuple(v) if isinstance(v, list | tuple) else v
        opts = cls(**kw)
        opts.validate()
        return opts

    def validate(self) -> None:
        choices = {
            "atlas_registration": ("rigid", "rigid-direct", "affine"),
            "backend": ("auto", "greedy", "sitk"),
            "atlas_target": ("auto", "head", "brain"),
            "fixed_image": ("auto", "reference"),
            "interpolation": ("linear", "cubic"),
            "label_interpolation": ("linear", "nearest"),
            "output_dtype": ("int16", "float32"),
            "skull_stripper": ("auto", "deepbet", "atlas"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if not self.iterations or any(int(i) < 0 for i in self.iterations):
            raise ValueError(f"iterations must be non-negative integers, not {self.iterations}")

    def to_params(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class CaseResult:
    """What :func:`preprocess_case` wrote and measured."""

    case_id: str
    outputs: dict[str, Path] = field(default_factory=dict)
    qc: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    transforms: CaseTransforms | None = None
    tools: dict[str, str] = field(default_factory=dict)


@dataclass
class AtlasImages:
    """The SRI24 images the step needs."""

    brain: Volume
    head: Volume | None

    @classmethod
    def load(cls, atlas_dir: str | os.PathLike[str] | None = None) -> AtlasImages:
        brain = load_volume(atlas_file("t1_brain.nii.gz", atlas_dir), "template")
        try:
            head: Volume | None = load_volume(atlas_file("t1_head.nii.gz", atlas_dir), "template")
        except AtlasError:
            head = None
        return cls(brain, head)

    @property
    def grid(self) -> Grid:
        return self.brain.grid

    def brain_points(self, step: int = 3) -> np.ndarray:
        """World coordinates (RAS mm) of every ``step``-th voxel of the template brain."""
        idx = np.argwhere(self.brain.data > 0)[::step].astype(float)
        return idx @ self.brain.affine[:3, :3].T + self.brain.affine[:3, 3]


Logger = Callable[[str], None]

#: plausible head size relative to the SRI24 template, per axis (12-dof fit)
SCALE_RANGE = (0.8, 1.25)


def plausible_scales(values: Sequence[float] | np.ndarray) -> bool:
    """True when every scale of a 12-dof atlas fit lies in :data:`SCALE_RANGE`."""
    return all(SCALE_RANGE[0] <= float(x) <= SCALE_RANGE[1] for x in values)


def _nolog(message: str) -> None:
    return None


# ------------------------------------------------------------------------------ inputs
def load_inputs(
    paths: Mapping[str, str | os.PathLike[str] | None], case_id: str
) -> dict[str, Volume]:
    """Read and check the four sequences; errors name the patient and every bad file."""
    missing = [s for s in SEQUENCES if not paths.get(s)]
    if missing:
        names = ", ".join(SEQUENCE_NAMES[s] for s in missing)
        raise PreprocessError(f"missing sequence(s): {names}", patient=case_id)
    vols: dict[str, Volume] = {}
    for seq in SEQUENCES:
        vol = load_volume(paths[seq], seq, case_id)  # type: ignore[arg-type]
        check_volume(vol, case_id)
        vols[seq] = vol
    return vols


def _skull_stripped(vol: Volume) -> bool:
    """Background exactly zero around a brain-sized object (typical of released files)."""
    d = vol.data
    nz = d != 0
    frac = nz.mean()
    vol_cm3 = nz.sum() * float(np.prod(vol.spacing)) / 1000.0
    return bool(frac < 0.5 and 700.0 < vol_cm3 < 2500.0)


def detect_preprocessed(
    vols: Mapping[str, Volume], atlas: AtlasImages
) -> tuple[str, dict[str, np.ndarray]] | None:
    """If every image is already skull stripped on the SRI24 grid, how it lines up.

    Returns ``("world", maps)`` when the headers put the images on the template (array
    order may differ: it is fixed by an exact permutation), ``("index", maps)`` when the
    arrays line up with the template voxel by voxel but the headers do not (as in some
    released BraTS files), else None. ``maps``: sequence -> atlas voxel -> input voxel.
    """
    grid = atlas.grid
    tmask = atlas.brain.data > 0
    maps: dict[str, np.ndarray] = {}
    modes: set[str] = set()
    for seq, vol in vols.items():
        if tuple(vol.data.shape) != tuple(grid.shape) and sorted(vol.data.shape) != sorted(
            grid.shape
        ):
            return None
        if not np.allclose(vol.spacing, 1.0, atol=1e-3) or not _skull_stripped(vol):
            return None
        nz = vol.data != 0
        by_world = np.linalg.inv(vol.affine) @ grid.affine
        best: tuple[float, str, np.ndarray] = (0.0, "", np.eye(4))
        if np.allclose(by_world, np.round(by_world), atol=1e-3):
            warped = resample_array(nz.astype(np.float32), vol.affine, grid, np.eye(4), 0) > 0
            best = max(best, (dice(warped, tmask), "world", np.round(by_world)), key=lambda x: x[0])
        if tuple(vol.data.shape) == tuple(grid.shape):
            best = max(best, (dice(nz, tmask), "index", np.eye(4)), key=lambda x: x[0])
        if best[0] < 0.8:
            return None
        maps[seq] = best[2]
        modes.add(best[1])
    if len(modes) != 1:
        return None
    return modes.pop(), maps


# ------------------------------------------------------------------------------ steps
def _register_pair(
    reference: tuple[np.ndarray, np.ndarray],
    moving: tuple[np.ndarray, np.ndarray],
    options: RegistrationOptions,
    swap: bool,
) -> RegistrationResult:
    """Register ``moving`` to ``reference`` (result: reference world -> moving world). With
    ``swap`` the metric runs on the moving image's grid (the smaller one) and the optimum is
    inverted: the same transform, estimated the other way round."""
    if not swap:
        return register(reference, moving, options)
    r = register(moving, reference, options)
    r.matrix = np.linalg.inv(r.matrix)
    return r


def _checked(
    result: RegistrationResult,
    minimum: float,
    retry: Callable[[], RegistrationResult] | None,
    what: str,
    case_id: str,
    file: Path | None,
    log: Logger,
) -> RegistrationResult:
    attempts = [f"centres: NMI {result.similarity:.4f}"]
    if result.similarity < minimum and retry is not None:
        log(f"{what}: NMI {result.similarity:.4f} < {minimum}; retrying with a random search")
        second = retry()
        attempts.append(f"search: NMI {second.similarity:.4f}")
        if second.similarity > result.similarity:
            second.seconds += result.seconds
            result = second
    result.attempts = attempts
    if result.similarity < minimum:
        raise RegistrationFailed(
            f"{what} failed: similarity (NMI) {result.similarity:.3f} is below the plausible "
            f"minimum {minimum} — is this a head scan of the right sequence?",
            patient=case_id,
            file=file,
        )
    return result


def _write_image(path: Path, data: np.ndarray, grid: Grid, dtype: str, header: Any) -> str:
    """Write an output image; returns the dtype actually written."""
    if dtype == "float32":
        with atomic_path(path) as tmp:
            save_nifti(tmp, data, grid.affine, np.float32, header)
        return "float32"
    rounded = np.rint(data)
    if rounded.min() >= -32768 and rounded.max() <= 32767:
        with atomic_path(path) as tmp:
            save_nifti(tmp, rounded, grid.affine, np.int16, header)
        return "int16"
    # does not fit: let nibabel choose a scale slope for int16 storage
    img = nib.Nifti1Image(np.asarray(data, np.float32), grid.affine)
    img.header.set_qform(grid.affine, code=1)
    img.header.set_sform(grid.affine, code=1)
    img.set_data_dtype(np.int16)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return "int16-scaled"


# ------------------------------------------------------------------------------ case state
#: an image as the registration takes it: (array, affine)
ImagePair = tuple[np.ndarray, np.ndarray]


@dataclass
class CaseState:
    """What the steps of :func:`preprocess_case` hand on to each other.

    Attributes:
        case_id: the patient/case identifier (named in errors and output files).
        options: the validated options of the run.
        atlas: the SRI24 template images.
        volumes: the four images as read (native array order), by sequence.
        ras: the same images reoriented to RAS (array order only, world unchanged).
        transforms: the case's transforms, filled in by :func:`register_case`.
        backend: the registration backend in use (``"greedy"`` or ``"sitk"``).
        passthrough: :func:`detect_preprocessed`'s answer (None: the input is registered).
        similarity: NMI of each registration (``t1c_to_atlas``, ``<seq>_to_t1c``), for QC.
        images: the atlas-space images (:func:`resample_case`; masked by :func:`strip_case`).
        mask: the brain mask on the atlas grid (:func:`strip_case`).
        extractor: the skull stripper that made the mask (``"none"`` for passed-through input).
        strip_note: the extractor's remark, reported in the QC.
        strip_details: the extractor's numeric details, reported in the QC.
        timings: seconds per step, in the order the steps ran.
        tools: the tools that did the work (``registration``, ``skull_stripper``).
    """

    case_id: str
    options: PreprocessOptions
    atlas: AtlasImages
    volumes: dict[str, Volume]
    ras: dict[str, Volume]
    transforms: CaseTransforms
    backend: str
    passthrough: tuple[str, dict[str, np.ndarray]] | None
    similarity: dict[str, float] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    mask: np.ndarray | None = None
    extractor: str = ""
    strip_note: str = ""
    strip_details: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)

    @property
    def grid(self) -> Grid:
        """The atlas (output) grid."""
        return self.atlas.grid


# ------------------------------------------------------------------------------ step 1: read
def read_case(
    inputs: Mapping[str, str | os.PathLike[str] | None],
    case_id: str,
    options: PreprocessOptions,
    atlas_dir: str | os.PathLike[str] | None = None,
    input_names: Mapping[str, str] | None = None,
) -> CaseState:
    """Read the template and the four images (checked, see :func:`load_inputs`), reorient
    them to RAS, choose the registration backend and find out whether the input is already
    preprocessed (when ``options.detect_preprocessed``). Times ``load_s``.
    ``input_names``: how ``<ID>-transforms.json`` names the inputs (default: their paths;
    the stage gives workspace-relative ones, so that the file is the same bytes wherever
    the workspace is)."""
    t0 = time.perf_counter()
    atlas = AtlasImages.load(atlas_dir)
    vols = load_inputs(inputs, case_id)
    native_grids = {s: v.grid for s, v in vols.items()}
    ras = {s: reorient(v, "RAS") for s, v in vols.items()}
    load_s = time.perf_counter() - t0

    backend = default_backend() if options.backend == "auto" else options.backend
    tr = CaseTransforms(
        case_id=case_id,
        atlas_grid=atlas.grid,
        native_grids=native_grids,
        inputs={s: (input_names or {}).get(s) or str(Path(p)) for s, p in inputs.items() if p},
        atlas_registration=options.atlas_registration,
    )
    found = detect_preprocessed(vols, atlas) if options.detect_preprocessed else None
    return CaseState(
        case_id=case_id,
        options=options,
        atlas=atlas,
        volumes=vols,
        ras=ras,
        transforms=tr,
        backend=backend,
        passthrough=found,
        timings={"load_s": load_s},
        tools={"registration": backend},
    )


# ------------------------------------------------------------------------------ step 2: register
def register_case(case: CaseState, log: Logger = _nolog) -> None:
    """Fill ``case.transforms``: the pass-through transforms of already-preprocessed input
    (:func:`passthrough_transforms`), else T1c -> SRI24 (:func:`register_to_atlas`) and T1,
    T2, FLAIR -> T1c (:func:`coregister_to_t1c`). Times ``registration_s``.

    Raises:
        RegistrationFailed: a registration stays below its plausible similarity.
    """
    t0 = time.perf_counter()
    if case.passthrough is not None:
        passthrough_transforms(case, log)
    else:
        est = registration_copies(case)
        base = _atlas_options(case)
        t1c = register_to_atlas(case, est, base, log)
        coregister_to_t1c(case, est, t1c, RegistrationOptions(**{**asdict(base), "dof": 6}), log)
    case.timings["registration_s"] = time.perf_counter() - t0


def passthrough_transforms(case: CaseState, log: Logger = _nolog) -> None:
    """Transforms of input already on the SRI24 grid: identity when aligned by world
    coordinates; atlas world -> atlas voxel -> the same input voxel -> input world when
    aligned by array index (the index map is recorded in the details)."""
    if case.passthrough is None:
        raise ValueError("passthrough_transforms: the input was not found preprocessed")
    mode, maps = case.passthrough
    tr = case.transforms
    tr.passthrough = mode
    log(f"input already in SRI24 space (aligned by {mode}): passed through unregistered")
    for s, vol in case.volumes.items():
        if mode == "world":
            tr.atlas_to[s] = np.eye(4)
        else:
            # index alignment: atlas world -> atlas voxel -> same input voxel -> world
            tr.atlas_to[s] = vol.affine @ maps[s] @ np.linalg.inv(case.grid.affine)
            tr.details.setdefault("index_map", {})[s] = maps[s].tolist()
        tr.t1c_to[s] = tr.atlas_to[s] @ np.linalg.inv(tr.atlas_to["t1c"])


def atlas_target(case: CaseState) -> Volume:
    """The template the T1c is registered to: the head (with skull) unless the input is
    skull stripped, there is no head template or ``atlas_target`` says otherwise; recorded
    in ``transforms.details["atlas_target"]``."""
    opts = case.options
    atlas = case.atlas
    stripped_input = _skull_stripped(case.ras["t1c"])
    use_head = atlas.head is not None and (
        opts.atlas_target == "head" or (opts.atlas_target == "auto" and not stripped_input)
    )
    target = atlas.head if use_head and atlas.head is not None else atlas.brain
    case.transforms.details["atlas_target"] = "t1_head" if use_head else "t1_brain"
    return target


def registration_copies(case: CaseState) -> dict[str, np.ndarray]:
    """The arrays the transforms are estimated on: N4 bias-corrected copies of the RAS
    images (the template needs none), or the images themselves without
    ``n4_for_registration``. Times ``n4_s``."""
    est: dict[str, np.ndarray] = {}
    t_n4 = time.perf_counter()
    for s in SEQUENCES:
        v = case.ras[s]
        est[s] = n4_array(v.data, v.affine) if case.options.n4_for_registration else v.data
    case.timings["n4_s"] = time.perf_counter() - t_n4
    return est


def _atlas_options(case: CaseState) -> RegistrationOptions:
    """Registration options of the T1c -> SRI24 step ("rigid": a 12-dof fit, reduced to its
    closest rigid transform later; "rigid-direct": greedy -dof 6; "affine": 12 dof)."""
    opts = case.options
    # "rigid": a 12-dof fit, then its closest rigid transform over the template brain
    # (a head larger or differently shaped than the template is centred on its brain
    # instead of pulled towards one side of the skull); "rigid-direct": greedy -dof 6
    dof = 6 if opts.atlas_registration == "rigid-direct" else 12
    return RegistrationOptions(
        dof=dof,
        metric=opts.metric,
        iterations=tuple(int(i) for i in opts.iterations),
        init="centers",
        backend=case.backend,
        threads=opts.threads,
        seed=opts.seed,
    )


def _fit_atlas(
    case: CaseState,
    fixed: ImagePair,
    t1c: ImagePair,
    base: RegistrationOptions,
    swap: bool,
    log: Logger,
    init: str = "centers",
) -> RegistrationResult:
    """One attempt at T1c -> SRI24 from initialisation ``init``. With ``"rigid"`` the 12-dof
    fit is reduced to its closest rigid transform over the template brain, or, when its
    scales are implausible, replaced by a direct 6-dof fit. The similarity is always
    measured on the template's grid (where the thresholds were set)."""
    o = RegistrationOptions(**{**asdict(base), "init": init})
    r = _register_pair(fixed, t1c, o, swap)
    if case.options.atlas_registration == "rigid":
        if plausible_scales(scales(r.matrix)):
            r.affine = r.matrix
            r.matrix = closest_rigid(r.matrix, case.atlas.brain_points())
            r.dof = 6
        else:  # a 12-dof fit gone astray: the direct 6-dof fit instead
            log(
                "12-dof fit implausible (scales "
                f"{np.round(scales(r.matrix), 3).tolist()}); fitting 6 dof directly"
            )
            case.transforms.details["atlas_fallback"] = "rigid-direct"
            spent = r.seconds
            r = _register_pair(fixed, t1c, RegistrationOptions(**{**asdict(o), "dof": 6}), swap)
            r.seconds += spent
    # plausibility always on the template's grid (where the thresholds were set)
    r.similarity = similarity_after(fixed, t1c, r.matrix)
    return r


def register_to_atlas(
    case: CaseState,
    est: Mapping[str, np.ndarray],
    base: RegistrationOptions,
    log: Logger = _nolog,
) -> ImagePair:
    """Register the T1c (its copy in ``est``) to the SRI24 template (:func:`atlas_target`),
    retried from a random search when implausible; records ``atlas_to["t1c"]``, the
    rotation and scales relative to the template and the similarity. Returns the T1c
    ``(array, affine)`` the co-registrations are fitted to.

    Raises:
        RegistrationFailed: the similarity stays below :data:`MIN_ATLAS_NMI`.
    """
    opts = case.options
    tr = case.transforms
    target = atlas_target(case)
    fixed = (target.data, target.affine)
    t1c = (est["t1c"], case.ras["t1c"].affine)
    log(f"registering T1c to SRI24 ({opts.atlas_registration}, {case.backend})")

    swap_atlas = opts.fixed_image == "auto" and t1c[0].size < fixed[0].size
    tr.details["fixed_image"] = {"t1c": "t1c" if swap_atlas else "template"}
    fit = partial(_fit_atlas, case, fixed, t1c, base, swap_atlas, log)
    r = _checked(
        fit(),
        MIN_ATLAS_NMI,
        partial(fit, init="search"),
        "registration of the T1c to the SRI24 template",
        case.case_id,
        case.volumes["t1c"].path,
        log,
    )
    tr.atlas_to["t1c"] = r.matrix
    tr.t1c_to["t1c"] = np.eye(4)
    case.similarity["t1c_to_atlas"] = r.similarity
    case.timings["register_t1c_s"] = r.seconds
    tr.details["atlas_rotation_deg"] = round(rotation_angle_deg(r.matrix), 3)
    # head size and shape relative to the template (from the 12-dof fit when there is one)
    fitted = r.affine if r.affine is not None else r.matrix
    tr.details["atlas_scales"] = np.round(scales(fitted), 4).tolist()
    return t1c


def _fit_coreg(
    t1c: ImagePair, moving: ImagePair, rigid: RegistrationOptions, swap: bool, init: str = "centers"
) -> RegistrationResult:
    """One attempt at the rigid registration of ``moving`` to the T1c from ``init``."""
    o = RegistrationOptions(**{**asdict(rigid), "init": init})
    return _register_pair(t1c, moving, o, swap)


def coregister_to_t1c(
    case: CaseState,
    est: Mapping[str, np.ndarray],
    t1c: ImagePair,
    rigid: RegistrationOptions,
    log: Logger = _nolog,
) -> None:
    """Register T1, T2 and FLAIR (their copies in ``est``) rigidly to the T1c, each retried
    from a random search when implausible; records ``t1c_to[seq]``, the composed
    ``atlas_to[seq]`` and the similarities. With ``fixed_image="auto"`` the metric runs on
    the smaller image's grid (usually the thick-slice series) and the optimum is inverted.

    Raises:
        RegistrationFailed: a similarity stays below :data:`MIN_COREG_NMI`.
    """
    tr = case.transforms
    for s in ("t1", "t2", "flair"):
        log(f"registering {SEQUENCE_NAMES[s]} to T1c")
        mov = (est[s], case.ras[s].affine)

        # the metric runs on the fixed image's grid: with "auto" the smaller image
        # (usually the thick-slice series) is fixed and the optimum inverted
        swap = case.options.fixed_image == "auto" and est[s].size < est["t1c"].size
        tr.details.setdefault("fixed_image", {})[s] = s if swap else "t1c"
        fit = partial(_fit_coreg, t1c, mov, rigid, swap)
        rs = _checked(
            fit(),
            MIN_COREG_NMI,
            partial(fit, init="search"),
            f"registration of the {SEQUENCE_NAMES[s]} to the T1c",
            case.case_id,
            case.volumes[s].path,
            log,
        )
        tr.t1c_to[s] = rs.matrix
        tr.atlas_to[s] = compose(rs.matrix, tr.atlas_to["t1c"])
        case.similarity[f"{s}_to_t1c"] = rs.similarity
        case.timings[f"register_{s}_s"] = rs.seconds


# ------------------------------------------------------------------------------ step 3: resample
def resample_case(case: CaseState) -> None:
    """Resample every image once, with its composed transform, onto the atlas grid
    (linear, or cubic), into ``case.images``; index-aligned pass-through input is taken
    as it is. Clipped to the input's range for cubic interpolation or non-negative input.
    Times ``resampling_s``."""
    t0 = time.perf_counter()
    order = 3 if case.options.interpolation == "cubic" else 1
    by_index = case.passthrough is not None and case.passthrough[0] == "index"
    for s in SEQUENCES:
        v = case.ras[s]
        if by_index:
            img = np.asarray(case.volumes[s].data, np.float32)
        else:
            img = resample_array(
                v.data, v.affine, case.grid, case.transforms.atlas_to[s], order=order
            )
        if order > 1 or float(v.data.min()) >= 0:
            img = np.clip(img, float(v.data.min()), float(v.data.max()))
        case.images[s] = img
    case.timings["resampling_s"] = time.perf_counter() - t0


# ------------------------------------------------------------------------------ step 4: strip
def strip_case(case: CaseState, log: Logger = _nolog) -> None:
    """Set ``case.mask`` and apply it to ``case.images``: the brain extracted in atlas space
    (:func:`~brainmets.preprocess.skullstrip.extract_brain`), or for pass-through input
    (already skull stripped) the union of the images' non-zero voxels, images unchanged.
    Times ``skull_stripping_s``; records the extractor in ``case.tools``."""
    t0 = time.perf_counter()
    opts = case.options
    atlas = case.atlas
    if case.passthrough is not None:
        mask = np.zeros(case.grid.shape, dtype=bool)
        for img in case.images.values():
            mask |= img != 0
        extractor, note = "none", "input already skull stripped"
        extra: dict[str, float] = {}
    else:
        head = (atlas.head.data, atlas.head.affine) if atlas.head is not None else None
        ex = extract_brain(
            case.images,
            case.grid,
            opts.skull_stripper,
            head,
            (atlas.brain.data, atlas.brain.affine),
            tuple(opts.strip_sequences),
            opts.protect_lesions,
            opts.threads,
            log,
        )
        mask, extractor, note, extra = ex.mask, ex.extractor, ex.note, ex.details
        for s in SEQUENCES:
            case.images[s] = np.where(mask, case.images[s], 0.0).astype(np.float32)
    case.mask = mask
    case.extractor, case.strip_note, case.strip_details = extractor, note, extra
    case.timings["skull_stripping_s"] = time.perf_counter() - t0
    case.tools["skull_stripper"] = extractor


# ------------------------------------------------------------------------------ step 5: QC
def collect_qc(case: CaseState) -> dict[str, Any]:
    """The case's QC values (:func:`~brainmets.preprocess.qc.case_qc` of the masked images,
    plus the extractor, the registration settings and the template fit); flags an
    implausible head size (``atlas_scale_implausible``)."""
    if case.mask is None:
        raise ValueError("collect_qc needs the brain mask: run strip_case first")
    tr = case.transforms
    voxel_cm3 = float(abs(np.linalg.det(case.grid.affine[:3, :3]))) / 1000.0
    qc = case_qc(case.images, case.mask, case.atlas.brain.data, voxel_cm3, case.similarity)
    qc["skull_stripper"] = case.extractor
    qc["skull_stripper_note"] = case.strip_note
    qc.update({k: round(v, 3) for k, v in case.strip_details.items()})
    qc["passthrough"] = tr.passthrough or None
    qc["atlas_registration"] = case.options.atlas_registration
    qc["registration_backend"] = case.backend if case.passthrough is None else None
    for k in ("atlas_rotation_deg", "atlas_scales", "atlas_target", "atlas_fallback"):
        if k in tr.details:
            qc[k] = tr.details[k]
    scale = tr.details.get("atlas_scales")
    if scale and not plausible_scales(scale):
        qc["flags"].append("atlas_scale_implausible")
    return qc


# ------------------------------------------------------------------------------ step 6: write
def write_case(
    case: CaseState, out: Path, atlas_dir: str | os.PathLike[str] | None = None
) -> tuple[dict[str, Path], dict[str, str]]:
    """Write the four atlas-space images (``<ID>-t1n/t1c/t2w/t2f.nii.gz``, with the header
    of the template ``t1_brain.nii.gz``), the mask, ``<ID>-transforms.json`` and the ITK
    transforms ``<ID>-<seq>-to-sri24.txt`` into ``out``.

    Returns the outputs by role and the dtype actually written per sequence.
    """
    if case.mask is None:
        raise ValueError("write_case needs the brain mask: run strip_case first")
    cid, grid = case.case_id, case.grid
    outputs: dict[str, Path] = {}
    # Any: nibabel types a loaded header as FileBasedHeader (it is a Nifti1Header here)
    header: Any = nib.load(str(atlas_file("t1_brain.nii.gz", atlas_dir))).header
    written_dtype = {}
    for s in SEQUENCES:
        p = out / f"{cid}-{OUTPUT_SUFFIX[s]}.nii.gz"
        written_dtype[s] = _write_image(p, case.images[s], grid, case.options.output_dtype, header)
        outputs[OUTPUT_SUFFIX[s]] = p
    mpath = out / f"{cid}-mask.nii.gz"
    with atomic_path(mpath) as tmp:
        save_nifti(tmp, case.mask.astype(np.uint8), grid.affine, np.uint8, header)
    outputs["mask"] = mpath
    tpath = out / f"{cid}-transforms.json"
    case.transforms.save(tpath)
    outputs["transforms"] = tpath
    for s in SEQUENCES:
        p = out / f"{cid}-{OUTPUT_SUFFIX[s]}-to-sri24.txt"
        atomic_write_text(p, itk_transform_text(case.transforms.atlas_to[s]))
        outputs[f"transform_{OUTPUT_SUFFIX[s]}"] = p
    return outputs, written_dtype


def map_segmentations(
    case: CaseState,
    segs: Sequence[str | os.PathLike[str]],
    out: Path,
    seg_space: str = "auto",
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Carry the label maps ``segs`` (drawn on the native sequence ``seg_space``; ``"auto"``:
    the sequence whose grid the map shares, else the T1c) into atlas space: ``<ID>-seg.nii.gz``
    for one map, ``<ID>-seg-<name>.nii.gz`` for several.

    Returns the outputs by role (``seg`` or ``seg-<name>``) and, per input path, its space,
    output file name and index (the QC's ``segs``).

    Raises:
        PreprocessError: a label map cannot be read or mapped.
    """
    outputs: dict[str, Path] = {}
    seg_qc: dict[str, dict[str, Any]] = {}
    native_grids = case.transforms.native_grids
    for i, seg in enumerate(segs):
        seg_path = Path(seg)
        space = _seg_space(seg_path, native_grids, seg_space)
        try:
            img = map_to_atlas(
                seg_path,
                case.transforms,
                space,
                kind="label",
                label_method=case.options.label_interpolation,
            )
        except (ValueError, OSError) as exc:
            raise PreprocessError(
                f"cannot map label map: {exc}", patient=case.case_id, file=seg_path
            ) from exc
        name = "seg" if len(segs) == 1 else f"seg-{_stem(seg_path)}"
        p = out / f"{case.case_id}-{name}.nii.gz"
        with atomic_path(p) as tmp:
            nib.save(img, str(tmp))
        outputs[name if len(segs) > 1 else "seg"] = p
        seg_qc[str(seg_path)] = {"space": space, "output": p.name, "index": i}
    return outputs, seg_qc


def write_qc(path: Path, qc: dict[str, Any], timings: Mapping[str, float]) -> Path:
    """Add the timings (rounded to 0.01 s; none: not added) to ``qc`` as ``timings_s`` and
    write it as JSON."""
    if timings:
        qc["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    atomic_write_text(path, json.dumps(qc, indent=1, sort_keys=True))
    return path


# ------------------------------------------------------------------------------ the case
def preprocess_case(
    inputs: Mapping[str, str | os.PathLike[str] | None],
    out_dir: str | os.PathLike[str],
    case_id: str,
    options: PreprocessOptions | None = None,
    atlas_dir: str | os.PathLike[str] | None = None,
    segs: Sequence[str | os.PathLike[str]] = (),
    seg_space: str = "auto",
    log: Logger | None = None,
    timings_in_qc: bool = True,
    input_names: Mapping[str, str] | None = None,
) -> CaseResult:
    """Preprocess one case (inputs: ``t1``, ``t1c``, ``t2``, ``flair`` NIfTI paths) into
    ``out_dir``: ``<ID>-t1n/t1c/t2w/t2f.nii.gz``, ``<ID>-mask.nii.gz``,
    ``<ID>-transforms.json`` (+ ITK ``<ID>-<seq>-to-sri24.txt``), ``<ID>-qc.json``, and
    ``<ID>-seg.nii.gz`` (or ``<ID>-seg-<name>.nii.gz``) for label maps in ``segs``.

    ``seg_space``: the native sequence the label maps were drawn on (``"auto"``: the
    sequence whose grid the map shares, else the T1c). ``timings_in_qc``: write the step
    timings into ``<ID>-qc.json`` (the pipeline stage does not: its outputs are the same
    bytes on every run, the timings go to the catalog); they are in the result either way.
    ``input_names``: see :func:`read_case`.

    The steps: :func:`read_case`, :func:`register_case`, :func:`resample_case`,
    :func:`strip_case`, :func:`collect_qc`, :func:`write_case`, :func:`map_segmentations`,
    :func:`write_qc`.
    """
    opts = options or PreprocessOptions()
    opts.validate()
    log = log or _nolog
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()

    case = read_case(inputs, case_id, opts, atlas_dir, input_names)
    register_case(case, log)
    resample_case(case)
    strip_case(case, log)

    t0 = time.perf_counter()
    qc = collect_qc(case)
    outputs, written_dtype = write_case(case, out, atlas_dir)
    qc["output_dtype"] = written_dtype
    seg_outputs, seg_qc = map_segmentations(case, segs, out, seg_space)
    outputs.update(seg_outputs)
    if seg_qc:
        qc["segs"] = seg_qc
    case.timings["write_s"] = time.perf_counter() - t0
    case.timings["total_s"] = time.perf_counter() - t_all
    outputs["qc"] = write_qc(out / f"{case_id}-qc.json", qc, case.timings if timings_in_qc else {})
    return CaseResult(
        case_id,
        outputs=outputs,
        qc=qc,
        timings=case.timings,
        transforms=case.transforms,
        tools=case.tools,
    )


def _stem(p: Path) -> str:
    name = p.name
    for suf in (".nii.gz", ".nii"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return p.stem


def _seg_space(seg: Path, native_grids: Mapping[str, Grid], requested: str) -> str:
    if requested != "auto":
        if requested not in native_grids:
            raise PreprocessError(f"unknown seg space {requested!r}", file=seg)
        return requested
    try:
        img: Any = nib.load(str(seg))  # a spatial image (nibabel types it FileBasedImage)
    except Exception as exc:
        raise PreprocessError(f"cannot read label map ({exc})", file=seg) from exc
    g = Grid(tuple(int(s) for s in img.shape[:3]), np.asarray(img.affine, float))  # type: ignore[arg-type]
    for s in ("t1c", "flair", "t1", "t2"):
        if s in native_grids and g.same_as(native_grids[s]):
            return s
    return "t1c"
