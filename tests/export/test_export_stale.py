"""An export whose workspace has changed since it was written is stale: `brainmets validate`
says so (an error unless --allow-stale) and `brainmets status` shows it (issue 18, item 3)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rx_workspace import make_workspace

from bm_testutil import run_cli
from brainmets import api
from brainmets.catalog import COHORT
from brainmets.export.cli import export_command, run_validate
from brainmets.export.validate import check_current, validate


def _messages(rep) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(p) for p in rep.problems]


def test_a_failure_after_the_export_makes_it_stale_until_it_is_exported_again(
    tmp_path: Path, sri24_atlas: Path
) -> None:
    rx = make_workspace(tmp_path)
    root = rx.root / "exports" / "collection"
    outside = tmp_path / "outside"
    assert export_command(rx.root, "collection", outside) == 0

    rep = check_current(validate(root))
    assert rep.ok and rep.workspace == rx.root.resolve() and rep.changes == []
    assert run_validate(root) == 0
    # an export outside the workspace is compared with the workspace it is told
    assert check_current(validate(outside)).workspace is None  # none holds it: not compared
    assert check_current(validate(outside), rx.root).changes == []
    st = api.status(rx.root)
    assert {e.target for e in st.exports} == {"exports/collection", str(outside.resolve())}
    assert not any(e.stale for e in st.exports)
    assert st.state(COHORT, "export") == "done"
    # a run that finds everything up to date changes nothing
    rx.run()
    assert check_current(validate(root)).changes == []

    # segment fails for patient a, in a run of that stage alone: the export is not redone
    a, b = rx.pids["a"], rx.pids["b"]
    letters = {pid: letter for letter, pid in rx.pids.items()}
    rx.set("segment", letters={**letters, a: "x"})  # no lesions for "x": the stand-in fails
    summary = rx.run(["segment"])
    assert [(p, s) for p, s, _ in summary.failures] == [(a, "segment")]
    assert (root / a).is_dir()  # the previous export is still there, and its files are fine
    assert validate(root).ok

    rep = check_current(validate(root))
    assert not rep.ok
    assert f"{a} segment: done then, failed now" in rep.changes
    assert f"{b} segment: ran again with other inputs or parameters (done)" in rep.changes
    (err,) = rep.errors
    assert err.message.startswith(f"stale: workspace {rx.root.resolve()} has changed since")
    assert run_validate(root) == 1
    assert run_validate(root, allow_stale=True) == 0
    assert not check_current(validate(outside), rx.root).ok

    res = run_cli("validate", str(root))
    assert res.returncode == 1 and "stale: workspace" in res.stdout, res.stdout
    res = run_cli("validate", str(root), "--allow-stale")
    assert res.returncode == 0 and "valid but stale" in res.stdout, res.stdout
    res = run_cli("validate", str(outside), "-w", str(rx.root))
    assert res.returncode == 1 and "stale: workspace" in res.stdout

    st = api.status(rx.root)
    latest = st.exports[0]
    assert latest.stale and f"{a} segment: done then, failed now" in latest.changes
    assert st.state(COHORT, "export") == "stale"
    assert st.state(a, "features") == "stale"  # made from the segment result that failed since
    report_tests = str(Path(__file__).resolve().parents[1] / "report")  # the stand-in stages
    path = os.pathsep.join(p for p in (report_tests, os.environ.get("PYTHONPATH", "")) if p)
    res = run_cli("status", "-w", str(rx.root), env={"PYTHONPATH": path})
    assert res.returncode == 0, res.stderr
    assert "stale export exports/collection" in res.stdout

    # the full run exports again, without patient a: current
    rx.run()
    rep = check_current(validate(root))
    assert rep.ok and rep.changes == [], _messages(rep)
    assert not (root / a).exists() and (root / b).is_dir()
    assert api.status(rx.root).state(COHORT, "export") == "done"
    # the folder outside was not exported again: it stays stale
    assert not check_current(validate(outside), rx.root).ok


def test_a_folder_the_workspace_did_not_record_is_a_warning(
    tmp_path: Path, sri24_atlas: Path
) -> None:
    rx = make_workspace(tmp_path)
    copy = rx.root / "exports" / "copy"
    shutil.copytree(rx.root / "exports" / "collection", copy)
    rep = check_current(validate(copy))
    assert rep.ok
    (w,) = [p for p in rep.warnings if "not recorded" in p.message]
    assert w.message.startswith(f"not recorded as an export of workspace {rx.root.resolve()}")
    assert run_validate(copy) == 0
