"""Brain extraction in SRI24 space.

Two extractors, chosen by name (stage parameter ``skull_stripper``):

* ``deepbet`` (learned): the deepbet network (Fisch et al. 2024, MIT licence), whose weights
  ship inside its PyPI wheel (``pip install brainmets[skullstrip]``; needs PyTorch, runs on
  the CPU in a few seconds). Input: the T1-weighted image(s) in atlas space.
* ``atlas`` (classical, no deep-learning framework): the SRI24 template with skull is
  registered to the case (affine, then deformable with Greedy; SimpleITK when Greedy is not
  installed: affine only), the template's brain mask is carried over, and the boundary is
  refined with the case's intensities (dark bone/air removed in a band around the edge).

``auto`` takes ``deepbet`` when it can be imported, else ``atlas``, and says which ran.
Whatever the extractor, the mask is post-processed the same way: largest connected
component, holes filled, and lesion protection — tissue outside the mask that is abnormal
(FLAIR/T2 or T1c hyperintense) and continuous with abnormal tissue inside it is added back,
so tumour or oedema at the brain surface is never cut away.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from brainmets.preprocess.images import Grid, to_sitk
from brainmets.preprocess.registration import greedy_available, quiet_native_output

EXTRACTORS = ("auto", "deepbet", "atlas")
#: lesion protection never adds voxels farther than this (mm) from the registered template
#: brain: the skull and scalp lie beyond (rigid registration leaves head-size differences
#: of a few mm at the brain's edge)
LIMIT_MM = 6


@dataclass
class ExtractionResult:
    """A brain mask and how it was made."""

    mask: np.ndarray
    extractor: str
    seconds: float
    note: str = ""
    details: dict[str, float] = field(default_factory=dict)


def deepbet_available() -> bool:
    try:
        import deepbet  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_extractor(name: str) -> tuple[str, str]:
    """(extractor that will run, explanation) for a requested name."""
    if name not in EXTRACTORS:
        raise ValueError(f"unknown skull stripper {name!r}; use one of {EXTRACTORS}")
    if name == "auto":
        if deepbet_available():
            return "deepbet", "auto: deepbet (learned) is installed"
        return "atlas", (
            "auto: deepbet is not installed (pip install 'brainmets[skullstrip]'), using the "
            "classical atlas-based extractor"
        )
    if name == "deepbet" and not deepbet_available():
        raise RuntimeError(
            "skull_stripper='deepbet' needs the optional packages torch and deepbet: "
            "pip install 'brainmets[skullstrip]' (or choose skull_stripper='atlas')"
        )
    return name, f"{name} requested"


# --------------------------------------------------------------------------- deepbet
_DEEPBET: object | None = None


def _deepbet_model() -> object:
    global _DEEPBET
    if _DEEPBET is None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from deepbet import BrainExtraction

            _DEEPBET = BrainExtraction(no_gpu=True)
    return _DEEPBET


def deepbet_mask(image: np.ndarray, grid: Grid, threshold: float = 0.5) -> np.ndarray:
    """deepbet's brain mask of one T1-weighted image on ``grid`` (any orientation)."""
    import nibabel as nib
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    bet = _deepbet_model()
    img = nib.Nifti1Image(np.asarray(image, np.float32), grid.affine)
    with torch.no_grad():
        _, mask_img, _ = bet.run(img, threshold=threshold)  # type: ignore[attr-defined]
    return np.asarray(mask_img.dataobj) > 0


# --------------------------------------------------------------------------- atlas
def atlas_mask(
    subject: np.ndarray,
    grid: Grid,
    head_template: tuple[np.ndarray, np.ndarray],
    brain_template: tuple[np.ndarray, np.ndarray],
    deformable: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Template brain mask carried onto ``subject`` (a T1-weighted image with skull on the
    atlas ``grid``) by affine + deformable registration of the template head to it."""
    from brainmets.preprocess.registration import (
        RegistrationOptions,
        n4_corrected,
        register,
        resample_array,
    )

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # Work at 2 mm: the mask's boundary is refined at full resolution afterwards.
    sub = (slice(None, None, 2),) * 3
    aff2 = grid.affine.copy()
    aff2[:3, :3] = aff2[:3, :3] * 2
    subj2 = np.asarray(subject, np.float32)[sub]
    head = ndimage.gaussian_filter(np.asarray(head_template[0], np.float32), 0.7)
    grid2 = Grid(tuple(int(s) for s in subj2.shape), aff2)  # type: ignore[arg-type]
    head2 = resample_array(head, head_template[1], grid2, np.eye(4))
    brain_in = (np.asarray(brain_template[0]) > 0).astype(np.float32)
    opts = RegistrationOptions(
        dof=12,
        metric="NMI",
        iterations=(100, 50),
        init="identity",
        backend="greedy" if greedy_available() else "sitk",
        threads=threads,
    )
    aff = register((subj2, aff2), (head2, aff2), opts, n4=(True, False)).matrix
    timings["affine_s"] = time.perf_counter() - t0
    if deformable and greedy_available():
        t1 = time.perf_counter()
        from picsl_greedy import Greedy3D

        f_img = n4_corrected(to_sitk(subj2, aff2))
        m_img = to_sitk(head2, aff2)
        g = Greedy3D()
        sink = io.StringIO()
        # the bindings accept matrices only as files for -it / -r
        tmp = tempfile.TemporaryDirectory(prefix="brainmets-greedy-")
        mat = str(Path(tmp.name) / "affine.mat")
        wfile = str(Path(tmp.name) / "warp.nii.gz")
        np.savetxt(mat, aff)
        cmd = (
            f"-i fixed moving -it {mat} -m NCC 2x2x2 -n 60x30 -s 2.0vox 1.0vox "
            f"-o {wfile} -V 0 -seed 1"
        )
        if threads:
            cmd += f" -threads {int(threads)}"
        try:
            with quiet_native_output():
                g.execute(cmd, out=sink, err=sink, fixed=f_img, moving=m_img)
            g.execute(
                f"-rf fixed -rm brain warped -r {wfile} {mat} -ri LINEAR -V 0",
                out=sink,
                err=sink,
                fixed=to_sitk(np.asarray(subject, np.float32), grid.affine),
                brain=to_sitk(brain_in, brain_template[1]),
                warped=None,
            )
        finally:
            tmp.cleanup()
        from brainmets.preprocess.images import from_sitk

        prob, _ = from_sitk(g["warped"])
        timings["deformable_s"] = time.perf_counter() - t1
    else:
        prob = resample_array(brain_in, brain_template[1], grid, aff)
    return np.asarray(prob) >= 0.5, timings


def refine_with_intensities(
    mask: np.ndarray, images: Mapping[str, np.ndarray], band_mm: int = 3
) -> np.ndarray:
    """Remove dark (bone/air) voxels in a band at the mask's edge: voxels darker than most
    of the brain on every available T1/T2-weighted image."""
    core = ndimage.binary_erosion(mask, iterations=5)
    if core.sum() < 1000:
        return mask
    inner = ndimage.binary_erosion(mask, iterations=band_mm)
    band = mask & ~inner
    dark = np.ones(mask.shape, dtype=bool)
    used = 0
    for name in ("t1", "t1c", "t2"):
        img = images.get(name)
        if img is None:
            continue
        ref = np.percentile(img[core], 2)
        dark &= img < 0.5 * ref
        used += 1
    if not used:
        return mask
    out = mask & ~(band & dark)
    out = ndimage.binary_opening(out, iterations=1)
    return out


# --------------------------------------------------------------------------- common
def largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def bounding_box(mask: np.ndarray, pad: int = 0) -> tuple[slice, ...]:
    """Slices of the smallest box holding ``mask``, widened by ``pad`` voxels (clipped to
    the array); the whole array when ``mask`` is empty."""
    if not mask.any():
        return tuple(slice(0, n) for n in mask.shape)
    out = []
    for axis, n in enumerate(mask.shape):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        out.append(slice(max(int(hit[0]) - pad, 0), min(int(hit[-1]) + pad + 1, n)))
    return tuple(out)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """3D hole filling, then slice-wise (axial) filling of enclosed gaps."""
    box = bounding_box(mask, 1)
    sub = ndimage.binary_fill_holes(mask[box])
    for k in range(sub.shape[2]):
        if sub[:, :, k].any():
            sub[:, :, k] = ndimage.binary_fill_holes(sub[:, :, k])
    out = np.zeros(mask.shape, dtype=bool)
    out[box] = sub
    return out


def _within(mask: np.ndarray, steps: int) -> np.ndarray:
    """Voxels at most ``steps`` face-neighbour steps from ``mask`` (= ``steps`` binary
    dilations with the 6-neighbour cross, in one distance-transform pass)."""
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_cdt(~mask, metric="taxicab") <= steps


def _eroded(mask: np.ndarray, steps: int) -> np.ndarray:
    """Voxels more than ``steps`` face-neighbour steps inside ``mask`` (= ``steps`` binary
    erosions with the 6-neighbour cross; beyond the array counts as outside)."""
    if not mask.any():
        return mask.copy()
    padded = np.pad(mask, 1)
    inner = (slice(1, -1),) * mask.ndim
    return ndimage.distance_transform_cdt(padded, metric="taxicab")[inner] > steps


def _quartiles(img: np.ndarray, where: np.ndarray) -> tuple[float, float, float]:
    q25, q50, q75 = np.percentile(img[where], [25, 50, 75])
    return float(q25), float(q50), float(q75)


#: enhancement: (T1c / brain median of T1c) - (T1 / brain median of T1) above this (normal
#: brain tissue stays within about +-0.2; enhancing tumour rims reach 0.7-1.5)
ENHANCEMENT = 0.4
#: how far (mm) abnormal tissue connected to a lesion inside the mask is followed outside it
REACH_MM = 10
#: the lesion's partial-volume rim: how far (mm) beyond the detected lesion, through tissue
#: that is not dark, the mask is widened (8 mm: oedema tails fading to normal FLAIR signal
#: along the cerebellar surface were cut at 5 mm on the synthetic cohort)
MARGIN_MM = 8
#: opening (voxels) of the abnormal tissue before choosing seeds
SEED_OPENING = 1
#: share of a seed's voxels that must be FLAIR (T2) hyperintense
SEED_FLAIR_FRACTION = 0.25
#: compactness (see :func:`compactness`) that lets a seed without FLAIR signal qualify
SEED_COMPACTNESS = 0.3
#: FLAIR (or T2) hyperintensity: brain median + this many interquartile ranges
FLAIR_IQR = 2.0
#: T1 (fat) or T1c without a T1 (enhancement): brain median + this many interquartile ranges
BRIGHT_IQR = 3.0


def compactness(blob: np.ndarray) -> float:
    """Volume of ``blob`` with its holes filled over the volume of the sphere reaching its
    farthest voxel from the centroid: about 0.5-1 for a ball or a ring-enhancing lesion,
    under 0.1 for a vessel or a sheet of dura."""
    solid = ndimage.binary_fill_holes(blob)
    idx = np.argwhere(solid).astype(float)
    if len(idx) == 0:
        return 0.0
    r = float(np.sqrt(((idx - idx.mean(axis=0)) ** 2).sum(axis=1)).max()) + 0.5
    return float(len(idx) / (4.0 / 3.0 * np.pi * r**3))


def abnormal_tissue(
    images: Mapping[str, np.ndarray], brain: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels that look like tumour or oedema, judged against this brain's own tissue
    (``brain``: voxels well inside the brain mask, so robust statistics describe it).

    * enhancement: the T1c brighter than the pre-contrast T1 after each is divided by its
      brain median (a subtraction image; :data:`ENHANCEMENT`), or, without a T1, the T1c
      brighter than median + 3 IQR;
    * oedema/tumour: FLAIR (else T2) brighter than median + :data:`FLAIR_IQR` IQR, except
      where the T1 is very bright too (fat, not oedema).

    Returns (abnormal, FLAIR-hyperintense): the second tells lesions (FLAIR-bright: oedema,
    tumour) from enhancing normal anatomy (venous sinuses, dura, choroid plexus).
    """
    out = np.zeros(brain.shape, dtype=bool)
    bright = np.zeros(brain.shape, dtype=bool)
    if brain.sum() < 1000:
        return out, bright
    # judged only where the images used have data: outside a series' field of view its
    # resampled values are 0 (a subtraction would see enhancement there)
    seen = {k: _eroded(np.asarray(v) != 0, 2) for k, v in images.items()}
    t1 = images.get("t1")
    t1c = images.get("t1c")
    fat = None
    if t1 is not None:
        q25, q50, q75 = _quartiles(t1, brain)
        fat = t1 > q50 + BRIGHT_IQR * (q75 - q25)
    if t1c is not None:
        _, m_c, _ = _quartiles(t1c, brain)
        m_1 = _quartiles(t1, brain)[1] if t1 is not None else 0.0
        if t1 is not None and m_c > 0 and m_1 > 0:
            enh = t1c / m_c - t1 / m_1
            q25, q50, q75 = _quartiles(enh, brain)
            out |= (enh > max(ENHANCEMENT, q50 + 4.0 * (q75 - q25))) & seen["t1c"] & seen["t1"]
        else:
            q25, q50, q75 = _quartiles(t1c, brain)
            out |= (t1c > q50 + BRIGHT_IQR * (q75 - q25)) & seen["t1c"]
    fl_key = "flair" if "flair" in images else "t2"
    fl = images.get(fl_key)
    if fl is not None:
        q25, q50, q75 = _quartiles(fl, brain)
        high = (fl > q50 + FLAIR_IQR * (q75 - q25)) & seen[fl_key]
        if fat is not None:
            high &= ~fat
        out |= high
        bright = high
    return out, bright


def protect_lesions(
    mask: np.ndarray,
    images: Mapping[str, np.ndarray],
    reach_mm: int = REACH_MM,
    margin_mm: int = MARGIN_MM,
    limit: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Add abnormal tissue just outside ``mask`` that continues abnormal tissue inside it.

    Abnormal: see :func:`abnormal_tissue`. Seeds are abnormal regions at least 3 mm inside
    the mask (>= 50 voxels) that are lesion-like: a quarter FLAIR-bright, or compact
    (:func:`compactness`, a small enhancing metastasis); enhancing vessels, sinuses and dura
    are neither. Seeds grow through abnormal voxels only, a bounded number of steps, at
    most ``reach_mm`` mm beyond the mask, so the dark skull stops them before the scalp.
    Where the grown lesion comes within ``margin_mm`` of the mask's edge, voxels outside the
    mask up to ``margin_mm`` steps from it that are not dark like bone or air are added too
    (the lesion's partial-volume rim).
    ``limit`` (e.g. the registered template brain, dilated) bounds everything added, so
    thick-slice partial volume across the skull cannot lead into the scalp.
    Returns the new mask and the number of voxels added.
    """
    mask = mask.astype(bool)
    if mask.sum() < 1000:
        return mask, 0
    # work in the box that can change (the mask plus how far anything may be added)
    box = bounding_box(mask, reach_mm + margin_mm + 2)
    m = mask[box]
    imgs = {k: np.asarray(v, np.float32)[box] for k, v in images.items()}
    inner = _eroded(m, 3)
    if inner.sum() < 1000:
        return mask, 0
    abnormal, flair_high = abnormal_tissue(imgs, inner)
    # seeds: lesion-like blobs well inside the brain (the opening removes thin bright
    # structures such as vessels), at least 50 voxels, of which a quarter FLAIR-bright
    # (a metastasis and its oedema are; enhancing veins, sinuses and dura are not)
    lab, n = ndimage.label(ndimage.binary_opening(abnormal & inner, iterations=SEED_OPENING))
    if n == 0:
        return mask, 0
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    bright = np.bincount(lab.ravel(), weights=flair_high.ravel(), minlength=n + 1)
    ok = (sizes >= 50) & (bright >= SEED_FLAIR_FRACTION * sizes)
    ok[0] = False
    # a small metastasis may enhance without FLAIR signal: a compact (round) enhancing blob
    # qualifies too, unlike the tubes and sheets of vessels, sinuses and dura
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is not None and not ok[i] and sizes[i] >= 50:
            ok[i] = compactness(lab[sl] == i) >= SEED_COMPACTNESS
    seeds = ok[lab]
    if not seeds.any():
        return mask, 0
    zone = _within(m, reach_mm)
    if limit is not None:
        zone &= limit[box]
    # grow the seeds through abnormal tissue, a bounded number of steps (3 to the edge, then
    # reach_mm beyond it), so growth cannot run along the enhancing dura around the brain
    sub = bounding_box(seeds, reach_mm + 4)
    grown = seeds[sub].copy()
    allowed = (abnormal & zone)[sub] | grown
    for _ in range(reach_mm + 3):
        nxt = ndimage.binary_dilation(grown) & allowed
        if np.array_equal(nxt, grown):
            break
        grown = nxt
    region = np.zeros(m.shape, dtype=bool)
    region[sub] = grown
    # the lesion's partial-volume rim (not bright enough to count as abnormal): where the
    # lesion comes within margin_mm of the edge, grow it margin_mm steps, outside the mask
    # only through voxels that are not dark (never across bone or air)
    if margin_mm > 0:
        front = region & ~_eroded(m, margin_mm)
        if front.any():
            ref = imgs.get("t1c", imgs.get("t1", imgs.get("flair")))
            passable = zone.copy()
            if ref is not None:
                passable &= (ref >= 0.5 * np.percentile(ref[inner], 5)) | m
            sub = bounding_box(front, margin_mm + 1)
            grown = front[sub].copy()
            pas = passable[sub] | grown
            for _ in range(margin_mm):
                grown = ndimage.binary_dilation(grown) & pas
            region[sub] |= grown
    add = region & ~m
    added = int(add.sum())
    if not added:
        return mask, 0
    out = mask.copy()
    out[box] |= add
    return fill_holes(out), added


def extract_brain(
    images: Mapping[str, np.ndarray],
    grid: Grid,
    extractor: str = "auto",
    head_template: tuple[np.ndarray, np.ndarray] | None = None,
    brain_template: tuple[np.ndarray, np.ndarray] | None = None,
    input_sequences: tuple[str, ...] = ("t1", "t1c"),
    protect: bool = True,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> ExtractionResult:
    """Brain mask on the atlas ``grid`` from the co-registered images (keys t1, t1c, t2,
    flair; with skull). ``input_sequences``: the T1-weighted images the extractor looks at
    (the first available is used by the atlas extractor; deepbet takes the union of its
    masks over them)."""
    name, why = resolve_extractor(extractor)
    if log:
        log(f"skull stripping with {name} ({why})")
    t0 = time.perf_counter()
    details: dict[str, float] = {}
    seqs = [s for s in input_sequences if s in images] or [next(iter(images))]
    if name == "deepbet":
        mask = np.zeros(grid.shape, dtype=bool)
        for s in seqs:
            mask |= deepbet_mask(images[s], grid)
    else:
        if brain_template is None:
            raise ValueError("the atlas extractor needs the SRI24 brain template")
        head = head_template or brain_template
        mask, details = atlas_mask(images[seqs[0]], grid, head, brain_template, threads=threads)
        mask = refine_with_intensities(mask, images)
    mask = fill_holes(largest_component(mask))
    added = 0
    if protect:
        limit = None
        if brain_template is not None:
            from brainmets.preprocess.registration import resample_array

            tb = np.asarray(brain_template[0]) > 0
            if not Grid(tb.shape, brain_template[1]).same_as(grid):
                tb = resample_array(tb.astype(np.float32), brain_template[1], grid, np.eye(4)) > 0.5
            limit = _within(tb, LIMIT_MM)
        mask, added = protect_lesions(mask, images, limit=limit)
    details["lesion_protection_voxels"] = float(added)
    return ExtractionResult(mask, name, time.perf_counter() - t0, why, details)
