"""One definition of a report's ``errors`` and ``warnings`` (brainmets.problems)."""

from __future__ import annotations

from pathlib import Path

from brainmets.cohort.clinical import ClinicalTable
from brainmets.cohort.clinical import Problem as SheetProblem
from brainmets.export.validate import Problem as DatasetProblem
from brainmets.export.validate import ValidationReport
from brainmets.problems import Problems


def test_reports_share_the_definition() -> None:
    for report in (ValidationReport, ClinicalTable):
        assert issubclass(report, Problems)
        assert report.errors is Problems.errors and report.warnings is Problems.warnings


def test_errors_and_warnings_keep_their_order() -> None:
    rep = ValidationReport(Path("/d"), "nnunet")
    rep.add("a", "bad grid")
    rep.add("b", "odd name", "warning")
    rep.add("c", "no labels")
    assert [p.path for p in rep.errors] == ["a", "c"]
    assert [p.path for p in rep.warnings] == ["b"]
    assert not rep.ok
    table = ClinicalTable(
        problems=[
            SheetProblem(2, "Sex", "x", "unknown code", "warning"),
            SheetProblem(3, "Age", "-1", "negative"),
        ]
    )
    assert [p.row for p in table.errors] == [3] and [p.row for p in table.warnings] == [2]
    assert table.with_severity("info") == []
    assert isinstance(rep.problems[0], DatasetProblem)
