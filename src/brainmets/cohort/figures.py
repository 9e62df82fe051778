"""The descriptor's figures (matplotlib, PNG bytes; no pyplot, no global backend change).

* :func:`lesion_volume_histogram`, :func:`lesions_per_patient_histogram`;
* :func:`patient_figure`: the four sequences on the axial slice through the patient's largest
  lesion, and T1c and FLAIR with the combined label map overlaid — edema green, enhancing
  blue, necrosis red, as in the reference paper (:data:`LABEL_COLOURS`);
* :func:`lesion_montage`: for each lesion (as ``features.json`` lists them: connected
  components of the tumour core, largest first), axial, coronal and sagittal planes through
  its centroid, cropped around it, on T1c and on FLAIR with the label map, with a scale bar;
* :func:`registration_figure`: the outline of the SRI24 template brain (``t1_brain.nii.gz``
  > 0) over the patient's preprocessed T1c in the three planes (registration QC).

Display convention (:mod:`brainmets.cohort.planes`): images are reoriented to RAS through
their affines (never by array index) and drawn in world millimetres; axial and coronal
panels are radiological (the patient's right on the left, marked R / L), sagittal panels
have anterior on the left (A / P).

Each figure function returns a :class:`Rendered`: the PNG and where each panel lies in it
(pixel boxes, for the tests). The PNG bytes depend only on the inputs.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from brainmets.cohort.planes import (
    AXIAL,
    AXIS_NAMES,
    PLANE_AXES,
    PLANES,
    Plane,
    Point,
    Volume,
    as_volume,
    mark_sides,
    nonzero_box,
    set_view,
    show_plane,
    square_around,
    window,
)
from brainmets.vocab import EDEMA, ENHANCING, LABELS, NECROSIS

#: label -> (name, RGB) of the overlay (reference paper: edema green, enhancing blue, necrosis red)
LABEL_COLOURS: dict[int, tuple[str, tuple[float, float, float]]] = {
    NECROSIS: (LABELS[NECROSIS], (0.90, 0.10, 0.10)),
    EDEMA: (LABELS[EDEMA], (0.10, 0.80, 0.10)),
    ENHANCING: (LABELS[ENHANCING], (0.15, 0.35, 1.00)),
}
#: colour of the SRI24 template brain outline in the registration figure (cyan)
TEMPLATE_COLOUR: tuple[float, float, float] = (0.0, 0.9, 1.0)
#: preprocessed image role -> title
SEQUENCE_TITLES: dict[str, str] = {
    "t1n": "T1",
    "t1c": "T1 post-contrast",
    "t2w": "T2",
    "t2f": "FLAIR",
}
OVERLAY_ALPHA = 0.5
#: opacity of the label map in the lesion montage (the image stays visible beneath)
MONTAGE_ALPHA = 0.45
#: panel size (inches; x dpi = pixels): 4.4 in at the report's 100 dpi = 440 px
PANEL_IN = 4.4
#: lesion montage panel size (inches)
MONTAGE_PANEL_IN = 4.2
#: the montage's field of view (half-width, mm) is kept within these limits
MONTAGE_HALF_FIELD_MM = (16.0, 60.0)

VolumeLike = str | os.PathLike[str] | Volume


@dataclass
class Rendered:
    """A rendered figure: PNG bytes, the image size and every panel's pixel box
    ``(left, top, right, bottom)`` in the PNG (rows from the top)."""

    png: bytes
    size: tuple[int, int]
    panels: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)


def _png(fig: Any, dpi: int) -> bytes:
    return _render(fig, dpi).png


def _render(fig: Any, dpi: int, axes: Mapping[str, Any] | None = None) -> Rendered:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.set_dpi(dpi)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    width, height = (int(round(v)) for v in fig.get_size_inches() * dpi)
    panels: dict[str, tuple[int, int, int, int]] = {}
    for name, ax in (axes or {}).items():
        bb = ax.get_window_extent()
        panels[name] = (
            int(math.ceil(bb.x0)),
            int(math.ceil(height - bb.y1)),
            int(math.floor(bb.x1)),
            int(math.floor(height - bb.y0)),
        )
    return Rendered(buf.getvalue(), (width, height), panels)


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


# ------------------------------------------------------------------------ histograms
def lesion_volume_histogram(volumes_cm3: Sequence[float], dpi: int = 100) -> bytes:
    """Histogram of lesion (tumour-core) volumes, logarithmic bins when they span > 10x."""
    vols = np.asarray([v for v in volumes_cm3 if v is not None and v > 0], dtype=float)
    fig = _figure(6.0, 3.2)
    ax = fig.add_subplot()
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
    ax = fig.add_subplot()
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


# ---------------------------------------------------------------------------- helpers
def overlay_rgba(labels: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """RGBA image of a label slice: transparent background, the label colours elsewhere."""
    rgba = np.zeros((*labels.shape, 4), dtype=np.float32)
    for value, (_, rgb) in LABEL_COLOURS.items():
        m = labels == value
        rgba[m, :3] = rgb
        rgba[m, 3] = alpha
    return rgba


def _show_labels(ax: Any, plane: Plane | None, alpha: float) -> None:
    if plane is not None:
        labels = Plane(
            plane.name,
            overlay_rgba(np.rint(plane.data).astype(int), alpha),
            plane.extent,
            plane.coord_mm,
        )
        show_plane(ax, labels)


def _show_image(ax: Any, plane: Plane | None) -> bool:
    ax.set_facecolor("black")  # beyond the volume's edge, as outside the head
    if plane is None:
        ax.text(
            0.5,
            0.5,
            "outside the volume",
            color="white",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        return False
    lo, hi = window(plane.data)
    show_plane(ax, plane, cmap="gray", vmin=lo, vmax=hi)
    return True


def _legend(fig: Any, extra: Sequence[Any] = (), fontsize: float = 10) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(color=rgb, label=f"{value} {name}") for value, (name, rgb) in LABEL_COLOURS.items()
    ]
    fig.legend(
        handles=[*handles, *extra],
        loc="outside lower center",
        ncol=len(handles) + len(extra),
        fontsize=fontsize,
        frameon=False,
    )


def _in_plane(plane_name: str, point: Point) -> tuple[float, float]:
    _, h, v = PLANE_AXES[plane_name]
    return float(point[h]), float(point[v])


def _number(rec: Mapping[str, Any], key: str) -> float | None:
    try:
        v = float(rec[key])
    except (KeyError, TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def lesion_centre_mm(seg: Volume, rec: Mapping[str, Any]) -> np.ndarray | None:
    """World (RAS mm) of a lesion's centroid: its voxel centroid (``centroid_i/j/k`` of
    ``features.json``, indices of the label map as stored) through the label map's affine;
    else its recorded world centroid (``centroid_x/y/z_mm``); None without either."""
    ijk = [_number(rec, f"centroid_{a}") for a in "ijk"]
    if all(v is not None for v in ijk):
        return seg.stored_world([float(v) for v in ijk if v is not None])
    xyz = [  # features version 2 names them centroid_x_mm, ...; version 1 centroid_x, ...
        _number(rec, f"centroid_{a}_mm")
        if _number(rec, f"centroid_{a}_mm") is not None
        else _number(rec, f"centroid_{a}")
        for a in AXIS_NAMES
    ]
    if all(v is not None for v in xyz):
        return np.array([float(v) for v in xyz if v is not None])
    return None


def lesion_half_field_mm(rec: Mapping[str, Any]) -> float:
    """Half-width (mm) of a lesion's montage panels: the larger of 0.65 x its maximum
    diameter and 1.5 x the radius of a sphere of its core + edema volume, plus 8 mm, within
    :data:`MONTAGE_HALF_FIELD_MM`."""
    diameter = _number(rec, "max_diameter_mm") or 0.0
    volume_cm3 = (_number(rec, "volume_cm3") or 0.0) + (_number(rec, "edema_vol") or 0.0)
    radius = (3.0 * volume_cm3 * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    lo, hi = MONTAGE_HALF_FIELD_MM
    return float(min(max(max(0.65 * diameter, 1.5 * radius) + 8.0, lo), hi))


def _scale_bar(ax: Any, centre: tuple[float, float], half: float) -> None:
    """A white bar of 10 mm (5 mm in fields under 30 mm) at the panel's lower left."""
    from matplotlib import patheffects

    length = 10.0 if 2 * half >= 30 else 5.0
    margin = 0.08 * half
    x0 = centre[0] + half - margin  # the horizontal axis is reversed: + is the left
    y = centre[1] - half + margin
    outline = [patheffects.withStroke(linewidth=3, foreground="black")]
    ax.plot([x0, x0 - length], [y, y], color="white", linewidth=3, solid_capstyle="butt")
    ax.text(
        x0 - length / 2,
        y + 0.35 * margin,
        f"{length:g} mm",
        color="white",
        fontsize=9,
        ha="center",
        va="bottom",
        path_effects=outline,
    )


# ----------------------------------------------------------------------- patient figure
@dataclass
class SliceChoice:
    """The axial slice shown: RAS world z (mm), and how it was chosen."""

    z_mm: float
    how: str


def choose_slice(seg: Volume, largest_lesion_centre: Point | None = None) -> SliceChoice:
    """The axial slice through the largest lesion's centroid (world RAS), else the slice with
    the most labelled voxels, else the middle of the volume."""
    if largest_lesion_centre is not None and all(
        v is not None and math.isfinite(float(v)) for v in largest_lesion_centre
    ):
        return SliceChoice(float(largest_lesion_centre[2]), "centroid of the largest lesion")
    per_slice = (seg.data > 0).reshape(-1, seg.shape[2]).sum(axis=0)
    k = int(np.argmax(per_slice)) if per_slice.any() else seg.shape[2] // 2
    z = float(seg.world([0, 0, k])[2])
    return SliceChoice(z, "most labelled voxels" if per_slice.any() else "middle slice")


def patient_figure(
    images: Mapping[str, VolumeLike],
    seg: VolumeLike,
    title: str,
    largest_lesion_centre: Point | None = None,
    dpi: int = 100,
) -> Rendered:
    """Two rows of three panels on the axial slice through the largest lesion: T1, T1c, T2 /
    FLAIR, T1c + labels, FLAIR + labels. ``images``: role (``t1n``, ``t1c``, ``t2w``,
    ``t2f``) -> file or :class:`Volume`. Panels: :data:`PANEL_IN` inches at ``dpi``."""
    seg_v = as_volume(seg)
    vols = {r: as_volume(images[r]) for r in SEQUENCE_TITLES if r in images}
    choice = choose_slice(seg_v, largest_lesion_centre)
    point = [*seg_v.world([(s - 1) / 2 for s in seg_v.shape])[:2], choice.z_mm]
    planes = {r: v.plane(AXIAL, point) for r, v in vols.items()}
    seg_plane = seg_v.plane(AXIAL, point)
    slots: list[tuple[str, str, str | None]] = [
        ("t1n", SEQUENCE_TITLES["t1n"], None),
        ("t1c", SEQUENCE_TITLES["t1c"], None),
        ("t2w", SEQUENCE_TITLES["t2w"], None),
        ("t2f", SEQUENCE_TITLES["t2f"], None),
        ("t1c", "T1 post-contrast + labels", "labels"),
        ("t2f", "FLAIR + labels", "labels"),
    ]
    fig = _figure(3 * PANEL_IN, 2 * PANEL_IN + 0.8)
    grid = fig.subplots(2, 3)
    named: dict[str, Any] = {}
    box = square_around([nonzero_box(p) for p in planes.values() if p is not None])
    for ax, (role, label, extra) in zip(grid.ravel(), slots, strict=True):
        plane = planes.get(role)
        if role not in vols:
            ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes)
        elif _show_image(ax, plane) and extra == "labels":
            _show_labels(ax, seg_plane, OVERLAY_ALPHA)
        ax.set_title(label, fontsize=11)
        if box is not None:
            set_view(ax, *box)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        mark_sides(ax, AXIAL)
        named[f"{role}+{extra}" if extra else role] = ax
    _legend(fig)
    fig.suptitle(f"{title}: axial z = {choice.z_mm:.0f} mm ({choice.how})", fontsize=12)
    return _render(fig, dpi, named)


# ----------------------------------------------------------------------- lesion montage
#: montage rows: image role -> row title
MONTAGE_ROWS: tuple[tuple[str, str], ...] = (("t1c", "T1c"), ("t2f", "FLAIR"))


def _lesion_title(rec: Mapping[str, Any], n_total: int, half: float) -> str:
    number = rec.get("lesion", "?")
    parts = [f"Lesion {number} of {n_total}"]
    core = _number(rec, "volume_cm3")
    if core is not None:
        parts.append(f"core {core:.2f} cm$^3$")
    ed = _number(rec, "edema_vol")
    if ed:
        parts.append(f"edema {ed:.2f} cm$^3$")
    d = _number(rec, "max_diameter_mm")
    if d is not None:
        parts.append(f"max. diameter {d:.0f} mm")
    where = str(rec.get("region") or rec.get("location") or "")
    if where:
        parts.append(where.replace("_", " "))
    parts.append(f"field {2 * half:.0f} x {2 * half:.0f} mm")
    return ", ".join(parts)


def lesion_montage(
    images: Mapping[str, VolumeLike],
    seg: VolumeLike,
    lesions: Sequence[Mapping[str, Any]],
    title: str,
    max_lesions: int = 3,
    dpi: int = 100,
) -> Rendered | None:
    """Per lesion, two rows (T1c, FLAIR; those available) of three planes (axial, coronal,
    sagittal) through its centroid, cropped to :func:`lesion_half_field_mm` around it, with
    the label map overlaid and a scale bar; None when there is no lesion.

    ``lesions``: the ``features.json`` records (:class:`brainmets.lesions.LesionRecord`
    fields); shown by lesion number (largest first), at most ``max_lesions`` (0 = all).
    Panels are named ``"<lesion>/<role>/<plane>"``.
    """
    recs = sorted(lesions, key=lambda r: int(_number(r, "lesion") or 10**9))
    if max_lesions > 0:
        recs = recs[:max_lesions]
    seg_v = as_volume(seg)
    located = [(r, xyz) for r in recs if (xyz := lesion_centre_mm(seg_v, r)) is not None]
    rows = [(role, name) for role, name in MONTAGE_ROWS if role in images]
    if not located or not rows:
        return None
    vols = {role: as_volume(images[role]) for role, _ in rows}
    row_h = len(rows) * MONTAGE_PANEL_IN + 0.6
    fig = _figure(3 * MONTAGE_PANEL_IN, len(located) * row_h + 0.5)
    subs = np.atleast_1d(fig.subfigures(len(located), 1)).ravel()
    named: dict[str, Any] = {}
    for sub, (rec, centre) in zip(subs, located, strict=True):
        half = lesion_half_field_mm(rec)
        grid = np.atleast_2d(sub.subplots(len(rows), 3, squeeze=False))
        for r, (role, row_name) in enumerate(rows):
            for c, plane_name in enumerate(PLANES):
                ax = grid[r, c]
                image = vols[role].plane(plane_name, centre)
                if _show_image(ax, image):
                    _show_labels(ax, seg_v.plane(plane_name, centre), MONTAGE_ALPHA)
                fixed = PLANE_AXES[plane_name][0]
                ax.set_title(
                    f"{row_name} + labels, {plane_name} "
                    f"{AXIS_NAMES[fixed]} = {float(centre[fixed]):.0f} mm",
                    fontsize=10,
                )
                in_plane = _in_plane(plane_name, centre)
                _scale_bar(ax, in_plane, half)
                set_view(ax, in_plane, half)
                mark_sides(ax, plane_name)
                named[f"{rec.get('lesion')}/{role}/{plane_name}"] = ax
        sub.suptitle(_lesion_title(rec, len(lesions), half), fontsize=11)
    _legend(fig)
    n_total = len(lesions)
    if n_total == 1:
        which = "its lesion"
    elif len(located) == n_total:
        which = f"all {n_total} lesions (largest first)"
    else:
        which = f"{len(located)} of {n_total} lesions (largest first)"
    fig.suptitle(f"{title}: lesion montage, {which}", fontsize=12)
    return _render(fig, dpi, named)


# ------------------------------------------------------------------- registration QC
def registration_figure(
    t1c: VolumeLike,
    template: VolumeLike,
    title: str,
    dpi: int = 100,
) -> Rendered:
    """The SRI24 template brain's outline (``template`` > 0, :data:`TEMPLATE_COLOUR`) over the
    preprocessed T1c: axial, coronal and sagittal planes through the template brain's centre
    of mass. Panels are named by plane."""
    from matplotlib.lines import Line2D

    image = as_volume(t1c)
    tpl = as_volume(template)
    mask = tpl.data > 0
    centre = (
        tpl.world(np.argwhere(mask).mean(axis=0))
        if mask.any()
        else image.world([(s - 1) / 2 for s in image.shape])
    )
    fig = _figure(3 * PANEL_IN, PANEL_IN + 0.9)
    axes = fig.subplots(1, 3)
    named: dict[str, Any] = {}
    for ax, plane_name in zip(axes, PLANES, strict=True):
        plane = image.plane(plane_name, centre)
        outline = tpl.plane(plane_name, centre)
        _show_image(ax, plane)
        boxes = [None if plane is None else nonzero_box(plane)]
        if outline is not None and (outline.data > 0).any():
            hc, vc = outline.centres()
            ax.contour(
                hc,
                vc,
                (outline.data > 0).astype(np.float32),
                levels=[0.5],
                colors=[TEMPLATE_COLOUR],
                linewidths=1.6,
            )
            boxes.append(nonzero_box(outline))
        fixed = PLANE_AXES[plane_name][0]
        ax.set_title(
            f"{plane_name} {AXIS_NAMES[fixed]} = {float(centre[fixed]):.0f} mm", fontsize=11
        )
        view = square_around(boxes, margin_mm=8.0)
        if view is not None:
            set_view(ax, *view)
        mark_sides(ax, plane_name)
        named[plane_name] = ax
    fig.legend(
        handles=[Line2D([], [], color=TEMPLATE_COLOUR, linewidth=2, label="SRI24 template brain")],
        loc="outside lower center",
        fontsize=10,
        frameon=False,
    )
    fig.suptitle(f"{title}: registration to SRI24 (template outline on the T1c)", fontsize=12)
    return _render(fig, dpi, named)
