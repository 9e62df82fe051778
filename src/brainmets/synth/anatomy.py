"""Anatomy templates for the synthetic cohort and tissue-class contrast synthesis.

Two sources of anatomy:

* **SRI24** (preferred): ``t1_head`` (T1 with scalp and skull), ``tissues`` (CSF/GM/WM),
  ``suptent`` (infratentorial = ``tissues > 0 & suptent == 0``) and, when present,
  ``tzo116plus`` (region names). Everything is put on the grid of ``tissues`` through the
  affines, so ground truth drawn here is exactly in SRI24 space.
* **MNI152 2009a** (fallback): the T1 and grey/white-matter maps shipped inside nilearn's
  wheel (``pip install brainmets[template]``). The T1 is skull stripped, so a scalp and
  skull are synthesised around the brain; the infratentorial region is approximated.

A :class:`Template` also synthesises each sequence's normal-anatomy contrast from tissue
partial-volume maps (cached per process); lesions are painted on top by
:mod:`brainmets.synth.lesions`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainmets.synth.geometry import exact_reorient

#: padding (voxels) added below the template for a tapered neck
NECK_PAD = 45

SRI24_NAME = "SRI24"
MNI_NAME = "MNI152NLin2009aSym"


class TemplateError(RuntimeError):
    """No anatomy template can be loaded."""


@dataclass(frozen=True)
class TissueSignal:
    """Relative signal of the tissue classes for one contrast (WM on T1 = 1)."""

    csf: float
    gm: float
    wm: float
    enhancing: float
    necrosis: float
    edema: float  # absolute target, or a factor of the normal signal when edema_relative
    edema_relative: bool = False
    nonbrain_gain: float = 1.0
    nonbrain_gamma: float = 1.0
    use_t1_texture: bool = False


#: Contrast of each synthetic image kind. Values are relative; acquisitions rescale them.
SIGNALS: dict[str, TissueSignal] = {
    # 3D gradient echo (MPRAGE/FSPGR/TFE): strong GM/WM contrast, dark CSF
    "T1_GRE": TissueSignal(0.22, 0.62, 1.0, 0.62, 0.25, 0.82, True, 0.95, 1.0, True),
    # 2D spin echo: flatter contrast
    "T1_SE": TissueSignal(0.32, 0.70, 1.0, 0.68, 0.33, 0.85, True, 1.05, 1.0, True),
    "T1c_GRE": TissueSignal(0.22, 0.62, 1.0, 1.75, 0.24, 0.82, True, 0.95, 1.0, True),
    "T1c_SE": TissueSignal(0.32, 0.70, 1.0, 1.65, 0.32, 0.85, True, 1.05, 1.0, True),
    "T2": TissueSignal(2.30, 1.20, 0.78, 1.25, 2.05, 1.85, False, 0.80, 1.25),
    "FLAIR": TissueSignal(0.16, 1.10, 0.82, 1.30, 0.75, 1.75, False, 0.80, 1.15),
    "DWI_B0": TissueSignal(2.0, 1.25, 0.95, 1.20, 1.9, 1.70, False, 0.45, 1.4),
    "DWI_B1000": TissueSignal(0.28, 1.05, 0.95, 1.15, 0.45, 0.95, False, 0.15, 1.4),
    # ADC in units of 1e-3 mm^2/s
    "ADC": TissueSignal(3.0, 0.85, 0.74, 1.05, 2.1, 1.45, False, 0.35, 1.0),
    "SWI": TissueSignal(1.15, 0.92, 0.78, 0.82, 0.45, 1.05, False, 0.65, 1.1),
}


@dataclass
class Template:
    """Anatomy on one 1 mm grid (RAS affine), plus cached normal contrasts."""

    name: str
    affine: np.ndarray
    t1: np.ndarray  # float32, head T1 normalised so that median WM = 1
    tissues: np.ndarray  # uint8 0 bg, 1 CSF, 2 GM, 3 WM
    pv: np.ndarray  # float32 (3, ...) partial volume of CSF, GM, WM
    head: np.ndarray  # bool
    extra_csf: np.ndarray  # float32 0-1: CSF outside the tissue map (between brain and skull)
    infratentorial: np.ndarray  # bool
    infratentorial_method: str
    parcellation: np.ndarray | None = None
    parcel_names: dict[int, str] = field(default_factory=dict)
    source_dir: str = ""
    #: voxel offset of the original template grid inside these arrays (neck padding)
    pad_origin: tuple[int, int, int] = (0, 0, 0)
    original_shape: tuple[int, int, int] = (0, 0, 0)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.tissues.shape)  # type: ignore[return-value]

    @property
    def brain(self) -> np.ndarray:
        return self.tissues > 0

    @property
    def original_affine(self) -> np.ndarray:
        """Affine of the unpadded template grid (SRI24's own 240 x 240 x 155 grid)."""
        off = np.eye(4)
        off[:3, 3] = self.pad_origin
        return self.affine @ off

    def crop_to_original(self, arr: np.ndarray) -> np.ndarray:
        """An array on this (padded, cropped) grid put on the template's own grid."""
        out = np.zeros(self.original_shape, dtype=arr.dtype)
        o = np.array(self.pad_origin)
        dst_lo = np.maximum(-o, 0)
        dst_hi = np.minimum(np.array(self.original_shape), np.array(arr.shape) - o)
        src_lo = dst_lo + o
        src_hi = dst_hi + o
        out[tuple(slice(a, b) for a, b in zip(dst_lo, dst_hi, strict=True))] = arr[
            tuple(slice(a, b) for a, b in zip(src_lo, src_hi, strict=True))
        ]
        return out

    def brain_centre_world(self) -> np.ndarray:
        idx = np.argwhere(self.brain).mean(axis=0)
        return self.affine[:3, :3] @ idx + self.affine[:3, 3]

    def region_name(self, ijk: np.ndarray) -> str:
        if self.parcellation is None:
            return ""
        i, j, k = (int(round(v)) for v in ijk)
        lab = int(self.parcellation[i, j, k])
        return self.parcel_names.get(lab, "")

    def normal_image(self, kind: str) -> np.ndarray:
        """Normal-anatomy image of contrast ``kind`` (see :data:`SIGNALS`), memoised."""
        if kind not in self._cache:
            self._cache[kind] = self._synthesise(SIGNALS[kind])
        return self._cache[kind]

    def _shared(self) -> dict[str, np.ndarray]:
        """Terms common to all contrasts (computed once)."""
        if "_p_brain" not in self._cache:
            p_csf, p_gm, p_wm = self.pv
            p_brain = p_csf + p_gm + p_wm
            self._cache["_p_brain"] = p_brain
            self._cache["_inv"] = 1.0 / np.maximum(p_brain, np.float32(1e-3))
            self._cache["_t1c"] = np.clip(self.t1, 0.0, 3.0)
        return {k: self._cache[k] for k in ("_p_brain", "_inv", "_t1c")}

    def _synthesise(self, s: TissueSignal) -> np.ndarray:
        p_csf, p_gm, p_wm = self.pv
        sh = self._shared()
        p_brain = sh["_p_brain"]
        m = self._class_means()
        if s.use_t1_texture:
            # Map the real T1 template intensities piecewise-linearly so the texture stays.
            xs = np.array([0.0, m[0], m[1], m[2], 2.5])
            ys = np.array([0.0, s.csf, s.gm, s.wm, s.wm * 2.5 / m[2]])
            brain = np.interp(self.t1, xs, ys).astype(np.float32)
        else:
            # Half from the T1 template's intensity (texture, smooth partial volume), half
            # from the tissue classes (keeps CSF/GM/WM apart where the T1 is ambiguous).
            xs = np.array([0.0, m[0], m[1], m[2], 2.5])
            ys = np.array([s.csf, s.csf, s.gm, s.wm, s.wm])
            from_t1 = np.interp(self.t1, xs, ys).astype(np.float32)
            from_labels = (
                p_csf * np.float32(s.csf) + p_gm * np.float32(s.gm) + p_wm * np.float32(s.wm)
            ) * sh["_inv"]
            brain = np.float32(0.5) * (from_t1 + from_labels)
        t1c = sh["_t1c"]
        nonbrain = t1c if s.nonbrain_gamma == 1.0 else np.power(t1c, np.float32(s.nonbrain_gamma))
        w = self.extra_csf  # soft weight of CSF between brain and skull
        nonbrain = (np.float32(1.0) - w) * nonbrain * np.float32(s.nonbrain_gain) + w * np.float32(
            s.csf
        )
        nonbrain *= self.head
        img = p_brain * brain + (np.float32(1.0) - p_brain) * nonbrain
        return img.astype(np.float32, copy=False)

    def _class_means(self) -> tuple[float, float, float]:
        if "_means" not in self._cache:
            t = self.tissues
            vals = [float(np.median(self.t1[t == c])) for c in (1, 2, 3)]
            self._cache["_means"] = np.array(vals)
        m = self._cache["_means"]
        return float(m[0]), float(m[1]), float(m[2])


def _partial_volumes(tissues: np.ndarray, sigma: float = 0.6) -> np.ndarray:
    out = np.empty((3, *tissues.shape), dtype=np.float32)
    for n, c in enumerate((1, 2, 3)):
        out[n] = ndimage.gaussian_filter((tissues == c).astype(np.float32), sigma)
    return out


def dilate(m: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation with a (2r+1)^3 box (separable, fast)."""
    return ndimage.maximum_filter(m.view(np.uint8), size=2 * r + 1).astype(bool)


def erode(m: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion with a (2r+1)^3 box (separable, fast)."""
    return ndimage.minimum_filter(m.view(np.uint8), size=2 * r + 1, mode="nearest").astype(bool)


def _head_mask(t1: np.ndarray, threshold: float) -> np.ndarray:
    m = t1 > threshold
    m = dilate(erode(m, 1), 1)
    lab, n = ndimage.label(m)
    if n > 1:
        sizes = ndimage.sum_labels(m, lab, index=np.arange(1, n + 1))
        m = lab == (int(np.argmax(sizes)) + 1)
    m = erode(dilate(m, 3), 3)
    for k in range(m.shape[2]):
        m[:, :, k] = ndimage.binary_fill_holes(m[:, :, k])
    return m


def _extra_axial_csf(t1: np.ndarray, tissues: np.ndarray, head: np.ndarray) -> np.ndarray:
    brain = tissues > 0
    near = dilate(brain, 3)
    hard = (near & ~brain & head & (t1 < 0.4)).astype(np.float32)
    return (0.8 * ndimage.gaussian_filter(hard, 0.8)).astype(np.float32)


def _add_neck(t: Template) -> Template:
    """Pad inferiorly with a tapered neck so sagittal/coronal views do not end flat."""
    pad = NECK_PAD
    nx, ny, _ = t.shape

    def padz(a: np.ndarray, fill: float | int | bool = 0) -> np.ndarray:
        widths = [(0, 0)] * a.ndim
        widths[-1] = (pad, 0)
        return np.pad(a, widths, mode="constant", constant_values=fill)

    t1 = padz(t.t1)
    head = padz(t.head)
    base_head = t.head[:, :, 0]
    base_t1 = ndimage.gaussian_filter(t.t1[:, :, 0], 2.5)
    tex = ndimage.gaussian_filter(
        np.random.default_rng(45).standard_normal((nx, ny, pad)).astype(np.float32), 1.5
    )
    tex = 1.0 + 0.35 * tex / max(float(tex.std()), 1e-6)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    ci: float
    cj: float
    half_i: float
    half_j: float
    if base_head.any():
        ci, cj = np.argwhere(base_head).mean(axis=0)
        half_i = np.ptp(np.argwhere(base_head)[:, 0]) / 2.0
        half_j = np.ptp(np.argwhere(base_head)[:, 1]) / 2.0
    else:
        ci, cj, half_i, half_j = nx / 2, ny / 2, 60.0, 70.0
    # the brain's axes: voxel axis 1 is anterior in both templates (LAS/RAS grids)
    for d in range(1, pad + 1):
        f = d / pad
        ri = half_i * (0.8 - 0.25 * f)
        rj = half_j * (0.7 - 0.2 * f)
        cj_d = cj - 0.25 * half_j * (0.3 + f)
        ell = ((ii - ci) / max(ri, 1.0)) ** 2 + ((jj - cj_d) / max(rj, 1.0)) ** 2 <= 1.0
        m = base_head & ell
        t1[:, :, pad - d] = np.where(
            m, (base_t1 * (1.0 - 0.25 * f) + 0.1 * f) * tex[:, :, pad - d], 0.0
        )
        head[:, :, pad - d] = m
    shift = np.eye(4)
    shift[2, 3] = -pad
    parc = padz(t.parcellation) if t.parcellation is not None else None
    return Template(
        name=t.name,
        affine=t.affine @ shift,
        t1=t1.astype(np.float32),
        tissues=padz(t.tissues),
        pv=np.pad(t.pv, [(0, 0), (0, 0), (0, 0), (pad, 0)]),
        head=head,
        extra_csf=padz(t.extra_csf),
        infratentorial=padz(t.infratentorial),
        infratentorial_method=t.infratentorial_method,
        parcellation=parc,
        parcel_names=t.parcel_names,
        source_dir=t.source_dir,
        pad_origin=(t.pad_origin[0], t.pad_origin[1], t.pad_origin[2] + pad),
        original_shape=t.original_shape if any(t.original_shape) else t.shape,
    )


def _crop_to_head(t: Template, margin: int = 3) -> Template:
    """Cut all arrays to the head's bounding box (less work for every later operation)."""
    idx = np.argwhere(t.head)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, np.array(t.shape))
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shift = np.eye(4)
    shift[:3, 3] = lo
    origin = np.array(t.pad_origin) - lo
    return Template(
        name=t.name,
        affine=t.affine @ shift,
        t1=np.ascontiguousarray(t.t1[sl]),
        tissues=np.ascontiguousarray(t.tissues[sl]),
        pv=np.ascontiguousarray(t.pv[(slice(None), *sl)]),
        head=np.ascontiguousarray(t.head[sl]),
        extra_csf=np.ascontiguousarray(t.extra_csf[sl]),
        infratentorial=np.ascontiguousarray(t.infratentorial[sl]),
        infratentorial_method=t.infratentorial_method,
        parcellation=None if t.parcellation is None else np.ascontiguousarray(t.parcellation[sl]),
        parcel_names=t.parcel_names,
        source_dir=t.source_dir,
        pad_origin=(int(origin[0]), int(origin[1]), int(origin[2])),
        original_shape=t.original_shape,
    )


def _read_labels(path: Path) -> dict[int, str]:
    names: dict[int, str] = {}
    if not path.is_file():
        return names
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            names[int(parts[0])] = parts[1]
    return names


def load_sri24(directory: Path) -> Template:
    """Build the head template from an SRI24 folder (needs t1_head, tissues, suptent)."""
    need = ["t1_head.nii.gz", "tissues.nii.gz", "suptent.nii.gz"]
    missing = [n for n in need if not (directory / n).is_file()]
    if missing:
        raise TemplateError(f"SRI24 folder {directory} lacks {', '.join(missing)}")
    tis_img = cast(nib.Nifti1Image, nib.load(str(directory / "tissues.nii.gz")))
    affine = tis_img.affine.copy()
    tissues = np.asarray(tis_img.dataobj).astype(np.uint8)
    shape = tissues.shape

    def on_grid(name: str, dtype: type) -> np.ndarray:
        img = cast(nib.Nifti1Image, nib.load(str(directory / name)))
        data = np.asarray(img.dataobj)
        out = exact_reorient(data, img.affine, affine, shape)
        if out is None:
            from brainmets.synth.geometry import Grid, resample

            out = resample(
                data.astype(np.float32), img.affine, Grid(shape, affine), np.eye(4), order=0
            )
        return out.astype(dtype)

    head_raw = on_grid("t1_head.nii.gz", np.float32)
    suptent = on_grid("suptent.nii.gz", np.uint8)
    wm_median = float(np.median(head_raw[tissues == 3]))
    t1 = (head_raw / wm_median).astype(np.float32)
    head = _head_mask(t1, 0.17) | (tissues > 0)
    parc = None
    names: dict[int, str] = {}
    if (directory / "tzo116plus.nii.gz").is_file():
        parc = on_grid("tzo116plus.nii.gz", np.int16)
        names = _read_labels(directory / "tzo116plus_labels.txt")
    t = Template(
        name=SRI24_NAME,
        affine=affine,
        t1=t1,
        tissues=tissues,
        pv=_partial_volumes(tissues),
        head=head,
        extra_csf=_extra_axial_csf(t1, tissues, head),
        infratentorial=(tissues > 0) & (suptent == 0),
        infratentorial_method="SRI24 suptent: tissues > 0 & suptent == 0",
        parcellation=parc,
        parcel_names=names,
        source_dir=str(directory),
    )
    return _crop_to_head(_add_neck(t))


def _nilearn_data_dir() -> Path:
    try:
        import nilearn  # noqa: F401  (optional dependency)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise TemplateError(
            "No SRI24 atlas was found and the MNI152 fallback needs nilearn, which is not "
            "installed. Install it with `pip install 'brainmets[template]'`, or install the "
            "atlas (`brainmets atlas install ...`) / set BRAINMETS_ATLAS_DIR."
        ) from exc
    return Path(nilearn.__file__).parent / "datasets" / "data"


def load_mni152() -> Template:
    """Head template from the MNI152 2009a maps shipped in nilearn's wheel.

    The brain comes from the T1 and the GM/WM probability maps; CSF is the rest of the
    brain mask; skull and scalp are synthesised as shells around the brain.
    """
    d = _nilearn_data_dir()
    stem = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    t1_img = cast(nib.Nifti1Image, nib.load(str(d / stem.format("t1"))))
    gm_img = cast(nib.Nifti1Image, nib.load(str(d / stem.format("gm"))))
    wm_img = cast(nib.Nifti1Image, nib.load(str(d / stem.format("wm"))))
    pad = 22
    sx, sy, sz = t1_img.shape[:3]
    t1_raw = np.pad(np.asarray(t1_img.dataobj).astype(np.float32), pad)
    gm = np.pad(np.asarray(gm_img.dataobj).astype(np.float32), pad)
    wm = np.pad(np.asarray(wm_img.dataobj).astype(np.float32), pad)
    gm /= 255.0
    wm /= 255.0
    shift = np.eye(4)
    shift[:3, 3] = -pad
    affine = t1_img.affine @ shift
    mask = dilate(erode(t1_raw > 0, 1), 1)
    for k in range(mask.shape[2]):
        mask[:, :, k] = ndimage.binary_fill_holes(mask[:, :, k])
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * mask
    tissues = (np.argmax(np.stack([csf, gm, wm]), axis=0) + 1).astype(np.uint8) * mask
    tissues = tissues.astype(np.uint8)
    wm_median = float(np.median(t1_raw[tissues == 3]))
    t1 = t1_raw / wm_median
    # synthetic scalp and skull as shells around the brain (distance in mm)
    dist = ndimage.distance_transform_edt(~mask).astype(np.float32)
    yy = np.arange(t1.shape[1])[None, :, None].astype(np.float32)
    # thicker scalp at the back of the head, thinner at the forehead
    front = (yy - yy.mean()) / t1.shape[1]
    scalp_out = 14.0 - 4.0 * front
    shell = np.zeros_like(t1)
    shell = np.where((dist > 0) & (dist <= 2.5), 0.2, shell)  # CSF/meninges
    shell = np.where((dist > 2.5) & (dist <= 4.0), 0.08, shell)  # inner table
    shell = np.where((dist > 4.0) & (dist <= 6.0), 0.75, shell)  # diploe (marrow fat)
    shell = np.where((dist > 6.0) & (dist <= 7.5), 0.08, shell)  # outer table
    shell = np.where((dist > 7.5) & (dist <= 9.0), 0.55, shell)  # galea/muscle
    shell = np.where((dist > 9.0) & (dist <= scalp_out - 1.0), 1.25, shell)  # fat
    shell = np.where((dist > scalp_out - 1.0) & (dist <= scalp_out), 0.7, shell)  # skin
    rng = np.random.default_rng(152)
    tex = ndimage.gaussian_filter(rng.standard_normal(t1.shape).astype(np.float32), 1.5)
    shell = shell * (1.0 + 0.6 * tex)
    t1 = np.where(mask, t1, shell).astype(np.float32)
    head = mask | (dist <= scalp_out)
    extra_csf = (
        0.8 * ndimage.gaussian_filter(((dist > 0) & (dist <= 2.5)).astype(np.float32), 0.8)
    ).astype(np.float32)
    # approximate infratentorial region (cerebellum + brainstem) in MNI coordinates
    y = (affine[1, 1] * np.arange(t1.shape[1]) + affine[1, 3])[None, :, None]
    z = (affine[2, 2] * np.arange(t1.shape[2]) + affine[2, 3])[None, None, :]
    infra = (tissues > 0) & (((z <= -14.0) & (y <= -34.0)) | ((z <= -26.0) & (y <= -12.0)))
    t = Template(
        name=MNI_NAME,
        affine=affine,
        t1=t1,
        tissues=tissues,
        pv=_partial_volumes(tissues),
        head=head,
        extra_csf=extra_csf,
        infratentorial=infra,
        infratentorial_method="approximate: MNI z <= -14 & y <= -34, or z <= -26 & y <= -12",
        source_dir=str(d),
        pad_origin=(pad, pad, pad),
        original_shape=(int(sx), int(sy), int(sz)),
    )
    return _crop_to_head(_add_neck(t))


_TEMPLATES: dict[str, Template] = {}


def resolve_atlas_dir(atlas_dir: Path | None) -> Path | None:
    """SRI24 folder to use (explicit, env, user dir, shared) or None for the fallback."""
    from brainmets.atlas import locate_atlas

    rep = locate_atlas(atlas_dir)
    d = rep.directory
    if d is None:
        return None
    need = ("t1_head.nii.gz", "tissues.nii.gz", "suptent.nii.gz")
    if all((d / n).is_file() for n in need):
        return d
    return None


def get_template(atlas_dir: Path | None, anatomy: str = "auto") -> Template:
    """Load (once per process) the anatomy template.

    ``anatomy`` is ``"auto"`` (SRI24 when found, else MNI152), ``"sri24"`` or ``"mni152"``.
    """
    if anatomy not in ("auto", "sri24", "mni152"):
        raise ValueError(f"unknown anatomy {anatomy!r}")
    d = resolve_atlas_dir(atlas_dir) if anatomy in ("auto", "sri24") else None
    if d is None and anatomy == "sri24":
        where = atlas_dir if atlas_dir is not None else "any known location"
        raise TemplateError(f"SRI24 atlas with t1_head, tissues and suptent not found in {where}")
    if d is None and atlas_dir is not None:
        warnings.warn(
            f"{atlas_dir} lacks the SRI24 t1_head/tissues/suptent files: using the MNI152 "
            "fallback anatomy (ground truth will be in MNI152 space, not SRI24)",
            stacklevel=2,
        )
    key = f"sri24:{os.fspath(d)}" if d is not None else "mni152"
    if key not in _TEMPLATES:
        _TEMPLATES[key] = load_sri24(d) if d is not None else load_mni152()
    return _TEMPLATES[key]
