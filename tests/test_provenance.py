"""Provenance: outside inputs (atlas, clinical sheet, annotations) and stage versions in the
fingerprint; typed stage options checked when ``brainmets config set`` writes them."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bm_testutil import make_toy_workspace
from brainmets.catalog import COHORT
from brainmets.config import CONFIG_NAME
from brainmets.features.stage import STAGE as FEATURES
from brainmets.fsutil import atomic_write_text
from brainmets.pipeline import InlineExecutor, Pipeline, Runner, RunSummary, Stage
from brainmets.pipeline.inputs import InputContext, describe_folder, file_digest
from brainmets.pipeline.options import ParamError, option_defaults
from brainmets.pipeline.stage import StageContext, StageResult
from brainmets.pipeline.toy import pipeline as toy_pipeline
from brainmets.preprocess.stage import STAGE as PREPROCESS
from brainmets.report.stage import STAGE as REPORT
from brainmets.segment.stage import STAGE as SEGMENT
from brainmets.workspace import Workspace

PATIENTS = ("TOY-001", "TOY-002", "TOY-003")


# --------------------------------------------------------------------------- helpers
def _note(ctx: StageContext) -> StageResult:
    """A stand-in stage body: writes which patient and parameters it ran with."""
    out = atomic_write_text(
        ctx.out_dir / "note.json", json.dumps({"patient": ctx.patient_id, **ctx.params})
    )
    return StageResult(outputs={"note": out})


def _run(root: Path, pipeline: Pipeline) -> RunSummary:
    ws = Workspace.open(root)  # pick up config edits
    with ws.lock():
        return Runner(ws, pipeline, InlineExecutor(), progress=False).run()


def _attempts(root: Path) -> dict[tuple[str, str], int]:
    with Workspace.open(root).catalog(readonly=True) as cat:
        return {(r.patient_id, r.stage): r.attempts for r in cat.stage_runs()}


def _rerun(before: dict[tuple[str, str], int], after: dict[tuple[str, str], int]) -> set[str]:
    """The stages that ran again (for any patient) between two attempt counts."""
    return {stage for (_, stage), n in after.items() if n != before.get((_, stage))}


def _write(path: Path, data: bytes) -> None:
    """Rewrite a file, making sure its mtime changes even on a coarse clock."""
    old = path.stat().st_mtime_ns if path.exists() else 0
    path.write_bytes(data)
    if path.stat().st_mtime_ns == old:
        os.utime(path, ns=(old + 1_000_000_000, old + 1_000_000_000))


def _atlas(tmp: Path) -> Path:
    d = tmp / "atlas"
    d.mkdir()
    for name in (
        "t1_brain.nii.gz",
        "t1_head.nii.gz",
        "tissues.nii.gz",
        "suptent.nii.gz",
        "tzo116plus.nii.gz",
        "tzo116plus_labels.txt",
    ):
        (d / name).write_bytes(f"fake {name}".encode())
    return d


def _atlas_pipeline() -> Pipeline:
    """enrol -> make -> preprocess -> features -> summarise: the toy stages around two
    stand-ins that declare exactly the outside inputs of the real preprocess and features."""
    toy = toy_pipeline()
    return Pipeline(
        (
            toy.get("enrol"),
            toy.get("make"),
            Stage("preprocess", _note, fingerprint_inputs=PREPROCESS.fingerprint_inputs),
            Stage("features", _note, fingerprint_inputs=FEATURES.fingerprint_inputs),
            toy.get("summarise"),
        )
    )


@pytest.fixture
def atlas_ws(tmp_path: Path) -> tuple[Workspace, Path]:
    atlas = _atlas(tmp_path)
    ws = make_toy_workspace(tmp_path / "ws")
    ws.config.data["atlas"]["dir"] = str(atlas)
    ws.save_config()
    return Workspace.open(ws.root), atlas


# ------------------------------------------------------------------ outside inputs
def test_atlas_change_reruns_the_stage_that_reads_it_and_every_later_one(
    atlas_ws: tuple[Workspace, Path],
) -> None:
    ws, atlas = atlas_ws
    pipe = _atlas_pipeline()
    assert _run(ws.root, pipe).ok
    first = _attempts(ws.root)
    assert set(first.values()) == {1} and len(first) == 2 + 3 * 3

    s = _run(ws.root, pipe)  # nothing changed: nothing re-runs
    assert _attempts(ws.root) == first
    assert s.count("preprocess", "skipped") == 3

    # touched, same contents: the content hash is unchanged, nothing re-runs
    t = atlas / "t1_head.nii.gz"
    os.utime(t, ns=(t.stat().st_mtime_ns + 5_000_000_000,) * 2)
    _run(ws.root, pipe)
    assert _attempts(ws.root) == first

    # a template preprocess reads: preprocess and what follows, not make / enrol
    _write(atlas / "t1_head.nii.gz", b"another template")
    s = _run(ws.root, pipe)
    assert s.ok
    after = _attempts(ws.root)
    assert _rerun(first, after) == {"preprocess", "features", "summarise"}
    assert s.count("make", "skipped") == 3 and s.count("enrol", "skipped") == 1
    assert s.count("preprocess", "done") == 3 and s.count("features", "done") == 3
    assert all(after[(p, "preprocess")] == 2 for p in PATIENTS)

    # an atlas label map only features reads: features and what follows
    _write(atlas / "suptent.nii.gz", b"another supratentorial mask")
    s = _run(ws.root, pipe)
    assert _rerun(after, _attempts(ws.root)) == {"features", "summarise"}
    assert s.count("preprocess", "skipped") == 3

    # a file neither reads: nothing
    before = _attempts(ws.root)
    (atlas / "lpba40.nii.gz").write_bytes(b"unused parcellation")
    _run(ws.root, pipe)
    assert _attempts(ws.root) == before


def test_atlas_gone_is_described_as_missing_and_reruns(atlas_ws: tuple[Workspace, Path]) -> None:
    ws, atlas = atlas_ws
    pipe = _atlas_pipeline()
    assert _run(ws.root, pipe).ok
    first = _attempts(ws.root)
    (atlas / "t1_head.nii.gz").unlink()
    with ws.catalog(readonly=True) as cat:
        inp = InputContext(ws, cat, "TOY-001", PREPROCESS.defaults)
        described = PREPROCESS.fingerprint_inputs(inp)  # type: ignore[misc]
    assert described["atlas"]["t1_head.nii.gz"] == {"missing": True}
    assert "sha256" in described["atlas"]["t1_brain.nii.gz"]
    _run(ws.root, pipe)
    assert _rerun(first, _attempts(ws.root)) == {"preprocess", "features", "summarise"}


def test_version_bump_reruns_that_stage_and_later_ones_and_nothing_earlier(
    tmp_path: Path,
) -> None:
    ws = make_toy_workspace(tmp_path / "toy")
    toy = toy_pipeline()
    assert _run(ws.root, toy).ok
    first = _attempts(ws.root)

    bumped = Pipeline(
        tuple(
            dataclasses.replace(st, version="2") if st.name == "digest" else st for st in toy.stages
        )
    )
    s = _run(ws.root, bumped)
    assert s.ok
    after = _attempts(ws.root)
    assert _rerun(first, after) == {"digest", "summarise"}
    assert s.count("enrol", "skipped") == 1 and s.count("make", "skipped") == 3
    assert s.count("digest", "done") == 3

    s = _run(ws.root, bumped)  # the new version is now the recorded one
    assert _attempts(ws.root) == after

    bumped_make = Pipeline(
        tuple(
            dataclasses.replace(st, version="2") if st.name == "make" else st
            for st in bumped.stages
        )
    )
    s = _run(ws.root, bumped_make)
    assert _rerun(after, _attempts(ws.root)) == {"make", "digest", "summarise"}
    assert s.count("enrol", "skipped") == 1


def test_callback_receives_the_merged_parameters(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []

    def describe(inp: InputContext) -> Any:
        seen.append((inp.patient_id, dict(inp.params)))
        return inp.params["source"]

    toy = toy_pipeline()
    pipe = Pipeline(
        (
            toy.get("enrol"),
            Stage("read", _note, defaults={"source": "a", "other": 1}, fingerprint_inputs=describe),
        )
    )
    ws = make_toy_workspace(tmp_path / "toy", read={"source": "b"})
    assert _run(ws.root, pipe).ok
    assert sorted(p for p, _ in seen) == list(PATIENTS)
    assert all(params == {"source": "b", "other": 1} for _, params in seen)


def test_a_callback_that_raises_fails_that_patient_with_the_reason(tmp_path: Path) -> None:
    def describe(inp: InputContext) -> Any:
        if inp.patient_id == "TOY-002":
            raise RuntimeError("cannot read the scanner list")
        return None

    toy = toy_pipeline()
    pipe = Pipeline(
        (
            toy.get("enrol"),
            Stage("read", _note, fingerprint_inputs=describe),
            Stage("after", _note),
        )
    )
    ws = make_toy_workspace(tmp_path / "toy")
    s = _run(ws.root, pipe)
    assert not s.ok
    assert [(p, st) for p, st, _ in s.failures] == [("TOY-002", "read")]
    msg = s.failures[0][2]
    assert "outside inputs of stage 'read' for TOY-002" in msg
    assert "RuntimeError: cannot read the scanner list" in msg
    assert s.count("after", "done") == 2
    with ws.catalog(readonly=True) as cat:
        runs = {(r.patient_id, r.stage): r for r in cat.stage_runs()}
    assert runs[("TOY-002", "read")].status == "failed"
    assert "cannot read the scanner list" in (runs[("TOY-002", "read")].error or "")
    assert ("TOY-002", "after") not in runs


def test_file_digest_reports_missing_and_unreadable_and_caches(tmp_path: Path) -> None:
    assert file_digest(tmp_path / "nothing") == {"missing": True}
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    d = file_digest(f)
    assert d["size"] == 3 and len(d["sha256"]) == 64
    assert file_digest(tmp_path) == {"unreadable": "not a file"}
    if os.geteuid() != 0:
        f.chmod(0)
        try:
            # same (path, size, mtime): the cached digest; a new mtime must be read again
            assert file_digest(f) == d
            os.utime(f, ns=(time.time_ns() + 10**9,) * 2)
            assert "unreadable" in file_digest(f)
        finally:
            f.chmod(0o644)


def test_clinical_sheet_is_hashed_from_the_parameters(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "toy")
    sheet = ws.root / "clinical.csv"
    with ws.catalog(readonly=True) as cat:

        def describe(value: str, qc_figures: str = "none") -> Any:
            params = {**REPORT.defaults, "clinical_sheet": value, "qc_figures": qc_figures}
            return REPORT.fingerprint_inputs(InputContext(ws, cat, COHORT, params))  # type: ignore[misc]

        assert describe("") is None
        # registration figures: the SRI24 template (content, not location) is an input too
        with_template = describe("", "figures+flagged")
        assert set(with_template) == {"template"}
        atlas = with_template["template"]["atlas"]  # t1_brain.nii.gz's digest, or "not found"
        assert atlas == "not found" or set(atlas) == {"t1_brain.nii.gz"}
        assert describe("clinical.csv") == {"clinical_sheet": {"path": str(sheet), "missing": True}}
        sheet.write_text("MRN,Age\n1,50\n")
        one = describe("clinical.csv")
        os.utime(sheet, ns=(sheet.stat().st_mtime_ns + 10**9,) * 2)
        assert describe("clinical.csv") == one  # touched only
        _write(sheet, b"MRN,Age\n1,51\n")
        assert describe("clinical.csv") != one
        assert describe(str(sheet)) == describe("clinical.csv")  # the same file


def test_annotation_folder_is_hashed_and_an_unreadable_key_is_not_swallowed(
    tmp_path: Path,
) -> None:
    ws = make_toy_workspace(tmp_path / "toy")
    with ws.catalog(readonly=True) as cat:

        def describe(**params: Any) -> Any:
            merged = {**SEGMENT.defaults, "reference": "preprocess", **params}
            return SEGMENT.fingerprint_inputs(InputContext(ws, cat, "TOY-001", merged))  # type: ignore[misc]

        assert describe() == {"annotations": {"missing": "annotation folder"}}
        folder = ws.root / "annotations" / "TOY-001"
        folder.mkdir(parents=True)
        (folder / "Core1.nii.gz").write_bytes(b"mask one")
        one = describe()
        assert list(one["annotations"]["files"]) == ["Core1.nii.gz"]
        _write(folder / "Core1.nii.gz", b"mask two")
        assert describe() != one
        assert describe()["annotations"] == describe_folder(folder)
        assert "atlas" in describe(reference="auto")  # the grid may be the atlas's

        ws.config.key_file.chmod(0o644)  # read_key refuses it
        try:
            with pytest.raises(Exception, match="accessible by other users"):
                describe(annotations_dir="annotations/{mrn}")
        finally:
            ws.config.key_file.chmod(0o600)
        described = describe(annotations_dir="annotations/{mrn}")
        assert "belongs to TOY-001" in described["annotations"]["missing"]


# --------------------------------------------------------------------- typed options
def test_every_stage_has_typed_options_matching_its_defaults() -> None:
    from brainmets.stages import default_pipeline

    for st in default_pipeline().stages:
        cls = st.options_class
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen, st.name  # type: ignore[attr-defined]
        assert option_defaults(cls) == dict(st.defaults), st.name
        st.check_params(st.defaults)  # the defaults are valid
        st.check_params({})
    declared = {st.name: st.options for st in default_pipeline().stages}
    from brainmets.deid.engine import DeidOptions
    from brainmets.preprocess.pipeline import PreprocessOptions

    assert declared["deid"] is DeidOptions and declared["preprocess"] is PreprocessOptions


@pytest.mark.parametrize(
    ("stage", "params", "match"),
    [
        ("features", {"conectivity": 18}, r"no parameter.*conectivity"),
        ("features", {"connectivity": 7}, r"connectivity=7"),
        ("features", {"connectivity": True}, r"connectivity = True .*expected int"),
        ("deid", {"keep_private": "yes"}, r"keep_private = 'yes' .*expected bool"),
        ("deid", {"min_offset_days": "-40"}, r"min_offset_days = '-40' .*expected int"),
        ("preprocess", {"backend": "fast"}, r"backend must be one of"),
        ("preprocess", {"threads": "all"}, r"threads = 'all' .*expected int"),
        ("classify", {"required": ["t9"]}, r"required must list"),
        ("convert", {"compress": 1}, r"compress = 1 .*expected bool"),
        ("segment", {"label_map_names": "seg.nii.gz"}, r"label_map_names .*expected list"),
        ("segment", {"reference": "nowhere"}, r"reference must be one of"),
        ("report", {"figure_dpi": "high"}, r"figure_dpi = 'high' .*expected int"),
        ("export", {"layout": "zip"}, r"layout must be one of"),
    ],
)
def test_check_params_refuses_unknown_names_wrong_types_and_values(
    stage: str, params: dict[str, Any], match: str
) -> None:
    from brainmets.stages import default_pipeline

    with pytest.raises(ParamError, match=match) as exc:
        default_pipeline().get(stage).check_params(params)
    assert f"[stages.{stage}]" in str(exc.value)


def test_check_params_builds_the_options_object() -> None:
    opts = FEATURES.check_params({"connectivity": 18, "lesion_labels": [3]})
    assert opts.connectivity == 18 and opts.lesion_labels == (3,)
    assert opts.check_grid_role == "t1c"
    pre = PREPROCESS.check_params({"iterations": "100x50"})  # the options' own coercion
    assert pre.iterations == (100, 50)


def _config_set(root: Path, key: str, value: str) -> Any:
    from brainmets.cli import app

    return CliRunner().invoke(
        app, ["config", "set", "-w", str(root), "--", key, value], env={"COLUMNS": "200"}
    )


def test_config_set_rejects_a_bad_value_and_leaves_the_file_unchanged(tmp_path: Path) -> None:
    ws = make_toy_workspace(tmp_path / "toy")
    path = ws.root / CONFIG_NAME
    before = path.read_bytes()

    bad = _config_set(ws.root, "stages.make.nonsense", "1")
    assert bad.exit_code == 2
    assert "no parameter 'nonsense'" in bad.output and "size" in bad.output
    assert path.read_bytes() == before

    bad = _config_set(ws.root, "stages.make.size", "'big'")
    assert bad.exit_code == 2
    assert "size = 'big'" in bad.output and "expected int" in bad.output
    assert path.read_bytes() == before

    bad = _config_set(ws.root, "stages.make.fail", "true")
    assert bad.exit_code == 2 and "fail = True" in bad.output
    assert path.read_bytes() == before

    ok = _config_set(ws.root, "stages.make.size", "100")
    assert ok.exit_code == 0, ok.output
    assert Workspace.open(ws.root).config.data["stages"]["make"]["size"] == 100


def test_config_set_checks_the_real_stages_options(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    path = ws.root / CONFIG_NAME
    before = path.read_bytes()
    for key, value, match in [
        ("stages.features.connectivity", "7", "connectivity=7"),
        ("stages.deid.keep_private", "'yes'", "expected bool"),
        ("stages.deid.min_offset_days", "10", "min_offset_days must be <= max_offset_days"),
        ("stages.export.layout", "'zip'", "layout must be one of"),
    ]:
        res = _config_set(ws.root, key, value)
        assert res.exit_code == 2, (key, res.output)
        assert match in res.output, (key, res.output)
        assert path.read_bytes() == before
    # checked beside what is already set: max_offset_days first, then min_offset_days
    assert _config_set(ws.root, "stages.deid.max_offset_days", "20").exit_code == 0
    assert _config_set(ws.root, "stages.deid.min_offset_days", "10").exit_code == 0
    assert _config_set(ws.root, "stages.features.connectivity", "18").exit_code == 0
    data = Workspace.open(ws.root).config.data["stages"]
    assert data["deid"] == {"max_offset_days": 20, "min_offset_days": 10}
    assert data["features"] == {"connectivity": 18}
