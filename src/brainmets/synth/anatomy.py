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
from dataclasses import dataclass, field
from pathlib import Path

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
    extra_csf: np.ndarray  # bool: CSF outside the tissue map (between brain and skull)
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
        """Cut an array on the padded grid back to the template's own grid."""
        o = self.pad_origin
        s = self.original_shape
        return arr[o[0] : o[0] + s[0], o[1] : o[1] + s[1], o[2] : o[2] + s[2]]

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

    def _synthesise(self, s: TissueSignal) -> np.ndarray:
        p_csf, p_gm, p_wm = self.pv
        p_brain = p_csf + p_gm + p_wm
        if s.use_t1_texture:
            # Map the real T1 template intensities piecewise-linearly so the texture stays.
            m = self._class_means()
            xs = np.array([0.0, m[0], m[1], m[2], 2.5])
            ys = np.array([0.0, s.csf, s.gm, s.wm, s.wm * 2.5 / m[2]])
            brain = np.interp(self.t1, xs, ys).astype(np.float32)
            brain *= np.float32(1.0)
        else:
            brain = (p_csf * s.csf + p_gm * s.gm + p_wm * s.wm) / np.maximum(p_brain, 1e-3)
            brain = brain.astype(np.float32)
            # mild texture borrowed from the T1 template (deep grey nuclei, etc.)
            expected = (
                p_csf * self._class_means()[0]
                + p_gm * self._class_means()[1]
                + p_wm * self._class_means()[2]
            ) / np.maximum(p_brain, 1e-3)
            ratio = np.clip(self.t1 / np.maximum(expected, 1e-3), 0.7, 1.3)
            brain *= (1.0 + 0.25 * (1.0 - ratio)).astype(np.float32)
        nonbrain = s.nonbrain_gain * np.power(np.clip(self.t1, 0.0, 3.0), s.nonbrain_gamma)
        nonbrain = np.where(self.extra_csf, s.csf, nonbrain).astype(np.float32)
        nonbrain *= self.head
        img = p_brain * brain + (1.0 - p_brain) * nonbrain
        return img.astype(np.float32)

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


def _head_mask(t1: np.ndarray, threshold: float) -> np.ndarray:
    m = t1 > threshold
    m = ndimage.binary_opening(m, iterations=2)
    lab, n = ndimage.label(m)
    if n > 1:
        sizes = ndimage.sum_labels(m, lab, index=np.arange(1, n + 1))
        m = lab == (int(np.argmax(sizes)) + 1)
    m = ndimage.binary_closing(m, iterations=3)
    for k in range(m.shape[2]):
        m[:, :, k] = ndimage.binary_fill_holes(m[:, :, k])
    return m


def _extra_axial_csf(t1: np.ndarray, tissues: np.ndarray, head: np.ndarray) -> np.ndarray:
    brain = tissues > 0
    near = ndimage.binary_dilation(brain, iterations=3)
    return near & ~brain & head & (t1 < 0.45)


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
    base_t1 = ndimage.gaussian_filter(t.t1[:, :, 0], 1.0)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    if base_head.any():
        ci, cj = np.argwhere(base_head).mean(axis=0)
        half_i = np.ptp(np.argwhere(base_head)[:, 0]) / 2.0
        half_j = np.ptp(np.argwhere(base_head)[:, 1]) / 2.0
    else:
        ci, cj, half_i, half_j = nx / 2, ny / 2, 60.0, 70.0
    # the brain's axes: voxel axis 1 is anterior in both templates (LAS/RAS grids)
    for d in range(1, pad + 1):
        f = d / pad
        ri = half_i * (1.0 - 0.35 * f)
        rj = half_j * (1.0 - 0.30 * f)
        cj_d = cj - 0.12 * half_j * f
        ell = ((ii - ci) / max(ri, 1.0)) ** 2 + ((jj - cj_d) / max(rj, 1.0)) ** 2 <= 1.0
        m = base_head & ell
        t1[:, :, pad - d] = np.where(m, base_t1 * (1.0 - 0.25 * f) + 0.1 * f, 0.0)
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
        pad_origin=(0, 0, pad),
        original_shape=t.shape,
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
    tis_img = nib.load(str(directory / "tissues.nii.gz"))
    affine = tis_img.affine.copy()
    tissues = np.asarray(tis_img.dataobj).astype(np.uint8)
    shape = tissues.shape

    def on_grid(name: str, dtype: type) -> np.ndarray:
        img = nib.load(str(directory / name))
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
    return _add_neck(t)


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
    t1_img = nib.load(str(d / stem.format("t1")))
    pad = 22
    t1_raw = np.pad(np.asarray(t1_img.dataobj).astype(np.float32), pad)
    gm = np.pad(np.asarray(nib.load(str(d / stem.format("gm"))).dataobj).astype(np.float32), pad)
    wm = np.pad(np.asarray(nib.load(str(d / stem.format("wm"))).dataobj).astype(np.float32), pad)
    gm /= 255.0
    wm /= 255.0
    shift = np.eye(4)
    shift[:3, 3] = -pad
    affine = t1_img.affine @ shift
    mask = ndimage.binary_fill_holes(ndimage.binary_opening(t1_raw > 0, iterations=1))
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
    extra_csf = (dist > 0) & (dist <= 2.5)
    # approximate infratentorial region (cerebellum + brainstem) in MNI coordinates
    ijk = np.indices(t1.shape, dtype=np.float32)
    y = affine[1, 1] * ijk[1] + affine[1, 3]
    z = affine[2, 2] * ijk[2] + affine[2, 3]
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
    )
    return _add_neck(t)


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
    if anatomy == "sri24" and d is None:
        raise TemplateError("SRI24 atlas with t1_head, tissues and suptent not found")
    key = f"sri24:{os.fspath(d)}" if d is not None else "mni152"
    if key not in _TEMPLATES:
        _TEMPLATES[key] = load_sri24(d) if d is not None else load_mni152()
    return _TEMPLATES[key]
