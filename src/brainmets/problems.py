"""Reports that collect problems of two severities, ``error`` and ``warning``.

A report class (a dataclass with a ``problems`` list whose items have a ``severity``) mixes
in :class:`Problems` for its ``errors`` and ``warnings``; the dataset validator and the
clinical sheet reader both do.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

ERROR = "error"
WARNING = "warning"


class HasSeverity(Protocol):
    """A problem: anything with a ``severity`` (``error`` or ``warning``)."""

    @property
    def severity(self) -> str: ...


P = TypeVar("P", bound=HasSeverity)


class Problems(Generic[P]):
    """Mixin: the ``errors`` and ``warnings`` among ``self.problems``, in their order."""

    problems: list[P]

    def with_severity(self, severity: str) -> list[P]:
        return [p for p in self.problems if p.severity == severity]

    @property
    def errors(self) -> list[P]:
        return self.with_severity(ERROR)

    @property
    def warnings(self) -> list[P]:
        return self.with_severity(WARNING)
