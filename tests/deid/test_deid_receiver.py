"""The de-identifying DICOM receiver, fed by dcmtk's storescu over loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pydicom
import pytest
from deid_helpers import copy_files

from brainmets.deid import DeidResult, deidentify_tree, verify_tree
from brainmets.deid.text import collect_identifiers

pytest.importorskip("pynetdicom")
from brainmets.deid.receiver import receive  # noqa: E402

pytest_plugins = ["deid_helpers"]  # shared fixtures (see deid_helpers.py)

STORESCU = shutil.which("storescu")
ECHOSCU = shutil.which("echoscu")
pytestmark = pytest.mark.skipif(
    STORESCU is None, reason="dcmtk's storescu not installed (apt-get install -y dcmtk)"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def identifying_values(src: Path) -> set[str]:
    values: set[str] = set()
    for p in src.rglob("*.dcm"):
        ds = pydicom.dcmread(p)
        values |= {v for v in collect_identifiers(ds).values if len(v) >= 5}
        for e in ds.iterall():
            if e.VR == "UI" and not str(e.value).startswith("1.2.840.10008"):
                values.add(str(e.value))
    return values


def test_storescu_to_receiver_writes_only_deidentified_files(
    tmp_path: Path, prisma_hfs: Path, mr_overlays: Path, key: bytes
) -> None:
    src = copy_files(
        sorted(p for p in prisma_hfs.iterdir() if p.suffix == ".dcm")[:8], tmp_path / "src"
    )
    shutil.copy(mr_overlays, src / "overlays.dcm")
    shot = pydicom.dcmread(mr_overlays)
    shot.BurnedInAnnotation = "YES"
    shot.SOPInstanceUID = shot.SOPInstanceUID + ".5"
    shot.save_as(src / "burned.dcm")
    needles = identifying_values(src)
    assert len(needles) > 20

    dicom_dir = tmp_path / "ws" / "dicom"
    port = free_port()
    received: list[DeidResult] = []
    server = receive("BRAINMETS", port, dicom_dir, key, on_stored=received.append, block=False)
    try:
        if ECHOSCU is not None:
            echo = subprocess.run(
                [ECHOSCU, "-aec", "BRAINMETS", "127.0.0.1", str(port)],
                capture_output=True,
                timeout=30,
            )
            assert echo.returncode == 0, echo.stderr
        send = subprocess.run(
            [STORESCU, "-aec", "BRAINMETS", "127.0.0.1", str(port), "+sd", "+r", str(src)],
            capture_output=True,
            timeout=120,
        )
        assert send.returncode == 0, send.stderr.decode("latin-1")
    finally:
        server.shutdown()

    assert len(received) == 10
    stored = [r for r in received if r.deidentified]
    assert len(stored) == 9 and sum(r.quarantined for r in received) == 1
    assert all(r.path is not None and r.path.is_file() for r in stored)
    # nothing identifying anywhere under the output folder, temporaries included
    files = [p for p in dicom_dir.parent.rglob("*") if p.is_file()]
    assert len(files) == 9
    for p in files:
        data = p.read_bytes().lower()
        for v in needles:
            for enc in ("latin-1", "utf-8", "utf-16-le"):
                assert v.lower().encode(enc) not in data, (p.name, "leak")
    assert verify_tree(src, dicom_dir, workers=1).ok
    # the same pseudonymous paths as folder mode: consistent across channels
    folder = tmp_path / "folder"
    deidentify_tree(src, folder, key, workers=1, progress=False)
    assert {p.relative_to(folder) for p in folder.rglob("*.dcm")} == {
        p.relative_to(dicom_dir) for p in dicom_dir.rglob("*.dcm")
    }
