"""DICOM de-identification by PS3.15 Annex E with keyed pseudonyms.

Basic Application Level Confidentiality Profile + Clean Descriptors + Clean Structured
Content + Retain Longitudinal Temporal Information with Modified Dates, driven by the
committed Table E.1-1 (edition 2024b). Patient IDs, accession numbers and UIDs are replaced
by HMAC-SHA256 pseudonyms of the workspace key: stable across runs and batches, not
reversible without the key. See ``docs/deidentification.md``.

* :class:`Deidentifier` / :class:`DeidOptions` / :class:`DeidResult`: one instance, in memory.
* :func:`deidentify_tree`: a folder, in parallel over files (:class:`TreeReport`).
* :func:`verify_tree`: check a de-identified tree against its original (:class:`VerifyReport`).
"""

from __future__ import annotations

from brainmets.deid.engine import (
    Deidentifier,
    DeidOptions,
    DeidResult,
    NotAnInstanceError,
)
from brainmets.deid.table import EDITION
from brainmets.deid.tree import FileOutcome, TreeReport, deidentify_tree
from brainmets.deid.verify import Finding, VerifyReport, verify_tree

__all__ = [
    "EDITION",
    "DeidOptions",
    "DeidResult",
    "Deidentifier",
    "FileOutcome",
    "Finding",
    "NotAnInstanceError",
    "TreeReport",
    "VerifyReport",
    "deidentify_tree",
    "verify_tree",
]
