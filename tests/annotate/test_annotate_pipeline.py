"""The annotation tools on a workspace (issue 13): a lesion grown from a click and saved
becomes a version where the real ``segment`` stage reads it, the next run fuses it and the
real ``features`` stage counts it, for that patient only; accepting proposals saves every
lesion; the CLI prints the voxel counts. On the stand-in workspace of
``tests/report/rx_workspace.py`` (its preprocess writes SRI24-grid images with bright balls)
with the real segment and features stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_REPORT_TESTS = str(Path(__file__).resolve().parents[1] / "report")
if _REPORT_TESTS not in sys.path:
    sys.path.insert(0, _REPORT_TESTS)

import rx_workspace as rx  # noqa: E402

from brainmets.annotate.cli import accept_command, grow_command  # noqa: E402
from brainmets.catalog import Catalog  # noqa: E402
from brainmets.features.stage import STAGE as FEATURES  # noqa: E402
from brainmets.ids import patient_pseudonym  # noqa: E402
from brainmets.pipeline import InlineExecutor, Pipeline, Runner, Stage  # noqa: E402
from brainmets.segment.stage import STAGE as SEGMENT  # noqa: E402
from brainmets.workspace import Workspace  # noqa: E402


def pipeline() -> Pipeline:
    return Pipeline(
        (
            Stage("enrol", rx._enrol, scope="cohort", defaults={"patients": []}),
            Stage("classify", rx._classify, defaults={"letters": {}}),
            Stage("convert", rx._convert, defaults={"letters": {}}),
            Stage("preprocess", rx._preprocess, defaults={"letters": {}}),
            SEGMENT,
            FEATURES,
        )
    )


def _run(root: Path):
    ws = Workspace.open(root)
    with ws.lock():
        return Runner(ws, pipeline(), InlineExecutor(), progress=False).run(None, None, [])


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from brainmets.atlas import AtlasError, atlas_file

    try:
        atlas_file("t1_brain.nii.gz")
    except AtlasError as exc:
        pytest.skip(str(exc))
    ws = Workspace.init(tmp_path_factory.mktemp("ann") / "ws")
    key = ws.key()
    pids = {k: patient_pseudonym(key, v) for k, v in rx.MRNS.items() if k in "ab"}
    letters = {v: k for k, v in pids.items()}
    ws.config.set_stage_param("enrol", "patients", sorted(pids.values()))
    for st in ("classify", "convert", "preprocess"):
        ws.config.set_stage_param(st, "letters", letters)
    ws.save_config()
    summary = _run(ws.root)
    assert summary.count("segment", "waiting") == 2  # nobody annotated yet
    return Workspace.open(ws.root)


def _pid(ws: Workspace, letter: str) -> str:
    return patient_pseudonym(ws.key(), rx.MRNS[letter])


def _features(ws: Workspace, pid: str) -> dict:
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        run = cat.stage_run(pid, "features")
    assert run is not None and run.status == "done", run
    return run.metrics


def test_a_grown_lesion_is_fused_and_counted(ws: Workspace) -> None:
    a, b = _pid(ws, "a"), _pid(ws, "b")
    (c1, r1, _n1, _e1), (c2, _r2, _n2, _e2) = rx.LESIONS["a"]
    out, rec = grow_command(ws, a, c1, 0, True, "ann", None)  # type: ignore[arg-type]
    assert rec is not None and rec.version == 1 and out["lesion"] == 1
    assert out["core"] > 0.8 * (4 / 3 * 3.14159 * r1**3)
    summary = _run(ws.root)
    assert summary.count("segment", "done") == 1  # patient a only; b still waits
    assert summary.count("segment", "waiting") == 1
    assert _features(ws, a)["ET_num"] == 1
    # the second lesion: a new version, the first kept
    out2, rec2 = grow_command(ws, a, c2, 0, True, "bob", None)  # type: ignore[arg-type]
    assert rec2 is not None and rec2.version == 2 and rec2.parent == 1 and out2["lesion"] == 2
    _run(ws.root)
    assert _features(ws, a)["ET_num"] == 2
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        versions = cat.annotation_versions(a)
        assert cat.stage_run(b, "segment").status == "waiting"  # type: ignore[union-attr]
    assert [(v.version, v.user_name, v.lesions) for v in versions] == [
        (1, "ann", 1),
        (2, "bob", 2),
    ]
    assert (ws.root / versions[0].folder / "Core1_PGGE.nii.gz").is_file()


def test_accepting_the_proposals_saves_every_lesion(ws: Workspace) -> None:
    b = _pid(ws, "b")
    n, rec = accept_command(ws, b, 0.2, "ann", None)  # type: ignore[arg-type]
    assert rec is not None and n == len(rx.LESIONS["b"]) == rec.lesions
    _run(ws.root)
    assert _features(ws, b)["ET_num"] == len(rx.LESIONS["b"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brainmets", "annotate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )


def test_the_command_line_prints_the_counts(ws: Workspace) -> None:
    a = _pid(ws, "a")
    c = ",".join(str(x) for x in rx.LESIONS["a"][0][0])
    common = ("-w", str(ws.root), "-p", a)
    r = _cli("grow", *common, "--at", c, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["core"] > 0 and doc["whole"] >= doc["core"] and "version" not in doc
    bad = _cli("grow", *common, "--at", "1,2")
    assert bad.returncode == 2 and "three whole numbers" in bad.stderr
    none = _cli("grow", *common, "--at", "5,5,5")
    assert none.returncode == 2 and "outside the brain" in none.stderr


def test_saving_masks_makes_an_approved_case_pending_again(ws: Workspace) -> None:
    from brainmets.annotate.store import current_lesions, save_version
    from brainmets.cohort.review import review_states
    from brainmets.review.decisions import record_decision
    from brainmets.review.users import add_user

    a = _pid(ws, "a")
    with Catalog.open(ws.catalog_path) as cat:
        rita = add_user(cat, "rita", "reviewer", "a long enough password 1")
        record_decision(cat, rita, a, "approved", _label_map_sha(cat, a))
        assert review_states(cat)[a].state == "approved"
    lesions = current_lesions(ws, a)
    assert len(lesions) == 2
    img_affine = rx_affine(ws, a)
    rec = save_version(ws, a, lesions[:1], img_affine, "ann", "edit")
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        st = review_states(cat)[a]
    # pending from the moment of the save, before any run fused the new masks
    assert st.state == "pending"
    assert st.detail == f"annotation version {rec.version} saved by ann since the last decision"
    _run(ws.root)
    assert _features(ws, a)["ET_num"] == 1
    with Catalog.open(ws.catalog_path) as cat:
        assert review_states(cat)[a].state == "pending"  # the approved label map is gone
        record_decision(cat, rita, a, "approved", _label_map_sha(cat, a))
        assert review_states(cat)[a].state == "approved"


def _label_map_sha(cat: Catalog, pid: str) -> str:
    (out,) = [o for o in cat.output_files(stage="segment", role="seg") if o.patient_id == pid]
    return out.sha256


def rx_affine(ws: Workspace, pid: str):
    from brainmets.annotate.case import affine_of, case_files

    return affine_of(case_files(ws, pid))
