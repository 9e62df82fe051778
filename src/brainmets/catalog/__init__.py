"""The workspace catalog: an embedded SQLite database with a versioned schema.

It records patients, studies, series, instances, every input file and what became of it,
and one row per (patient, stage) with the stage's status, timing, error, parameters, tool
versions, fingerprint and output hashes. Only the coordinating process writes to it; stage
workers return their rows to the runner (see :mod:`brainmets.pipeline`).
"""

from brainmets.catalog.catalog import (
    COHORT,
    Catalog,
    CatalogError,
    SchemaTooNew,
    StageRun,
    utcnow,
)
from brainmets.catalog.migrations import LATEST_VERSION, MIGRATIONS, Migration

__all__ = [
    "COHORT",
    "Catalog",
    "CatalogError",
    "LATEST_VERSION",
    "MIGRATIONS",
    "Migration",
    "SchemaTooNew",
    "StageRun",
    "utcnow",
]
