"""Image synthesis: lesions painted into template-space contrasts, then each series
resampled onto its own grid with slice profile, bias field, Rician noise and quantisation."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainmets.synth.acquisition import SeriesPlan, StudyPlan
from brainmets.synth.anatomy import SIGNALS, Template
from brainmets.synth.geometry import Grid, grid_box_of_source_box, resample
from brainmets.synth.lesions import EDEMA, ENHANCING, NECROSIS, LesionSet


def merge_boxes(boxes: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Merge overlapping [lo, hi) boxes until they are disjoint."""
    out = [(np.array(lo), np.array(hi)) for lo, hi in boxes]
    changed = True
    while changed:
        changed = False
        for a in range(len(out)):
            for b in range(a + 1, len(out)):
                (lo1, hi1), (lo2, hi2) = out[a], out[b]
                if np.all(lo1 < hi2) and np.all(lo2 < hi1):
                    out[a] = (np.minimum(lo1, lo2), np.maximum(hi1, hi2))
                    del out[b]
                    changed = True
                    break
            if changed:
                break
    return out


class PatientImages:
    """Template-space images of one patient (one time point), per contrast, memoised."""

    def __init__(self, template: Template, lesions: LesionSet, seed: int) -> None:
        self.t = template
        self.lesions = lesions
        self.boxes = merge_boxes(lesions.boxes)
        rng = np.random.default_rng(seed)
        self._pv: list[
            tuple[tuple[slice, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]
        ] = []
        for lo, hi in self.boxes:
            sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
            lab = lesions.labels[sl]
            pv = [
                ndimage.gaussian_filter((lab == v).astype(np.float32), sig)
                for v, sig in ((ENHANCING, 0.55), (NECROSIS, 0.7), (EDEMA, 1.1))
            ]
            tex = ndimage.gaussian_filter(rng.standard_normal(lab.shape).astype(np.float32), 1.2)
            tex = 1.0 + 0.35 * tex / max(float(tex.std()), 1e-6) * 0.25
            self._pv.append((sl, pv[0], pv[1], pv[2], tex.astype(np.float32)))
        self._cache: dict[tuple[str, float], np.ndarray] = {}

    def image(self, contrast: str, blur_sigma: float = 0.0) -> np.ndarray:
        key = (contrast, round(blur_sigma, 2))
        if key in self._cache:
            return self._cache[key]
        if blur_sigma > 0:
            img = ndimage.gaussian_filter(self.image(contrast), blur_sigma)
        else:
            s = SIGNALS[contrast]
            img = self.t.normal_image(contrast).copy()
            for sl, enh, nec, ede, tex in self._pv:
                normal = img[sl]
                ede_val = normal * s.edema if s.edema_relative else s.edema
                rest = np.clip(1.0 - enh - nec - ede, 0.0, 1.0)
                img[sl] = (
                    rest * normal + enh * s.enhancing * tex + nec * s.necrosis * tex + ede * ede_val
                )
        self._cache[key] = img
        return img


def series_transform(study: StudyPlan, plan: SeriesPlan) -> np.ndarray:
    """4x4 template world -> this series' scanner world (RAS): placement then motion."""
    return plan.motion @ study.placement


def render(
    t: Template,
    imgs: PatientImages,
    study: StudyPlan,
    plan: SeriesPlan,
    grid: Grid,
    contrast: str | None = None,
) -> np.ndarray:
    """Noise-free signal of ``plan`` on ``grid`` (relative units, WM on T1 ~ 1)."""
    contrast = contrast or plan.contrast
    vol = imgs.image(contrast)
    to_template = np.linalg.inv(series_transform(study, plan))
    th = plan.slice_thickness
    n_sub = 1 if th <= 1.5 else 2
    out = np.zeros(grid.shape, dtype=np.float32)
    # only the part of the grid that can see the head (the template is cut to the head)
    box = grid_box_of_source_box(t.affine, grid, to_template, np.zeros(3), np.array(t.shape))
    if box is not None:
        out[tuple(slice(a, b) for a, b in box)] = resample(
            vol, t.affine, grid, to_template, order=1, thickness=th, n_sub=n_sub, box=box
        )
    return out


def bias_field(rng: np.random.Generator, shape: tuple[int, int, int], amount: float) -> np.ndarray:
    """Smooth multiplicative receive-coil field (separable, ~``amount`` peak deviation)."""
    if amount <= 0:
        return np.ones(shape, dtype=np.float32)
    fields = []
    for n in shape:
        x = np.linspace(-1.0, 1.0, n, dtype=np.float32)
        a, b = rng.uniform(-1, 1, 2)
        fields.append(np.exp(np.float32(amount) * (0.6 * a * x + 0.5 * b * (x * x - 0.33))))
    return (fields[0][:, None, None] * fields[1][None, :, None]) * fields[2][None, None, :]


def acquire(
    signal: np.ndarray, plan: SeriesPlan, rng: np.random.Generator, bits: int, rician: bool = True
) -> np.ndarray:
    """Bias field, noise and quantisation to stored integer values (uint16)."""
    img = signal * bias_field(rng, signal.shape, plan.bias)
    if plan.noise > 0:
        sigma = np.float32(plan.noise)
        n1 = rng.standard_normal(img.shape, dtype=np.float32)
        n1 *= sigma
        img += n1
        if rician:
            n2 = rng.standard_normal(img.shape, dtype=np.float32)
            n2 *= sigma
            img = np.hypot(img, n2, out=img)
        else:
            np.maximum(img, 0.0, out=img)
    img *= np.float32(plan.wm_value / plan.rescale_slope)
    np.rint(img, out=img)
    np.clip(img, 0, float(2**bits - 1), out=img)
    return img.astype(np.uint16)
