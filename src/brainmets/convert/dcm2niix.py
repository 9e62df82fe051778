"""Running dcm2niix on exactly the files of one series.

dcm2niix (Chris Rorden's converter, from the PyPI wheel ``dcm2niix``) is located next to the
running Python (``.venv/bin/dcm2niix``), else on ``PATH``; ``BRAINMETS_DCM2NIIX`` may name
another binary. The series' files are linked (or copied) into a private folder so that
dcm2niix sees nothing else, and it is run with:

``-b y -ba y`` BIDS sidecar, without dates or identifiers; ``-z y`` gzip; ``-i n -x n`` no
file skipped, no cropping; ``-d 0`` that folder only; ``-f NAME``; ``-p y`` or ``-p n``.

**Philips intensity scaling (the convention).** Philips stores integers with three scalings:
the display value ``DV = SV x RescaleSlope + RescaleIntercept`` (public attributes, what
PACS shows), and the "precise" floating-point value ``FP = DV / (RescaleSlope x
ScaleSlope)``, where ScaleSlope is the private (2005,100E). dcm2niix defaults to FP. This
pipeline uses **display values** (``-p n``; parameter ``philips_scaling = "display"``):
de-identification removes private attributes, so FP could not be computed for workspace
data, and display values keep every vendor on the same public DICOM definition. In both
conventions the stored integers are written unchanged and only the NIfTI ``scl_slope`` /
``scl_inter`` differ, by a constant factor per series. ``"precise"`` reproduces dcm2niix's
default where the private tag survives. See :func:`scaling_flag` for how ``-p`` is chosen
(dcm2niix's ``-p n`` would ignore per-slice varying rescale values, so it is used only
where needed and checked).

**Warnings.** Every line of dcm2niix's output starting with "Warning" is kept
(:attr:`Converted.warnings`, the stage's ``conversion.json``). :func:`warning_kind` sorts
them: some say only that slice timing (for fMRI, not for these structural images) or a
vendor's private protocol block (removed by de-identification) is unavailable, and are
logged at DEBUG; the others at WARNING. Each is logged with its kind, so that the console
shows one line per kind and run, with a count (:mod:`brainmets.logsetup`).

A conversion must produce exactly one volume (one NIfTI, no echo/phase/tilt variants) with
the expected number of voxels, else :class:`ConversionError`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pydicom

from brainmets.convert.geometry import IMAGE_SOP_CLASSES
from brainmets.logsetup import normalize_kind

ENV_DCM2NIIX = "BRAINMETS_DCM2NIIX"
#: philips_scaling values -> the dcm2niix -p flag for Philips files with a private scale
PHILIPS_SCALING = {"display": "n", "precise": "y"}


#: dcm2niix warnings that do not affect structural images: pattern -> their kind
HARMLESS_WARNINGS: dict[str, str] = {
    r"slice tim": "slice timing unavailable (irrelevant for structural images)",
    r"GE protocol data block": (
        "GE protocol data block (0025,101B) absent (a private element; irrelevant for"
        " structural images)"
    ),
    r"exported as (classic not enhanced|enhanced not classic)": (
        "Siemens XA classic (not enhanced) DICOM: slice times may be inaccurate (irrelevant"
        " for structural images)"
    ),
}


def warning_kind(line: str) -> tuple[str, str]:
    """The kind of a dcm2niix warning line and the level to log it at: DEBUG for the
    harmless ones (:data:`HARMLESS_WARNINGS`), else WARNING (kind: the line with its
    numbers and paths blanked)."""
    for pattern, kind in HARMLESS_WARNINGS.items():
        if re.search(pattern, line, re.IGNORECASE):
            return kind, "DEBUG"
    text = re.sub(r"^warning:?\s*", "", line.strip(), flags=re.IGNORECASE)
    return normalize_kind(text), "WARNING"


class ConversionError(RuntimeError):
    """dcm2niix failed or did not produce one volume."""


def find_dcm2niix() -> Path:
    """The dcm2niix executable (``BRAINMETS_DCM2NIIX``, beside Python, or on PATH)."""
    env = os.environ.get(ENV_DCM2NIIX)
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.executable).parent / "dcm2niix")
    which = shutil.which("dcm2niix")
    if which:
        candidates.append(Path(which))
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise ConversionError(
        "dcm2niix not found: install the 'dcm2niix' package into this environment "
        f"(pip install dcm2niix) or set {ENV_DCM2NIIX}"
    )


@lru_cache(maxsize=4)
def _version(exe: str) -> str:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    for line in (out.stdout + out.stderr).splitlines():
        line = line.strip()
        if line.startswith("v1.") or line.startswith("v2."):
            return line
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[-1].strip() if text else "unknown"


def dcm2niix_version(exe: Path | None = None) -> str:
    """The dcm2niix version string, e.g. ``v1.0.20240202``."""
    return _version(str(exe or find_dcm2niix()))


@dataclass
class Converted:
    """The files dcm2niix wrote for one series and what it said."""

    nifti: Path
    sidecar: Path | None
    log: str
    scaling: str
    warnings: list[str] = field(default_factory=list)


def _stage_inputs(files: Sequence[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for i, f in enumerate(files):
        dest = folder / f"{i:06d}.dcm"
        try:
            os.symlink(Path(f).resolve(), dest)
        except OSError:
            shutil.copy2(f, dest)


PHILIPS_SCALE_SLOPE = 0x2005100E  # private: Philips "scale slope" of the FP convention


def _frame_rescales(ds: pydicom.Dataset) -> set[tuple[float, float]]:
    """(RescaleSlope, RescaleIntercept) pairs of an object's frames."""
    out = set()
    per = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    groups = list(per) if per else [None]
    for fr in groups:
        item = None
        for container in (fr, shared[0] if shared else None):
            seq = container.get("PixelValueTransformationSequence") if container else None
            if seq:
                item = seq[0]
                break
        src = item if item is not None else ds
        slope, inter = src.get("RescaleSlope"), src.get("RescaleIntercept")
        out.add(
            (
                float(slope) if slope not in (None, "") else 1.0,
                float(inter) if inter not in (None, "") else 0.0,
            )
        )
    return out


def scaling_flag(files: Sequence[Path], philips_scaling: str) -> tuple[str, str]:
    """The dcm2niix ``-p`` value for these files and what intensity scaling it gives.

    ``-p y`` (dcm2niix's default) applies per-slice varying rescale values correctly (as
    float32) and, for Philips, uses the precise FP values when the private ScaleSlope is
    present, display values otherwise. ``-p n`` keeps display values for Philips but
    ignores per-slice variation, so it is used only for Philips files that carry the private
    ScaleSlope (the only case where the two differ) and only when the rescale values are the
    same for every frame; otherwise :class:`ConversionError`.
    """
    if philips_scaling not in PHILIPS_SCALING:
        raise ValueError(
            f"philips_scaling must be one of {sorted(PHILIPS_SCALING)}, not {philips_scaling!r}"
        )
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    headers = [ds for ds in headers if str(ds.get("SOPClassUID", "")) in IMAGE_SOP_CLASSES]
    philips = any(str(ds.get("Manufacturer", "")).lower().startswith("philips") for ds in headers)
    private = philips and any(
        el.tag == PHILIPS_SCALE_SLOPE for ds in headers[:1] for el in ds.iterall()
    )
    if not private:
        return "y", "display values (RescaleSlope/RescaleIntercept)"
    if philips_scaling == "precise":
        return "y", "Philips precise floating-point values (private ScaleSlope)"
    rescales = set().union(*(_frame_rescales(ds) for ds in headers))
    if len(rescales) > 1:
        raise ConversionError(
            f"Philips rescale values vary between slices ({len(rescales)} different); dcm2niix "
            "cannot keep display values for them: set [stages.convert] philips_scaling = "
            "'precise' for this workspace"
        )
    return "n", "display values (RescaleSlope/RescaleIntercept; Philips private scale ignored)"


def convert_files(
    files: Sequence[Path],
    out_dir: Path,
    name: str,
    *,
    philips_scaling: str = "display",
    compress: bool = True,
    exe: Path | None = None,
    timeout: float = 900,
) -> Converted:
    """Convert exactly ``files`` (one series) to ``out_dir/name.nii[.gz]`` + ``name.json``."""
    if not files:
        raise ConversionError(f"{name}: no files to convert")
    flag, scaling = scaling_flag(files, philips_scaling)
    exe = exe or find_dcm2niix()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tmp-dcm2niix-", dir=out_dir))
    try:
        _stage_inputs(files, work / "in")
        (work / "out").mkdir()
        cmd = [
            str(exe),
            "-b", "y",
            "-ba", "y",
            "-z", "y" if compress else "n",
            "-i", "n",
            "-x", "n",
            "-d", "0",
            "-w", "1",
            "-p", flag,
            "-f", name,
            "-o", str(work / "out"),
            str(work / "in"),
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise ConversionError(f"{name}: dcm2niix did not finish in {timeout:g} s") from exc
        log = proc.stdout + proc.stderr
        warnings = [
            line.strip() for line in log.splitlines() if line.strip().lower().startswith("warning")
        ]
        if proc.returncode != 0:
            tail = "\n".join(log.strip().splitlines()[-8:])
            raise ConversionError(f"{name}: dcm2niix exit code {proc.returncode}:\n{tail}")
        niftis = sorted(p for p in (work / "out").iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if len(niftis) != 1:
            shown = ", ".join(p.name for p in niftis) or "none"
            raise ConversionError(
                f"{name}: dcm2niix wrote {len(niftis)} volumes ({shown}); expected exactly one"
            )
        suffix = ".nii.gz" if niftis[0].name.endswith(".gz") else ".nii"
        stem = niftis[0].name[: -len(suffix)]
        if stem != name:
            raise ConversionError(
                f"{name}: dcm2niix named its output {niftis[0].name} (a variant such as an echo,"
                " phase, tilt-corrected or cropped volume); expected exactly one plain volume"
            )
        nifti = out_dir / f"{name}{suffix}"
        os.replace(niftis[0], nifti)
        sidecar_src = work / "out" / f"{name}.json"
        sidecar = None
        if sidecar_src.is_file():
            sidecar = out_dir / f"{name}.json"
            os.replace(sidecar_src, sidecar)
        return Converted(nifti, sidecar, log, scaling, warnings)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
