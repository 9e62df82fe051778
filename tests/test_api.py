"""The Python API (brainmets.api): init, ingest, run, status, demo return reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bm_testutil import make_toy_workspace
from brainmets import api
from brainmets.catalog import COHORT
from brainmets.workspace import Workspace, WorkspaceError


def test_init_reports_what_it_created(tmp_path: Path) -> None:
    rep = api.init(tmp_path / "ws")
    assert rep.root == (tmp_path / "ws").resolve()
    assert rep.config.is_file() and rep.catalog.is_file() and rep.key_file.is_file()
    assert rep.key_file.stat().st_mode & 0o077 == 0
    with pytest.raises(WorkspaceError):
        api.init(tmp_path / "ws")  # never over an existing workspace


def test_run_and_status_on_the_toy_pipeline(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws", make={"fail": ["TOY-003"]})
    rep = api.run(ws.root, workers=1)
    assert not rep.ok
    assert [(p, s) for p, s, _ in rep.failures] == [("TOY-003", "make")]
    assert rep.count("make", "done") == 2 and rep.count("summarise", "done") == 1
    assert rep.pipeline.names == ["enrol", "make", "digest", "summarise"]

    st = api.status(ws.root)
    assert [p.id for p in st.patients] == ["TOY-001", "TOY-002", "TOY-003"]
    assert st.run("TOY-003", "make").status == "failed"  # type: ignore[union-attr]
    assert st.run("TOY-003", "digest") is None
    assert st.run(COHORT, "summarise").status == "done"  # type: ignore[union-attr]
    assert [(r.patient_id, r.stage) for r in st.errors] == [("TOY-003", "make")]
    assert "toy failure requested for TOY-003" in st.errors[0].error  # type: ignore[operator]

    ws.config.set_stage_param("make", "fail", [])
    ws.save_config()
    again = api.run(Workspace.open(ws.root), workers=1)  # a changed parameter: all redone
    assert again.ok and again.count("make", "done") == 3 and not again.failures
    assert api.run(ws.root, workers=1).count("make", "skipped") == 3
    forced = api.run(ws.root, ["make"], force=["make"], patients=["TOY-001"], workers=1)
    assert forced.ok and forced.count("make", "done") == 1


def test_a_waiting_patient_is_shown_waiting_and_is_not_a_failure(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws", make={"wait": ["TOY-002"]})
    rep = api.run(ws.root, workers=1)
    assert rep.ok and rep.failures == []
    assert rep.waiting == [("TOY-002", "make", "awaiting toy input: none for TOY-002 yet")]
    st = api.status(ws.root)
    assert st.state("TOY-002", "make") == "waiting" and st.run("TOY-002", "digest") is None
    assert [(s.patient_id, s.stage, s.reason) for s in st.waiting] == [
        ("TOY-002", "make", "awaiting toy input: none for TOY-002 yet")
    ]
    assert st.waiting_patients == {"TOY-002": "awaiting toy input"}
    assert st.errors == [] and st.failed_patients == []
    assert st.included == ["TOY-001", "TOY-003"]


def test_run_refuses_an_unknown_stage_and_a_missing_workspace(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "ws")
    with pytest.raises(KeyError, match="unknown stage 'convert'"):
        api.run(ws.root, ["convert"])
    with pytest.raises(WorkspaceError):
        api.status(tmp_path / "nope")


def test_ingest_adds_the_sources_and_accounts_for_their_files(tmp_path: Path) -> None:
    api.init(tmp_path / "ws")
    with pytest.raises(FileNotFoundError):
        api.ingest(tmp_path / "ws", [tmp_path / "missing"])
    assert str(tmp_path / "missing") not in (tmp_path / "ws" / "brainmets.toml").read_text()
    src = tmp_path / "src"
    src.mkdir()
    (src / "notes.txt").write_text("not DICOM")
    rep = api.ingest(tmp_path / "ws", [src])
    assert rep.ok and rep.count("ingest", "done") == 1
    st = api.status(tmp_path / "ws")
    assert sum(st.files.values()) == 1
    assert [Path(f.path).name for f in st.not_taken] == ["notes.txt"]


def test_demo_runs_its_steps_in_order(tmp_path: Path) -> None:
    # a demo folder whose cohort is already there (no generation) and whose workspace
    # runs the toy pipeline: the orchestration without the images
    cohort = tmp_path / "demo" / "cohort"
    (cohort / "dicom").mkdir(parents=True)
    (cohort / "truth.json").write_text(json.dumps({}))
    make_toy_workspace(tmp_path / "demo" / "workspace")
    steps: list[str] = []
    rep = api.demo(tmp_path / "demo", on_step=lambda step, r: steps.append(step), workers=1)
    assert steps == rep.steps == ["workspace", "pipeline", "status", "deid-check"]
    assert rep.cohort is None  # the existing cohort was used
    assert rep.run is not None and rep.run.ok and rep.run.count("summarise", "done") == 1
    assert rep.status is not None and len(rep.status.patients) == 3
    assert rep.deid_check is not None and rep.deid_check.ok and rep.ok
    assert rep.report is None  # the toy pipeline writes none
    cfg = Workspace.open(rep.workspace_dir).config
    assert str(cohort / "dicom") in [str(s) for s in cfg.data["paths"]["sources"]]
    assert cfg.data["stages"]["report"]["clinical_sheet"] == str(cohort / "clinical.xlsx")


def test_demo_needs_at_least_one_patient(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        api.demo(tmp_path / "demo", patients=0)
    assert not (tmp_path / "demo" / "workspace").exists()


def test_demo_is_not_ok_when_the_leak_check_could_not_check_everything(tmp_path: Path) -> None:
    from brainmets.deid.verify import Unchecked, VerifyReport
    from brainmets.pipeline import RunSummary, load_pipeline

    run = api.RunReport(tmp_path, load_pipeline("brainmets.pipeline.toy:pipeline"), RunSummary(1))
    rep = api.DemoReport(tmp_path, tmp_path / "cohort", tmp_path / "ws", run=run)
    assert rep.ok  # no de-identified files, nothing to check
    rep.deid_check = VerifyReport(outputs=1, originals=1)
    assert rep.ok
    rep.deid_check.unchecked.append(Unchecked("output", "x.dcm", "(0040,A730)", "cannot decode"))
    assert not rep.ok
