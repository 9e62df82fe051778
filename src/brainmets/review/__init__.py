"""The review workplace (issue 12): who may review, and what was decided.

This package holds the server-side model of the review app that ``brainmets review`` serves:

* :mod:`brainmets.review.users`: the app's users, their roles and argon2id password hashes
  (``brainmets users add``);
* :mod:`brainmets.review.decisions`: review decisions appended to the catalog's audit
  trail (never changed or deleted), each with the hash of the label map that was reviewed,
  and the review state of a case that follows from them under a configurable rule.

It reads and writes the workspace catalog only through typed :class:`brainmets.catalog.Catalog`
methods and never sees an original identifier: patients are named by their pseudonyms.
"""

from brainmets.review.decisions import (
    DECISIONS,
    REVIEW_STATES,
    ApprovalRule,
    ReviewError,
    record_decision,
    review_state,
)
from brainmets.review.users import (
    ROLES,
    UserError,
    add_user,
    authenticate,
    hash_password,
    verify_password,
)

__all__ = [
    "DECISIONS",
    "REVIEW_STATES",
    "ROLES",
    "ApprovalRule",
    "ReviewError",
    "UserError",
    "add_user",
    "authenticate",
    "hash_password",
    "record_decision",
    "review_state",
    "verify_password",
]
