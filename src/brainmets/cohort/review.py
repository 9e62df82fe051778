"""The review state of a case, and what it means for the dataset.

Reviewers record decisions in the review app (:mod:`brainmets.review`); every decision is
appended to the catalog's ``review_decisions`` table: user, role, time, decision, reason (or
comment, optionally pinned to a lesion or a voxel) and the SHA-256 of the label map that was
reviewed. The table is an audit trail: the catalog refuses to change or delete a row.

The state of a case follows from its decisions and the label map it has now
(:func:`review_state`):

* ``excluded``: the last decision excludes it (a reviewer's reason);
* ``needs revision``: the last decision sends it back, and its label map has not changed since;
* ``approved``: at least ``ApprovalRule.approvals`` approvals (by different users when
  ``distinct_users``) of the label map it has now, given after the last decision of any other
  kind;
* ``pending``: anything else (no decision yet, a revised label map — an approval of an earlier
  label map is *stale* — approvals still missing, or masks saved by an annotator
  (:mod:`brainmets.annotate`) after the last decision: the case is pending review from the
  moment of the save, before the next ``brainmets run`` fuses the new masks; an exclusion
  stands until a reviewer decides otherwise).

What the dataset makes of it (:func:`review_settings`, read by :func:`brainmets.cohort.
load_cohort` for ``brainmets status``, the report and the export):

* a case in state ``excluded`` is never included; its reason is ``review: excluded: <reason>``;
* with ``[stages.export] require_review = true`` only ``approved`` cases are included (report
  and export, which always describe the same patients); the others' reason is
  ``review: <state> (<detail>)``.

Settings (``brainmets.toml``): ``[review] required_approvals`` (default 1; 2 reproduces the
reference dataset's two neuroradiologists), ``[review] distinct_users`` (default true),
``[review] session_hours`` (the review app's session lifetime, default 8).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from brainmets.catalog import AnnotationVersion, Catalog, ReviewDecision
from brainmets.config import ConfigError

__all__ = [
    "DECISIONS",
    "REVIEW_STATES",
    "ApprovalRule",
    "ReviewSettings",
    "ReviewState",
    "review_inputs",
    "review_settings",
    "review_state",
    "review_states",
]

#: the decisions a reviewer can record
DECISIONS = ("approved", "needs revision", "excluded")
#: the states of a case
REVIEW_STATES = ("pending", "approved", "needs revision", "excluded")
#: the keys of the ``[review]`` table
REVIEW_KEYS = ("required_approvals", "distinct_users", "session_hours")


@dataclass(frozen=True)
class ApprovalRule:
    """When a case counts as approved (default: one reviewer's approval)."""

    approvals: int = 1
    distinct_users: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.approvals, bool) or not isinstance(self.approvals, int):
            raise ValueError(f"approvals must be an integer >= 1, not {self.approvals!r}")
        if self.approvals < 1:
            raise ValueError(f"approvals must be an integer >= 1, not {self.approvals!r}")


@dataclass(frozen=True)
class ReviewState:
    """A case's state, why (``detail``), and the decision that set it (None: none)."""

    state: str
    detail: str
    last: ReviewDecision | None = None

    def as_reason(self) -> str:
        """The reason a patient is not in the dataset because of this state."""
        if self.state == "excluded":
            return f"review: excluded: {self.detail}"
        return f"review: {self.state} ({self.detail})" if self.detail else f"review: {self.state}"


@dataclass(frozen=True)
class ReviewSettings:
    """The workspace's review settings: the approval rule, and whether the dataset takes
    approved cases only (``[stages.export] require_review``)."""

    rule: ApprovalRule = ApprovalRule()
    require_review: bool = False
    session_hours: float = 8.0

    def keeps(self, state: ReviewState) -> bool:
        """Whether a case in ``state`` may be in the dataset."""
        if state.state == "excluded":
            return False
        return state.state == "approved" or not self.require_review


def review_settings(config: Mapping[str, Any] | None) -> ReviewSettings:
    """The review settings of a workspace configuration (``Config.data``); a value of the
    wrong type or an unknown ``[review]`` key raises :class:`ConfigError` naming it."""
    config = config or {}
    section = config.get("review", {})
    if not isinstance(section, Mapping):
        raise ConfigError("brainmets.toml: [review] must be a table")
    unknown = sorted(set(section) - set(REVIEW_KEYS))
    if unknown:
        raise ConfigError(
            f"brainmets.toml: [review] has unknown key(s) {unknown}; known: {list(REVIEW_KEYS)}"
        )
    approvals = section.get("required_approvals", 1)
    if isinstance(approvals, bool) or not isinstance(approvals, int) or approvals < 1:
        raise ConfigError(
            "brainmets.toml: [review] required_approvals must be a whole number >= 1, "
            f"not {approvals!r}"
        )
    distinct = section.get("distinct_users", True)
    if not isinstance(distinct, bool):
        raise ConfigError(
            f"brainmets.toml: [review] distinct_users must be true or false, not {distinct!r}"
        )
    hours = section.get("session_hours", 8)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= 24 * 30:
        raise ConfigError(
            "brainmets.toml: [review] session_hours must be a number of hours, above 0 and "
            f"at most 720, not {hours!r}"
        )
    stages = config.get("stages", {})
    export = stages.get("export", {}) if isinstance(stages, Mapping) else {}
    require = export.get("require_review", False) if isinstance(export, Mapping) else False
    if not isinstance(require, bool):
        raise ConfigError(
            f"brainmets.toml: [stages.export] require_review must be true or false, not {require!r}"
        )
    return ReviewSettings(ApprovalRule(approvals, distinct), require, float(hours))


def review_state(
    decisions: Sequence[ReviewDecision],
    label_map_sha256: str | None,
    rule: ApprovalRule | None = None,
    annotation: AnnotationVersion | None = None,
) -> ReviewState:
    """The review state of one case from its decisions (oldest first), the hash of the
    label map it has now and its latest saved annotation version, if any (see the module
    docstring)."""
    rule = rule or ApprovalRule()
    if not decisions:
        return ReviewState("pending", "not reviewed yet")
    last = decisions[-1]
    if last.decision == "excluded":
        return ReviewState("excluded", last.reason or "excluded", last)
    if annotation is not None and annotation.created_at > last.decided_at:
        return ReviewState(
            "pending",
            f"annotation version {annotation.version} saved by {annotation.user_name} "
            "since the last decision",
            last,
        )
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


#: the stage and output role of the label map a review decision is about
LABEL_MAP = ("segment", "seg")


def review_states(catalog: Catalog, rule: ApprovalRule | None = None) -> dict[str, ReviewState]:
    """The review state of every patient of the catalog (patient ID -> state), each against
    the label map recorded for it now (``segment`` output ``seg``) and its latest saved
    annotation version."""
    decisions: dict[str, list[ReviewDecision]] = {}
    for d in catalog.review_decisions():
        decisions.setdefault(d.patient_id, []).append(d)
    annotated: dict[str, AnnotationVersion] = {}
    for v in catalog.annotation_versions():  # oldest first: the last one per patient stays
        annotated[v.patient_id] = v
    stage, role = LABEL_MAP
    label_maps = {
        out.patient_id: out.sha256
        for out in catalog.output_files(stage=stage, role=role, cohort=False)
    }
    return {
        p.id: review_state(decisions.get(p.id, []), label_maps.get(p.id), rule, annotated.get(p.id))
        for p in catalog.patients()
    }


def review_inputs(catalog: Catalog, config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What the review contributes to a report's or an export's inputs: the settings and
    each reviewed patient's state (a new decision that changes a state, or a changed rule,
    redoes them). None when nobody has been reviewed and the settings are the defaults, so a
    workspace without review keeps its fingerprints."""
    settings = review_settings(config)
    states = {
        pid: st.state
        for pid, st in review_states(catalog, settings.rule).items()
        if st.last is not None
    }
    if not states and settings == ReviewSettings(session_hours=settings.session_hours):
        return None
    return {
        "approvals": settings.rule.approvals,
        "distinct_users": settings.rule.distinct_users,
        "require_review": settings.require_review,
        "states": sorted(states.items()),
    }
