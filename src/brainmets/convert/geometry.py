"""Geometry checks of a series before it becomes a volume.

A NIfTI volume is a regular grid: one orientation, one image size and pixel spacing, slices
equally spaced along the slice normal and stacked straight (no shear). DICOM series do not
always satisfy that: a slice lost in transfer, a localizer stored in the same series, a
second echo or repetition, a gantry-tilted or re-positioned stack. dcm2niix copes with some
of these silently or with a warning in its log; here each one is either a
:class:`GeometryError` naming the series and the problem, or a documented correction:

* **Localizer instances mixed in** (Image Type LOCALIZER / SCOUT): dropped, when what remains
  is a consistent volume (``drop_localizers``); recorded in the report.

Everything else is an error: mixed image sizes or pixel spacings, mixed orientations,
repeated positions (several echoes, time points or duplicates), missing slices (a gap of
at least 1.5 times the regular spacing), uneven spacing (deviation beyond
``spacing_tolerance`` of the spacing), sheared stacks or gantry tilt (slice positions off
the slice normal by more than ``tilt_tolerance_deg``), fewer than three slices (spacing
cannot be checked), Siemens mosaics (EPI, not anatomical volumes).

Positions and orientations come from the classic attributes or, for enhanced multi-frame
objects, from the per-frame (else shared) functional groups, frame by frame.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

#: Image storage SOP classes whose instances are converted (others in a series, such as
#: Philips Raw Data Storage or presentation states, are skipped).
IMAGE_SOP_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
        "1.2.840.10008.5.1.4.1.1.4.4",  # Legacy Converted Enhanced MR Image Storage
    }
)


class GeometryError(ValueError):
    """A series cannot be converted to one regular volume."""


@dataclass(frozen=True)
class Frame:
    """One image frame: where it lies and what it is."""

    file: Path
    index: int  # frame number within the file (0 for single-frame objects)
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    image_type: tuple[str, ...]
    echo_time: float | None


@dataclass
class GeometryReport:
    """What the checks found: the files to convert and the grid they form."""

    files: list[Path]
    n_frames: int
    n_slices: int
    rows: int
    columns: int
    pixel_spacing: tuple[float, float] | None
    slice_spacing: float | None
    orientation: tuple[float, ...]
    corrections: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "frames": self.n_frames,
            "slices": self.n_slices,
            "matrix": [self.rows, self.columns],
            "pixel_spacing": list(self.pixel_spacing) if self.pixel_spacing else None,
            "slice_spacing": self.slice_spacing,
            "orientation": list(self.orientation),
            "corrections": self.corrections,
        }


# ---------------------------------------------------------------------- reading
def _floats(v: Any) -> tuple[float, ...] | None:
    if v is None:
        return None
    try:
        return tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None


def _item(container: Dataset | None, keyword: str) -> Dataset | None:
    if container is None:
        return None
    seq = container.get(keyword)
    try:
        return seq[0] if seq is not None and len(seq) else None
    except (TypeError, IndexError):
        return None


def _group(ds: Dataset, frame: Dataset | None, sequence: str, keyword: str) -> Any:
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    for container in (frame, shared):
        it = _item(container, sequence)
        if it is not None and keyword in it:
            return it.get(keyword)
    return None


def frames_of(path: Path, ds: Dataset) -> list[Frame]:
    """The frames of one DICOM object (one for classic, N for enhanced multi-frame)."""
    it = tuple(str(x).upper() for x in (ds.get("ImageType") or []))
    rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if per is None:
        te = ds.get("EchoTime")
        pos = _floats(ds.get("ImagePositionPatient"))
        return [
            Frame(
                file=path,
                index=0,
                position=pos if pos and len(pos) == 3 else None,
                orientation=_floats(ds.get("ImageOrientationPatient")),
                rows=rows,
                columns=cols,
                pixel_spacing=_floats(ds.get("PixelSpacing")),  # type: ignore[arg-type]
                image_type=it,
                echo_time=float(te) if te not in (None, "") else None,
            )
        ]
    out = []
    for i, fr in enumerate(per):
        pos = _floats(_group(ds, fr, "PlanePositionSequence", "ImagePositionPatient"))
        ftype = _group(ds, fr, "MRImageFrameTypeSequence", "FrameType")
        te = _group(ds, fr, "MREchoSequence", "EffectiveEchoTime")
        out.append(
            Frame(
                file=path,
                index=i,
                position=pos if pos and len(pos) == 3 else None,
                orientation=_floats(
                    _group(ds, fr, "PlaneOrientationSequence", "ImageOrientationPatient")
                ),
                rows=rows,
                columns=cols,
                pixel_spacing=_floats(  # type: ignore[arg-type]
                    _group(ds, fr, "PixelMeasuresSequence", "PixelSpacing")
                ),
                image_type=tuple(str(x).upper() for x in ftype) if ftype else it,
                echo_time=float(te) if te not in (None, "") else None,
            )
        )
    return out


def read_frames(paths: Iterable[Path]) -> list[Frame]:
    """The frames of the MR image objects among ``paths`` (headers only)."""
    frames: list[Frame] = []
    for p in paths:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        sop = str(ds.get("SOPClassUID", ""))
        if sop not in IMAGE_SOP_CLASSES or "Rows" not in ds:
            continue  # not an MR image (raw data, presentation state, report...)
        frames.extend(frames_of(Path(p), ds))
    return frames


# ----------------------------------------------------------------------- checks
def _plane(o: Sequence[float]) -> str:
    n = np.cross(np.asarray(o[:3]), np.asarray(o[3:]))
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(n)))]


def check_geometry(
    frames: Sequence[Frame],
    *,
    series: str = "series",
    drop_localizers: bool = True,
    spacing_tolerance: float = 0.02,
    position_tolerance_mm: float = 0.05,
    orientation_tolerance: float = 1e-3,
    tilt_tolerance_deg: float = 0.5,
    min_slices: int = 3,
) -> GeometryReport:
    """Check that ``frames`` form one regular volume; raise :class:`GeometryError` if not.

    Args:
        frames: the frames of the series (see :func:`read_frames`).
        series: how to name the series in messages.
        drop_localizers: drop instances whose Image Type says LOCALIZER / SCOUT.
        spacing_tolerance: allowed deviation of a slice step from the median step, as a
            fraction of it.
        position_tolerance_mm: positions closer than this are the same position; also the
            floor of the spacing tolerance.
        orientation_tolerance: largest difference of direction cosines within a series.
        tilt_tolerance_deg: largest angle between the stacking direction and the normal.
        min_slices: fewest slice positions accepted (two slices cannot show uneven spacing).
    """

    def fail(msg: str) -> GeometryError:
        return GeometryError(f"{series}: {msg}")

    corrections: list[str] = []
    if not frames:
        raise fail("no image frames")
    localizer = {f.file for f in frames if {"LOCALIZER", "SCOUT"} & set(f.image_type)}
    if localizer:
        rest = [f for f in frames if f.file not in localizer]
        if drop_localizers and rest:
            corrections.append(
                f"dropped {len(localizer)} localizer instance(s) stored in the series"
            )
            frames = rest
        elif not rest:
            raise fail("all instances are localizers")
        else:
            raise fail(f"{len(localizer)} localizer instance(s) mixed into the series")

    if any("MOSAIC" in f.image_type for f in frames):
        raise fail("Siemens mosaic (EPI) images: not an anatomical volume")
    missing = [f for f in frames if f.position is None or f.orientation is None]
    if missing:
        raise fail(f"{len(missing)} frame(s) without position or orientation")
    ref = np.asarray(frames[0].orientation, dtype=float)
    odd = [
        f for f in frames if np.max(np.abs(np.asarray(f.orientation) - ref)) > orientation_tolerance
    ]
    if odd:
        planes = Counter(_plane(f.orientation) for f in frames)  # type: ignore[arg-type]
        shown = ", ".join(f"{n} {p}" for p, n in planes.most_common())
        hint = " (a localizer or a second stack mixed in?)" if len(planes) > 1 else ""
        raise fail(
            f"mixed slice orientations: {len(odd)} of {len(frames)} frames differ; {shown}{hint}"
        )

    sizes = Counter((f.rows, f.columns) for f in frames)
    if len(sizes) > 1:
        shown = ", ".join(f"{n} x {r}x{c}" for (r, c), n in sizes.most_common())
        raise fail(f"mixed image sizes ({shown})")
    spacings = Counter(
        tuple(round(x, 3) for x in f.pixel_spacing) if f.pixel_spacing else None for f in frames
    )
    if len(spacings) > 1:
        raise fail(f"mixed pixel spacings ({', '.join(str(s) for s in spacings)})")

    row, col = ref[:3], ref[3:]
    normal = np.cross(row, col)
    norm = float(np.linalg.norm(normal))
    if norm < 1e-6:
        raise fail("degenerate ImageOrientationPatient")
    normal /= norm
    pos = np.asarray([f.position for f in frames], dtype=float)
    dist = pos @ normal
    order = np.argsort(dist, kind="stable")
    dist_sorted = dist[order]
    # unique positions (within tolerance) and how many frames lie at each
    groups: list[list[int]] = [[int(order[0])]]
    for i in range(1, len(order)):
        if dist_sorted[i] - dist[groups[-1][0]] <= position_tolerance_mm:
            groups[-1].append(int(order[i]))
        else:
            groups.append([int(order[i])])
    counts = Counter(len(g) for g in groups)
    if len(groups) == 1:
        raise fail(f"a single slice position ({len(frames)} frame(s)): not a volume")
    if len(groups) < min_slices:
        raise fail(
            f"only {len(groups)} slices: at least {min_slices} are needed to check the spacing"
        )
    if counts != Counter({1: len(groups)}):
        if len(counts) == 1:
            k = next(iter(counts))
            tes = sorted({f.echo_time for f in frames if f.echo_time is not None})
            if len(tes) == k:
                what = f"{k} echoes (TE {', '.join(f'{t:g}' for t in tes)} ms)"
            else:
                what = f"{k} frames at every position (time points or repeated acquisitions)"
            raise fail(f"{what}: more than one volume in the series")
        dup = sum(1 for g in groups if len(g) > 1)
        raise fail(f"duplicate slices at {dup} of {len(groups)} positions")

    centres = np.asarray([dist[g[0]] for g in groups])
    steps = np.diff(centres)
    step = float(np.median(steps))
    gaps = np.nonzero(steps > 1.5 * step)[0]
    if len(gaps):
        i = int(gaps[0])
        n_missing = int(round(steps[i] / step)) - 1
        raise fail(
            f"missing slice(s): a gap of {steps[i]:.3f} mm after slice {i + 1} of {len(groups)} "
            f"where the spacing is {step:.3f} mm (about {n_missing} slice(s) missing"
            f"{'' if len(gaps) == 1 else f'; {len(gaps)} gaps in all'})"
        )
    tol = max(spacing_tolerance * step, position_tolerance_mm)
    worst = float(np.max(np.abs(steps - step)))
    if worst > tol:
        raise fail(
            f"uneven slice spacing: steps from {steps.min():.3f} to {steps.max():.3f} mm "
            f"(median {step:.3f} mm, tolerance {tol:.3f} mm)"
        )
    first = pos[groups[0][0]]
    offsets = pos[[g[0] for g in groups]] - first
    along = offsets @ normal
    lateral = offsets - np.outer(along, normal)
    span = float(along[-1]) if len(along) else 0.0
    if span > 0:
        angle = math.degrees(math.atan2(float(np.max(np.linalg.norm(lateral, axis=1))), span))
        if angle > tilt_tolerance_deg:
            raise fail(
                f"slices are not stacked along their normal (shear / gantry tilt of about "
                f"{angle:.2f} degrees)"
            )
    files = list(dict.fromkeys(f.file for f in frames))
    ps = next(iter(spacings))
    return GeometryReport(
        files=files,
        n_frames=len(frames),
        n_slices=len(groups),
        rows=frames[0].rows,
        columns=frames[0].columns,
        pixel_spacing=ps,  # type: ignore[arg-type]
        slice_spacing=round(step, 4),
        orientation=tuple(float(x) for x in ref),
        corrections=corrections,
    )
