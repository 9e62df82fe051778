"""Patient IDs in an export.

Schemes (export parameter ``ids``):

* ``pseudonym`` (default): the workspace's pseudonymous ID (``BM-XXXXXXXX``), as in the
  catalog; the workbook's ``BraTS_MET_ID`` column holds it as text.
* ``brats``: the published collection's numbering, ``BraTS-MET-XXXXX-000`` (5 digits), the
  workbook's ``BraTS_MET_ID`` holds the integer.

The ``brats`` numbering is **stable**: the pseudonym -> number table is kept in the export
stage's own folder (``data/derivatives/_cohort/export/ids.json``, never exported). A patient
keeps its number on every later export; patients new to the table get the next free numbers
in the order of their pseudonyms, starting at ``id_start``; a number is never reused, even
when its patient leaves the dataset. (Deleting the table renumbers: the first export of a
cohort numbers the patients in pseudonym order, so the same cohort gets the same numbers.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SCHEMES = ("pseudonym", "brats")
BRATS_FORMAT = "BraTS-MET-{n:05d}-000"
IDS_FILE = "ids.json"


def brats_id(n: int) -> str:
    """``BraTS-MET-00086-000`` for 86."""
    if not 0 <= n <= 99999:
        raise ValueError(f"BraTS-MET numbers have 5 digits: {n}")
    return BRATS_FORMAT.format(n=n)


@dataclass
class IdTable:
    """Pseudonym -> export ID (and, for ``brats``, -> number) of the exported patients."""

    scheme: str
    ids: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)  # every number ever assigned

    def workbook_ids(self) -> dict[str, int | str]:
        """Pseudonym -> the workbook's ``BraTS_MET_ID`` (integer for brats, else text)."""
        if self.scheme == "brats":
            return {p: self.numbers[p] for p in self.ids}
        return dict(self.ids)


def assign_ids(
    patients: Iterable[str],
    scheme: str = "pseudonym",
    previous: Mapping[str, int] | None = None,
    start: int = 1,
) -> IdTable:
    """The export IDs of ``patients`` (see the module docstring)."""
    pts = sorted(set(patients))
    if scheme == "pseudonym":
        return IdTable(scheme, {p: p for p in pts})
    if scheme != "brats":
        raise ValueError(f"ids must be one of {SCHEMES}, not {scheme!r}")
    numbers = {str(k): int(v) for k, v in (previous or {}).items()}
    if len(set(numbers.values())) != len(numbers):
        raise ValueError("the stored ID table gives one number to two patients")
    nxt = max([start - 1, *numbers.values()]) + 1
    for p in pts:
        if p not in numbers:
            numbers[p] = nxt
            nxt += 1
    return IdTable(scheme, {p: brats_id(numbers[p]) for p in pts}, numbers)


def load_numbers(path: Path) -> dict[str, int]:
    """The stored pseudonym -> number table (empty when there is none)."""
    if not path.is_file():
        return {}
    doc = json.loads(path.read_text())
    return {str(k): int(v) for k, v in (doc.get("numbers") or {}).items()}


def numbers_json(table: IdTable) -> str:
    return json.dumps(
        {
            "scheme": table.scheme,
            "format": BRATS_FORMAT,
            "note": "pseudonym -> BraTS-MET number; private: never exported",
            "numbers": dict(sorted(table.numbers.items(), key=lambda kv: kv[1])),
        },
        indent=1,
    )
