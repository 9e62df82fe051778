"""The pipeline runner on the toy pipeline: skipping, re-running, failures, executors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bm_testutil import make_toy_workspace
from brainmets.catalog import COHORT
from brainmets.pipeline import InlineExecutor, LocalExecutor, Runner, load_pipeline
from brainmets.workspace import Workspace

TOY = "brainmets.pipeline.toy:pipeline"


def run(ws: Workspace, executor=None, stages=None, force=()):
    ws = Workspace.open(ws.root)  # pick up config edits
    with ws.lock():
        runner = Runner(ws, load_pipeline(TOY), executor or InlineExecutor(), progress=False)
        return runner.run(stages, None, force)


def statuses(ws: Workspace) -> dict[tuple[str, str], str]:
    with ws.catalog(readonly=True) as cat:
        return {(r.patient_id, r.stage): r.status for r in cat.stage_runs()}


def attempts(ws: Workspace) -> dict[tuple[str, str], int]:
    with ws.catalog(readonly=True) as cat:
        return {(r.patient_id, r.stage): r.attempts for r in cat.stage_runs()}


def set_param(ws: Workspace, stage: str, key: str, value) -> None:
    ws = Workspace.open(ws.root)
    ws.config.set_stage_param(stage, key, value)
    ws.save_config()


def test_full_run_then_everything_is_skipped(toy_ws: Workspace) -> None:
    s1 = run(toy_ws)
    assert s1.ok
    assert s1.count("make", "done") == 3 and s1.count("digest", "done") == 3
    assert s1.count("summarise", "done") == 1
    st = statuses(toy_ws)
    assert len(st) == 3 * 2 + 2 and set(st.values()) == {"done"}
    summary = (toy_ws.root / "data/derivatives/_cohort/summarise/summary.jsonl").read_text()
    assert len(summary.strip().splitlines()) == 3

    s2 = run(toy_ws)
    assert s2.ok
    for stage in ("enrol", "make", "digest", "summarise"):
        assert s2.count(stage, "done") == 0
    assert s2.count("make", "skipped") == 3 and s2.count("summarise", "skipped") == 1


def test_parameter_change_reruns_that_stage_and_later_ones_only(toy_ws: Workspace) -> None:
    run(toy_ws)
    before = attempts(toy_ws)
    set_param(toy_ws, "digest", "factor", 2)
    s = run(toy_ws)
    assert s.count("make", "skipped") == 3 and s.count("make", "done") == 0
    assert s.count("digest", "done") == 3 and s.count("summarise", "done") == 1
    after = attempts(toy_ws)
    for p in ("TOY-001", "TOY-002", "TOY-003"):
        assert after[(p, "make")] == before[(p, "make")]
        assert after[(p, "digest")] == before[(p, "digest")] + 1
        digest = json.loads((toy_ws.root / f"data/derivatives/{p}/digest/digest.json").read_text())
        assert digest["scaled"] == 2 * 4096

    set_param(toy_ws, "make", "size", 100)
    s = run(toy_ws)
    assert s.count("make", "done") == 3 and s.count("digest", "done") == 3
    assert s.count("enrol", "skipped") == 1


def test_failing_patient_is_recorded_and_others_go_on(toy_ws: Workspace) -> None:
    set_param(toy_ws, "make", "fail", ["TOY-002"])
    s = run(toy_ws)
    assert not s.ok
    assert [(p, st) for p, st, _ in s.failures] == [("TOY-002", "make")]
    assert "toy failure requested for TOY-002" in s.failures[0][2]
    st = statuses(toy_ws)
    assert st[("TOY-002", "make")] == "failed"
    assert ("TOY-002", "digest") not in st
    assert st[("TOY-001", "digest")] == "done" and st[("TOY-003", "digest")] == "done"
    with toy_ws.catalog(readonly=True) as cat:
        assert "ValueError" in (cat.stage_run("TOY-002", "make").error or "")

    set_param(toy_ws, "make", "fail", [])  # a parameter change: every make reruns
    s = run(toy_ws)
    assert s.ok and set(statuses(toy_ws).values()) == {"done"}


def test_waiting_patient_is_not_a_failure_and_is_tried_again(toy_ws: Workspace) -> None:
    """A stage that returns ``waiting`` (issue 18): recorded with the reason, not a failure,
    the patient's later stages are not run, and the next run tries it again."""
    set_param(toy_ws, "make", "wait", ["TOY-002"])
    s = run(toy_ws)
    assert s.ok and s.failures == [] and s.blocked == []
    reason = "awaiting toy input: none for TOY-002 yet"
    assert s.waiting == [("TOY-002", "make", reason)]
    assert s.count("make", "waiting") == 1 and s.count("make", "done") == 2
    assert s.count("digest", "done") == 2 and s.count("summarise", "done") == 1
    st = statuses(toy_ws)
    assert st[("TOY-002", "make")] == "waiting" and ("TOY-002", "digest") not in st
    with toy_ws.catalog(readonly=True) as cat:
        row = cat.stage_run("TOY-002", "make")
        assert row is not None and row.error == reason and row.fingerprint is None
        assert cat.runs()[-1].status == "done"
        assert cat.stage_outputs("TOY-002", "make") == {}
    before = attempts(toy_ws)

    s = run(toy_ws)  # same parameters: waiting is not reused, it runs (and waits) again
    assert s.ok and s.count("make", "waiting") == 1 and s.count("make", "skipped") == 2
    assert attempts(toy_ws)[("TOY-002", "make")] == before[("TOY-002", "make")] + 1
    assert s.count("digest", "skipped") == 2 and s.count("digest", "done") == 0

    s = run(toy_ws, stages=["digest"])  # make not selected: still waiting, not blocked
    assert s.ok and s.blocked == [] and [w[:2] for w in s.waiting] == [("TOY-002", "make")]
    assert reason in s.waiting[0][2]

    set_param(toy_ws, "make", "wait", [])  # the input arrives: the patient goes on
    s = run(toy_ws)
    assert s.ok and s.waiting == []
    assert set(statuses(toy_ws).values()) == {"done"}
    assert (toy_ws.root / "data/derivatives/TOY-002/digest/digest.json").is_file()


def test_damaged_output_is_redone(toy_ws: Workspace) -> None:
    run(toy_ws)
    data = toy_ws.root / "data/derivatives/TOY-001/make/data.bin"
    data.unlink()
    s = run(toy_ws)
    assert s.count("make", "done") == 1 and s.count("make", "skipped") == 2
    assert data.is_file()


def test_unselected_stage_that_is_not_up_to_date_blocks(toy_ws: Workspace) -> None:
    run(toy_ws, stages=["enrol"])
    s = run(toy_ws, stages=["digest"])
    assert s.count("digest", "done") == 0
    assert len(s.blocked) == 3 and all(b[1] == "make" for b in s.blocked)
    assert "brainmets make" in s.blocked[0][2]


def test_force_redoes_a_stage(toy_ws: Workspace) -> None:
    run(toy_ws)
    s = run(toy_ws, force=["make"])
    assert s.count("make", "done") == 3
    # outputs identical, fingerprints identical: later stages stay skipped
    assert s.count("digest", "skipped") == 3


def test_local_process_pool_gives_the_same_outputs(tmp_path: Path) -> None:
    a = make_toy_workspace(tmp_path / "a")
    b = make_toy_workspace(tmp_path / "b")
    run(a)
    ex = LocalExecutor(2)
    try:
        s = run(b, ex)
    finally:
        ex.close()
    assert s.ok
    assert _outputs(a) == _outputs(b)


def _outputs(ws: Workspace) -> dict[tuple[str, str, str], str]:
    with ws.catalog(readonly=True) as cat:
        return {(r.patient_id, r.stage, r.role): r.sha256 for r in cat.output_files()}


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_outputs(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from brainmets.pipeline import DaskExecutor

    a = make_toy_workspace(tmp_path / "a", enrol={"patients": 4})
    b = make_toy_workspace(tmp_path / "b", enrol={"patients": 4})
    ex_local = LocalExecutor(2)
    try:
        assert run(a, ex_local).ok
    finally:
        ex_local.close()
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        ex = DaskExecutor(cluster.scheduler_address)
        try:
            s = run(b, ex)
        finally:
            ex.close()
    assert s.ok and s.count("make", "done") == 4
    outs = _outputs(b)
    assert outs == _outputs(a)
    assert (COHORT, "summarise", "summary") in outs


def test_output_overwritten_in_place_is_detected_and_redone(toy_ws: Workspace) -> None:
    """A stage output whose bytes changed after its run (same size) is hash-checked because
    its modification time is later than the run, found damaged and redone."""
    import os
    import time

    run(toy_ws)
    data = toy_ws.root / "data/derivatives/TOY-001/make/data.bin"
    good = data.read_bytes()
    bad = bytes(b ^ 0xFF for b in good[:8]) + good[8:]
    assert len(bad) == len(good) and bad != good
    data.write_bytes(bad)
    later = time.time() + 10  # unambiguously after the run, whatever the clock granularity
    os.utime(data, (later, later))
    s = run(toy_ws)
    assert s.count("make", "done") == 1 and s.count("make", "skipped") == 2
    assert data.read_bytes() == good
    # untouched outputs are not re-hashed: a changed byte with the old time goes unseen
    # (documented: modification times decide which outputs are checked)
    assert run(toy_ws).count("make", "skipped") == 3
