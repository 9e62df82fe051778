"""Errors of the preprocessing step, always naming the patient and the file concerned."""

from __future__ import annotations

from pathlib import Path


class PreprocessError(ValueError):
    """Bad input or a failed step: the message names the patient and the file.

    Attributes:
        patient: the case / patient identifier, when known.
        file: the input file concerned, when one is.
        reason: the bare reason, without patient and file.
    """

    def __init__(
        self, reason: str, *, patient: str | None = None, file: str | Path | None = None
    ) -> None:
        self.patient = patient
        self.file = str(file) if file is not None else None
        self.reason = reason
        where = []
        if patient:
            where.append(f"patient {patient}")
        if self.file:
            where.append(f"file {self.file}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {reason}" if prefix else reason)


class RegistrationFailed(PreprocessError):
    """A registration converged to a result whose similarity to its target is implausible."""
