"""The descriptor's figures (matplotlib, PNG bytes; no pyplot, no global backend change).

* :func:`lesion_volume_histogram`, :func:`lesions_per_patient_histogram`;
* :func:`patient_figure`: the four sequences on the axial slice through the patient's largest
  lesion, and FLAIR with the combined label map overlaid — edema green, enhancing blue,
  necrosis red, as in the reference paper.

Display convention: images are reoriented to RAS (through their affines, never by array
index), shown axially in the radiological convention (the patient's right on the left of the
panel, anterior up), and marked R / L.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import nibabel as nib
import numpy as np

#: label -> (name, RGB) of the overlay (reference paper: edema green, enhancing blue, necrosis red)
LABEL_COLOURS: dict[int, tuple[str, tuple[float, float, float]]] = {
    1: ("necrosis", (0.90, 0.10, 0.10)),
    2: ("edema", (0.10, 0.80, 0.10)),
    3: ("enhancing", (0.15, 0.35, 1.00)),
}
#: montage panels: preprocessed image role -> title
SEQUENCE_TITLES: dict[str, str] = {
    "t1n": "T1",
    "t1c": "T1 post-contrast",
    "t2w": "T2",
    "t2f": "FLAIR",
}
OVERLAY_ALPHA = 0.5


def _png(fig: object, dpi: int) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # type: ignore[arg-type]
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)  # type: ignore[attr-defined]
    return buf.getvalue()


def _figure(width: float, height: float) -> object:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# ------------------------------------------------------------------------ histograms
def lesion_volume_histogram(volumes_cm3: Sequence[float], dpi: int = 100) -> bytes:
    """Histogram of lesion (tumour-core) volumes, logarithmic bins when they span > 10x."""
    vols = np.asarray([v for v in volumes_cm3 if v is not None and v > 0], dtype=float)
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()  # type: ignore[attr-defined]
    if vols.size:
        lo, hi = float(vols.min()), float(vols.max())
        if hi > 10 * lo:
            bins = np.logspace(math.log10(lo) - 0.05, math.log10(hi) + 0.05, 20)
            ax.set_xscale("log")
        else:
            bins = np.linspace(lo * 0.95, hi * 1.05 + 1e-6, 15)
        ax.hist(vols, bins=bins, color="#4C72B0", edgecolor="white")
    else:
        ax.text(0.5, 0.5, "no lesion", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("lesion volume (tumour core, cm$^3$)")
    ax.set_ylabel("lesions")
    ax.set_title(f"Lesion volume (n = {vols.size})")
    return _png(fig, dpi)


def lesions_per_patient_histogram(counts: Sequence[int], dpi: int = 100) -> bytes:
    """Histogram of the number of lesions per patient (one bar per count)."""
    c = np.asarray(list(counts), dtype=int)
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()  # type: ignore[attr-defined]
    if c.size:
        edges = np.arange(int(c.min()), int(c.max()) + 2) - 0.5
        ax.hist(c, bins=edges, color="#DD8452", edgecolor="white")
        ax.set_xticks(range(int(c.min()), int(c.max()) + 1))
    else:
        ax.text(0.5, 0.5, "no patient", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("lesions per patient")
    ax.set_ylabel("patients")
    ax.set_title(f"Lesions per patient (n = {c.size})")
    return _png(fig, dpi)


# ----------------------------------------------------------------------- patient figure
@dataclass
class SliceChoice:
    """The axial slice shown: RAS world z (mm), and how it was chosen."""

    z_mm: float
    how: str


def _canonical(path: str | os.PathLike[str]) -> nib.Nifti1Image:
    img = cast(nib.Nifti1Image, nib.load(str(path)))
    return nib.as_closest_canonical(img)


def choose_slice(
    seg: nib.Nifti1Image, largest_lesion_centroid: Sequence[float] | None = None
) -> SliceChoice:
    """The axial slice through the largest lesion's centroid (world RAS), else the slice with
    the most labelled voxels, else the middle of the volume."""
    if largest_lesion_centroid is not None and all(
        v is not None and math.isfinite(float(v)) for v in largest_lesion_centroid
    ):
        return SliceChoice(float(largest_lesion_centroid[2]), "centroid of the largest lesion")
    can = nib.as_closest_canonical(seg)
    data = np.asarray(can.dataobj)
    per_slice = (data > 0).reshape(-1, data.shape[2]).sum(axis=0)
    k = int(np.argmax(per_slice)) if per_slice.any() else data.shape[2] // 2
    z = float((can.affine @ np.array([0, 0, k, 1.0]))[2])
    return SliceChoice(z, "most labelled voxels" if per_slice.any() else "middle slice")


def _axial(img: nib.Nifti1Image, z_mm: float) -> tuple[np.ndarray, tuple[float, ...]] | None:
    """The RAS-canonical axial slice nearest world z, as a display array (rows: posterior ->
    anterior bottom-up; columns: patient right -> left, radiological), and its extent."""
    aff = img.affine
    centre = aff @ np.array([(img.shape[0] - 1) / 2, (img.shape[1] - 1) / 2, 0.0, 1.0])
    k = int(round((np.linalg.inv(aff) @ np.array([centre[0], centre[1], z_mm, 1.0]))[2]))
    if not 0 <= k < img.shape[2]:
        return None
    sl = np.asarray(img.dataobj[:, :, k], dtype=np.float32)
    disp = sl.T[:, ::-1]  # rows = y (anterior up with origin lower), columns = -x
    x0 = aff[0, 3]
    x1 = aff[0, 3] + aff[0, 0] * (img.shape[0] - 1)
    y0 = aff[1, 3]
    y1 = aff[1, 3] + aff[1, 1] * (img.shape[1] - 1)
    return disp, (x1, x0, y0, y1)


def _window(a: np.ndarray) -> tuple[float, float]:
    nz = a[a != 0]
    if nz.size < 10:
        return float(a.min()), float(a.max()) or 1.0
    lo, hi = np.percentile(nz, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def overlay_rgba(labels: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """RGBA image of a label slice: transparent background, the label colours elsewhere."""
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for value, (_, rgb) in LABEL_COLOURS.items():
        m = labels == value
        rgba[m, :3] = rgb
        rgba[m, 3] = alpha
    return rgba


def head_box(
    arr: np.ndarray, extent: tuple[float, ...], margin_mm: float = 6.0
) -> tuple[float, float, float, float] | None:
    """World limits (x left, x right, y bottom, y top) of the non-zero part of a display slice
    from :func:`_axial`, with a margin, squared so that panels keep the same scale."""
    rows = np.flatnonzero(arr.any(axis=1))
    cols = np.flatnonzero(arr.any(axis=0))
    if not rows.size or not cols.size:
        return None
    xl, xr, yb, yt = extent
    nr, nc = arr.shape

    def x(c: float) -> float:
        return xl + (xr - xl) * c / max(nc - 1, 1)

    def y(r: float) -> float:
        return yb + (yt - yb) * r / max(nr - 1, 1)

    cx, cy = (x(cols[0]) + x(cols[-1])) / 2, (y(rows[0]) + y(rows[-1])) / 2
    half = max(abs(x(cols[-1]) - x(cols[0])), abs(y(rows[-1]) - y(rows[0]))) / 2 + margin_mm
    sign = 1.0 if xl > xr else -1.0  # keep the panel's left-right direction
    return (cx + sign * half, cx - sign * half, cy - half, cy + half)


def patient_figure(
    images: Mapping[str, str | os.PathLike[str]],
    seg: str | os.PathLike[str],
    title: str,
    largest_lesion_centroid: Sequence[float] | None = None,
    dpi: int = 90,
) -> bytes:
    """The four sequences on the axial slice through the largest lesion, and FLAIR with the
    label map overlaid. ``images``: role (``t1n``, ``t1c``, ``t2w``, ``t2f``) -> file."""
    from matplotlib.patches import Patch

    seg_img = _canonical(seg)
    choice = choose_slice(seg_img, largest_lesion_centroid)
    roles = [r for r in SEQUENCE_TITLES if r in images]
    fig = _figure(2.6 * (len(roles) + 1), 3.3)
    axes = fig.subplots(1, len(roles) + 1)  # type: ignore[attr-defined]
    seg_slice = _axial(seg_img, choice.z_mm)
    flair = None
    for ax, role in zip(axes, roles, strict=False):
        got = _axial(_canonical(images[role]), choice.z_mm)
        if got is None:
            ax.text(0.5, 0.5, "outside the volume", ha="center", transform=ax.transAxes)
        else:
            arr, extent = got
            lo, hi = _window(arr)
            ax.imshow(arr, cmap="gray", vmin=lo, vmax=hi, origin="lower", extent=extent)
            if role == "t2f":
                flair = got
        ax.set_title(SEQUENCE_TITLES[role], fontsize=9)
    ax = axes[-1]
    base = flair
    if base is None and roles:
        base = _axial(_canonical(images[roles[-1]]), choice.z_mm)
    if base is not None:
        arr, extent = base
        lo, hi = _window(arr)
        ax.imshow(arr, cmap="gray", vmin=lo, vmax=hi, origin="lower", extent=extent)
        if seg_slice is not None:
            ax.imshow(overlay_rgba(seg_slice[0].astype(int)), origin="lower", extent=seg_slice[1])
    ax.set_title("FLAIR + labels", fontsize=9)
    box = None if base is None else head_box(*base)
    for a in axes:
        if box is not None:
            a.set_xlim(box[0], box[1])
            a.set_ylim(box[2], box[3])
        a.set_xticks([])
        a.set_yticks([])
        a.text(0.02, 0.5, "R", color="yellow", fontsize=8, transform=a.transAxes, va="center")
        a.text(
            0.98,
            0.5,
            "L",
            color="yellow",
            fontsize=8,
            transform=a.transAxes,
            va="center",
            ha="right",
        )
    fig.legend(  # type: ignore[attr-defined]
        handles=[
            Patch(color=rgb, label=f"{value} {name}")
            for value, (name, rgb) in LABEL_COLOURS.items()
        ],
        loc="outside lower center",
        ncol=3,
        fontsize=8,
        frameon=False,
    )
    fig.suptitle(f"{title} - axial z = {choice.z_mm:.0f} mm ({choice.how})", fontsize=10)  # type: ignore[attr-defined]
    return _png(fig, dpi)
