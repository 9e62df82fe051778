"""A Dask worker killed in the middle of a stage (issue 15).

A real ``dask scheduler`` and two ``dask worker`` processes on loopback run the toy
pipeline through ``brainmets run --scheduler``; while a ``make`` task is being processed,
the worker process running it is killed with SIGKILL. The run must complete, give the same
output hashes as a clean run on the local pool, and record every (patient, stage) once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bm_testutil import TOY, make_toy_workspace
from brainmets.pipeline import LocalExecutor, Runner, load_pipeline

distributed = pytest.importorskip("distributed")

DASK = Path(sys.executable).with_name("dask")
N = 6


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _outputs(ws) -> dict[tuple[str, str, str], str]:
    with ws.catalog(readonly=True) as cat:
        return {(r.patient_id, r.stage, r.role): r.sha256 for r in cat.output_files()}


def _kill_a_busy_worker(client, deadline: float) -> tuple[str, str]:
    """SIGKILL the worker process that is running a ``make`` task; return (worker, task)."""
    while time.monotonic() < deadline:
        for addr, keys in client.processing().items():
            busy = [k for k in keys if "execute_stage" in str(k)]
            if not busy:
                continue
            pid = client.run(os.getpid, workers=[addr])[addr]
            time.sleep(0.6)  # well inside the task (delay_s = 3)
            os.kill(pid, signal.SIGKILL)
            return addr, str(busy[0])
        time.sleep(0.05)
    raise AssertionError("no worker ever ran a task")


@pytest.mark.slow
def test_killed_dask_worker_the_run_completes_with_the_same_outputs(tmp_path: Path) -> None:
    params = {"enrol": {"patients": N}, "make": {"delay_s": 3.0, "size": 50_000}}
    clean = make_toy_workspace(tmp_path / "clean", **params)
    ex = LocalExecutor(2)
    try:
        with clean.lock():
            assert Runner(clean, load_pipeline(TOY), ex, progress=False).run().ok
    finally:
        ex.close()

    ws = make_toy_workspace(tmp_path / "faulty", **params)
    port = _port()
    addr = f"tcp://127.0.0.1:{port}"
    common = ["--no-dashboard"]
    procs = [
        subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), *common],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(2):  # with a nanny: a killed worker is restarted, as in production
            procs.append(
                subprocess.Popen(
                    [
                        str(DASK),
                        "worker",
                        addr,
                        "--nthreads",
                        "1",
                        *common,
                        "--local-directory",
                        str(tmp_path / "dask"),
                    ],  # fmt: skip
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        with distributed.Client(addr, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
            run = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "brainmets",
                    "run",
                    "-w",
                    str(ws.root),
                    "--scheduler",
                    addr,
                ],  # fmt: skip
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            killed = _kill_a_busy_worker(client, time.monotonic() + 120)
            out, _ = run.communicate(timeout=600)
        assert run.returncode == 0, (killed, out)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=60)

    assert _outputs(ws) == _outputs(clean), killed
    with ws.catalog(readonly=True) as cat:
        runs = cat.stage_runs()
        keys = [(r.patient_id, r.stage) for r in runs]
        assert len(keys) == len(set(keys)) == 2 + 2 * N  # enrol, summarise + make, digest
        assert all(r.status == "done" for r in runs)
        assert len(cat.patients()) == N
        assert len(cat.output_files()) == len(_outputs(clean))
    # nothing half-written left beside the outputs (the killed task's temporary included)
    leftovers = [p for p in (ws.root / "data").rglob(".tmp-*")]
    assert leftovers == []
