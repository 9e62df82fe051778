"""The workspace catalog: an embedded SQLite database with a versioned schema.

It records patients, studies, series, instances, every input file and what became of it,
and one row per (patient, stage) with the stage's status, timing, error, parameters, tool
versions, fingerprint and output hashes. Only the coordinating process writes to it; stage
workers return their rows to the runner (see :mod:`brainmets.pipeline`).

Every SQL statement is behind a named :class:`Catalog` method that returns typed records
(:class:`PatientRow`, :class:`SourceFile`, :class:`IndexedSeries`, ...); the classify
stage's indexed series header is read back as an :class:`IndexedSeries`, never as text.
"""

from brainmets.catalog.catalog import (
    COHORT,
    AnnotationVersion,
    Catalog,
    CatalogError,
    CommandRun,
    ExportRecord,
    IndexedSeries,
    InstanceRow,
    OutputFile,
    PatientCounts,
    PatientRow,
    ReviewDecision,
    SchemaTooNew,
    SeriesRow,
    SourceFile,
    StageRun,
    StudyRow,
    UserRecord,
    utcnow,
)
from brainmets.catalog.migrations import LATEST_VERSION, MIGRATIONS, Migration

__all__ = [
    "COHORT",
    "Catalog",
    "CatalogError",
    "CommandRun",
    "ExportRecord",
    "IndexedSeries",
    "InstanceRow",
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "OutputFile",
    "PatientCounts",
    "PatientRow",
    "AnnotationVersion",
    "ReviewDecision",
    "SchemaTooNew",
    "SeriesRow",
    "SourceFile",
    "StageRun",
    "StudyRow",
    "UserRecord",
    "utcnow",
]
