"""Review decisions and the review state of a case.

Every decision is appended to the catalog's ``review_decisions`` table: user, role, time,
decision, reason (or comment, optionally pinned to a lesion or a voxel) and the SHA-256 of
the label map that was reviewed. The table is an audit trail: the catalog refuses to change
or delete a row (triggers of migration 5).

The state of a case follows from its decisions and the label map it has now
(:func:`review_state`):

* ``excluded``: the last decision excludes it (a reviewer's reason);
* ``needs revision``: the last decision sends it back, and its label map has not changed since;
* ``approved``: at least ``ApprovalRule.approvals`` approvals (by different users when
  ``distinct_users``) of the label map it has now, given after the last decision of any other
  kind;
* ``pending``: anything else (no decision yet, a revised label map, approvals still missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from brainmets.catalog import Catalog, ReviewDecision, UserRecord

#: the decisions a reviewer can record
DECISIONS = ("approved", "needs revision", "excluded")
#: the states of a case
REVIEW_STATES = ("pending", "approved", "needs revision", "excluded")
#: the roles that may record decisions
DECIDING_ROLES = ("reviewer", "admin")


class ReviewError(ValueError):
    """A decision that cannot be recorded (role, missing reason, unknown patient)."""


@dataclass(frozen=True)
class ApprovalRule:
    """When a case counts as approved (default: one reviewer's approval)."""

    approvals: int = 1
    distinct_users: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.approvals, int) or self.approvals < 1:
            raise ValueError(f"approvals must be an integer >= 1, not {self.approvals!r}")


@dataclass(frozen=True)
class ReviewState:
    """A case's state, why (``detail``), and the decision that set it (None: none)."""

    state: str
    detail: str
    last: ReviewDecision | None = None


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


def review_state(
    decisions: Sequence[ReviewDecision],
    label_map_sha256: str | None,
    rule: ApprovalRule | None = None,
) -> ReviewState:
    """The review state of one case from its decisions (oldest first) and the hash of the
    label map it has now (see the module docstring)."""
    rule = rule or ApprovalRule()
    if not decisions:
        return ReviewState("pending", "not reviewed yet")
    last = decisions[-1]
    if last.decision == "excluded":
        return ReviewState("excluded", last.reason or "excluded", last)
    approvals: list[ReviewDecision] = []
    for d in reversed(decisions):
        if d.decision != "approved":
            break
        approvals.append(d)
    if not approvals:  # the last decision asks for a revision
        if last.label_map_sha256 == label_map_sha256:
            return ReviewState("needs revision", last.reason or "", last)
        return ReviewState("pending", "revised since the request for revision", last)
    current = [d for d in approvals if d.label_map_sha256 == label_map_sha256]
    voters = {d.user_name for d in current} if rule.distinct_users else None
    n = len(voters) if voters is not None else len(current)
    if n >= rule.approvals:
        return ReviewState("approved", f"{n} approval(s)", last)
    if not current:
        return ReviewState("pending", "the label map changed since it was approved", last)
    return ReviewState("pending", f"{n} of {rule.approvals} approvals", last)
