"""Catalog schema migrations and their refusals; the typed read and write methods."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path

import pytest

from brainmets.catalog import (
    COHORT,
    LATEST_VERSION,
    MIGRATIONS,
    Catalog,
    CatalogError,
    IndexedSeries,
    OutputFile,
    PatientCounts,
    PatientRow,
    SchemaTooNew,
    SourceFile,
    utcnow,
)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _sql(path: Path, sql: str) -> list[tuple]:
    """Read the database file directly (the schema is not behind Catalog methods)."""
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql))
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    return {r[0] for r in _sql(path, "SELECT name FROM sqlite_master WHERE type='table'")}


def test_new_catalog_is_at_latest_version(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        assert cat.version() == LATEST_VERSION
    tables = _tables(tmp_path / "c.sqlite")
    assert {"patients", "studies", "series", "instances", "source_files"} <= tables
    assert {"runs", "stage_runs", "stage_outputs", "schema_migrations"} <= tables


def test_upgrade_from_first_version_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalog.open(path, create=True, target_version=1) as cat:
        assert cat.version() == 1
        with cat.transaction():
            cat.ensure_patient("BM-AAAA0000")
        assert "stage_runs" not in _tables(path)
    with Catalog.open(path) as cat:  # a writing open migrates
        assert cat.version() == LATEST_VERSION
        assert cat.patient_ids() == ["BM-AAAA0000"]
    versions = [r[0] for r in _sql(path, "SELECT version FROM schema_migrations")]
    assert versions == [m.version for m in MIGRATIONS]


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        assert cat.migrate() == []


def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    Catalog.open(path, create=True).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO schema_migrations VALUES (?, 'from the future', ?)",
        (LATEST_VERSION + 1, utcnow()),
    )
    conn.commit()
    conn.close()
    before = _digest(path)
    with pytest.raises(SchemaTooNew, match="newer"):
        Catalog.open(path)
    with pytest.raises(SchemaTooNew):
        Catalog.open(path, readonly=True)
    assert _digest(path) == before


def test_readonly_open_refuses_old_schema(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    Catalog.open(path, create=True, target_version=1).close()
    with pytest.raises(CatalogError, match="older"):
        Catalog.open(path, readonly=True)


def test_missing_catalog(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no catalog"):
        Catalog.open(tmp_path / "none.sqlite")


def test_stage_run_rows_are_unique_per_patient_and_stage(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        for _ in range(3):
            cat.mark_stage_running("P1", "make", "fp", None)
            cat.finish_stage_run(
                "P1",
                "make",
                status="done",
                fingerprint="fp",
                started_at=utcnow(),
                duration_s=0.1,
                outputs={"data": ("a/b", "0" * 64, 3)},
            )
        rows = cat.stage_runs()
        assert len(rows) == 1
        assert rows[0].attempts == 3
        assert cat.stage_outputs("P1", "make") == {"data": ("a/b", "0" * 64, 3)}


def test_upsert_rejects_unknown_tables(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat, pytest.raises(CatalogError):
        cat.apply_records({"stage_runs": [{"patient_id": "x"}]})


# ------------------------------------------------------------- typed methods
P1, P2 = "BM-AAAA0001", "BM-AAAA0002"


def _deid_records() -> dict[str, list[dict]]:
    """What the deid stage returns for two patients (P1 with two studies)."""
    now = utcnow()
    return {
        "patients": [{"id": P2, "created_at": now}, {"id": P1, "created_at": now}],
        "studies": [
            {"uid": "st-late", "patient_id": P1, "study_date": "20200301", "study_time": "1"},
            {"uid": "st-early", "patient_id": P1, "study_date": "20200101", "study_time": "1"},
            {"uid": "st-p2", "patient_id": P2, "study_date": "20190101"},
        ],
        "series": [
            {"uid": "se-b", "study_uid": "st-early", "patient_id": P1, "series_number": 2,
             "description": "T2", "n_instances": 1},
            {"uid": "se-a", "study_uid": "st-early", "patient_id": P1, "series_number": 1,
             "description": "T1", "n_instances": 2},
            {"uid": "se-c", "study_uid": "st-late", "patient_id": P1, "series_number": 1},
            {"uid": "se-p2", "study_uid": "st-p2", "patient_id": P2, "series_number": 1},
        ],
        "instances": [
            {"sop_uid": f"sop-{i}", "series_uid": se, "patient_id": pid,
             "path": f"data/dicom/{pid}/{i}.dcm", "sha256": "0" * 64, "size": 10 + i}
            for i, (se, pid) in enumerate(
                [("se-a", P1), ("se-a", P1), ("se-b", P1), ("se-p2", P2)]
            )
        ],
        "source_files": [
            {"path": "/src/z.dcm", "size": 5, "mtime_ns": 7, "status": "deidentified",
             "patient_id": P1, "sop_uid": "sop-0", "seen_at": now},
            {"path": "/src/a.txt", "size": 1, "mtime_ns": 2, "status": "rejected",
             "reason": "not a DICOM file", "seen_at": now},
            {"path": "/src/m.dcm", "size": 3, "mtime_ns": 4, "status": "pending",
             "patient_id": P2, "sop_uid": "sop-3", "seen_at": now},
        ],
    }  # fmt: skip


def _filled(tmp_path: Path) -> Catalog:
    cat = Catalog.open(tmp_path / "c.sqlite", create=True)
    with cat.transaction():
        cat.apply_records(_deid_records())
    return cat


def test_patients_are_typed_records(tmp_path: Path) -> None:
    with _filled(tmp_path) as cat:
        with cat.transaction():
            cat.set_patient_status(P2, "excluded", "classify: lacks flair")
        assert cat.patients() == [
            PatientRow(P1, "active", None),
            PatientRow(P2, "excluded", "classify: lacks flair"),
        ]
        assert cat.patient(P2) == PatientRow(P2, "excluded", "classify: lacks flair")
        assert cat.patient("BM-NOBODY00") is None


def test_source_files_by_patient_and_status(tmp_path: Path) -> None:
    with _filled(tmp_path) as cat:
        files = cat.source_files()
        assert [f.path for f in files] == ["/src/a.txt", "/src/m.dcm", "/src/z.dcm"]
        rejected = files[0]
        assert (rejected.status, rejected.reason, rejected.patient_id) == (
            "rejected",
            "not a DICOM file",
            None,
        )
        assert (files[2].size, files[2].mtime_ns, files[2].sop_uid) == (5, 7, "sop-0")
        assert [f.path for f in cat.source_files(patient_id=P1)] == ["/src/z.dcm"]
        assert [f.path for f in cat.source_files(statuses=("rejected", "pending"))] == [
            "/src/a.txt",
            "/src/m.dcm",
        ]
        assert cat.source_files(patient_id=P1, statuses=("pending",)) == []
        assert cat.source_files(statuses=()) == []
        assert cat.source_file_counts() == {"deidentified": 1, "pending": 1, "rejected": 1}
        assert list(cat.source_file_counts()) == ["deidentified", "pending", "rejected"]
        assert cat.source_file_reasons(["rejected"]) == [("rejected", "not a DICOM file", 1)]
        assert [r[0] for r in cat.source_file_reasons()] == ["deidentified", "pending", "rejected"]


def test_record_source_file_adds_its_patient_and_updates_by_path(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        f = SourceFile("/in/x.dcm", 9, 1, "received", patient_id=P1, sop_uid="s", seen_at="t")
        cat.record_source_file(f)
        cat.record_source_file(SourceFile("received:q/1", 0, 0, "quarantined", reason="SC"))
        assert cat.patient_ids() == [P1]
        assert cat.source_files(patient_id=P1) == [f]
        moved = SourceFile("/in/x.dcm", 9, 1, "rejected", reason="bad", seen_at="u")
        cat.record_source_file(moved)
        assert cat.source_files(statuses=["rejected"]) == [moved]
        assert cat.source_file_counts() == {"quarantined": 1, "rejected": 1}
    with (
        Catalog.open(tmp_path / "c.sqlite", readonly=True) as ro,
        pytest.raises(CatalogError, match="read-only"),
    ):
        ro.record_source_file(f)


def test_input_file_counts_are_kept_by_triggers(tmp_path: Path) -> None:
    """``source_file_counts`` reads counts that triggers keep (status must not count tens of
    millions of rows); they must equal counting the rows after inserts, status changes,
    upserts through the stage records and deletions, and after an upgrade."""
    path = tmp_path / "c.sqlite"

    def counted() -> dict[str, int]:
        return dict(_sql(path, "SELECT status, COUNT(*) FROM source_files GROUP BY status"))

    with Catalog.open(path, create=True, target_version=6) as cat:
        for i in range(6):
            cat.record_source_file(SourceFile(f"/in/{i}", i, i, "pending", seen_at="t"))
    with Catalog.open(path) as cat:  # migrated: the counts start from the rows there
        assert cat.version() == LATEST_VERSION
        assert cat.source_file_counts() == counted() == {"pending": 6}
        cat.record_source_file(SourceFile("/in/0", 0, 0, "rejected", reason="x", seen_at="t"))
        cat.record_source_file(SourceFile("/in/1", 1, 1, "pending", seen_at="u"))  # same status
        with cat.transaction():
            cat.apply_records(
                {
                    "source_files": [
                        {"path": "/in/2", "size": 2, "mtime_ns": 2, "status": "vanished",
                         "seen_at": "t"},
                        {"path": "/in/9", "size": 9, "mtime_ns": 9, "status": "duplicate",
                         "seen_at": "t"},
                    ]
                }
            )  # fmt: skip
        assert cat.source_file_counts() == counted()
        assert cat.source_file_counts() == {"duplicate": 1, "pending": 4, "rejected": 1,
                                            "vanished": 1}  # fmt: skip
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("DELETE FROM source_files WHERE path IN ('/in/0', '/in/3')")
    conn.close()
    with Catalog.open(path, readonly=True) as cat:
        assert cat.source_file_counts() == counted() == {"duplicate": 1, "pending": 3,
                                                         "vanished": 1}  # fmt: skip
    plan = " ".join(
        str(r[-1])
        for r in _sql(path, "EXPLAIN QUERY PLAN SELECT * FROM source_files WHERE status = 'x'")
    )
    assert "source_files_status" in plan


def test_source_files_under_folders_by_index_range(tmp_path: Path) -> None:
    paths = ["/in/a/1.dcm", "/in/a/sub/2.dcm", "/in/a-b/3.dcm", "/in/a0/4.dcm", "/in/ab",
             "/in/one.dcm", "/other/5.dcm"]  # fmt: skip
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        for i, path in enumerate(paths):
            cat.record_source_file(SourceFile(path, i, i, "pending", seen_at="t"))
        assert [f.path for f in cat.source_files_under(["/in/a"])] == [
            "/in/a/1.dcm",
            "/in/a/sub/2.dcm",
        ]
        assert [f.path for f in cat.source_files_under(["/in/a/", "/in/one.dcm"])] == [
            "/in/a/1.dcm",
            "/in/a/sub/2.dcm",
            "/in/one.dcm",
        ]
        assert cat.source_files_under([]) == []
        assert len(cat.source_files_under(["/"])) == len(paths)
        plan = " ".join(
            str(r[-1])
            for r in cat._conn.execute(
                "EXPLAIN QUERY PLAN SELECT * FROM source_files WHERE path >= ? AND path < ?",
                ("/in/a/", "/in/a0"),
            )
        )
        assert "USING INDEX" in plan  # a range on the path index, not a scan


def test_studies_series_and_instances_of_a_patient(tmp_path: Path) -> None:
    with _filled(tmp_path) as cat:
        studies = cat.studies(P1)
        assert [s.uid for s in studies] == ["st-early", "st-late"]  # by date
        assert (studies[0].patient_id, studies[0].study_date) == (P1, "20200101")
        assert len(cat.studies()) == 3
        series = cat.series(P1)
        assert [s.uid for s in series] == ["se-a", "se-b", "se-c"]  # by study, number
        assert (series[0].description, series[0].n_instances, series[0].series_number) == (
            "T1",
            2,
            1,
        )
        assert [s.uid for s in cat.series(P2)] == ["se-p2"]
        assert cat.has_series("se-c") and not cat.has_series("se-zz")
        inst = cat.instances(P1)
        assert [i.sop_uid for i in inst] == ["sop-0", "sop-1", "sop-2"]
        assert (inst[1].series_uid, inst[1].size, inst[1].path) == (
            "se-a",
            11,
            f"data/dicom/{P1}/1.dcm",
        )
        assert len(cat.instances()) == 4
        counts = cat.patient_counts()
        assert counts[P1] == PatientCounts(P1, studies=2, series=3, instances=3)
        assert (counts[P2].series, counts[P2].instances) == (1, 1)


def test_indexed_series_header_is_read_back_as_a_typed_record(tmp_path: Path) -> None:
    header = {"series_number": 1, "text": "t1 mprage", "n_slices": 176}
    cls = {"cls": "t1", "confidence": 0.9, "source": "rules"}
    chosen = IndexedSeries("se-a", "st-early", P1, header, cls, "t1", "the only t1")
    other = IndexedSeries("se-b", "st-early", P1, {"text": "t2"}, {"cls": "t2"})
    assert chosen.record()["uid"] == "se-a"
    with _filled(tmp_path) as cat:
        assert cat.indexed_series() == []  # deid writes no index
        with cat.transaction():
            cat.apply_records({"series": [chosen.record(), other.record()]})
        got = cat.indexed_series()
        assert got == [chosen, other]
        assert got[0].header == header and got[0].classification["cls"] == "t1"
        assert cat.selected_series() == [chosen]
        assert cat.selected_series(P2) == []
        assert cat.indexed_series(P2) == []
        # the index does not disturb what deid recorded about the series
        assert cat.series(P1)[0].n_instances == 2
        # an index written without some fields (older writers) reads with defaults
        with cat.transaction():
            cat.apply_records(
                {
                    "series": [
                        {"uid": "se-c", "study_uid": "st-late", "patient_id": P1,
                         "header_json": json.dumps({"header": {"a": 1}, "selected_as": "t2"})},
                        {"uid": "se-p2", "study_uid": "st-p2", "patient_id": P2,
                         "header_json": "not json"},
                    ]
                }
            )  # fmt: skip
        late = [s for s in cat.indexed_series(P1) if s.uid == "se-c"]
        assert late == [IndexedSeries("se-c", "st-late", P1, {"a": 1}, {}, "t2", None)]
        assert [s.uid for s in cat.selected_series()] == ["se-a", "se-c"]
        assert cat.indexed_series(P2) == []  # an unreadable index is skipped


def test_output_files_filter_by_stage_role_status_and_cohort(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:

        def finish(pid: str, stage: str, status: str, outputs: dict) -> None:
            cat.finish_stage_run(
                pid,
                stage,
                status=status,
                fingerprint="fp",
                started_at=utcnow(),
                duration_s=0.0,
                outputs=outputs,
            )

        finish(P2, "features", "done", {"features": ("p2/f.json", "a" * 64, 1)})
        finish(
            P1,
            "features",
            "done",
            {"features": ("p1/f.json", "b" * 64, 2), "table": ("p1/t.csv", "c" * 64, 3)},
        )
        finish(P1, "segment", "failed", {"mask": ("p1/m.nii.gz", "d" * 64, 4)})
        finish(COHORT, "report", "done", {"report": ("r.html", "e" * 64, 5)})

        every = cat.output_files()
        assert [(o.patient_id, o.stage, o.role) for o in every] == [
            (COHORT, "report", "report"),
            (P1, "features", "features"),
            (P1, "features", "table"),
            (P1, "segment", "mask"),
            (P2, "features", "features"),
        ]
        assert every[1] == OutputFile(P1, "features", "features", "p1/f.json", "b" * 64, 2)
        assert [o.path for o in cat.output_files(stage="features", role="features")] == [
            "p1/f.json",
            "p2/f.json",
        ]
        assert [o.path for o in cat.output_files(status="done", cohort=False)] == [
            "p1/f.json",
            "p1/t.csv",
            "p2/f.json",
        ]
        assert cat.output_files(stage="segment", status="done") == []
        assert [o.role for o in cat.output_files(stage="segment", status="failed")] == ["mask"]


def test_command_runs_history(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        first = cat.start_run("run", "1.0")
        cat.end_run(first, "done")
        cat.start_run("deid", "1.1")
        runs = cat.runs()
        assert [(r.id, r.command, r.status, r.version) for r in runs] == [
            (first, "run", "done", "1.0"),
            (first + 1, "deid", "running", "1.1"),
        ]
        assert runs[0].ended_at is not None and runs[1].ended_at is None
        assert runs[0].pid == os.getpid()


def test_no_raw_sql_access(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        for name in ("query", "upsert", "conn", "execute"):
            assert not hasattr(cat, name), name


def test_the_key_fingerprint_is_recorded_once(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        assert cat.key_fingerprint() is None
        assert cat.record_key_fingerprint("a" * 64, "init") == "a" * 64
        assert cat.record_key_fingerprint("b" * 64, "run") == "a" * 64  # the first one stays
        assert cat.key_fingerprint() == "a" * 64
    path = tmp_path / "old.sqlite"
    Catalog.open(path, create=True, target_version=2).close()
    assert "key_fingerprint" not in _tables(path)
    with Catalog.open(path) as cat:  # the migration adds the table, empty
        assert cat.key_fingerprint() is None


def test_stage_runs_summary_leaves_out_the_json_but_keeps_upstream(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        cat.ensure_patient("BM-AAAA0001")
        common = {"started_at": "t", "duration_s": 1.5, "params": {"a": 1}, "tools": {"x": "1"}}
        cat.finish_stage_run("BM-AAAA0001", "deid", status="done", fingerprint="f1",
                             inputs={"upstream": "f0", "files": [1, 2]}, metrics={"n": 3},
                             **common)  # fmt: skip
        cat.finish_stage_run("*", "report", status="failed", fingerprint=None, error="boom",
                             inputs={"upstream": {"previous": None, "patients": {"p": 1}}},
                             **common)  # fmt: skip
        cat.finish_stage_run("BM-AAAA0001", "classify", status="done", fingerprint="f2",
                             **common)  # fmt: skip
        full, light = cat.stage_runs(), cat.stage_runs(summary=True)
    assert len(full) == len(light) == 3
    for f, s in zip(full, light, strict=True):
        assert (f.patient_id, f.stage, f.status, f.fingerprint, f.error, f.duration_s,
                f.attempts, f.run_id) == (s.patient_id, s.stage, s.status, s.fingerprint,
                                          s.error, s.duration_s, s.attempts, s.run_id)  # fmt: skip
        assert s.params == s.tools == s.metrics == {}
        assert s.inputs == ({"upstream": f.inputs["upstream"]} if "upstream" in f.inputs else {})
    assert {s.stage: s.inputs.get("upstream") for s in light}["report"] == {
        "previous": None,
        "patients": {"p": 1},
    }
