"""Recording review decisions (the review app's write side).

:func:`record_decision` appends a decision to the catalog's ``review_decisions`` audit trail
after checking who may decide and what a decision needs. The review state of a case that
follows from its decisions — and what it means for the dataset — is defined once, in
:mod:`brainmets.cohort.review` (re-exported here: :func:`review_state`,
:class:`ApprovalRule`), so that ``brainmets status``, the report and the export read it too.
"""

from __future__ import annotations

from brainmets.catalog import Catalog, ReviewDecision, UserRecord
from brainmets.cohort.review import (
    DECISIONS,
    REVIEW_STATES,
    ApprovalRule,
    ReviewState,
    review_state,
)

__all__ = [
    "DECIDING_ROLES",
    "DECISIONS",
    "REVIEW_STATES",
    "ApprovalRule",
    "ReviewError",
    "ReviewState",
    "record_decision",
    "review_state",
]

#: the roles that may record decisions
DECIDING_ROLES = ("reviewer", "admin")


class ReviewError(ValueError):
    """A decision that cannot be recorded (role, missing reason, unknown patient)."""


def record_decision(
    catalog: Catalog,
    user: UserRecord,
    patient_id: str,
    decision: str,
    label_map_sha256: str | None,
    reason: str | None = None,
    lesion: str | None = None,
    voxel: tuple[int, int, int] | None = None,
) -> ReviewDecision:
    """Append ``user``'s decision on a patient to the audit trail, after the checks: the
    user is enabled and may decide (reviewer, admin), the decision is known, a revision
    request has a comment and an exclusion a reason, the patient exists."""
    if user.disabled_at is not None:
        raise ReviewError(f"user {user.name!r} is disabled")
    if user.role not in DECIDING_ROLES:
        raise ReviewError(f"a {user.role} may not record review decisions")
    if decision not in DECISIONS:
        raise ReviewError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    text = (reason or "").strip() or None
    if decision == "needs revision" and text is None:
        raise ReviewError("'needs revision' needs a comment saying what to revise")
    if decision == "excluded" and text is None:
        raise ReviewError("'excluded' needs a reason")
    if catalog.patient(patient_id) is None:
        raise ReviewError(f"no patient {patient_id!r} in this workspace")
    return catalog.add_review_decision(
        patient_id, user.name, user.role, decision, text, lesion, voxel, label_map_sha256
    )
