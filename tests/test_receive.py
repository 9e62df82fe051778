"""`brainmets receive`: studies sent by real DICOM peers (dcmtk storescu, Orthanc) arrive in a
workspace de-identified; no identifying value ever reaches the workspace's disk."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pydicom
import pytest

from bm_testutil import run_cli
from brainmets.deid.text import collect_identifiers
from brainmets.workspace import Workspace

STORESCU = shutil.which("storescu")
ORTHANC = shutil.which("Orthanc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "server exited early"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port}")


def needles(files: list[Path]) -> set[str]:
    """Identifying values of the originals: names, IDs, dates, institutions, UIDs."""
    values: set[str] = set()
    for p in files:
        ds = pydicom.dcmread(p)
        values |= {v for v in collect_identifiers(ds).values if len(v) >= 5}
        for e in ds.iterall():
            if e.VR == "UI" and not str(e.value).startswith("1.2.840.10008"):
                values.add(str(e.value))
    return values


def assert_no_leak(root: Path, values: set[str]) -> int:
    files = [p for p in root.rglob("*") if p.is_file()]
    for p in files:
        data = p.read_bytes().lower()
        for v in values:
            for enc in ("latin-1", "utf-8", "utf-16-le"):
                assert v.lower().encode(enc) not in data, f"{v!r} found in {p}"
    return len(files)


@pytest.fixture
def source_files(testdata: Path, tmp_path: Path) -> list[Path]:
    hfs = testdata / "dicom" / "siemens_prisma_t1_fl2d_patient_position" / "dicom" / "HFS"
    series = next(d for d in sorted(hfs.iterdir()) if d.is_dir())
    out = tmp_path / "send"
    out.mkdir()
    files = []
    for f in sorted(series.glob("*.dcm"))[:6]:
        ds = pydicom.dcmread(f)
        ds.PatientName = "Quixotlova^Zebediah"  # plant identifying values we can look for
        ds.PatientID = "MRN-RX-4711"
        ds.InstitutionName = "Saint Example Hospital"
        dest = out / f.name
        ds.save_as(dest)
        files.append(dest)
    return files


def start_receive(ws: Workspace, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "brainmets", "receive", "-w", str(ws.root), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_port(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def check_workspace(ws: Workspace, sent: list[Path]) -> None:
    values = needles(sent)
    assert {"MRN-RX-4711", "Saint Example Hospital"} <= values
    r = run_cli("deid", "-w", str(ws.root))
    assert r.returncode == 0, r.stderr
    with ws.catalog(readonly=True) as cat:
        files = cat.source_files()
        instances = cat.instances()
    assert [f.status for f in files] == ["received"] * len(sent)
    assert len(instances) == len(sent)
    for i in instances:
        ds = pydicom.dcmread(ws.root / i.path)
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientID.startswith("BM-")
    # scan everything the workspace holds: data, catalog, WAL, logs, temporaries
    assert assert_no_leak(ws.root, values) > len(sent)


@pytest.mark.skipif(STORESCU is None, reason="dcmtk storescu not installed (apt-get install dcmtk)")
def test_storescu_into_workspace(tmp_path: Path, source_files: list[Path]) -> None:
    ws = Workspace.init(tmp_path / "ws")
    port = free_port()
    proc = start_receive(ws, port)
    try:
        send = subprocess.run(
            [STORESCU, "-aec", "BRAINMETS", "127.0.0.1", str(port), *map(str, source_files)],
            capture_output=True,
            timeout=120,
        )
        assert send.returncode == 0, send.stderr
    finally:
        err = stop(proc)
    assert f"{len(source_files)} instance(s) received" in err, err
    check_workspace(ws, source_files)


@pytest.mark.skipif(ORTHANC is None, reason="Orthanc not installed (apt-get install orthanc)")
def test_orthanc_sends_to_workspace(tmp_path: Path, source_files: list[Path]) -> None:
    ws = Workspace.init(tmp_path / "ws")
    port, http, dicom = free_port(), free_port(), free_port()
    storage = tmp_path / "orthanc-storage"
    config = {
        "Name": "brainmets-test-pacs",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "TESTPACS",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": {"brainmets": ["BRAINMETS", "127.0.0.1", port]},
        "Plugins": [],
    }
    cfg = tmp_path / "orthanc.json"
    cfg.write_text(json.dumps(config))
    pacs = subprocess.Popen(
        [ORTHANC, str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    proc = None
    try:
        wait_port(http, pacs)
        base = f"http://127.0.0.1:{http}"
        ids = []
        for f in source_files:
            req = urllib.request.Request(f"{base}/instances", data=f.read_bytes(), method="POST")
            with urllib.request.urlopen(req, timeout=30) as resp:
                ids.append(json.loads(resp.read())["ID"])
        proc = start_receive(ws, port)
        req = urllib.request.Request(
            f"{base}/modalities/brainmets/store",
            data=json.dumps(ids).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            assert resp.status == 200
    finally:
        err = stop(proc) if proc else ""
        pacs.terminate()
        pacs.wait(timeout=30)
    assert f"{len(source_files)} instance(s) received" in err, err
    check_workspace(ws, source_files)


def test_receiver_stops_promptly_on_sigterm(tmp_path: Path) -> None:
    """A service manager's SIGTERM stops the receiver as Ctrl-C does: summary printed,
    exit 0, within seconds (open associations are aborted, not waited out)."""
    ws = Workspace.init(tmp_path / "ws")
    proc = start_receive(ws, free_port())
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "0 instance(s) received" in err


# ------------------------------------------------------------------ duplicates and kills
def _send(port: int, files: list[Path], datasets: list | None = None) -> list[int]:
    """C-STORE ``files`` (or ``datasets``) on one association with pynetdicom; the statuses."""
    from pynetdicom import AE
    from pynetdicom.presentation import StoragePresentationContexts

    ae = AE(ae_title="TESTSCU")
    ae.requested_contexts = StoragePresentationContexts[:120]
    assoc = ae.associate("127.0.0.1", port, ae_title="BRAINMETS")
    assert assoc.is_established
    out = []
    try:
        for ds in datasets if datasets is not None else [pydicom.dcmread(f) for f in files]:
            status = assoc.send_c_store(ds)
            out.append(int(status.Status) if status else -1)
    finally:
        assoc.release()
    return out


def test_resent_instances_are_recognised_and_a_changed_one_is_quarantined(
    tmp_path: Path, source_files: list[Path]
) -> None:
    """Re-sent instances (same SOP Instance UID and content) are not rewritten and are
    counted once; 8 associations sending the same study at once store each instance once;
    an instance with a stored instance's UID but other content is quarantined, the stored
    one kept."""
    from concurrent.futures import ThreadPoolExecutor

    from brainmets.deid.receive import start_receiver
    from brainmets.deid.receiver import stop_server

    ws = Workspace.init(tmp_path / "ws")
    port = free_port()
    server, indexer = start_receiver(ws, "BRAINMETS", port)
    try:
        assert _send(port, source_files) == [0] * len(source_files)
        stored = sorted(ws.config.path("received").rglob("*.dcm"))
        assert len(stored) == len(source_files)
        mtimes = {p: p.stat().st_mtime_ns for p in stored}
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: _send(port, source_files), range(8)))
        assert all(s == [0] * len(source_files) for s in statuses)
        assert {p: p.stat().st_mtime_ns for p in stored} == mtimes  # not rewritten
        changed = pydicom.dcmread(source_files[0])
        changed.SeriesDescription = "another description"  # same SOP Instance UID
        assert _send(port, [], [changed]) == [0]
    finally:
        stop_server(server)
        indexer.close()
    handler = server.brainmets_handler
    n = len(source_files)
    assert (handler.stored, handler.duplicates, handler.conflicts) == (n, 8 * n, 1)
    assert handler.acknowledged == 9 * n + 1
    assert indexer.counts == {"received": n, "quarantined": 1, "duplicate": 8 * n}
    assert sorted(ws.config.path("received").rglob("*.dcm")) == stored
    with ws.catalog(readonly=True) as cat:
        files = cat.source_files()
    assert sorted(f.status for f in files) == ["quarantined"] + ["received"] * n
    (q,) = [f for f in files if f.status == "quarantined"]
    assert "same SOP Instance UID" in (q.reason or "") and "other content" in (q.reason or "")
    assert pydicom.dcmread(stored[0]).SeriesDescription != "another description"


def test_after_a_kill_the_next_start_accounts_for_every_acknowledged_instance(
    tmp_path: Path, testdata: Path
) -> None:
    """SIGKILL in the middle of a send: every instance the receiver acknowledged is on disk
    and in the catalog, and the next start says so ("received before: N ... all on disk")."""
    import threading

    series = testdata / "dicom" / "siemens_prisma_t1_fl2d_patient_position" / "dicom" / "HFS"
    files = sorted(p for p in series.rglob("*.dcm"))[:60]
    ws = Workspace.init(tmp_path / "ws")
    port = free_port()
    proc = start_receive(ws, port)
    acked: list[int] = []

    def sender() -> None:
        from pynetdicom import AE
        from pynetdicom.presentation import StoragePresentationContexts

        ae = AE(ae_title="TESTSCU")
        ae.requested_contexts = StoragePresentationContexts[:120]
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
        assoc = ae.associate("127.0.0.1", port, ae_title="BRAINMETS")
        try:
            for f in files:
                status = assoc.send_c_store(pydicom.dcmread(f))
                if not status or int(status.Status) != 0:
                    break
                acked.append(1)
        finally:
            assoc.abort()

    t = threading.Thread(target=sender)
    t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait(timeout=30)
    t.join(timeout=60)
    assert 10 <= len(acked) < len(files), len(acked)
    with ws.catalog(readonly=True) as cat:
        received = [f for f in cat.source_files() if f.status == "received"]
    assert len(received) >= len(acked)
    assert all(Path(f.path).is_file() for f in received)
    proc = start_receive(ws, port)
    err = stop(proc)
    assert f"received before: {len(received)} instance(s), all on disk" in err, err
