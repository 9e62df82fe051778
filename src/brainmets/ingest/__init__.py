"""Ingest: account for every file in the registered source folders.

The ``ingest`` stage walks the source folders, reads each file's header (never its pixels)
and records in the catalog what every file is: a DICOM instance waiting for
de-identification (under its patient's *pseudonymous* ID, computed with the workspace key),
a duplicate of another instance, or a rejected file with the reason. Original identifiers
are read in memory only; nothing identifying is written except the source path itself.
"""

from brainmets.ingest.scan import STAGE, classify_file, scan_sources

__all__ = ["STAGE", "classify_file", "scan_sources"]
