"""`brainmets status` shows what the records mean now: only really included patients are
counted, a killed run's stages are interrupted, results made from a failed or re-run
upstream are stale (issue 18, item 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bm_testutil import make_toy_workspace, run_cli
from brainmets import api
from brainmets.catalog import CommandRun, StageRun, utcnow
from brainmets.pipeline.states import command_ended, stage_states
from brainmets.pipeline.toy import pipeline as toy_pipeline
from brainmets.workspace import Workspace


def _set(ws: Workspace, stage: str, key: str, value: object) -> Workspace:
    ws.config.set_stage_param(stage, key, value)
    ws.save_config()
    return Workspace.open(ws.root)


def test_a_patient_that_failed_is_not_counted_as_included(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws", enrol={"patients": 1}, make={"fail": ["TOY-001"]})
    assert not api.run(ws.root, workers=1).ok
    st = api.status(ws.root)
    assert st.included == [] and st.failed_patients == ["TOY-001"]
    out = run_cli("status", "-w", str(ws.root)).stdout
    assert "patients: 1 found, 0 included so far, 0 excluded, 1 failed" in out
    js = json.loads(run_cli("status", "-w", str(ws.root), "--json").stdout)
    assert js["included"] == []

    ws = _set(ws, "make", "fail", [])
    assert api.run(ws.root, workers=1).ok
    assert api.status(ws.root).included == ["TOY-001"]
    assert "1 found, 1 included so far, 0 excluded" in run_cli("status", "-w", str(ws.root)).stdout


def test_results_downstream_of_a_failed_upstream_are_stale(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    assert api.run(ws.root, workers=1).ok
    ws = _set(ws, "make", "fail", ["TOY-001"])  # make re-runs for all; TOY-001 now fails
    assert not api.run(ws.root, workers=1).ok
    st = api.status(ws.root)
    assert st.run("TOY-001", "digest").status == "done"  # type: ignore[union-attr]
    assert st.state("TOY-001", "make") == "failed"
    assert st.state("TOY-001", "digest") == "stale"
    assert st.state("TOY-002", "digest") == "done"
    (stale,) = st.stale
    assert stale.reason == "made from an earlier result of make, which is now failed"
    assert st.included == ["TOY-002", "TOY-003"]

    res = run_cli("status", "-w", str(ws.root))
    row = next(line for line in res.stdout.splitlines() if "TOY-001" in line and "│" in line)
    assert "FAILED" in row and "stale" in row and "done" not in row
    assert "stale TOY-001 digest: made from an earlier result of make" in res.stdout
    js = json.loads(run_cli("status", "-w", str(ws.root), "--json").stdout)
    (d,) = [x for x in js["stages"] if (x["patient"], x["stage"]) == ("TOY-001", "digest")]
    assert d["status"] == "done" and d["state"] == "stale"


def test_results_made_from_an_upstream_that_ran_again_are_stale(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    assert api.run(ws.root, workers=1).ok
    ws = _set(ws, "make", "size", 100)
    assert api.run(ws.root, ["make"], workers=1).ok  # digest not run
    st = api.status(ws.root)
    assert {st.state(p, "digest") for p in ("TOY-001", "TOY-002", "TOY-003")} == {"stale"}
    assert st.states[("TOY-001", "digest")].reason == (
        "make ran again since; this result was made from its earlier one"
    )
    assert st.included == []
    assert api.run(ws.root, workers=1).ok
    st = api.status(ws.root)
    assert not st.stale and len(st.included) == 3


def test_a_killed_run_shows_its_stage_interrupted(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws", enrol={"patients": 1}, make={"delay_s": 60.0})
    proc = subprocess.Popen(
        [sys.executable, "-m", "brainmets", "run", "-w", str(ws.root), "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while api.status(ws.root).state("TOY-001", "make") != "running":
            assert proc.poll() is None, "run ended before it could be killed"
            assert time.monotonic() < deadline, "make never started"
            time.sleep(0.05)
        assert not api.status(ws.root).errors  # alive: running, not an error
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    st = api.status(ws.root)
    assert st.run("TOY-001", "make").status == "running"  # type: ignore[union-attr]
    assert st.state("TOY-001", "make") == "interrupted"
    (err,) = st.errors
    assert (err.patient_id, err.stage, err.status) == ("TOY-001", "make", "interrupted")
    assert err.error is not None and f"pid {proc.pid}" in err.error and "is gone" in err.error
    out = run_cli("status", "-w", str(ws.root)).stdout
    assert "interrupted TOY-001 make: interrupted (the process of run 1" in out
    assert "running" not in out
    assert "0 included so far" in out


def _command(**kw: object) -> CommandRun:
    base: dict = {
        "id": 1,
        "command": "brainmets run",
        "started_at": utcnow(),
        "status": "running",
        "host": "here",
        "pid": os.getpid(),
    }
    return CommandRun(**{**base, **kw})


def test_when_a_running_row_is_known_to_have_ended() -> None:
    assert command_ended(_command(), later=False, host="here") is None  # this very process
    assert command_ended(_command(host="elsewhere", pid=1), later=False, host="here") is None
    assert "ended: failed" in str(command_ended(_command(status="failed"), False, "here"))
    assert "later command" in str(command_ended(_command(), later=True, host="here"))
    assert "not recorded" in str(command_ended(None, later=False, host="here"))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    dead = int(gone.stdout)
    assert "is gone" in str(command_ended(_command(pid=dead), later=False, host="here"))
    # our pid, but the command started long before this process: the pid was reused
    old = _command(started_at="2001-01-01T00:00:00.000+00:00")
    assert "reused" in str(command_ended(old, later=False, host="here"))

    row = StageRun(
        "TOY-001", "make", "running", "fp", utcnow(), None, None, None, {}, {}, {}, {}, 1, run_id=1
    )
    shown = stage_states(toy_pipeline(), [row], [_command(status="done")], host="here")
    assert shown[("TOY-001", "make")].state == "interrupted"
    shown = stage_states(toy_pipeline(), [row], [_command()], host="here")
    assert shown[("TOY-001", "make")].state == "running"


def test_report_and_export_leave_out_a_patient_whose_results_are_stale(tmp_path: Path) -> None:
    from brainmets.cohort.model import open_cohort

    ws = make_toy_workspace(tmp_path / "ws")
    assert api.run(ws.root, workers=1).ok
    full = open_cohort(ws.root, ws.config.data, ["make", "digest"])
    assert [p.id for p in full.included] == ["TOY-001", "TOY-002", "TOY-003"]
    ws = _set(ws, "make", "size", 100)
    assert api.run(ws.root, ["make"], workers=1).ok  # digest not re-run: stale
    stale = open_cohort(ws.root, ws.config.data, ["make", "digest"])
    assert stale.included == []
    p = stale.patients[0]
    assert p.stopped_stage == "digest" and p.reason is not None and "stale" in p.reason
    assert api.run(ws.root, workers=1).ok
    assert len(open_cohort(ws.root, ws.config.data, ["make", "digest"]).included) == 3
