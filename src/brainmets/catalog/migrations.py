"""Versioned schema of the catalog.

Each migration is applied once, in order, inside one transaction together with the row
that records it in ``schema_migrations``. A catalog whose recorded version is newer than
the last migration known here is refused (see :class:`brainmets.catalog.SchemaTooNew`).
Never edit a released migration: append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "patients, studies, series, instances and the accounting of every input file",
        """
        CREATE TABLE patients (
            id              TEXT PRIMARY KEY,          -- pseudonymous ID (BM-XXXXXXXX)
            created_at      TEXT NOT NULL,
            status          TEXT NOT NULL DEFAULT 'active',   -- active | excluded
            excluded_reason TEXT
        );
        CREATE TABLE studies (
            uid             TEXT PRIMARY KEY,          -- de-identified StudyInstanceUID
            patient_id      TEXT NOT NULL REFERENCES patients(id),
            study_date      TEXT,                      -- shifted date (YYYYMMDD)
            study_time      TEXT,
            description     TEXT,
            accession       TEXT                       -- pseudonymous AccessionNumber
        );
        CREATE INDEX studies_patient ON studies(patient_id);
        CREATE TABLE series (
            uid             TEXT PRIMARY KEY,          -- de-identified SeriesInstanceUID
            study_uid       TEXT NOT NULL REFERENCES studies(uid),
            patient_id      TEXT NOT NULL REFERENCES patients(id),
            modality        TEXT,
            sop_class_uid   TEXT,
            series_number   INTEGER,
            description     TEXT,
            n_instances     INTEGER NOT NULL DEFAULT 0,
            header_json     TEXT                       -- indexed header fields (classification)
        );
        CREATE INDEX series_patient ON series(patient_id);
        CREATE TABLE instances (
            sop_uid         TEXT PRIMARY KEY,          -- de-identified SOPInstanceUID
            series_uid      TEXT NOT NULL REFERENCES series(uid),
            patient_id      TEXT NOT NULL REFERENCES patients(id),
            path            TEXT NOT NULL,             -- relative to the workspace root
            sha256          TEXT NOT NULL,
            size            INTEGER NOT NULL
        );
        CREATE INDEX instances_series ON instances(series_uid);
        CREATE TABLE source_files (
            id              INTEGER PRIMARY KEY,
            path            TEXT NOT NULL UNIQUE,      -- absolute path of the input file
            size            INTEGER NOT NULL,
            mtime_ns        INTEGER NOT NULL,
            status          TEXT NOT NULL,  -- pending|deidentified|quarantined|rejected|duplicate
            reason          TEXT,
            patient_id      TEXT,                      -- pseudonymous; NULL when rejected
            sop_uid         TEXT,                      -- de-identified SOPInstanceUID
            seen_at         TEXT NOT NULL
        );
        CREATE INDEX source_files_patient ON source_files(patient_id);
        """,
    ),
    Migration(
        2,
        "pipeline runs: one row per (patient, stage), their outputs, and command history",
        """
        CREATE TABLE runs (
            id              INTEGER PRIMARY KEY,
            command         TEXT NOT NULL,
            started_at      TEXT NOT NULL,
            ended_at        TEXT,
            status          TEXT NOT NULL,             -- running | done | failed | interrupted
            host            TEXT,
            pid             INTEGER,
            version         TEXT
        );
        CREATE TABLE stage_runs (
            patient_id      TEXT NOT NULL,             -- '*' for cohort-wide stages
            stage           TEXT NOT NULL,
            status          TEXT NOT NULL,  -- running|done|failed|excluded|interrupted|blocked
            fingerprint     TEXT,
            started_at      TEXT,
            ended_at        TEXT,
            duration_s      REAL,
            error           TEXT,
            params_json     TEXT,
            tools_json      TEXT,
            inputs_json     TEXT,                      -- upstream fingerprints + input hashes
            metrics_json    TEXT,
            run_id          INTEGER REFERENCES runs(id),
            attempts        INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (patient_id, stage)
        );
        CREATE TABLE stage_outputs (
            patient_id      TEXT NOT NULL,
            stage           TEXT NOT NULL,
            role            TEXT NOT NULL,
            path            TEXT NOT NULL,             -- relative to the workspace root
            sha256          TEXT NOT NULL,
            size            INTEGER NOT NULL,
            PRIMARY KEY (patient_id, stage, role)
        );
        """,
    ),
    Migration(
        3,
        "the fingerprint of the workspace key (to refuse another key)",
        """
        CREATE TABLE key_fingerprint (
            id              INTEGER PRIMARY KEY CHECK (id = 1),   -- one row
            fingerprint     TEXT NOT NULL,  -- brainmets.ids.key_fingerprint: one-way, not the key
            recorded_at     TEXT NOT NULL,
            recorded_by     TEXT NOT NULL   -- 'init', or the first command to use the key
        );
        """,
    ),
    Migration(
        4,
        "exports: what each export folder holds and the stage runs it was made from",
        """
        CREATE TABLE exports (
            target          TEXT PRIMARY KEY,          -- relative to the root when inside it
            stage           TEXT NOT NULL,             -- the stage that wrote it (export)
            layout          TEXT NOT NULL,
            exported_at     TEXT NOT NULL,
            run_id          INTEGER REFERENCES runs(id),
            patients        INTEGER NOT NULL DEFAULT 0,
            manifest_sha256 TEXT,
            stage_runs_json TEXT NOT NULL              -- [patient, stage, status, fingerprint]
        );
        """,
    ),
    Migration(
        5,
        "review: the users of the review app and the audit trail of review decisions",
        """
        CREATE TABLE users (
            name            TEXT PRIMARY KEY,
            role            TEXT NOT NULL CHECK (role IN ('annotator', 'reviewer', 'admin')),
            password_hash   TEXT NOT NULL,             -- argon2id (PHC string), never the password
            created_at      TEXT NOT NULL,
            disabled_at     TEXT
        );
        CREATE TABLE review_decisions (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            patient_id      TEXT NOT NULL REFERENCES patients(id),
            user_name       TEXT NOT NULL REFERENCES users(name),
            role            TEXT NOT NULL,             -- the user's role when deciding
            decided_at      TEXT NOT NULL,
            decision        TEXT NOT NULL
                CHECK (decision IN ('approved', 'needs revision', 'excluded')),
            reason          TEXT,                      -- comment / exclusion reason
            lesion          TEXT,                      -- a comment pinned to a lesion
            voxel_json      TEXT,                      -- ... or to a voxel [i, j, k]
            label_map_sha256 TEXT                      -- the label map that was reviewed
        );
        CREATE INDEX review_decisions_patient ON review_decisions(patient_id, id);
        CREATE TRIGGER review_decisions_never_updated BEFORE UPDATE ON review_decisions
        BEGIN SELECT RAISE(ABORT, 'review decisions are an audit trail: never changed'); END;
        CREATE TRIGGER review_decisions_never_deleted BEFORE DELETE ON review_decisions
        BEGIN SELECT RAISE(ABORT, 'review decisions are an audit trail: never deleted'); END;
        """,
    ),
    Migration(
        6,
        "annotation: every saved version of a patient's per-lesion masks (never overwritten)",
        """
        CREATE TABLE annotation_versions (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            patient_id      TEXT NOT NULL REFERENCES patients(id),
            version         INTEGER NOT NULL,          -- 1, 2, ... per patient
            parent          INTEGER,                   -- the version it was edited from
            user_name       TEXT NOT NULL,
            tool            TEXT NOT NULL,             -- grow, propose, brush, import, ...
            created_at      TEXT NOT NULL,
            folder          TEXT NOT NULL,             -- relative to the workspace
            files_json      TEXT NOT NULL,             -- {file name: sha256}
            lesions         INTEGER NOT NULL,
            note            TEXT,
            UNIQUE (patient_id, version)
        );
        CREATE TRIGGER annotation_versions_never_updated BEFORE UPDATE ON annotation_versions
        BEGIN SELECT RAISE(ABORT, 'annotation versions are never changed'); END;
        CREATE TRIGGER annotation_versions_never_deleted BEFORE DELETE ON annotation_versions
        BEGIN SELECT RAISE(ABORT, 'annotation versions are never deleted'); END;
        """,
    ),
    Migration(
        7,
        "scale: input-file counts kept by triggers, and an index of input files by status",
        """
        CREATE TABLE source_file_counts (
            status          TEXT PRIMARY KEY,
            n               INTEGER NOT NULL           -- rows of source_files with status
        );
        INSERT INTO source_file_counts(status, n)
            SELECT status, COUNT(*) FROM source_files GROUP BY status;
        CREATE INDEX source_files_status ON source_files(status);
        CREATE TRIGGER source_files_counted_insert AFTER INSERT ON source_files
        BEGIN
            INSERT INTO source_file_counts(status, n) VALUES (NEW.status, 1)
                ON CONFLICT(status) DO UPDATE SET n = n + 1;
        END;
        CREATE TRIGGER source_files_counted_delete AFTER DELETE ON source_files
        BEGIN
            UPDATE source_file_counts SET n = n - 1 WHERE status = OLD.status;
        END;
        CREATE TRIGGER source_files_counted_update AFTER UPDATE OF status ON source_files
        WHEN OLD.status IS NOT NEW.status
        BEGIN
            UPDATE source_file_counts SET n = n - 1 WHERE status = OLD.status;
            INSERT INTO source_file_counts(status, n) VALUES (NEW.status, 1)
                ON CONFLICT(status) DO UPDATE SET n = n + 1;
        END;
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
