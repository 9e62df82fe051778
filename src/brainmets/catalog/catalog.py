"""SQLite catalog access (see :mod:`brainmets.catalog`)."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import re
import socket
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from brainmets.catalog.migrations import LATEST_VERSION, MIGRATIONS, Migration

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

#: patient_id used for stages that run once for the whole cohort
COHORT = "*"

# table -> primary-key columns, for the generic upsert used by stage records
#: the tables of a patient snapshot -> the column that names the patient (None: every row)
_SNAPSHOT_TABLES: dict[str, str | None] = {
    "schema_migrations": None,
    "key_fingerprint": None,
    "patients": "id",
    "studies": "patient_id",
    "series": "patient_id",
    "instances": "patient_id",
    "source_files": "patient_id",
    "stage_runs": "patient_id",
    "stage_outputs": "patient_id",
    "annotation_versions": "patient_id",
    "review_decisions": "patient_id",
}
_TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "patients": ("id",),
    "studies": ("uid",),
    "series": ("uid",),
    "instances": ("sop_uid",),
    "source_files": ("path",),
    "exports": ("target",),
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
    run_id: int | None = None  # the command (``runs`` row) that recorded it last

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
            run_id=row["run_id"],
        )


@dataclass(frozen=True)
class PatientRow:
    """A patient of the catalog: ``status`` is active or excluded (with the reason)."""

    id: str
    status: str
    excluded_reason: str | None = None


@dataclass(frozen=True)
class SourceFile:
    """What became of one input file (``path`` is absolute; see the ``source_files`` table).

    ``status`` is one of pending, deidentified, received, quarantined, rejected, duplicate or
    vanished; ``patient_id`` and ``sop_uid`` are pseudonymous.
    """

    path: str
    size: int
    mtime_ns: int
    status: str
    reason: str | None = None
    patient_id: str | None = None
    sop_uid: str | None = None
    seen_at: str = ""

    def record(self) -> dict[str, Any]:
        """The row of the ``source_files`` table."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class PatientCounts:
    """How many studies, series and de-identified instances the catalog records for one
    patient (:meth:`Catalog.patient_counts`)."""

    patient_id: str
    studies: int = 0
    series: int = 0
    instances: int = 0


@dataclass(frozen=True)
class StudyRow:
    """A de-identified study (dates shifted, accession pseudonymous)."""

    uid: str
    patient_id: str
    study_date: str | None = None
    study_time: str | None = None
    description: str | None = None
    accession: str | None = None


@dataclass(frozen=True)
class SeriesRow:
    """A de-identified series as de-identification recorded it."""

    uid: str
    study_uid: str
    patient_id: str
    modality: str | None = None
    sop_class_uid: str | None = None
    series_number: int | None = None
    description: str | None = None
    n_instances: int = 0


@dataclass(frozen=True)
class InstanceRow:
    """A de-identified instance written to the workspace (``path`` relative to its root)."""

    sop_uid: str
    series_uid: str
    patient_id: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class IndexedSeries:
    """A series' indexed header and classification, as the classify stage recorded them.

    Attributes:
        uid, study_uid, patient_id: the (de-identified) series, its study and patient.
        header: the indexed header fields (classify's ``SeriesHeader.to_json()``).
        classification: the automatic classification (``Classification.to_json()``).
        selected_as: the sequence class (t1, t1c, t2, flair) the series was chosen for.
        selection_why: why it was chosen.

    Stored as the ``header_json`` text of the ``series`` table; only this class reads
    and writes that text.
    """

    uid: str
    study_uid: str
    patient_id: str
    header: dict[str, Any] = field(default_factory=dict)
    classification: dict[str, Any] = field(default_factory=dict)
    selected_as: str | None = None
    selection_why: str | None = None

    @classmethod
    def from_json(
        cls, uid: str, study_uid: str, patient_id: str, text: str | None
    ) -> IndexedSeries | None:
        """Read the stored index; None when there is none or it is not an index."""
        try:
            doc = json.loads(text) if text else None
        except (TypeError, ValueError):
            return None
        if not isinstance(doc, dict):
            return None
        sel, why = doc.get("selected_as"), doc.get("selection_why")
        return cls(
            uid=uid,
            study_uid=study_uid,
            patient_id=patient_id,
            header=dict(doc.get("header") or {}),
            classification=dict(doc.get("classification") or {}),
            selected_as=str(sel) if sel else None,
            selection_why=None if why is None else str(why),
        )

    def record(self) -> dict[str, Any]:
        """The row of the ``series`` table that stores this index (a stage record)."""
        return {
            "uid": self.uid,
            "study_uid": self.study_uid,
            "patient_id": self.patient_id,
            "header_json": json.dumps(
                {
                    "header": self.header,
                    "classification": self.classification,
                    "selected_as": self.selected_as,
                    "selection_why": self.selection_why,
                },
                sort_keys=True,
            ),
        }


@dataclass(frozen=True)
class OutputFile:
    """One recorded output of a (patient, stage) run (``path`` relative to the workspace)."""

    patient_id: str
    stage: str
    role: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class UserRecord:
    """A user of the review app (the ``users`` table); ``password_hash`` is argon2id."""

    name: str
    role: str
    password_hash: str
    created_at: str
    disabled_at: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> UserRecord:
        return cls(
            row["name"], row["role"], row["password_hash"], row["created_at"], row["disabled_at"]
        )


@dataclass(frozen=True)
class AnnotationVersion:
    """One saved version of a patient's per-lesion masks (``annotation_versions``)."""

    id: int
    patient_id: str
    version: int
    parent: int | None
    user_name: str
    tool: str
    created_at: str
    folder: str
    files: dict[str, str]
    lesions: int
    note: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AnnotationVersion:
        return cls(
            id=int(row["id"]),
            patient_id=row["patient_id"],
            version=int(row["version"]),
            parent=None if row["parent"] is None else int(row["parent"]),
            user_name=row["user_name"],
            tool=row["tool"],
            created_at=row["created_at"],
            folder=row["folder"],
            files=dict(json.loads(row["files_json"])),
            lesions=int(row["lesions"]),
            note=row["note"],
        )


@dataclass(frozen=True)
class ReviewDecision:
    """One review decision (the append-only ``review_decisions`` table)."""

    id: int
    patient_id: str
    user_name: str
    role: str
    decided_at: str
    decision: str
    reason: str | None = None
    lesion: str | None = None
    voxel: tuple[int, int, int] | None = None
    label_map_sha256: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ReviewDecision:
        voxel = json.loads(row["voxel_json"]) if row["voxel_json"] else None
        return cls(
            id=int(row["id"]),
            patient_id=row["patient_id"],
            user_name=row["user_name"],
            role=row["role"],
            decided_at=row["decided_at"],
            decision=row["decision"],
            reason=row["reason"],
            lesion=row["lesion"],
            voxel=None if voxel is None else (int(voxel[0]), int(voxel[1]), int(voxel[2])),
            label_map_sha256=row["label_map_sha256"],
        )


@dataclass(frozen=True)
class ExportRecord:
    """What an export stage wrote to one folder (the ``exports`` table).

    ``target`` is the folder, relative to the workspace root when it lies inside it;
    ``stage_runs`` maps (patient, stage) -> (status, fingerprint) of every other stage run
    recorded when the export was made (what it was made from).
    """

    target: str
    stage: str
    layout: str
    exported_at: str
    run_id: int | None
    patients: int
    manifest_sha256: str | None
    stage_runs: dict[tuple[str, str], tuple[str, str | None]]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ExportRecord:
        runs: dict[tuple[str, str], tuple[str, str | None]] = {}
        for patient, stage, status, fp in json.loads(row["stage_runs_json"] or "[]"):
            runs[(str(patient), str(stage))] = (str(status), None if fp is None else str(fp))
        return cls(
            target=row["target"],
            stage=row["stage"],
            layout=row["layout"],
            exported_at=row["exported_at"],
            run_id=row["run_id"],
            patients=int(row["patients"] or 0),
            manifest_sha256=row["manifest_sha256"],
            stage_runs=runs,
        )


@dataclass(frozen=True)
class CommandRun:
    """One command that ran the pipeline (the ``runs`` table)."""

    id: int
    command: str
    started_at: str
    status: str
    ended_at: str | None = None
    host: str | None = None
    pid: int | None = None
    version: str | None = None


class Catalog:
    """A connection to a workspace catalog.

    Open with :meth:`open`; by default the schema is brought up to date, which a read-only
    open never does (it refuses an out-of-date catalog instead).
    """

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self._conn = conn
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

    # ---------------------------------------------------------------- snapshots
    def patient_snapshot(self, patient_id: str) -> bytes:
        """One patient's rows (and the cohort's stage runs and outputs) as a small
        in-memory SQLite database, serialised: what a stage running on another machine
        reads instead of the catalog file (SQLite's WAL, the catalog's journal, needs every
        reader on the writer's host; a shared file system does not make that so). The
        review app's users are never in it. :meth:`from_snapshot` opens it."""
        mem = sqlite3.connect(":memory:")
        try:
            names = ", ".join(f"'{t}'" for t in _SNAPSHOT_TABLES)
            for (sql,) in self._conn.execute(
                f"SELECT sql FROM sqlite_master WHERE type IN ('table', 'index') "
                f"AND tbl_name IN ({names}) AND sql IS NOT NULL ORDER BY type DESC"
            ):
                mem.execute(sql)
            for table, column in _SNAPSHOT_TABLES.items():
                if column is None:
                    cur = self._conn.execute(f"SELECT * FROM {table}")
                else:
                    cur = self._conn.execute(
                        f"SELECT * FROM {table} WHERE {column} IN (?, ?)", (patient_id, COHORT)
                    )
                rows = [tuple(r) for r in cur]
                if rows:
                    marks = ", ".join("?" for _ in rows[0])
                    mem.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            mem.commit()
            return mem.serialize()
        finally:
            mem.close()

    @classmethod
    def from_snapshot(cls, data: bytes, path: str | os.PathLike[str]) -> Catalog:
        """A read-only catalog over a :meth:`patient_snapshot` (``path``: the catalog it was
        taken from, for messages)."""
        conn = sqlite3.connect(":memory:")
        conn.deserialize(data)
        conn.row_factory = sqlite3.Row
        return cls(Path(path), conn, readonly=True)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- migrations
    def version(self) -> int:
        has = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
        ).fetchone()
        if not has:
            return 0
        row = self._conn.execute("SELECT MAX(version) AS v FROM schema_migrations").fetchone()
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
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
                    " applied_at TEXT NOT NULL)"
                )
                done = self._conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)
                ).fetchone()
                if done:
                    continue
                for stmt in _split_sql(m.sql):
                    self._conn.execute(stmt)
                self._conn.execute(
                    "INSERT INTO schema_migrations(version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (m.version, m.description, utcnow()),
                )
            applied.append(m.version)
        return applied

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the writes inside the ``with`` block into one (immediate) transaction."""
        if self.readonly:
            raise CatalogError(f"{self.path}: opened read-only")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    # ----------------------------------------------------------- generic access
    # Private: every statement lives behind a named method of this class.
    def _query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
        return list(self._conn.execute(sql, params))

    def _upsert(self, table: str, row: Mapping[str, Any]) -> None:
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
        self._conn.execute(sql, [_sql_value(row[c]) for c in cols])

    def apply_records(self, records: Mapping[str, Iterable[Mapping[str, Any]]]) -> int:
        """Upsert the rows a stage returned, parents first (patients, studies, series...)."""
        n = 0
        order = list(_TABLE_KEYS)
        for table in sorted(records, key=lambda t: order.index(t) if t in order else 99):
            for row in records[table]:
                self._upsert(table, row)
                n += 1
        return n

    # --------------------------------------------------------------- the key
    def key_fingerprint(self) -> str | None:
        """The recorded fingerprint of the workspace key (None: none recorded yet)."""
        rows = self._query("SELECT fingerprint FROM key_fingerprint WHERE id = 1")
        return str(rows[0]["fingerprint"]) if rows else None

    def record_key_fingerprint(self, fingerprint: str, recorded_by: str) -> str:
        """Record the key's fingerprint unless one is recorded already; return the one
        recorded (which differs from ``fingerprint`` when another key was recorded first)."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO key_fingerprint(id, fingerprint, recorded_at, recorded_by) "
                "VALUES (1, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
                (fingerprint, utcnow(), recorded_by),
            )
        return self.key_fingerprint() or fingerprint

    # ------------------------------------------------------------------- exports
    def exports(self) -> list[ExportRecord]:
        """Every recorded export folder, most recent first."""
        return [
            ExportRecord.from_row(r)
            for r in self._query("SELECT * FROM exports ORDER BY exported_at DESC, target")
        ]

    def export_record(self, target: str) -> ExportRecord | None:
        """The recorded export of the folder ``target`` (as the exports table keys it)."""
        rows = self._query("SELECT * FROM exports WHERE target = ?", (target,))
        return ExportRecord.from_row(rows[0]) if rows else None

    # -------------------------------------------------------------------- review
    def add_user(self, name: str, role: str, password_hash: str) -> None:
        """Add a user (:mod:`brainmets.review.users` checks the name, role and password)."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO users(name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                (name, role, password_hash, utcnow()),
            )

    def set_user(
        self,
        name: str,
        *,
        role: str | None = None,
        password_hash: str | None = None,
        disabled: bool | None = None,
    ) -> None:
        """Change a user's role, password hash or disabled state."""
        with self.transaction():
            if role is not None:
                self._conn.execute("UPDATE users SET role = ? WHERE name = ?", (role, name))
            if password_hash is not None:
                self._conn.execute(
                    "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
                )
            if disabled is not None:
                self._conn.execute(
                    "UPDATE users SET disabled_at = ? WHERE name = ?",
                    (utcnow() if disabled else None, name),
                )

    def user(self, name: str) -> UserRecord | None:
        rows = self._query("SELECT * FROM users WHERE name = ?", (name,))
        return UserRecord.from_row(rows[0]) if rows else None

    def users(self) -> list[UserRecord]:
        return [UserRecord.from_row(r) for r in self._query("SELECT * FROM users ORDER BY name")]

    def add_review_decision(
        self,
        patient_id: str,
        user_name: str,
        role: str,
        decision: str,
        reason: str | None = None,
        lesion: str | None = None,
        voxel: tuple[int, int, int] | None = None,
        label_map_sha256: str | None = None,
    ) -> ReviewDecision:
        """Append one decision to the audit trail (never changed or deleted afterwards)."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO review_decisions(patient_id, user_name, role, decided_at, decision,"
                " reason, lesion, voxel_json, label_map_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    patient_id,
                    user_name,
                    role,
                    utcnow(),
                    decision,
                    reason,
                    lesion,
                    None if voxel is None else json.dumps([int(v) for v in voxel]),
                    label_map_sha256,
                ),
            )
            row_id = cur.lastrowid
        rows = self._query("SELECT * FROM review_decisions WHERE id = ?", (row_id,))
        return ReviewDecision.from_row(rows[0])

    # ---------------------------------------------------------------- annotation
    def add_annotation_version(
        self,
        patient_id: str,
        user_name: str,
        tool: str,
        folder_for: Callable[[int], str],
        files: Mapping[str, str],
        lesions: int,
        parent: int | None = None,
        note: str | None = None,
    ) -> AnnotationVersion:
        """Append the next version of a patient's masks (numbered in the same transaction,
        so two annotators saving at once get two versions); ``folder_for(version)`` names
        its folder."""
        with self.transaction():
            row = self._conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM annotation_versions WHERE patient_id = ?",
                (patient_id,),
            ).fetchone()
            version = int(row[0]) + 1
            cur = self._conn.execute(
                "INSERT INTO annotation_versions(patient_id, version, parent, user_name, tool,"
                " created_at, folder, files_json, lesions, note)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    patient_id,
                    version,
                    parent,
                    user_name,
                    tool,
                    utcnow(),
                    folder_for(version),
                    json.dumps(dict(sorted(files.items()))),
                    int(lesions),
                    note,
                ),
            )
            row_id = cur.lastrowid
        rows = self._query("SELECT * FROM annotation_versions WHERE id = ?", (row_id,))
        return AnnotationVersion.from_row(rows[0])

    def annotation_versions(self, patient_id: str | None = None) -> list[AnnotationVersion]:
        """Saved mask versions, oldest first (of one patient, or of all)."""
        if patient_id is None:
            rows = self._query("SELECT * FROM annotation_versions ORDER BY id")
        else:
            rows = self._query(
                "SELECT * FROM annotation_versions WHERE patient_id = ? ORDER BY version",
                (patient_id,),
            )
        return [AnnotationVersion.from_row(r) for r in rows]

    def review_decisions(self, patient_id: str | None = None) -> list[ReviewDecision]:
        """The audit trail, oldest first (one patient's when ``patient_id`` is given)."""
        if patient_id is None:
            rows = self._query("SELECT * FROM review_decisions ORDER BY id")
        else:
            rows = self._query(
                "SELECT * FROM review_decisions WHERE patient_id = ? ORDER BY id", (patient_id,)
            )
        return [ReviewDecision.from_row(r) for r in rows]

    # ------------------------------------------------------------------ patients
    def ensure_patient(self, patient_id: str) -> None:
        self._conn.execute(
            "INSERT INTO patients(id, created_at) VALUES (?, ?) ON CONFLICT(id) DO NOTHING",
            (patient_id, utcnow()),
        )

    def patient_ids(self) -> list[str]:
        return [r["id"] for r in self._conn.execute("SELECT id FROM patients ORDER BY id")]

    def patients(self) -> list[PatientRow]:
        """Every patient, by ID."""
        return [
            _from_row(PatientRow, r)
            for r in self._query("SELECT id, status, excluded_reason FROM patients ORDER BY id")
        ]

    def patient(self, patient_id: str) -> PatientRow | None:
        """One patient, or None when the catalog has no such patient."""
        rows = self._query(
            "SELECT id, status, excluded_reason FROM patients WHERE id = ?", (patient_id,)
        )
        return _from_row(PatientRow, rows[0]) if rows else None

    def set_patient_status(self, patient_id: str, status: str, reason: str | None = None) -> None:
        self._conn.execute(
            "UPDATE patients SET status = ?, excluded_reason = ? WHERE id = ?",
            (status, reason, patient_id),
        )

    # -------------------------------------------------------------- input files
    def source_files(
        self, *, patient_id: str | None = None, statuses: Iterable[str] | None = None
    ) -> list[SourceFile]:
        """The accounting of input files, by path; optionally of one patient and/or only
        those whose status is one of ``statuses``."""
        where, params = _where(patient_id=patient_id)
        table = "source_files"
        if statuses is not None:
            wanted = list(statuses)
            where.append(f"status IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
            if patient_id is None:  # e.g. the few rejected among millions: by the index
                table += " INDEXED BY source_files_status"
        return [
            _from_row(SourceFile, r)
            for r in self._query(f"SELECT * FROM {table}" + _and(where) + " ORDER BY path", params)
        ]

    def source_file_stats(
        self, patient_id: str, statuses: Iterable[str]
    ) -> list[tuple[str, int, int]]:
        """``(path, size, mtime_ns)`` of a patient's input files with one of ``statuses``, by
        path: what the deid stage's fingerprint is made of, without building a record per
        file (5x faster: a re-run with nothing to do reads this for every patient)."""
        wanted = list(statuses)
        marks = ", ".join("?" for _ in wanted)
        return [
            (str(r[0]), int(r[1]), int(r[2]))
            for r in self._conn.execute(
                "SELECT path, size, mtime_ns FROM source_files WHERE patient_id = ? AND "
                f"status IN ({marks}) ORDER BY path",
                (patient_id, *wanted),
            )
        ]

    def source_files_under(self, folders: Iterable[str | os.PathLike[str]]) -> list[SourceFile]:
        """The recorded input files inside ``folders`` (or equal to one, for a source that
        is a file), by path: a range query on the path index, so the cost is that of the
        files there, not of the whole catalog."""
        rows: dict[str, SourceFile] = {}
        for folder in folders:
            base = os.fspath(folder).rstrip("/") or "/"
            prefix = base if base.endswith("/") else base + "/"
            upper = prefix[:-1] + chr(ord("/") + 1)  # every path starting with prefix sorts below
            for sql, params in (
                ("SELECT * FROM source_files WHERE path >= ? AND path < ?", (prefix, upper)),
                ("SELECT * FROM source_files WHERE path = ?", (base,)),
            ):
                for r in self._query(sql, params):
                    f = _from_row(SourceFile, r)
                    rows[f.path] = f
        return [rows[k] for k in sorted(rows)]

    def source_file_counts(self) -> dict[str, int]:
        """How many input files have each status (status -> count, by status): read from
        the counts that triggers keep (``source_file_counts``), not by counting the rows,
        which at 10,000 patients are tens of millions."""
        return {
            r["status"]: int(r["n"])
            for r in self._query(
                "SELECT status, n FROM source_file_counts WHERE n > 0 ORDER BY status"
            )
        }

    def source_file_reasons(
        self, statuses: Iterable[str] | None = None
    ) -> list[tuple[str, str | None, int]]:
        """``(status, reason, files)`` of the input files, grouped by status and reason
        (optionally only the given statuses), by status then reason."""
        where: list[str] = []
        params: list[Any] = []
        if statuses is not None:
            wanted = list(statuses)
            where.append(f"status IN ({', '.join('?' for _ in wanted)})")
            params.extend(wanted)
        return [
            (str(r["status"]), r["reason"], int(r["n"]))
            for r in self._query(
                "SELECT status, reason, COUNT(*) AS n FROM source_files"
                + _and(where)
                + " GROUP BY status, reason ORDER BY status, reason",
                params,
            )
        ]

    def record_source_file(self, file: SourceFile) -> None:
        """Record (insert or update by path) one input file, and its patient if it has
        one, in one transaction."""
        with self.transaction():
            if file.patient_id:
                self.ensure_patient(file.patient_id)
            self._upsert("source_files", file.record())

    # ------------------------------------------------- studies, series, instances
    def studies(self, patient_id: str | None = None) -> list[StudyRow]:
        """Studies (of one patient), by date, time and UID."""
        where, params = _where(patient_id=patient_id)
        return [
            _from_row(StudyRow, r)
            for r in self._query(
                "SELECT * FROM studies" + _and(where) + " ORDER BY study_date, study_time, uid",
                params,
            )
        ]

    def series(self, patient_id: str | None = None) -> list[SeriesRow]:
        """Series (of one patient), by study, series number and UID."""
        where, params = _where(patient_id=patient_id)
        return [
            _from_row(SeriesRow, r)
            for r in self._query(
                "SELECT * FROM series" + _and(where) + " ORDER BY study_uid, series_number, uid",
                params,
            )
        ]

    def patient_counts(self) -> dict[str, PatientCounts]:
        """Per patient (by ID): how many studies, series and instances are recorded (a
        patient with none of them is absent)."""
        counts: dict[str, dict[str, int]] = {}
        for table, name in (
            ("studies", "studies"),
            ("series", "series"),
            ("instances", "instances"),
        ):
            for r in self._query(
                f"SELECT patient_id, COUNT(*) AS n FROM {table} GROUP BY patient_id"
            ):
                counts.setdefault(str(r["patient_id"]), {})[name] = int(r["n"])
        return {pid: PatientCounts(pid, **c) for pid, c in sorted(counts.items())}

    def has_series(self, uid: str) -> bool:
        """Whether a series with this (de-identified) SeriesInstanceUID is recorded."""
        return bool(self._query("SELECT 1 FROM series WHERE uid = ?", (uid,)))

    def instances(self, patient_id: str | None = None) -> list[InstanceRow]:
        """Instances written to the workspace (of one patient), by path."""
        where, params = _where(patient_id=patient_id)
        return [
            _from_row(InstanceRow, r)
            for r in self._query("SELECT * FROM instances" + _and(where) + " ORDER BY path", params)
        ]

    def indexed_series(self, patient_id: str | None = None) -> list[IndexedSeries]:
        """The series that carry an indexed header (written by the classify stage), by
        patient, study and UID. A stored index that cannot be read is skipped."""
        where, params = _where(patient_id=patient_id)
        where.append("header_json IS NOT NULL")
        out = []
        for r in self._query(
            "SELECT uid, study_uid, patient_id, header_json FROM series"
            + _and(where)
            + " ORDER BY patient_id, study_uid, uid",
            params,
        ):
            s = IndexedSeries.from_json(r["uid"], r["study_uid"], r["patient_id"], r["header_json"])
            if s is not None:
                out.append(s)
        return out

    def selected_series(self, patient_id: str | None = None) -> list[IndexedSeries]:
        """The indexed series chosen for one of the sequence classes (``selected_as``)."""
        return [s for s in self.indexed_series(patient_id) if s.selected_as]

    # -------------------------------------------------------------------- runs
    def start_run(self, command: str, version: str) -> int:
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO runs(command, started_at, status, host, pid, version) "
                "VALUES (?, ?, 'running', ?, ?, ?)",
                (command, utcnow(), socket.gethostname(), os.getpid(), version),
            )
        return int(cur.lastrowid or 0)

    def runs(self) -> list[CommandRun]:
        """The history of commands that ran the pipeline, oldest first."""
        return [_from_row(CommandRun, r) for r in self._query("SELECT * FROM runs ORDER BY id")]

    def end_run(self, run_id: int, status: str) -> None:
        with self.transaction():
            self._conn.execute(
                "UPDATE runs SET ended_at = ?, status = ? WHERE id = ?", (utcnow(), status, run_id)
            )

    def recover_interrupted(self) -> int:
        """Mark runs and stage runs left 'running' by a killed process as interrupted.

        Only call while holding the workspace lock: then nothing else can be running.
        """
        with self.transaction():
            self._conn.execute(
                "UPDATE runs SET status = 'interrupted', ended_at = COALESCE(ended_at, ?) "
                "WHERE status = 'running'",
                (utcnow(),),
            )
            cur = self._conn.execute(
                "UPDATE stage_runs SET status = 'interrupted', "
                "error = 'interrupted (process ended during the stage)' WHERE status = 'running'"
            )
        return cur.rowcount

    # -------------------------------------------------------------- stage runs
    def stage_run(self, patient_id: str, stage: str) -> StageRun | None:
        row = self._conn.execute(
            "SELECT * FROM stage_runs WHERE patient_id = ? AND stage = ?", (patient_id, stage)
        ).fetchone()
        return StageRun.from_row(row) if row else None

    def stage_runs(self, *, summary: bool = False) -> list[StageRun]:
        """Every (patient, stage) row. ``summary``: without the JSON columns (``params``,
        ``tools``, ``metrics`` empty; ``inputs`` only its ``upstream`` fingerprint), which
        ``brainmets status`` does not show: decoding four JSON documents per row was most
        of its time at 10,000 patients."""
        if not summary:
            return [
                StageRun.from_row(r)
                for r in self._conn.execute("SELECT * FROM stage_runs ORDER BY patient_id, stage")
            ]
        # the columns from_row reads; the JSON ones empty but inputs' upstream fingerprint
        return [
            StageRun.from_row(r)
            for r in self._conn.execute(
                "SELECT patient_id, stage, status, fingerprint, started_at, ended_at, duration_s,"
                " error, attempts, run_id, NULL AS params_json, NULL AS tools_json,"
                " NULL AS metrics_json, CASE WHEN json_type(inputs_json, '$.upstream') IS NULL"
                " THEN NULL ELSE json_object('upstream', inputs_json -> '$.upstream') END"
                " AS inputs_json FROM stage_runs ORDER BY patient_id, stage"
            )
        ]

    def mark_stage_running(
        self, patient_id: str, stage: str, fingerprint: str, run_id: int | None
    ) -> None:
        with self.transaction():
            self._conn.execute(
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
            self._conn.execute(
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
                self._conn.execute(
                    "DELETE FROM stage_outputs WHERE patient_id = ? AND stage = ?",
                    (patient_id, stage),
                )
                self._conn.executemany(
                    "INSERT INTO stage_outputs(patient_id, stage, role, path, sha256, size)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(patient_id, stage, role, p, h, s) for role, (p, h, s) in outputs.items()],
                )

    def stage_outputs(self, patient_id: str, stage: str) -> dict[str, tuple[str, str, int]]:
        rows = self._conn.execute(
            "SELECT role, path, sha256, size FROM stage_outputs WHERE patient_id = ? AND stage = ?"
            " ORDER BY role",
            (patient_id, stage),
        )
        return {r["role"]: (r["path"], r["sha256"], int(r["size"])) for r in rows}

    def output_files(
        self,
        *,
        stage: str | None = None,
        role: str | None = None,
        status: str | None = None,
        cohort: bool = True,
    ) -> list[OutputFile]:
        """Recorded stage outputs, by patient, stage and role.

        Args:
            stage, role: only outputs of this stage / with this role.
            status: only outputs of (patient, stage) runs whose status is this (e.g. "done").
            cohort: include the outputs of cohort-wide stages (patient :data:`COHORT`).
        """
        where, params = _where(**{"o.stage": stage, "o.role": role, "r.status": status})
        if not cohort:
            where.append("o.patient_id != ?")
            params.append(COHORT)
        return [
            _from_row(OutputFile, r)
            for r in self._query(
                "SELECT o.* FROM stage_outputs o"
                + (
                    " JOIN stage_runs r ON r.patient_id = o.patient_id AND r.stage = o.stage"
                    if status is not None
                    else ""
                )
                + _and(where)
                + " ORDER BY o.patient_id, o.stage, o.role",
                params,
            )
        ]


_R = TypeVar("_R", bound="DataclassInstance")


def _from_row(cls: type[_R], row: sqlite3.Row) -> _R:
    """A record dataclass from the columns of ``row`` that it has fields for."""
    names = [f.name for f in dataclasses.fields(cls)]
    present = set(row.keys())  # (``in row`` would test the values)
    return cls(**{n: row[n] for n in names if n in present})


def _where(**equal: Any) -> tuple[list[str], list[Any]]:
    """``column = ?`` conditions (and their parameters) for the arguments that are set."""
    cols = [c for c, v in equal.items() if v is not None]
    return [f"{c} = ?" for c in cols], [equal[c] for c in cols]


def _and(conditions: Sequence[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _dumps(v: Mapping[str, Any] | None) -> str | None:
    return None if v is None else json.dumps(v, sort_keys=True, default=str)


def _sql_value(v: Any) -> Any:
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, Path):
        return str(v)
    return v


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our literals; a
    trigger's ``BEGIN ... END`` body is kept whole)."""
    text = "\n".join(ln.split("--", 1)[0] for ln in script.splitlines())
    out: list[str] = []
    buf = ""
    for part in text.split(";"):
        buf = f"{buf};{part}" if buf else part
        open_body = re.search(r"\bBEGIN\b", buf, re.I) and not re.search(r"\bEND\s*$", buf, re.I)
        if open_body:
            continue
        if buf.strip():
            out.append(buf.strip())
        buf = ""
    return out
