"""Killing a run (SIGKILL) mid-stage and re-running finishes the work cleanly."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bm_testutil import make_toy_workspace, run_cli
from brainmets.fsutil import TMP_PREFIX


def _expected_make_bytes(patient: str, size: int) -> bytes:
    seed = hashlib.sha256(f"{patient}:{size}".encode()).digest()
    out = b""
    for i in range(8):
        block = hashlib.sha256(seed + bytes([i])).digest()
        n = size // 8 + (1 if i < size % 8 else 0)
        out += (block * (n // 32 + 1))[:n]
    return out


def test_sigkill_mid_stage_then_rerun_finishes_without_duplicates(tmp_path: Path) -> None:
    size = 50_000
    ws = make_toy_workspace(
        tmp_path / "ws", enrol={"patients": 4}, make={"size": size, "delay_s": 1.5}
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "brainmets", "run", "-w", str(ws.root), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deriv = ws.root / "data" / "derivatives"
    deadline = time.monotonic() + 60
    # wait until a stage is half-way through writing a file, then kill everything
    while not any(p.name.startswith(TMP_PREFIX) and p.stat().st_size > 0 for p in deriv.rglob("*")):
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.monotonic() < deadline, "no stage started writing"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()

    with ws.catalog(readonly=True) as cat:
        running = [r for r in cat.stage_runs() if r.status == "running"]
    assert running, "the kill should have left a stage marked running"

    r = run_cli("run", "-w", str(ws.root), "--workers", "2")
    assert r.returncode == 0, r.stderr
    with ws.catalog(readonly=True) as cat:
        rows = cat.stage_runs()
        keys = [(x.patient_id, x.stage) for x in rows]
        assert len(keys) == len(set(keys)) == 4 * 2 + 2
        assert {x.status for x in rows} == {"done"}
        outs = cat.output_files(stage="make")
        assert len(outs) == 4
        for o in outs:
            path = ws.root / o.path
            data = path.read_bytes()
            assert data == _expected_make_bytes(o.patient_id, size)
            assert hashlib.sha256(data).hexdigest() == o.sha256
        runs = cat.runs()
    assert [x.status for x in runs] == ["interrupted", "done"]
    assert not [p for p in deriv.rglob(f"{TMP_PREFIX}*")], "temporary files left behind"


def test_second_run_on_a_locked_workspace_refuses(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws", make={"delay_s": 2.0})
    proc = subprocess.Popen(
        [sys.executable, "-m", "brainmets", "run", "-w", str(ws.root), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with ws.catalog(readonly=True) as cat:
                if cat.runs():
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = run_cli("run", "-w", str(ws.root))
        assert r.returncode == 3
        assert "in use by another brainmets process" in r.stderr
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    with ws.catalog(readonly=True) as cat:
        assert len(cat.runs()) == 1
