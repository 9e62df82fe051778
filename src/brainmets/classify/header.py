"""The header index: the acquisition facts of one series that classification needs.

:func:`index_series` reads the header of every instance of a series (pixel data is never
read) and summarises them in a :class:`SeriesHeader`: identity and description, acquisition
physics (TE, TR, TI, flip angle, sequence type), geometry (slice thickness, spacing,
orientation), contrast-agent fields, Image Type, timing. Enhanced (multi-frame) objects are
read through their shared and per-frame functional groups, so a Philips or Siemens XA
enhanced series gives the same facts as its classic equivalent.

Only image instances are summarised; other objects that share a series (Philips Raw Data
Storage, presentation states...) are counted in ``n_non_image`` and otherwise ignored.
Times are in milliseconds (as in DICOM), lengths in millimetres.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

#: SOP classes whose instances are MR images that can be classified and converted.
MR_IMAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
}
#: Other image storage SOP classes (kept as images, but not MR acquisitions).
OTHER_IMAGE_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.4.3": "Enhanced MR Color Image Storage",
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.128": "PET Image Storage",
}


def is_image_sop_class(uid: str | None) -> bool:
    """Whether instances of this SOP class carry an image (MR or other)."""
    return bool(uid) and (uid in MR_IMAGE_SOP_CLASSES or uid in OTHER_IMAGE_SOP_CLASSES)


@dataclass
class SeriesHeader:
    """Indexed header fields of one series (see the module docstring for units)."""

    uid: str = ""
    study_uid: str = ""
    series_number: int | None = None
    modality: str | None = None
    sop_class_uid: str | None = None
    sop_class: str | None = None
    enhanced: bool = False
    manufacturer: str | None = None
    model: str | None = None
    field_strength: float | None = None
    description: str | None = None
    protocol_name: str | None = None
    sequence_name: str | None = None
    scanning_sequence: list[str] = field(default_factory=list)
    sequence_variant: list[str] = field(default_factory=list)
    scan_options: list[str] = field(default_factory=list)
    mr_acquisition_type: str | None = None
    echo_pulse_sequence: str | None = None  # enhanced: SPIN / GRADIENT / BOTH
    steady_state: str | None = None  # enhanced: SteadyStatePulseSequence
    echo_planar: bool | None = None
    inversion_recovery: bool | None = None
    acquisition_contrast: str | None = None  # enhanced: T1 / T2 / FLUID_ATTENUATED ...
    angio: bool | None = None
    echo_time: float | None = None
    echo_times: list[float] = field(default_factory=list)
    repetition_time: float | None = None
    inversion_time: float | None = None
    flip_angle: float | None = None
    echo_train_length: int | None = None
    slice_thickness: float | None = None
    spacing_between_slices: float | None = None
    pixel_spacing: list[float] | None = None
    rows: int | None = None
    columns: int | None = None
    orientation: str | None = None  # axial / sagittal / coronal
    obliquity_deg: float | None = None
    image_orientation: list[float] | None = None
    n_instances: int = 0
    n_frames: int = 0
    n_positions: int = 0
    n_non_image: int = 0
    extent_mm: float | None = None
    diffusion_b_values: list[float] = field(default_factory=list)
    temporal_positions: int | None = None
    image_type: list[str] = field(default_factory=list)
    image_types: list[list[str]] = field(default_factory=list)
    contrast_agent: str | None = None
    contrast_route: str | None = None
    contrast_volume: float | None = None
    contrast_start_time: str | None = None
    contrast_administered: bool | None = None  # enhanced Contrast/Bolus Usage
    series_date: str | None = None
    series_time: str | None = None
    acquisition_datetime: str | None = None  # ISO, earliest acquisition of the series
    body_part: str | None = None
    patient_position: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict of the fields (``None`` and empty lists are kept)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SeriesHeader:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def text(self) -> str:
        """Description and protocol name, for messages."""
        parts = [p for p in (self.description, self.protocol_name) if p]
        return " / ".join(dict.fromkeys(parts)) or "(no description)"


# --------------------------------------------------------------------------- values
def _str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode("latin-1", "replace")
    s = str(v).strip().strip("\x00").strip()
    return s or None


def _strs(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str | bytes):
        s = _str(v)
        return [p.strip() for p in s.split("\\") if p.strip()] if s else []
    try:
        return [s for s in (_str(x) for x in v) if s]
    except TypeError:
        s = _str(v)
        return [s] if s else []


def _float(v: Any) -> float | None:
    if v is None:
        return None
    if not isinstance(v, str | bytes | int | float):
        try:
            v = next(iter(v))  # multi-valued: first value
        except (TypeError, StopIteration):
            return None
    try:
        f = float(v.decode() if isinstance(v, bytes) else v)
    except (TypeError, ValueError):
        return None
    # 7.23e+75 is a "not applicable" filler some vendors write
    return f if math.isfinite(f) and abs(f) < 1e30 else None


def _int(v: Any) -> int | None:
    f = _float(v)
    return None if f is None else int(round(f))


def _floats(v: Any) -> list[float] | None:
    if v is None:
        return None
    try:
        out = [_float(x) for x in v]
    except TypeError:
        return None
    return None if any(x is None for x in out) else [float(x) for x in out]  # type: ignore[arg-type]


def _get(ds: Dataset, keyword: str) -> Any:
    try:
        el = ds.get(keyword)
    except Exception:  # a malformed element must not stop indexing
        return None
    return el


def _group_item(ds: Dataset, sequence: str, frame: Dataset | None) -> Dataset | None:
    """The item of a functional-group macro for a frame (per-frame first, then shared)."""
    for container in (frame, _first(_get(ds, "SharedFunctionalGroupsSequence"))):
        if container is None:
            continue
        item = _first(_get(container, sequence))
        if item is not None:
            return item
    return None


def _first(seq: Any) -> Dataset | None:
    try:
        return seq[0] if seq is not None and len(seq) else None
    except (TypeError, IndexError):
        return None


def _fg(ds: Dataset, sequence: str, keyword: str, frame: Dataset | None = None) -> Any:
    item = _group_item(ds, sequence, frame)
    return None if item is None else _get(item, keyword)


def _frames(ds: Dataset) -> list[Dataset | None]:
    per = _get(ds, "PerFrameFunctionalGroupsSequence")
    if per is None or not len(per):
        return [None]
    return list(per)


def parse_datetime(date: Any, time: Any) -> _dt.datetime | None:
    """A DICOM DA + TM pair (or a DT in ``date``) as a naive datetime, or None."""
    d = _str(date)
    if not d:
        return None
    d = d.replace("-", "").replace(".", "")
    t = (_str(time) or "").replace(":", "")
    if len(d) > 8 and not t:  # a DT value
        d, t = d[:8], d[8:]
    try:
        day = _dt.datetime.strptime(d[:8], "%Y%m%d")
    except ValueError:
        return None
    t = t.split("+")[0].split("-")[0]
    whole, _, frac = t.partition(".")
    whole = (whole + "000000")[:6]
    try:
        hh, mm, ss = int(whole[0:2]), int(whole[2:4]), int(whole[4:6])
        us = int((frac + "000000")[:6]) if frac.isdigit() else 0
        return day.replace(hour=hh, minute=mm, second=min(ss, 59), microsecond=us)
    except ValueError:
        return day


def plane_of(iop: Sequence[float] | None) -> tuple[str | None, float | None]:
    """Name the plane of direction cosines (axial/sagittal/coronal) and its obliquity.

    The plane is the one whose normal is closest to the slice normal (row x column);
    the obliquity is the angle in degrees between the two.
    """
    if not iop or len(iop) != 6:
        return None, None
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(x * x for x in n))
    if norm < 1e-6:
        return None, None
    unit = tuple(x / norm for x in n)
    axis = max(range(3), key=lambda i: abs(unit[i]))
    angle = math.degrees(math.acos(min(1.0, abs(unit[axis]))))
    return ("sagittal", "coronal", "axial")[axis], round(angle, 2)


# ------------------------------------------------------------------ one instance
@dataclass
class _Instance:
    """What one image instance contributes (one entry per frame for positions)."""

    ds: Dataset
    image_type: tuple[str, ...]
    positions: list[tuple[float, ...]]
    orientation: list[float] | None
    echo_times: list[float]
    b_values: list[float]
    when: _dt.datetime | None
    frames: int


def _instance(ds: Dataset) -> _Instance:
    frames = _frames(ds)
    enhanced = frames != [None]
    positions: list[tuple[float, ...]] = []
    echo_times: list[float] = []
    b_values: list[float] = []
    orientation: list[float] | None = None
    times: list[_dt.datetime] = []
    for fr in frames:
        pos = _floats(_fg(ds, "PlanePositionSequence", "ImagePositionPatient", fr))
        if pos is None and not enhanced:
            pos = _floats(_get(ds, "ImagePositionPatient"))
        if pos is not None and len(pos) == 3:
            positions.append(tuple(round(x, 3) for x in pos))
        if orientation is None:
            o = _floats(_fg(ds, "PlaneOrientationSequence", "ImageOrientationPatient", fr))
            orientation = o if o is not None else _floats(_get(ds, "ImageOrientationPatient"))
        te = _float(_fg(ds, "MREchoSequence", "EffectiveEchoTime", fr)) if enhanced else None
        if te is None and not enhanced:
            te = _float(_get(ds, "EchoTime"))
        if te is not None:
            echo_times.append(round(te, 3))
        b = _float(_fg(ds, "MRDiffusionSequence", "DiffusionBValue", fr)) if enhanced else None
        if b is None and not enhanced:
            b = _float(_get(ds, "DiffusionBValue"))
        if b is not None:
            b_values.append(round(b, 1))
        if enhanced:
            t = parse_datetime(_fg(ds, "FrameContentSequence", "FrameAcquisitionDateTime", fr), "")
            if t is not None:
                times.append(t)
    if not times:
        t = parse_datetime(_get(ds, "AcquisitionDateTime"), "") or parse_datetime(
            _get(ds, "AcquisitionDate") or _get(ds, "SeriesDate") or _get(ds, "StudyDate"),
            _get(ds, "AcquisitionTime"),
        )
        if t is not None:
            times.append(t)
    return _Instance(
        ds=ds,
        image_type=tuple(x.upper() for x in _strs(_get(ds, "ImageType"))),
        positions=positions,
        orientation=orientation,
        echo_times=echo_times,
        b_values=b_values,
        when=min(times) if times else None,
        frames=len(frames) if enhanced else max(1, _int(_get(ds, "NumberOfFrames")) or 1),
    )


def _scalar(ds: Dataset, keyword: str, sequence: str | None = None) -> Any:
    """A top-level value, else the value from the (shared / first per-frame) group."""
    v = _get(ds, keyword)
    if v not in (None, "") or sequence is None:
        return v
    return _fg(ds, sequence, keyword, _frames(ds)[0])


def _yes(v: Any) -> bool | None:
    s = _str(v)
    if s is None:
        return None
    return s.upper() in ("YES", "Y", "TRUE")


# ----------------------------------------------------------------------- a series
def index_series(datasets: Iterable[Dataset], uid: str = "", study_uid: str = "") -> SeriesHeader:
    """Summarise the instances of one series in a :class:`SeriesHeader`."""
    all_ds = list(datasets)
    images = [ds for ds in all_ds if is_image_sop_class(_str(_get(ds, "SOPClassUID")))]
    h = SeriesHeader(uid=uid, study_uid=study_uid, n_non_image=len(all_ds) - len(images))
    if not images:
        if all_ds:
            ds = all_ds[0]
            h.uid = h.uid or _str(_get(ds, "SeriesInstanceUID")) or ""
            h.modality = _str(_get(ds, "Modality"))
            h.sop_class_uid = _str(_get(ds, "SOPClassUID"))
            h.description = _str(_get(ds, "SeriesDescription"))
        return h
    insts = [_instance(ds) for ds in images]
    ds = images[0]
    h.uid = h.uid or _str(_get(ds, "SeriesInstanceUID")) or ""
    h.study_uid = h.study_uid or _str(_get(ds, "StudyInstanceUID")) or ""
    h.series_number = _int(_get(ds, "SeriesNumber"))
    h.modality = _str(_get(ds, "Modality"))
    h.sop_class_uid = _str(_get(ds, "SOPClassUID"))
    h.sop_class = MR_IMAGE_SOP_CLASSES.get(h.sop_class_uid or "") or OTHER_IMAGE_SOP_CLASSES.get(
        h.sop_class_uid or ""
    )
    h.enhanced = any(_get(d, "PerFrameFunctionalGroupsSequence") is not None for d in images)
    h.manufacturer = _str(_get(ds, "Manufacturer"))
    h.model = _str(_get(ds, "ManufacturerModelName"))
    h.field_strength = _float(_get(ds, "MagneticFieldStrength"))
    h.description = _str(_get(ds, "SeriesDescription"))
    h.protocol_name = _str(_get(ds, "ProtocolName"))
    h.sequence_name = _str(_get(ds, "SequenceName")) or _str(_get(ds, "PulseSequenceName"))
    h.scanning_sequence = [x.upper() for x in _strs(_get(ds, "ScanningSequence"))]
    h.sequence_variant = [x.upper() for x in _strs(_get(ds, "SequenceVariant"))]
    h.scan_options = [x.upper() for x in _strs(_get(ds, "ScanOptions"))]
    h.mr_acquisition_type = (_str(_get(ds, "MRAcquisitionType")) or "").upper() or None
    h.echo_pulse_sequence = _str(_get(ds, "EchoPulseSequence"))
    h.steady_state = _str(_get(ds, "SteadyStatePulseSequence"))
    h.echo_planar = _yes(_get(ds, "EchoPlanarPulseSequence"))
    h.inversion_recovery = _yes(_scalar(ds, "InversionRecovery", "MRModifierSequence"))
    h.acquisition_contrast = _str(_scalar(ds, "AcquisitionContrast", "MRImageFrameTypeSequence"))
    angio = _str(_get(ds, "AngioFlag"))
    tof = _yes(_get(ds, "TimeOfFlightContrast"))
    pc = _yes(_get(ds, "PhaseContrast"))
    h.angio = True if (angio == "Y" or tof or pc) else (False if angio or tof is False else None)

    echo_times = sorted({t for i in insts for t in i.echo_times})
    h.echo_times = echo_times
    h.echo_time = echo_times[0] if echo_times else None
    h.repetition_time = _float(
        _scalar(ds, "RepetitionTime", "MRTimingAndRelatedParametersSequence")
    )
    ti = _float(_get(ds, "InversionTime"))
    if ti is None:
        ti = _float(_fg(ds, "MRModifierSequence", "InversionTimes", _frames(ds)[0]))
    h.inversion_time = ti if ti is not None and ti > 0 else None
    h.flip_angle = _float(_scalar(ds, "FlipAngle", "MRTimingAndRelatedParametersSequence"))
    h.echo_train_length = _int(
        _scalar(ds, "EchoTrainLength", "MRTimingAndRelatedParametersSequence")
    )
    h.slice_thickness = _float(_scalar(ds, "SliceThickness", "PixelMeasuresSequence"))
    h.spacing_between_slices = _float(_scalar(ds, "SpacingBetweenSlices", "PixelMeasuresSequence"))
    ps = _floats(_scalar(ds, "PixelSpacing", "PixelMeasuresSequence"))
    h.pixel_spacing = [round(x, 5) for x in ps] if ps else None
    h.rows, h.columns = _int(_get(ds, "Rows")), _int(_get(ds, "Columns"))

    orientations = Counter(
        tuple(round(x, 4) for x in i.orientation) for i in insts if i.orientation
    )
    if orientations:
        iop = list(orientations.most_common(1)[0][0])
        h.image_orientation = iop
        h.orientation, h.obliquity_deg = plane_of(iop)
        positions = {p for i in insts for p in i.positions}
        h.n_positions = len(positions)
        h.extent_mm = _extent(iop, positions)

    h.n_instances = len(images)
    h.n_frames = sum(i.frames for i in insts)
    h.diffusion_b_values = sorted({b for i in insts for b in i.b_values})
    h.temporal_positions = _int(_get(ds, "NumberOfTemporalPositions"))
    types = Counter(i.image_type for i in insts)
    h.image_type = list(types.most_common(1)[0][0])
    h.image_types = [list(t) for t in sorted(types)]

    agent = [_str(_get(d, "ContrastBolusAgent")) for d in images]
    agent += [
        _str(_get(item, "CodeMeaning"))
        for d in images[:1]
        for item in (_get(d, "ContrastBolusAgentSequence") or [])
    ]
    h.contrast_agent = next((a for a in agent if a), None)
    h.contrast_route = _str(_get(ds, "ContrastBolusRoute"))
    h.contrast_volume = _float(_get(ds, "ContrastBolusVolume"))
    h.contrast_start_time = _str(_get(ds, "ContrastBolusStartTime"))
    administered = _fg(
        ds, "ContrastBolusUsageSequence", "ContrastBolusAgentAdministered", _frames(ds)[0]
    )
    h.contrast_administered = _yes(administered)

    h.series_date = _str(_get(ds, "SeriesDate")) or _str(_get(ds, "StudyDate"))
    h.series_time = _str(_get(ds, "SeriesTime"))
    whens = [i.when for i in insts if i.when is not None]
    when = min(whens) if whens else parse_datetime(h.series_date, h.series_time)
    h.acquisition_datetime = when.isoformat() if when else None
    h.body_part = _str(_get(ds, "BodyPartExamined"))
    h.patient_position = _str(_get(ds, "PatientPosition"))
    return h


def _extent(iop: list[float], positions: set[tuple[float, ...]]) -> float | None:
    """Distance covered along the slice normal by the slice positions (mm)."""
    if len(positions) < 2:
        return 0.0 if positions else None
    r, c = iop[:3], iop[3:]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    d = [sum(a * b for a, b in zip(n, p, strict=True)) for p in positions]
    return round(max(d) - min(d), 2)


def read_headers(paths: Iterable[Path]) -> list[tuple[Path, Dataset]]:
    """Read the headers (no pixel data) of DICOM files; unreadable files are skipped."""
    out: list[tuple[Path, Dataset]] = []
    for p in paths:
        try:
            out.append((Path(p), pydicom.dcmread(p, stop_before_pixels=True, defer_size=2048)))
        except Exception:  # not DICOM or damaged: not part of the index
            continue
    return out


def is_image(ds: Dataset) -> bool:
    return is_image_sop_class(_str(_get(ds, "SOPClassUID")))


@dataclass
class FolderSeries:
    """The series found in a folder of DICOM files, and every file that was not used.

    Attributes:
        series: one :class:`SeriesHeader` per SeriesInstanceUID, in the order first seen.
        skipped: (file, reason) of each file that could not be read as DICOM.
    """

    series: list[SeriesHeader] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def read_series(
    folder: str | Path,
    recursive: bool = True,
    ignore_suffixes: Sequence[str] = (),
    ignore_names: Sequence[str] = (),
) -> FolderSeries:
    """Index the DICOM series of a folder (e.g. a de-identified export), headers only.

    Files are grouped by SeriesInstanceUID (wherever they lie below ``folder`` when
    ``recursive``), each group indexed with :func:`index_series`. Files that are not DICOM
    are listed in :attr:`FolderSeries.skipped` with the reason, never silently dropped.

    Example::

        from brainmets.classify import classify_study, read_series

        found = read_series("deidentified/BM-K7Q2ZP4M")
        calls = classify_study(found.series)   # SeriesInstanceUID -> Classification
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    pattern = root.rglob("*") if recursive else root.iterdir()
    paths = sorted(
        p
        for p in pattern
        if p.is_file()
        and p.name not in ignore_names
        and not p.name.endswith(tuple(ignore_suffixes))
    )
    out = FolderSeries()
    groups: dict[str, list[Dataset]] = {}
    studies: dict[str, str] = {}
    for p in paths:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, defer_size=2048)
        except Exception as exc:  # not DICOM or damaged: reported, not indexed
            out.skipped.append((p, f"{type(exc).__name__}: {exc}"))
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        groups.setdefault(uid, []).append(ds)
        studies.setdefault(uid, str(ds.get("StudyInstanceUID", "") or ""))
    out.series = [index_series(dss, uid=uid, study_uid=studies[uid]) for uid, dss in groups.items()]
    return out
