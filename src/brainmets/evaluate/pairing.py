"""Pairing prediction and reference label maps by case ID.

A case ID is the BraTS-style ``NNNNN-NNN`` at the end of a file's name (``BraTS-MET-00012-000``,
``BraTS-MET-00012-000-seg``, ``case-00012-000_pred``) when it has one, otherwise the file's
stem. Files that pair with nothing, and two files that claim the same ID in one folder, are
reported, never skipped silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

NIFTI_SUFFIXES = (".nii.gz", ".nii")
_BRATS_ID = re.compile(r"(\d{5}-\d{3})(?!.*\d{5}-\d{3})")
_REF_TAIL = re.compile(r"[-_](seg|label|labels|gt|ref)$", re.IGNORECASE)


def nifti_stem(name: str) -> str | None:
    """The name without its NIfTI suffix; ``None`` for a file that is not NIfTI."""
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return None


def case_key(name: str) -> str | None:
    """The key that pairs a file: its BraTS-style ``NNNNN-NNN`` id or, without one, its stem."""
    stem = nifti_stem(name)
    if stem is None:
        return None
    m = _BRATS_ID.search(stem)
    return m.group(1) if m else stem


def case_id(name: str) -> str:
    """The case ID reported for a reference file: its stem without a ``-seg``-like tail."""
    stem = nifti_stem(name) or name
    return _REF_TAIL.sub("", stem)


@dataclass
class Pairing:
    """Which files pair up, and which do not (with the reason)."""

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)  # (case id, ref, pred)
    unpaired_ref: list[Path] = field(default_factory=list)
    unpaired_pred: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.pairs)} case(s) paired"]
        if self.unpaired_ref:
            parts.append(f"{len(self.unpaired_ref)} reference(s) without a prediction")
        if self.unpaired_pred:
            parts.append(f"{len(self.unpaired_pred)} prediction(s) without a reference")
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s)")
        return ", ".join(parts)


def _index(folder: Path, role: str, problems: list[str]) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder ({role} label maps)")
    out: dict[str, Path] = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.is_file() or entry.name.startswith("."):
            continue
        key = case_key(entry.name)
        if key is None:
            problems.append(f"{Path(entry.path)}: not a NIfTI file (.nii or .nii.gz); ignored")
            continue
        if key in out:
            problems.append(
                f"{Path(entry.path)}: {role} case ID {key} is also claimed by {out[key].name};"
                " neither is evaluated"
            )
            out[key] = Path("")  # mark as ambiguous
            continue
        out[key] = Path(entry.path)
    return {k: v for k, v in out.items() if str(v) not in ("", ".")}


def pair_folders(pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str]) -> Pairing:
    """Pair every NIfTI file of ``pred_dir`` with the one of ``ref_dir`` of the same case ID."""
    res = Pairing()
    refs = _index(Path(ref_dir), "reference", res.problems)
    preds = _index(Path(pred_dir), "prediction", res.problems)
    for key in sorted(refs):
        if key in preds:
            res.pairs.append((case_id(refs[key].name), refs[key], preds[key]))
        else:
            res.unpaired_ref.append(refs[key])
    res.unpaired_pred = [preds[k] for k in sorted(preds) if k not in refs]
    return res
