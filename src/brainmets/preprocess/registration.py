"""Linear registration (rigid or affine), the BraTS recipe.

Backends:

* ``greedy`` (default): PICSL Greedy through its Python bindings (``picsl_greedy``, Apache-2.0),
  the tool of the CaPTk/FeTS BraTS pipeline: ``-a -dof 6 -m NMI -ia-image-centers
  -n 100x50x10`` (normalised mutual information, three resolution levels, initialised by
  matching the image centres).
* ``sitk``: SimpleITK's registration framework, the fallback when ``picsl_greedy`` is not
  installed: Mattes mutual information, the same three levels (shrink 4/2/1, smoothing),
  centred-geometry initialisation, regular-step gradient descent.

Every result is a 4x4 matrix in world coordinates (RAS mm) that maps a point of the *fixed*
image to the corresponding point of the *moving* image (the direction in which images are
resampled), whichever backend made it. Optionally both images are N4 bias corrected first:
the correction is used only to estimate the transform, never written out.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from brainmets.preprocess.images import Grid, to_sitk

BACKENDS = ("greedy", "sitk")
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def greedy_available() -> bool:
    try:
        import picsl_greedy  # noqa: F401
    except ImportError:
        return False
    return True


def default_backend() -> str:
    return "greedy" if greedy_available() else "sitk"


@dataclass
class RegistrationResult:
    """The outcome of one registration.

    Attributes:
        matrix: 4x4, fixed world (RAS mm) -> moving world.
        dof: 6 (rigid), 7 (similarity) or 12 (affine).
        backend: which implementation ran.
        seconds: wall time of the optimisation (without preparation).
        similarity: normalised mutual information of fixed and resampled moving image on
            the fixed grid (see :func:`nmi`), in [1, 2]; higher is better.
        attempts: one line per attempt (initialisation and outcome) when retries were needed.
        affine: the 12-dof matrix a rigid result was reduced from, when it was.
    """

    matrix: np.ndarray
    dof: int
    backend: str
    seconds: float
    similarity: float = float("nan")
    attempts: list[str] = field(default_factory=list)
    affine: np.ndarray | None = None


@dataclass(frozen=True)
class RegistrationOptions:
    """Parameters of one linear registration."""

    dof: int = 6
    metric: str = "NMI"
    iterations: tuple[int, ...] = (100, 50, 10)
    init: str = "centers"  # "centers" | "identity" | "search" (centres + random search)
    backend: str = "greedy"
    threads: int | None = None
    seed: int = 1


# ----------------------------------------------------------------------------- helpers
def n4_corrected(
    img: sitk.Image, voxel_mm: float = 5.0, iterations: tuple[int, ...] = (25, 25)
) -> sitk.Image:
    """N4 bias-field corrected copy of ``img``: the field is fitted on the image reduced to
    voxels of about ``voxel_mm`` (the receive field varies over centimetres; a 0.9 mm
    axis is shrunk 6x, a 5 mm slice axis not at all), with an Otsu head mask and two
    B-spline levels — enough to even out the field for registration — then applied at full
    resolution."""
    img = sitk.Cast(img, sitk.sitkFloat32)
    arr = sitk.GetArrayViewFromImage(img)
    lo = float(np.percentile(arr, 0.5))
    img = sitk.Clamp(img, sitk.sitkFloat32, lowerBound=lo)
    factors = [
        max(1, min(int(round(voxel_mm / sp)), n // 8))
        for sp, n in zip(img.GetSpacing(), img.GetSize(), strict=True)
    ]
    small = sitk.Shrink(img, factors)
    mask = sitk.OtsuThreshold(small, 0, 1, 200)
    if sitk.GetArrayViewFromImage(mask).sum() < 0.01 * small.GetNumberOfPixels():
        mask = sitk.Cast(small > lo, sitk.sitkUInt8)
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    n4.Execute(small, mask)
    # the field is smooth: evaluate it on the small grid and interpolate (much cheaper than
    # evaluating the B-spline at every full-resolution voxel)
    log_small = n4.GetLogBiasFieldAsImage(small)
    log_field = sitk.Resample(
        log_small, img, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32, True
    )
    return img / sitk.Exp(log_field)


def n4_array(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """N4 bias-corrected copy of a voxel array (see :func:`n4_corrected`)."""
    from brainmets.preprocess.images import from_sitk

    return np.asarray(from_sitk(n4_corrected(to_sitk(data, affine)))[0], dtype=np.float32)


def nmi(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, bins: int = 64) -> float:
    """Normalised mutual information (H(A) + H(B)) / H(A, B), in [1, 2], of two images on
    the same grid, over ``mask`` (default: where either is non-zero). Intensities are binned
    between their 0.5th and 99.5th percentiles, so a few outliers do not matter."""
    if mask is None:
        mask = (a != 0) | (b != 0)
    x = a[mask].astype(np.float64)
    y = b[mask].astype(np.float64)
    if x.size < 100:
        return 1.0

    def binned(v: np.ndarray) -> np.ndarray:
        lo, hi = np.percentile(v, [0.5, 99.5])
        if hi <= lo:
            return np.zeros(v.shape, dtype=np.int64)
        return np.clip(((v - lo) / (hi - lo) * (bins - 1)).round(), 0, bins - 1).astype(np.int64)

    joint = np.bincount(binned(x) * bins + binned(y), minlength=bins * bins).astype(np.float64)
    joint /= joint.sum()
    pa = joint.reshape(bins, bins).sum(axis=1)
    pb = joint.reshape(bins, bins).sum(axis=0)

    def ent(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    hab = ent(joint)
    return (ent(pa) + ent(pb)) / hab if hab > 0 else 1.0


def resample_array(
    data: np.ndarray,
    src_affine: np.ndarray,
    grid: Grid,
    matrix: np.ndarray,
    order: int = 1,
    cval: float = 0.0,
) -> np.ndarray:
    """Sample ``data`` (voxel -> world ``src_affine``) on ``grid``: the grid's world point p
    takes the value at world point ``matrix @ p`` of the source.

    Linear interpolation between orthogonal grids runs in SimpleITK (multi-threaded, several
    times faster); other orders and sheared grids in scipy. The two agree inside the
    source's field of view; at its border SimpleITK still samples the outermost half voxel
    where scipy blends in ``cval``.
    """
    if order == 1 and _orthogonal(src_affine) and _orthogonal(grid.affine):
        return _sitk_linear(data, src_affine, grid, matrix, cval)
    m = np.linalg.inv(src_affine) @ matrix @ grid.affine
    out = ndimage.affine_transform(
        np.asarray(data, np.float32),
        m[:3, :3],
        m[:3, 3],
        output_shape=grid.shape,
        order=order,
        mode="constant",
        cval=cval,
        prefilter=order > 1,
    )
    return out.astype(np.float32, copy=False)


def _orthogonal(affine: np.ndarray, tol: float = 1e-6) -> bool:
    """True when the voxel axes of ``affine`` are perpendicular (no shear)."""
    lin = np.asarray(affine, dtype=float)[:3, :3]
    gram = lin.T @ lin
    off = gram - np.diag(np.diag(gram))
    return bool(np.abs(off).max() <= tol * max(float(np.abs(gram).max()), 1e-12))


def _sitk_linear(
    data: np.ndarray, src_affine: np.ndarray, grid: Grid, matrix: np.ndarray, cval: float
) -> np.ndarray:
    from brainmets.preprocess.images import from_sitk

    src = to_sitk(data, src_affine)
    ref = sitk.Image([int(v) for v in grid.shape], sitk.sitkUInt8)
    geo = to_sitk(np.zeros((1, 1, 1), np.float32), grid.affine)
    ref.SetSpacing(geo.GetSpacing())
    ref.SetDirection(geo.GetDirection())
    ref.SetOrigin(geo.GetOrigin())
    lps = _LPS @ np.asarray(matrix, dtype=float) @ _LPS
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(lps[:3, :3].ravel().tolist())
    tx.SetTranslation(lps[:3, 3].tolist())
    out = sitk.Resample(src, ref, tx, sitk.sitkLinear, float(cval), sitk.sitkFloat32)
    return np.asarray(from_sitk(out)[0], dtype=np.float32)


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """Rotation angle of the orthogonal part of a linear map (polar decomposition)."""
    u, _, vt = np.linalg.svd(matrix[:3, :3])
    r = u @ vt
    c = (np.trace(r) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def scales(matrix: np.ndarray) -> np.ndarray:
    """Singular values of the linear part (1, 1, 1 for a rigid transform)."""
    return np.linalg.svd(matrix[:3, :3], compute_uv=False)


# ----------------------------------------------------------------------------- backends
@contextlib.contextmanager
def quiet_native_output() -> Iterator[None]:
    """Silence what native code prints straight to file descriptors 1 and 2 (greedy's
    optimiser writes line-search diagnostics there, bypassing Python's streams)."""
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no real descriptors (embedded interpreter): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def _greedy(
    fixed: sitk.Image, moving: sitk.Image, opts: RegistrationOptions, init: np.ndarray | None
) -> np.ndarray:
    from picsl_greedy import Greedy3D

    g = Greedy3D()
    n = "x".join(str(int(v)) for v in opts.iterations)
    cmd = f"-i fixed moving -a -dof {opts.dof} -m {opts.metric} -n {n} -o result -V 0"
    kwargs: dict[str, object] = {"fixed": fixed, "moving": moving, "result": None}
    if init is not None:
        cmd += " -ia initial"
        kwargs["initial"] = np.asarray(init, dtype=np.float64)
    elif opts.init == "centers":
        cmd += " -ia-image-centers"
    elif opts.init == "search":
        # image centres, then a random search over rotations/offsets before optimising
        cmd += " -ia-image-centers -search 200 30 20"
    else:
        cmd += " -ia-identity"
    if opts.seed:
        cmd += f" -seed {int(opts.seed)}"
    if opts.threads:
        cmd += f" -threads {int(opts.threads)}"
    sink = io.StringIO()
    with quiet_native_output():
        g.execute(cmd, out=sink, err=sink, **kwargs)
    return np.asarray(g["result"], dtype=float)


def _sitk_register(
    fixed: sitk.Image, moving: sitk.Image, opts: RegistrationOptions, init: np.ndarray | None
) -> np.ndarray:
    if opts.threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(opts.threads))
    # Any: SimpleITK's stubs type transforms (and CenteredTransformInitializer's result,
    # downcast at run time) as the base Transform, without the matrix accessors
    tx: Any
    if opts.dof == 6:
        tx = sitk.Euler3DTransform()
    elif opts.dof == 7:
        tx = sitk.Similarity3DTransform()
    else:
        tx = sitk.AffineTransform(3)
    if init is not None:
        lps = _LPS @ np.asarray(init) @ _LPS
        start = sitk.AffineTransform(3)
        start.SetMatrix(lps[:3, :3].ravel().tolist())
        start.SetTranslation(lps[:3, 3].tolist())
        if opts.dof == 12:
            tx = start
        else:
            centre = fixed.TransformContinuousIndexToPhysicalPoint(
                [(s - 1) / 2 for s in fixed.GetSize()]
            )
            tx.SetCenter(centre)
            u, _, vt = np.linalg.svd(lps[:3, :3])
            tx.SetMatrix((u @ vt).ravel().tolist())
            tx.SetTranslation(
                (lps[:3, :3] @ np.asarray(centre) + lps[:3, 3] - np.asarray(centre)).tolist()
            )
    else:
        mode = (
            sitk.CenteredTransformInitializerFilter.MOMENTS
            if opts.init == "search"
            else sitk.CenteredTransformInitializerFilter.GEOMETRY
        )
        tx = sitk.CenteredTransformInitializer(fixed, moving, tx, mode)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.05, seed=int(opts.seed or 1))
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0,
        minStep=1e-4,
        numberOfIterations=int(max(opts.iterations)),
        relaxationFactor=0.6,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    levels = len(opts.iterations)
    reg.SetShrinkFactorsPerLevel([2 ** (levels - 1 - i) for i in range(levels)])
    reg.SetSmoothingSigmasPerLevel([float(2 ** (levels - 1 - i)) / 2 for i in range(levels)])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
    aff = sitk.AffineTransform(3)
    lin = np.asarray(tx.GetMatrix()).reshape(3, 3)
    centre = np.asarray(tx.GetCenter())
    trans = np.asarray(tx.GetTranslation())
    aff.SetMatrix(lin.ravel().tolist())
    m = np.eye(4)
    m[:3, :3] = lin
    m[:3, 3] = trans + centre - lin @ centre
    return _LPS @ m @ _LPS


def register(
    fixed: tuple[np.ndarray, np.ndarray],
    moving: tuple[np.ndarray, np.ndarray],
    options: RegistrationOptions | None = None,
    init: np.ndarray | None = None,
    fixed_mask: np.ndarray | None = None,
    n4: bool | tuple[bool, bool] = False,
) -> RegistrationResult:
    """Register ``moving`` to ``fixed``; both are ``(voxel array, RAS affine)``.

    Returns the fixed -> moving world matrix with the similarity (NMI, on the fixed grid,
    within ``fixed_mask`` when given, else where the fixed image is non-zero) of the
    result. ``init`` (fixed -> moving world) replaces the initialisation of ``options``.
    ``n4``: bias-correct (fixed, moving) copies first (one bool: both); callers that
    register one image several times correct it once with :func:`n4_array` instead.
    """
    opts = options or RegistrationOptions()
    if opts.backend not in BACKENDS:
        raise ValueError(f"unknown registration backend {opts.backend!r}; use one of {BACKENDS}")
    if opts.dof not in (6, 7, 12):
        raise ValueError(f"dof must be 6, 7 or 12, not {opts.dof}")
    f_img = to_sitk(*fixed)
    m_img = to_sitk(*moving)
    n4_f, n4_m = (n4, n4) if isinstance(n4, bool) else n4
    if n4_f:
        f_img = n4_corrected(f_img)
    if n4_m:
        m_img = n4_corrected(m_img)
    t0 = time.perf_counter()
    if opts.backend == "greedy":
        matrix = _greedy(f_img, m_img, opts, init)
    else:
        matrix = _sitk_register(f_img, m_img, opts, init)
    seconds = time.perf_counter() - t0
    sim = similarity_after(fixed, moving, matrix, fixed_mask)
    return RegistrationResult(matrix, opts.dof, opts.backend, seconds, sim)


def similarity_after(
    fixed: tuple[np.ndarray, np.ndarray],
    moving: tuple[np.ndarray, np.ndarray],
    matrix: np.ndarray,
    fixed_mask: np.ndarray | None = None,
    step: int = 2,
) -> float:
    """NMI between the fixed image and the moving image resampled through ``matrix``,
    evaluated on every ``step``-th fixed voxel (enough for a plausibility check)."""
    f_data, f_aff = fixed
    sub = (slice(None, None, step),) * 3
    f_small = np.asarray(f_data, np.float32)[sub]
    aff = f_aff.copy()
    aff[:3, :3] = aff[:3, :3] * step
    grid = Grid(tuple(int(s) for s in f_small.shape), aff)  # type: ignore[arg-type]
    warped = resample_array(moving[0], moving[1], grid, matrix, order=1)
    mask = fixed_mask[sub] if fixed_mask is not None else f_small > 0
    return nmi(f_small, warped, mask & np.isfinite(warped))
