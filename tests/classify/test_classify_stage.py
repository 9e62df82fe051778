"""The classify stage on a workspace, and the CLI helpers (override, evaluation)."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from classify_helpers import (
    DWI_ATTRS,
    FLAIR_ATTRS,
    T2_ATTRS,
    SeriesSpec,
    StudySpec,
    build_patient,
    stage_context,
)

from brainmets.classify.cli import parse_assignment, set_override
from brainmets.classify.stage import DEFAULTS, STAGE, run_classify
from brainmets.workspace import Workspace

LOCALIZER = ["ORIGINAL", "PRIMARY", "LOCALIZER"]


def _studies() -> list[StudySpec]:
    pre = SeriesSpec("t1_fl2d_sag", 3, "100000")
    post = SeriesSpec("t1_fl2d_sag", 9, "102500", {"ContrastBolusAgent": "Gadovist"})
    return [
        StudySpec(
            "20200102",
            [
                SeriesSpec("localizer", 1, "095500", {"ImageType": LOCALIZER}),
                pre,
                SeriesSpec("t2_tse_sag", 4, "100500", T2_ATTRS),
                SeriesSpec("t2_tirm_sag_dark-fluid", 5, "101000", FLAIR_ATTRS),
                SeriesSpec("ep2d_diff_sag", 6, "101500", DWI_ATTRS),
                post,
            ],
        ),
        StudySpec("20200615", [SeriesSpec("t1_fl2d_sag", 2, "090000")]),  # follow-up
    ]  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, prisma_files: list[Path]) -> Path:
    ws = Workspace.init(tmp_path_factory.mktemp("classify") / "ws")
    build_patient(ws, "BM-AAAA", _studies(), prisma_files[:12])
    no_flair = [
        StudySpec(
            "20210303",
            [
                SeriesSpec("T1 SE tra nativ", 2, "100000"),
                SeriesSpec("T2 TSE tra", 3, "100500", T2_ATTRS),
                SeriesSpec("T1 SE tra KM", 6, "102000"),
            ],
        )
    ]
    build_patient(ws, "BM-BBBB", no_flair, prisma_files[:12])
    return ws.root


@pytest.fixture
def ws(built: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the module's workspace (tests may change it)."""
    shutil.copytree(built, tmp_path / "ws", symlinks=True)
    return Workspace.open(tmp_path / "ws")


def test_stage_selects_the_pretreatment_series(ws: Workspace) -> None:
    ctx = stage_context(ws, "BM-AAAA", "classify", dict(DEFAULTS))
    result = run_classify(ctx)
    assert result.exclude is None
    sel = json.loads(result.outputs["selection"].read_text())
    assert sel["study_date"] == "20200102"
    chosen = {cls: v["series_number"] for cls, v in sel["selected"].items()}
    assert chosen == {"t1": 3, "t1c": 9, "t2": 4, "flair": 5}
    t1c = sel["selected"]["t1c"]
    assert len(t1c["instances"]) == 12 and all(
        p.startswith("data/dicom/") for p in t1c["instances"]
    )
    assert "Gadovist" in t1c["classification"]["reason"]
    assert [s["missing"] for s in sel["studies"]] == [[], ["t1c", "t2", "flair"]]
    # catalog rows: every series gets its header index and classification
    rows = {r["uid"]: json.loads(r["header_json"]) for r in result.records["series"]}
    assert len(rows) == 7
    roles = sorted(r["selected_as"] for r in rows.values() if r["selected_as"])
    assert roles == ["flair", "t1", "t1c", "t2"]
    classes = sorted(r["classification"]["cls"] for r in rows.values())
    assert classes == ["flair", "other", "other", "t1", "t1", "t1c", "t2"]
    one = next(iter(rows.values()))["header"]
    for key in ("echo_time", "repetition_time", "orientation", "image_type", "field_strength"):
        assert key in one
    assert result.metrics["n_t1c"] == 1
    assert any("series 9" in rec["message"] for rec in ctx.logs)


def test_stage_excludes_a_patient_without_flair(ws: Workspace) -> None:
    result = run_classify(stage_context(ws, "BM-BBBB", "classify", dict(DEFAULTS)))
    assert result.exclude and "lacks flair" in result.exclude
    assert json.loads(result.outputs["selection"].read_text())["excluded"] == result.exclude


def test_overrides_and_site_rules_are_stage_parameters(ws: Workspace) -> None:
    base = run_classify(stage_context(ws, "BM-AAAA", "classify", dict(DEFAULTS)))
    t1c_uid = json.loads(base.outputs["selection"].read_text())["selected"]["t1c"]["series_uid"]
    params = {**DEFAULTS, "overrides": {t1c_uid: "other"}}
    result = run_classify(stage_context(ws, "BM-AAAA", "classify", params))
    assert result.exclude and "lacks t1c" in result.exclude
    params = {**DEFAULTS, "site_rules": {"^t2_tse": "other"}}
    result = run_classify(stage_context(ws, "BM-AAAA", "classify", params))
    assert result.exclude and "lacks t2" in result.exclude
    with pytest.raises(ValueError, match="overrides"):
        run_classify(
            stage_context(ws, "BM-AAAA", "classify", {**DEFAULTS, "overrides": {"x": "t9"}})
        )


def test_a_treatment_date_selects_an_earlier_study(ws: Workspace) -> None:
    params = {**DEFAULTS, "treatment_dates": {"BM-AAAA": "20200101"}}
    result = run_classify(stage_context(ws, "BM-AAAA", "classify", params))
    assert result.exclude and "treatment date 20200101" in result.exclude


def test_set_override_writes_the_workspace_config(ws: Workspace) -> None:
    base = run_classify(stage_context(ws, "BM-AAAA", "classify", dict(DEFAULTS)))
    with ws.lock(), ws.catalog() as cat, cat.transaction():
        cat.apply_records(base.records)
    uid = json.loads(base.outputs["selection"].read_text())["selected"]["t1"]["series_uid"]
    set_override(ws.root, uid, "T1C")
    cfg = tomllib.loads((ws.root / "brainmets.toml").read_text())
    assert cfg["stages"]["classify"]["overrides"] == {uid: "t1c"}
    reopened = Workspace.open(ws.root)
    assert reopened.config.stage_params("classify", STAGE.defaults)["overrides"] == {uid: "t1c"}
    set_override(ws.root, uid, "auto")
    cfg = tomllib.loads((ws.root / "brainmets.toml").read_text())
    assert cfg["stages"]["classify"]["overrides"] == {}
    with pytest.raises(KeyError, match="no series"):
        set_override(ws.root, "1.2.3", "t1")
    with pytest.raises(ValueError, match="unknown class"):
        set_override(ws.root, uid, "t3")
    assert parse_assignment(" 1.2.3 = t1c") == ("1.2.3", "t1c")
    with pytest.raises(ValueError):
        parse_assignment("1.2.3")
