"""The pipeline honours the review (issue 12): ``brainmets status`` shows each case's review
state, a case a reviewer excluded is left out of the report and the export with its reason,
``[stages.export] require_review`` takes approved cases only, and the report counts the
review outcome. On the small workspace of ``tests/report/rx_workspace.py`` (a and b included,
c and d not)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from rx_workspace import make_workspace

from brainmets import api
from brainmets.catalog import Catalog
from brainmets.cohort.review import review_settings
from brainmets.config import ConfigError
from brainmets.review import add_user, record_decision
from brainmets.workspace import Workspace

PW = "correct horse battery"


@pytest.fixture(scope="module")
def rx(tmp_path_factory: pytest.TempPathFactory, sri24_atlas: Path):
    # a workspace of its own: this module records decisions and changes settings
    rx = make_workspace(tmp_path_factory.mktemp("rx-review"))
    ws = Workspace.open(rx.root)
    with ws.lock(), ws.catalog() as cat:
        add_user(cat, "rita", "reviewer", PW)
        add_user(cat, "rob", "reviewer", PW)
    return rx


def _decide(rx, who: str, letter: str, decision: str, reason: str | None = None) -> None:
    ws = Workspace.open(rx.root)
    with ws.lock(), ws.catalog() as cat:
        pid = rx.pids[letter]
        user = cat.user(who)
        seg = cat.stage_outputs(pid, "segment").get("seg")
        record_decision(cat, user, pid, decision, seg[1] if seg else None, reason)


def _exported(rx) -> list[str]:
    root = rx.root / "exports" / "collection"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != "report")


def _table(rx, name: str) -> list[list[str]]:
    path = rx.root / "data" / "derivatives" / "_cohort" / "report" / "tables" / f"{name}.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _export_doc(rx) -> dict:
    p = rx.root / "data" / "derivatives" / "_cohort" / "export" / "export.json"
    return json.loads(p.read_text())


def test_exclusion_require_review_and_approval_flow_through_status_report_and_export(
    rx,
) -> None:
    a, b = rx.pids["a"], rx.pids["b"]
    # nobody reviewed yet: both processed patients are in, and pending
    rep = api.status(rx.root)
    assert sorted(rep.included) == sorted([a, b])
    assert {rep.review[a].state, rep.review[b].state} == {"pending"}
    assert _exported(rx) == sorted([a, b])
    outcome = {r[0].strip(): r[1] for r in _table(rx, "review_outcome")[1:]}
    assert outcome["Patients with every stage complete"] == "2"
    assert outcome["Pending (not reviewed, approvals missing, or revised since)"].startswith("2 ")

    # a reviewer excludes a: the next run redoes report and export without it
    _decide(rx, "rita", "a", "excluded", "motion artefact on T1c")
    stale = api.status(rx.root).exports[0]  # the export is stale until it is made again
    assert stale.stale and any(c.startswith(f"review: excluded {a} by rita") for c in stale.changes)
    summary = rx.run()
    assert summary.count("report", "done") == 1 and summary.count("export", "done") == 1
    assert _exported(rx) == [b]
    rep = api.status(rx.root)
    assert rep.included == [b] and rep.left_out_by_review == [a]
    assert rep.review[a].state == "excluded"
    flow = _table(rx, "cohort_flow")
    assert [r[0] for r in flow[1:]][-2:] == [
        "Every stage complete",
        "Included in the dataset (not excluded by review)",
    ]
    assert [int(r[1]) for r in flow[1:]] == [4, 3, 2, 1]
    excl = {r[0]: r for r in _table(rx, "exclusions")[1:]}
    assert excl[a][1:] == ["review", "review", "review: excluded: motion artefact on T1c"]
    reasons = _table(rx, "exclusion_reasons")
    assert ["review", "review: excluded", "1"] in reasons
    outcome = {r[0].strip(): r[1] for r in _table(rx, "review_outcome")[1:]}
    assert outcome["Excluded by a reviewer"].startswith("1 ")
    # the exported copy of the report does not name the excluded patient
    html = (rx.root / "exports" / "collection" / "report" / "report.html").read_text()
    assert a not in html and "review: excluded: motion artefact on T1c" in html
    # nothing changed: nothing redone
    again = rx.run()
    assert again.count("export", "done") == 0 and again.count("report", "done") == 0

    # approved cases only: b is pending, so nobody is exported
    rx.set("export", require_review=True)
    rx.run()
    assert _export_doc(rx)["patients"] == 0
    rep = api.status(rx.root)
    assert rep.included == [] and sorted(rep.left_out_by_review) == sorted([a, b])
    excl = {r[0]: r for r in _table(rx, "exclusions")[1:]}
    assert excl[b][3] == "review: pending (not reviewed yet)"

    # b approved: exported again; the flow says "approved by review"
    _decide(rx, "rob", "b", "approved")
    rx.run()
    assert _exported(rx) == [b]
    flow = _table(rx, "cohort_flow")
    assert flow[-1][0] == "Included in the dataset (approved by review)" and flow[-1][1] == "1"
    assert api.status(rx.root).review_counts() == {
        "pending": 0,  # c and d have no label map: nothing to review
        "approved": 1,
        "needs revision": 0,
        "excluded": 1,
    }

    # two approvals required (the reference's two neuroradiologists): b is pending again
    ws = Workspace.open(rx.root)
    ws.config.data.setdefault("review", {})["required_approvals"] = 2
    ws.save_config()
    rx.run()
    assert _export_doc(rx)["patients"] == 0
    _decide(rx, "rita", "b", "approved")
    rx.run()
    assert _exported(rx) == [b]


def test_status_command_shows_the_review(rx) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "COLUMNS": "200",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "report"),  # the rx pipeline
    }

    def status(*args: str) -> str:
        cmd = [sys.executable, "-m", "brainmets", "status", "-w", str(rx.root), *args]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert out.returncode == 0, out.stderr
        return out.stdout

    text = status()
    header = next(line for line in text.splitlines() if "patient" in line)
    assert header.split("┃")[-2].strip() == "review"  # the last column
    flat = " ".join(text.split())
    assert f"left out by the review {rx.pids['a']}: review: excluded: motion artefact" in flat
    assert "review: 0 pending, 1 approved, 0 needs revision, 1 excluded" in flat
    assert not api.status(rx.root).exports[0].stale  # made again after the last decision
    doc = json.loads(status("--json"))
    assert doc["review"][rx.pids["a"]]["state"] == "excluded"
    assert doc["review"][rx.pids["a"]]["by"] == "rita"
    assert rx.pids["a"] in doc["left_out_by_review"]


def test_bad_review_settings_are_named() -> None:
    for section, key in (
        ({"review": {"required_approvals": 0}}, "required_approvals"),
        ({"review": {"required_approvals": "two"}}, "required_approvals"),
        ({"review": {"required_approvals": True}}, "required_approvals"),
        ({"review": {"distinct_users": "yes"}}, "distinct_users"),
        ({"review": {"session_hours": -1}}, "session_hours"),
        ({"review": {"approvals": 2}}, "unknown key"),
        ({"review": "two"}, "[review] must be a table"),
        ({"stages": {"export": {"require_review": "yes"}}}, "require_review"),
    ):
        with pytest.raises(ConfigError, match=re.escape(key)):
            review_settings(section)
    s = review_settings({"review": {"required_approvals": 2}, "stages": {"export": {}}})
    assert s.rule.approvals == 2 and s.rule.distinct_users and not s.require_review


def test_a_catalog_without_decisions_keeps_its_fingerprints(tmp_path: Path) -> None:
    from brainmets.cohort.review import review_inputs

    ws = Workspace.init(tmp_path / "ws")
    with ws.lock(), ws.catalog() as cat:
        cat.ensure_patient("BM-AAAAAAAA")
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        assert review_inputs(cat, ws.config.data) is None
        got = review_inputs(cat, {"review": {"required_approvals": 2}})
        assert got is not None and got["approvals"] == 2
