"""SQLite catalog access (see :mod:`brainmets.catalog`)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainmets.catalog.migrations import LATEST_VERSION, MIGRATIONS, Migration

#: patient_id used for stages that run once for the whole cohort
COHORT = "*"

# table -> primary-key columns, for the generic upsert used by stage records
_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "patients": ("id",),
    "studies": ("uid",),
    "series": ("uid",),
    "instances": ("sop_uid",),
    "source_files": ("path",),
}


class CatalogError(RuntimeError):
    """The catalog cannot be opened or used."""


class SchemaTooNew(CatalogError):
    """The catalog was written by a newer brainmets; it is left untouched."""


def utcnow() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class StageRun:
    """The recorded state of one (patient, stage)."""

    patient_id: str
    stage: str
    status: str
    fingerprint: str | None
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    error: str | None
    params: dict[str, Any]
    tools: dict[str, str]
    inputs: dict[str, Any]
    metrics: dict[str, Any]
    attempts: int

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StageRun:
        def js(v: str | None) -> Any:
            return json.loads(v) if v else {}

        return cls(
            patient_id=row["patient_id"],
            stage=row["stage"],
            status=row["status"],
            fingerprint=row["fingerprint"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            duration_s=row["duration_s"],
            error=row["error"],
            params=js(row["params_json"]),
            tools=js(row["tools_json"]),
            inputs=js(row["inputs_json"]),
            metrics=js(row["metrics_json"]),
            attempts=row["attempts"],
        )


class Catalog:
    """A connection to a workspace catalog.

    Open with :meth:`open`; by default the schema is brought up to date, which a read-only
    open never does (it refuses an out-of-date catalog instead).
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self.conn = conn
        self.readonly = readonly

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        create: bool = False,
        migrate: bool = True,
        target_version: int | None = None,
        any_thread: bool = False,
    ) -> Catalog:
        """Open (and by default migrate) a catalog.

        ``any_thread`` allows using the connection from threads other than the opening one;
        the caller must then serialise access (e.g. with a lock).
        """
        path = Path(path)
        if not path.exists() and not create:
            raise CatalogError(f"{path}: no catalog (is this a brainmets workspace?)")
        try:
            if readonly:
                conn = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=not any_thread
                )
            else:
                conn = sqlite3.connect(
                    path, timeout=30, isolation_level=None, check_same_thread=not any_thread
                )
        except sqlite3.Error as exc:
            raise CatalogError(f"{path}: cannot open catalog: {exc}") from exc
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 30000")
        cat = cls(path, conn, readonly)
        try:
            version = cat.version()
            if version > LATEST_VERSION:
                raise SchemaTooNew(
                    f"{path}: catalog schema version {version} is newer than this brainmets "
                    f"supports ({LATEST_VERSION}); upgrade brainmets. Nothing was modified."
                )
            if not readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                if migrate:
                    cat.migrate(target_version)
            elif version < LATEST_VERSION:
                raise CatalogError(
                    f"{path}: catalog schema version {version} is older than {LATEST_VERSION}; "
                    "run any writing brainmets command (e.g. `brainmets run`) first"
                )
        except BaseException:
            conn.close()
            raise
        return cat

    @staticmethod
    def check_version(path: str | os.PathLike[str]) -> int:
        """The schema version of the catalog at ``path``, read without modifying anything.

        Raises :class:`SchemaTooNew` when it is newer than this code supports.
        """
        try:
            conn = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, timeout=30)
        except sqlite3.Error as exc:
            raise CatalogError(f"{path}: cannot open catalog: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            version = Catalog(Path(path), conn, True).version()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"{path}: not a brainmets catalog ({exc})") from exc
        finally:
            conn.close()
        if version > LATEST_VERSION:
            raise SchemaTooNew(
                f"{path}: catalog schema version {version} is newer than this brainmets "
                f"supports ({LATEST_VERSION}); upgrade brainmets. Nothing was modified."
            )
        return version

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- migrations
    def version(self) -> int:
        has = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
        ).fetchone()
        if not has:
            return 0
        row = self.conn.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()
        return int(row["v"] or 0)

    def migrate(
        self, target: int | None = None, migrations: Sequence[Migration] = MIGRATIONS
    ) -> list[int]:
        """Apply pending migrations up to ``target`` (default: latest); return those applied."""
        target = LATEST_VERSION if target is None else target
        applied: list[int] = []
        for m in migrations:
            if m.version > target:
                break
            with self.transaction():
                self.conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                    " applied_at TEXT NOT NULL)"
                )
                done = self.conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)
                ).fetchone()
                if done:
                    continue
                for stmt in _split_sql(m.sql):
                    self.conn.execute(stmt)
                self.conn.execute(
                    "INSERT INTO schema_migrations(version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (m.version, m.description, utcnow()),
                )
            applied.append(m.version)
        return applied

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise CatalogError(f"{self.path}: opened read-only")
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    # ----------------------------------------------------------- generic access
    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self.conn.execute(sql, params))

    def upsert(self, table: str, row: Mapping[str, Any]) -> None:
        """Insert or update one row of a catalog table by its primary key."""
        keys = _TABLE_KEYS.get(table)
        if keys is None:
            raise CatalogError(f"stage records may not write table {table!r}")
        cols = list(row)
        missing = [k for k in keys if k not in row]
        if missing:
            raise CatalogError(f"{table} row lacks key column(s) {missing}")
        updates = [c for c in cols if c not in keys]
        sql = (
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
            f" ON CONFLICT({', '.join(keys)}) DO "
            + (
                f"UPDATE SET {', '.join(f'{c}=excluded.{c}' for c in updates)}"
                if updates
                else "NOTHING"
            )
        )
        self.conn.execute(sql, [_sql_value(row[c]) for c in cols])

    def apply_records(self, records: Mapping[str, Iterable[Mapping[str, Any]]]) -> int:
        """Upsert the rows a stage returned, parents first (patients, studies, series...)."""
        n = 0
        order = list(_TABLE_KEYS)
        for table in sorted(records, key=lambda t: order.index(t) if t in order else 99):
            for row in records[table]:
                self.upsert(table, row)
                n += 1
        return n

    # ------------------------------------------------------------------ patients
    def ensure_patient(self, patient_id: str) -> None:
        self.conn.execute(
            "INSERT INTO patients(id, created_at) VALUES (?, ?) ON CONFLICT(id) DO NOTHING",
            (patient_id, utcnow()),
        )

    def patient_ids(self) -> list[str]:
        return [r["id"] for r in self.conn.execute("SELECT id FROM patients ORDER BY id")]

    def set_patient_status(self, patient_id: str, status: str, reason: str | None = None) -> None:
        self.conn.execute(
            "UPDATE patients SET status = ?, excluded_reason = ? WHERE id = ?",
            (status, reason, patient_id),
        )

    # -------------------------------------------------------------------- runs
    def start_run(self, command: str, version: str) -> int:
        with self.transaction():
            cur = self.conn.execute(
                "INSERT INTO runs(command, started_at, status, host, pid, version) "
                "VALUES (?, ?, 'running', ?, ?, ?)",
                (command, utcnow(), socket.gethostname(), os.getpid(), version),
            )
        return int(cur.lastrowid or 0)

    def end_run(self, run_id: int, status: str) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET ended_at = ?, status = ? WHERE id = ?", (utcnow(), status, run_id)
            )

    def recover_interrupted(self) -> int:
        """Mark runs and stage runs left 'running' by a killed process as interrupted.

        Only call while holding the workspace lock: then nothing else can be running.
        """
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = COALESCE(ended_at, ?) "
                "WHERE status = 'running'",
                (utcnow(),),
            )
            cur = self.conn.execute(
                "UPDATE stage_runs SET status = 'interrupted', "
                "error = 'interrupted (process ended during the stage)' WHERE status = 'running'"
            )
        return cur.rowcount

    # -------------------------------------------------------------- stage runs
    def stage_run(self, patient_id: str, stage: str) -> StageRun | None:
        row = self.conn.execute(
            "SELECT * FROM stage_runs WHERE patient_id = ? AND stage = ?", (patient_id, stage)
        ).fetchone()
        return StageRun.from_row(row) if row else None

    def stage_runs(self) -> list[StageRun]:
        return [
            StageRun.from_row(r)
            for r in self.conn.execute("SELECT * FROM stage_runs ORDER BY patient_id, stage")
        ]

    def mark_stage_running(
        self, patient_id: str, stage: str, fingerprint: str, run_id: int | None
    ) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO stage_runs(patient_id, stage, status, fingerprint, started_at,"
                " ended_at, duration_s, error, run_id, attempts)"
                " VALUES (?, ?, 'running', ?, ?, NULL, NULL, NULL, ?, 1)"
                " ON CONFLICT(patient_id, stage) DO UPDATE SET status='running',"
                " fingerprint=excluded.fingerprint, started_at=excluded.started_at,"
                " ended_at=NULL, duration_s=NULL, error=NULL, run_id=excluded.run_id,"
                " attempts=stage_runs.attempts + 1",
                (patient_id, stage, fingerprint, utcnow(), run_id),
            )

    def finish_stage_run(
        self,
        patient_id: str,
        stage: str,
        *,
        status: str,
        fingerprint: str | None,
        started_at: str | None,
        duration_s: float | None,
        error: str | None = None,
        params: Mapping[str, Any] | None = None,
        tools: Mapping[str, str] | None = None,
        inputs: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        outputs: Mapping[str, tuple[str, str, int]] | None = None,
        records: Mapping[str, Iterable[Mapping[str, Any]]] | None = None,
        run_id: int | None = None,
    ) -> None:
        """Record a stage's end, its outputs and catalog rows, in one transaction.

        ``outputs`` maps role -> (relative path, sha256, size). Outputs replace those of the
        previous run of the same (patient, stage).
        """
        with self.transaction():
            if records:
                self.apply_records(records)
            self.conn.execute(
                "INSERT INTO stage_runs(patient_id, stage, status, fingerprint, started_at,"
                " ended_at, duration_s, error, params_json, tools_json, inputs_json,"
                " metrics_json, run_id, attempts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)"
                " ON CONFLICT(patient_id, stage) DO UPDATE SET status=excluded.status,"
                " fingerprint=excluded.fingerprint, started_at=excluded.started_at,"
                " ended_at=excluded.ended_at, duration_s=excluded.duration_s,"
                " error=excluded.error, params_json=excluded.params_json,"
                " tools_json=excluded.tools_json, inputs_json=excluded.inputs_json,"
                " metrics_json=excluded.metrics_json, run_id=excluded.run_id",
                (
                    patient_id,
                    stage,
                    status,
                    fingerprint,
                    started_at,
                    utcnow(),
                    duration_s,
                    error,
                    _dumps(params),
                    _dumps(tools),
                    _dumps(inputs),
                    _dumps(metrics),
                    run_id,
                ),
            )
            if outputs is not None:
                self.conn.execute(
                    "DELETE FROM stage_outputs WHERE patient_id = ? AND stage = ?",
                    (patient_id, stage),
                )
                self.conn.executemany(
                    "INSERT INTO stage_outputs(patient_id, stage, role, path, sha256, size)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(patient_id, stage, role, p, h, s) for role, (p, h, s) in outputs.items()],
                )

    def stage_outputs(self, patient_id: str, stage: str) -> dict[str, tuple[str, str, int]]:
        rows = self.conn.execute(
            "SELECT role, path, sha256, size FROM stage_outputs WHERE patient_id = ? AND stage = ?"
            " ORDER BY role",
            (patient_id, stage),
        )
        return {r["role"]: (r["path"], r["sha256"], int(r["size"])) for r in rows}


def _dumps(v: Mapping[str, Any] | None) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True, default=str)


def _sql_value(v: Any) -> Any:
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, Path):
        return str(v)
    return v


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our literals)."""
    text = "\n".join(ln.split("--", 1)[0] for ln in script.splitlines())
    return [stmt.strip() for stmt in text.split(";") if stmt.strip()]
