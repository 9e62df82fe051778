"""Catalog schema migrations and their refusals."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from brainmets.catalog import (
    LATEST_VERSION,
    MIGRATIONS,
    Catalog,
    CatalogError,
    SchemaTooNew,
    utcnow,
)


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_new_catalog_is_at_latest_version(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat:
        assert cat.version() == LATEST_VERSION
        tables = {r["name"] for r in cat.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"patients", "studies", "series", "instances", "source_files"} <= tables
    assert {"runs", "stage_runs", "stage_outputs", "schema_migrations"} <= tables


def test_upgrade_from_first_version_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalog.open(path, create=True, target_version=1) as cat:
        assert cat.version() == 1
        with cat.transaction():
            cat.ensure_patient("BM-AAAA0000")
        tables = {r["name"] for r in cat.query("SELECT name FROM sqlite_master")}
        assert "stage_runs" not in tables
    with Catalog.open(path) as cat:  # a writing open migrates
        assert cat.version() == LATEST_VERSION
        assert cat.patient_ids() == ["BM-AAAA0000"]
        versions = [r["version"] for r in cat.query("SELECT version FROM schema_migrations")]
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
        rows = cat.query("SELECT * FROM stage_runs")
        assert len(rows) == 1
        assert rows[0]["attempts"] == 3
        assert cat.stage_outputs("P1", "make") == {"data": ("a/b", "0" * 64, 3)}


def test_upsert_rejects_unknown_tables(tmp_path: Path) -> None:
    with Catalog.open(tmp_path / "c.sqlite", create=True) as cat, pytest.raises(CatalogError):
        cat.upsert("stage_runs", {"patient_id": "x"})
