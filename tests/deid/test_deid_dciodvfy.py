"""De-identified output is valid DICOM: no dciodvfy error that the input did not have.

dciodvfy is David Clunie's IOD validator (Debian package ``dicom3tools``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from brainmets.deid import Deidentifier, DeidOptions

pytest_plugins = ["deid_helpers"]  # shared fixtures (see deid_helpers.py)

DCIODVFY = shutil.which("dciodvfy")
pytestmark = pytest.mark.skipif(
    DCIODVFY is None, reason="dciodvfy not installed (apt-get install -y dicom3tools)"
)


def errors(path: Path) -> set[str]:
    """dciodvfy's error lines, with values and private-element details normalised away."""
    run = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, timeout=60, check=False)
    out = set()
    for line in (run.stdout + run.stderr).decode("latin-1").splitlines():
        if not line.startswith("Error"):
            continue
        if re.search(r"\(0x00[0-9a-f][13579bdf],", line):  # private (odd group): removed
            continue
        out.add(re.sub(r"<[^>]*>|\[[0-9]+\]|= \S+", "", line))
    return out


def representative(testdata: Path, mr_overlays: Path, ctbrain1: Path) -> list[Path]:
    d = testdata / "dicom"
    picks = [
        mr_overlays,
        ctbrain1,
        next((d / "siemens_xa30_t1_enhanced").rglob("*.dcm"), None),
        next((d / "philips_elition_3d_t1_mprage").rglob("*.dcm"), None),
        next((d / "ge_hdxt_3d_t1_irspgr_refaced").rglob("*.dcm"), None),
        next((d / "siemens_prisma_t1_fl2d_patient_position").rglob("*.dcm"), None),
        next((d / "tcia_vs_seg_t1_mprage_3slices").rglob("*.dcm"), None),
    ]
    pioneer = d / "ge_pioneer_3d_t1_mprage" / "dicom"
    if pioneer.is_dir():
        picks.append(next((p for p in sorted(pioneer.iterdir()) if p.is_file()), None))
    return [p for p in picks if p is not None]


def test_no_new_dciodvfy_errors(
    tmp_path: Path, testdata: Path, mr_overlays: Path, ctbrain1: Path, key: bytes
) -> None:
    deid = Deidentifier(key, DeidOptions(quarantine_secondary_capture=False))
    checked = 0
    for src in representative(testdata, mr_overlays, ctbrain1):
        result = deid.deidentify(pydicom.dcmread(src))
        assert result.deidentified, src
        out = tmp_path / f"{checked}.dcm"
        out.write_bytes(result.to_bytes())
        new = errors(out) - errors(src)
        assert not new, f"{src.name}: new dciodvfy errors {sorted(new)}"
        checked += 1
    assert checked >= 5
