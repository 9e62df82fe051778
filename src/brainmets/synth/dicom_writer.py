"""DICOM writing: MR Image Storage series, Secondary Capture screenshots, planted identifiers.

Everything is deterministic: UIDs are ``2.25.<128-bit hash>`` of the seed and the object's
path in the cohort, dates and times come from the plan. Every identifying value written is
recorded by a :class:`Planter`, which becomes the ``identifiers`` list of ``truth.json``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.pixels import pack_bits
from pydicom.uid import UID, ExplicitVRLittleEndian
from pydicom.valuerep import format_number_as_ds

from brainmets.synth.acquisition import SeriesPlan, StudyPlan
from brainmets.synth.clinical import Identity
from brainmets.synth.font import burn, render_text
from brainmets.synth.geometry import Grid

MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
STUDY_COMPONENT_SOP = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP

PRIVATE_CREATORS = {
    "SIEMENS": "SIEMENS MED DISPLAY",
    "GE": "GEMS_IDEN_01",
    "PHILIPS": "Philips Imaging DD 129",
    "HITACHI": "HMC - CT - ID",
}


def make_uid(*parts: object) -> str:
    """Deterministic UID under the 2.25 root from a 128-bit hash of ``parts``."""
    h = hashlib.sha256(repr(parts).encode()).digest()[:16]
    return "2.25." + str(int.from_bytes(h, "big"))


IMPLEMENTATION_UID = make_uid("brainmets", "synth", "implementation")


def ds_num(x: float) -> str:
    """A DS string (at most 16 characters) as precise as fits."""
    return format_number_as_ds(float(x))


def da(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def tm(seconds: float) -> str:
    s = max(0.0, seconds) % 86400
    h = int(s // 3600)
    m = int((s % 3600) // 60)
    sec = s % 60
    return f"{h:02d}{m:02d}{sec:09.6f}"


@dataclass
class Planter:
    """Records identifying values written into files (tag path, value, where)."""

    #: (category, tag path, value) -> series folder -> its files, or "all" of them
    entries: dict[tuple[str, str, str], dict[str, str | list[str]]] = field(default_factory=dict)

    def add(
        self,
        category: str,
        tag_path: str,
        value: object,
        series_dir: str,
        files: list[str] | None = None,
    ) -> None:
        key = (category, tag_path, str(value))
        locs = self.entries.setdefault(key, {})
        if files is None:
            locs[series_dir] = "all"
        else:
            prev = locs.get(series_dir)
            if prev == "all":
                return
            merged = sorted(set(prev or []) | set(files))
            locs[series_dir] = merged

    def set(
        self,
        ds: Dataset,
        keyword: str,
        value: object,
        category: str,
        series_dir: str,
        prefix: str = "",
        files: list[str] | None = None,
    ) -> None:
        setattr(ds, keyword, value)
        shown = "\\".join(str(v) for v in value) if isinstance(value, list | tuple) else value
        self.add(category, prefix + keyword, shown, series_dir, files)

    def to_list(self) -> list[dict]:
        out = []
        for (cat, path, value), locs in sorted(self.entries.items()):
            out.append(
                {
                    "category": cat,
                    "tag_path": path,
                    "value": value,
                    "locations": [{"series": s, "files": f} for s, f in sorted(locs.items())],
                }
            )
        return out


@dataclass
class WriteContext:
    """Per-patient context for writing series."""

    seed: int
    ident: Identity
    out_root: Path  # the cohort output folder (paths in truth are relative to it)
    planter: Planter
    accession: dict[int, str]
    comments: dict[str, str]


def series_dir_rel(ident: Identity, study: StudyPlan, plan: SeriesPlan) -> str:
    return f"dicom/{ident.mrn}/ST{study.index + 1:02d}/SE{plan.series_number:05d}"


def _plant_common(
    ds: Dataset, ctx: WriteContext, study: StudyPlan, plan: SeriesPlan, sdir: str
) -> None:
    """Patient, study, equipment, request attributes and private tags (all planted)."""
    p = ctx.planter
    ident = ctx.ident
    acc = ctx.accession[study.index]
    p.set(ds, "PatientName", ident.dicom_name, "patient_name", sdir)
    p.set(ds, "PatientID", ident.mrn, "patient_id", sdir)
    p.set(ds, "PatientBirthDate", da(ident.birth_date), "birth_date", sdir)
    p.set(ds, "PatientSex", ident.sex, "sex", sdir)
    age = (study.date - ident.birth_date).days // 365
    p.set(ds, "PatientAge", f"{age:03d}Y", "age", sdir)
    p.set(ds, "PatientWeight", ds_num(ident.weight_kg), "patient_characteristic", sdir)
    p.set(ds, "PatientSize", ds_num(ident.height_m), "patient_characteristic", sdir)
    v = study.scanner.vendor
    if v in ("GE", "PHILIPS") or ident.index % 3 == 0:
        p.set(ds, "PatientAddress", ident.address, "address", sdir)
        p.set(ds, "PatientTelephoneNumbers", ident.phone, "telephone", sdir)
    if v in ("SIEMENS", "HITACHI"):
        p.set(ds, "OtherPatientIDs", ident.other_id, "other_patient_id", sdir)
    if "history" in ctx.comments:
        p.set(ds, "AdditionalPatientHistory", ctx.comments["history"], "free_text", sdir)
    if "patient_comments" in ctx.comments:
        p.set(ds, "PatientComments", ctx.comments["patient_comments"], "free_text", sdir)
    p.set(ds, "AccessionNumber", acc, "accession_number", sdir)
    p.set(ds, "StudyID", f"{acc[-4:]}", "study_id", sdir)
    p.set(ds, "StudyInstanceUID", make_uid(ctx.seed, ident.mrn, study.index, "study"), "uid", sdir)
    p.set(ds, "SeriesInstanceUID", series_uid(ctx, study, plan), "uid", sdir)
    p.set(
        ds,
        "FrameOfReferenceUID",
        make_uid(
            ctx.seed,
            ident.mrn,
            study.index,
            "for",
            plan.derived_from if plan.kind in ("SUB", "MPR", "ADC", "SC") else plan.series_number,
        ),
        "uid",
        sdir,
    )
    for kw in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        p.set(ds, kw, da(study.date), "date", sdir)
    name, address, dept = study.institution
    p.set(ds, "InstitutionName", name, "institution", sdir)
    p.set(ds, "InstitutionAddress", address, "institution", sdir)
    p.set(ds, "InstitutionalDepartmentName", dept, "institution", sdir)
    p.set(ds, "ReferringPhysicianName", ident.referring, "physician", sdir)
    p.set(ds, "PerformingPhysicianName", ident.performing, "physician", sdir)
    p.set(ds, "OperatorsName", ident.operator, "operator", sdir)
    p.set(ds, "StationName", study.station_name, "device", sdir)
    p.set(ds, "DeviceSerialNumber", study.device_serial, "device", sdir)
    p.set(ds, "PerformedProcedureStepID", f"PPS{acc}", "procedure_id", sdir)
    p.set(ds, "PerformedProcedureStepStartDate", da(study.date), "date", sdir)
    ds.PerformedProcedureStepDescription = study.study_description
    # nested sequences carrying identifiers
    ra = Dataset()
    pre = "RequestAttributesSequence[0]."
    p.set(ra, "RequestedProcedureID", f"RP{acc}", "procedure_id", sdir, pre)
    p.set(
        ra,
        "ScheduledProcedureStepID",
        f"SPS{ident.mrn[-5:]}{study.index}",
        "procedure_id",
        sdir,
        pre,
    )
    p.set(ra, "AccessionNumber", acc, "accession_number", sdir, pre)
    p.set(
        ra,
        "RequestedProcedureDescription",
        f"{study.study_description} - {ident.family.title()}",
        "free_text",
        sdir,
        pre,
    )
    ds.RequestAttributesSequence = [ra]
    rs = Dataset()
    rs.ReferencedSOPClassUID = STUDY_COMPONENT_SOP
    p.set(
        rs,
        "ReferencedSOPInstanceUID",
        make_uid(ctx.seed, ident.mrn, study.index, "mpps"),
        "uid",
        sdir,
        "ReferencedStudySequence[0].",
    )
    ds.ReferencedStudySequence = [rs]
    # private vendor tags
    creator = PRIVATE_CREATORS[v]
    block = ds.private_block(0x0009, creator, create=True)
    block.add_new(0x10, "LO", ident.dicom_name)
    block.add_new(0x11, "LO", ident.mrn)
    block.add_new(0x12, "SH", study.station_name)
    tag10 = f"({block.group:04X},{block.block_start + 0x10:04X})"
    tag11 = f"({block.group:04X},{block.block_start + 0x11:04X})"
    tag12 = f"({block.group:04X},{block.block_start + 0x12:04X})"
    p.add("private", f"{tag10}[{creator}]", ident.dicom_name, sdir)
    p.add("private", f"{tag11}[{creator}]", ident.mrn, sdir)
    p.add("private", f"{tag12}[{creator}]", study.station_name, sdir)


def series_uid(ctx: WriteContext, study: StudyPlan, plan: SeriesPlan) -> str:
    return make_uid(ctx.seed, ctx.ident.mrn, study.index, "series", plan.series_number)


def base_dataset(
    ctx: WriteContext, study: StudyPlan, plan: SeriesPlan, sop_class: str
) -> tuple[Dataset, str]:
    """Dataset with every attribute shared by the series' instances."""
    sdir = series_dir_rel(ctx.ident, study, plan)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(plan.image_type)
    ds.SOPClassUID = sop_class
    sc = study.scanner
    ds.Modality = "MR"
    ds.Manufacturer = sc.manufacturer
    ds.ManufacturerModelName = sc.model
    ds.SoftwareVersions = sc.software
    ds.StudyDescription = study.study_description
    desc = plan.description
    if plan.params.get("_mrn_in_description"):
        desc = f"{desc} {ctx.ident.mrn}"
        ctx.planter.add("free_text", "SeriesDescription", desc, sdir)
    ds.SeriesDescription = desc
    ds.ProtocolName = plan.protocol_name or plan.description
    ds.SeriesNumber = plan.series_number
    ds.BodyPartExamined = "HEAD" if sc.vendor != "PHILIPS" else "BRAIN"
    ds.PatientPosition = "HFS"
    ds.StudyTime = tm(study.series[0].time_s - 60.0)
    ds.SeriesTime = tm(plan.time_s)
    ds.AcquisitionTime = tm(plan.time_s + 5.0)
    ds.ContentTime = tm(plan.time_s + plan.duration_s + 3.0)
    _plant_common(ds, ctx, study, plan, sdir)
    if plan.kind in ctx.comments:
        ctx.planter.set(ds, "ImageComments", ctx.comments[plan.kind], "free_text", sdir)
    if plan.post_contrast and study.contrast_agent is not None:
        name, substance, dose = study.contrast_agent
        ds.ContrastBolusAgent = name
        ds.ContrastBolusRoute = "IV"
        ds.ContrastBolusVolume = ds_num(round(dose * ctx.ident.weight_kg, 1))
        ds.ContrastBolusIngredient = substance.upper()[:16]
        t1c = study.series_of("T1c")
        ds.ContrastBolusStartTime = tm((t1c.time_s if t1c else plan.time_s) - 60.0)
    return ds, sdir


def _mr_attributes(ds: Dataset, study: StudyPlan, plan: SeriesPlan) -> None:
    sc = study.scanner
    p = plan.params
    ds.ScanningSequence = p.get("ScanningSequence", "RM")
    ds.SequenceVariant = p.get("SequenceVariant", "NONE")
    ds.ScanOptions = p.get("ScanOptions", "")
    ds.MRAcquisitionType = plan.acq_type
    ds.SequenceName = p.get("SequenceName", "")
    ds.AngioFlag = "N"
    ds.SliceThickness = ds_num(plan.slice_thickness)
    ds.RepetitionTime = ds_num(p.get("RepetitionTime", 0.0))
    ds.EchoTime = ds_num(p.get("EchoTime", 0.0))
    if p.get("InversionTime"):
        ds.InversionTime = ds_num(p["InversionTime"])
    ds.NumberOfAverages = ds_num(p.get("NumberOfAverages", 1.0))
    ds.ImagingFrequency = ds_num(round(42.577478 * sc.field_t, 6))
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = 1
    ds.MagneticFieldStrength = ds_num(sc.field_t)
    ds.SpacingBetweenSlices = ds_num(plan.spacing_between_slices)
    ds.EchoTrainLength = int(p.get("EchoTrainLength", 1))
    ds.PercentSampling = ds_num(100.0)
    g = plan.grid
    ds.PercentPhaseFieldOfView = ds_num(round(100.0 * g.shape[1] / g.shape[0], 4))
    ds.PixelBandwidth = ds_num(p.get("PixelBandwidth", 200.0))
    ds.ReceiveCoilName = sc.coil
    ds.TransmitCoilName = "Body" if sc.vendor != "HITACHI" else "QD"
    ds.AcquisitionMatrix = [0, int(g.shape[0]), int(g.shape[1]), 0]
    ds.InPlanePhaseEncodingDirection = "ROW" if plan.orientation == "SAG" else "COL"
    ds.FlipAngle = ds_num(p.get("FlipAngle", 90.0))
    ds.VariableFlipAngleFlag = "N"
    ds.SAR = ds_num(round(0.4 + 0.3 * sc.field_t, 3))
    ds.dBdt = ds_num(0.0)


def _pixel_module(ds: Dataset, grid: Grid, bits: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = int(grid.shape[1])
    ds.Columns = int(grid.shape[0])
    sp = grid.spacing
    ds.PixelSpacing = [ds_num(sp[1]), ds_num(sp[0])]
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0


def _geometry(ds: Dataset, grid: Grid, k: int) -> None:
    d = grid.directions_lps()
    pos = grid.slice_position_lps(k)
    ds.ImagePositionPatient = [ds_num(v) for v in pos]
    normal = np.cross(d[:, 0], d[:, 1])
    ds.SliceLocation = ds_num(round(float(pos @ normal), 6))


def _file_meta(ds: Dataset) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "BRAINMETS_SYN1"
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128


def add_overlay(ds: Dataset, text: str, rows: int, cols: int) -> tuple[int, int, int, int]:
    """Overlay plane (group 6000) with ``text`` drawn in it; returns the text's bbox."""
    plane = np.zeros((rows, cols), dtype=np.uint8)
    bbox = burn(plane, text, 4, 4, 1, scale=2 if cols >= 256 else 1)
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000022, "LO", "Annotation")
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60001500, "LO", text[:64])
    ds.add_new(0x60003000, "OW", pack_bits(plane.ravel()))
    return bbox


def write_mr_series(
    ctx: WriteContext,
    study: StudyPlan,
    plan: SeriesPlan,
    volumes: list[tuple[Grid, np.ndarray, dict]],
    overlay_slices: tuple[int, ...] = (),
) -> tuple[str, list[str]]:
    """Write one MR series: ``volumes`` is a list of (grid, uint16 array [i, j, k], extra
    attributes) written one file per slice, in order. Returns (series dir, file names)."""
    ds, sdir = base_dataset(ctx, study, plan, MR_STORAGE)
    _mr_attributes(ds, study, plan)
    bits = study.scanner.bits_stored
    if plan.kind == "ADC":
        bits = 16
    if plan.rescale_slope != 1.0:
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = ds_num(plan.rescale_slope)
        ds.RescaleType = "US"
    folder = ctx.out_root / sdir
    folder.mkdir(parents=True, exist_ok=True)
    names: list[str] = []
    n = 0
    for grid, arr, extra in volumes:
        _pixel_module(ds, grid, bits)
        hi = float(np.percentile(arr[:, :, arr.shape[2] // 2], 99.5)) if arr.size else 1.0
        ds.WindowCenter = ds_num(round(hi * 0.5 * plan.rescale_slope, 1))
        ds.WindowWidth = ds_num(round(max(hi, 1.0) * plan.rescale_slope, 1))
        for key, value in extra.items():
            setattr(ds, key, value)
        d = grid.directions_lps()
        ds.ImageOrientationPatient = [ds_num(v) for v in (*d[:, 0], *d[:, 1])]
        writer = FastWriter(ds)
        slices = np.ascontiguousarray(arr.transpose(2, 1, 0), dtype="<u2")  # (k, rows, cols)
        for k in range(grid.shape[2]):
            n += 1
            name = f"IM{n:04d}.dcm"
            var = Dataset()
            var.SOPInstanceUID = make_uid(
                ctx.seed, ctx.ident.mrn, study.index, plan.series_number, n
            )
            var.InstanceNumber = n
            _geometry(var, grid, k)
            if n in overlay_slices:
                text = f"{ctx.ident.family} {ctx.ident.mrn}"
                add_overlay(var, text, int(grid.shape[1]), int(grid.shape[0]))
                ctx.planter.add("overlay", "OverlayData(6000,3000)", text, sdir, [name])
                ctx.planter.add("overlay", "OverlayLabel(6000,1500)", text, sdir, [name])
            var.PixelData = slices[k].tobytes()
            var["PixelData"].VR = "OW"
            writer.write(folder / name, var)
            names.append(name)
    return sdir, names


def _elem(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit-VR little-endian element (short-length VRs, or OB with 4-byte length)."""
    head = group.to_bytes(2, "little") + element.to_bytes(2, "little") + vr
    if vr == b"OB":
        return head + b"\x00\x00" + len(value).to_bytes(4, "little") + value
    return head + len(value).to_bytes(2, "little") + value


def _ui(uid: str) -> bytes:
    raw = uid.encode()
    return raw + b"\x00" if len(raw) % 2 else raw


def _file_meta_bytes(sop_class: str, sop_instance: str) -> bytes:
    """File meta information group (PS3.10 7.1), explicit VR little endian."""
    body = b"".join(
        [
            _elem(2, 0x0001, b"OB", b"\x00\x01"),
            _elem(2, 0x0002, b"UI", _ui(sop_class)),
            _elem(2, 0x0003, b"UI", _ui(sop_instance)),
            _elem(2, 0x0010, b"UI", _ui(ExplicitVRLittleEndian)),
            _elem(2, 0x0012, b"UI", _ui(IMPLEMENTATION_UID)),
            _elem(2, 0x0013, b"SH", b"BRAINMETS_SYN1"),
        ]
    )
    return _elem(2, 0x0000, b"UL", len(body).to_bytes(4, "little")) + body


class FastWriter:
    """Writes many instances that share most attributes: the shared elements are encoded
    once (explicit VR little endian), each file adds its own elements in tag order."""

    def __init__(self, shared: Dataset) -> None:
        self.sop_class = str(shared.SOPClassUID)
        self.encodings = convert_encodings(shared.get("SpecificCharacterSet", "ISO_IR 100"))
        self.const = {elem.tag: self._encode(elem) for elem in shared}

    def _encode(self, elem) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        write_data_element(fp, elem, self.encodings)
        return fp.getvalue()

    def write(self, path: Path, own: Dataset) -> None:
        parts = dict(self.const)
        for elem in own:
            parts[elem.tag] = self._encode(elem)
        meta = _file_meta_bytes(self.sop_class, str(own.SOPInstanceUID))
        body = b"".join(parts[t] for t in sorted(parts))
        path.write_bytes(b"\x00" * 128 + b"DICM" + meta + body)


def write_screenshot(
    ctx: WriteContext, study: StudyPlan, plan: SeriesPlan, slice2d: np.ndarray
) -> tuple[str, list[str], dict]:
    """Secondary-capture screenshot (RGB) of one slice with burned-in patient data."""
    ds, sdir = base_dataset(ctx, study, plan, SC_STORAGE)
    ds.Modality = "MR"
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "YES"
    img = slice2d.astype(np.float32)
    hi = max(float(np.percentile(img, 99.5)), 1.0)
    grey = np.clip(img / hi * 255.0, 0, 255).astype(np.uint8)
    grey = np.kron(grey, np.ones((2, 2), dtype=np.uint8))
    rows, cols = grey.shape
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    ident = ctx.ident
    lines = [
        f"{ident.family}^{ident.given}",
        f"ID {ident.mrn}",
        f"DOB {ident.birth_date.strftime('%d.%m.%Y')}",
        f"{study.date.strftime('%d.%m.%Y')} {study.institution[0][:24]}",
    ]
    boxes = []
    for n, line in enumerate(lines):
        boxes.append(burn(rgb, line, 6 + 18 * n, 6, (255, 255, 0), scale=2))
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.InstanceNumber = 1
    ds.SOPInstanceUID = make_uid(ctx.seed, ident.mrn, study.index, plan.series_number, 1)
    ds.PixelData = np.ascontiguousarray(rgb).tobytes()
    folder = ctx.out_root / sdir
    folder.mkdir(parents=True, exist_ok=True)
    name = "IM0001.dcm"
    _file_meta(ds)
    pydicom.dcmwrite(folder / name, ds, enforce_file_format=True)
    for line in lines:
        ctx.planter.add("burned_in_text", "PixelData", line, sdir, [name])
    ctx.planter.add("burned_in_flag", "BurnedInAnnotation", "YES", sdir, [name])
    info = {"lines": lines, "bboxes_row_col": [list(b) for b in boxes]}
    return sdir, [name], info


__all__ = [
    "MR_STORAGE",
    "SC_STORAGE",
    "Planter",
    "WriteContext",
    "make_uid",
    "render_text",
    "write_mr_series",
    "write_screenshot",
]
