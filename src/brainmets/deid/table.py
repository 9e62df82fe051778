"""The PS3.15 Table E.1-1 action table and the resolution of its action codes.

The table is generated from the standard by ``scripts/gen_deid_table.py`` and committed as
``ps315_e11_<edition>.json`` beside this module. It holds, for each attribute, the Basic
Profile action and the actions of the options, plus (for attributes whose Basic Profile action
is a compound code) the attribute's PS3.3 type in each IOD, which decides compound codes:

=========  =========================================================================
code       resolved as
=========  =========================================================================
X/Z        Z where the attribute is Type 1/1C/2/2C (never emptied if Type 1: D), else X
X/D        D where the attribute is Type 1/1C/2/2C, else X
X/Z/D      D where Type 1/1C, Z where Type 2/2C, else X
Z/D        D where Type 1/1C, else Z
X/Z/U*     U (keep the sequence, replace the UIDs it contains) where Type 1/1C, Z where
           Type 2/2C, else X
=========  =========================================================================

An attribute that the IOD of the instance does not define (or a SOP Class the tables do not
know) counts as Type 3. An option's action, when the option is enabled, overrides the Basic
Profile's; where several enabled options act on one attribute, "C" (clean) wins over "K".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

EDITION = "2024b"
TABLE_FILE = f"ps315_e11_{EDITION}.json"

# JSON column key of each option, in the order of the standard's table.
OPTION_SAFE_PRIVATE = "rtnSafePrivOpt"
OPTION_UIDS = "rtnUIDsOpt"
OPTION_DEVICE = "rtnDevIdOpt"
OPTION_INSTITUTION = "rtnInstIdOpt"
OPTION_PATIENT_CHARS = "rtnPatCharsOpt"
OPTION_FULL_DATES = "rtnLongFullDatesOpt"
OPTION_MODIFIED_DATES = "rtnLongModifDatesOpt"
OPTION_CLEAN_DESCRIPTORS = "cleanDescOpt"
OPTION_CLEAN_STRUCTURED = "cleanStructContOpt"
OPTION_CLEAN_GRAPHICS = "cleanGraphOpt"

SIMPLE_ACTIONS = frozenset({"D", "Z", "X", "K", "C", "U"})
COMPOUND_ACTIONS = frozenset({"X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"})

_TYPE1 = frozenset({"1", "1C"})
_TYPE2 = frozenset({"2", "2C"})


@dataclass(frozen=True)
class TableRow:
    """One attribute of Table E.1-1."""

    tag: str  # 8 lowercase hex digits, or a pattern such as "60xx3000", or "private"
    name: str
    basic: str
    options: dict[str, str]
    in_std_iod: bool
    retired: bool | None


def resolve_compound(code: str, attr_type: str | None) -> str:
    """Resolve an action code to a simple one given the attribute's type in the IOD.

    ``attr_type`` is the PS3.3 type ("1", "1C", "2", "2C", "3") or None when the IOD does
    not define the attribute there (treated as Type 3).
    """
    if code in SIMPLE_ACTIONS:
        return code
    t1 = attr_type in _TYPE1
    t2 = attr_type in _TYPE2
    if code == "X/Z":
        return "D" if t1 else ("Z" if t2 else "X")
    if code == "X/D":
        return "D" if (t1 or t2) else "X"
    if code == "X/Z/D":
        return "D" if t1 else ("Z" if t2 else "X")
    if code == "Z/D":
        return "D" if t1 else "Z"
    if code == "X/Z/U*":
        return "U" if t1 else ("Z" if t2 else "X")
    raise ValueError(f"unknown action code {code!r}")


class ActionTable:
    """Table E.1-1 with the options of a run applied.

    ``code_for(tag)`` gives the effective (possibly compound) action for a standard tag or
    None when the table does not list it; ``resolve(tag, code, sop_class, parent)`` turns a
    compound code into a simple one for the place where the attribute occurs.
    """

    def __init__(self, data: dict, enabled_options: frozenset[str]) -> None:
        unknown = enabled_options - set(data["option_columns"])
        if unknown:
            raise ValueError(f"unknown option columns {sorted(unknown)}")
        self.edition: str = data["edition"]
        self.enabled_options = enabled_options
        self.rows: list[TableRow] = [
            TableRow(
                tag=r["tag"],
                name=r["name"],
                basic=r["basic"],
                options=dict(r["options"]),
                in_std_iod=r["in_std_iod"],
                retired=r["retired"],
            )
            for r in data["rows"]
        ]
        self._codes: dict[int, str] = {}
        self.patterns: dict[str, str] = {}
        for row in self.rows:
            code = self.effective_code(row)
            if all(c in "0123456789abcdef" for c in row.tag) and len(row.tag) == 8:
                self._codes[int(row.tag, 16)] = code
            else:
                self.patterns[row.tag] = code
        self._types: dict[int, dict[str, dict[int, str]]] = {
            int(tag, 16): {
                sop: {(int(p, 16) if p else 0): t for p, t in places.items()}
                for sop, places in per_sop.items()
            }
            for tag, per_sop in data["iod_types"].items()
        }

    def effective_code(self, row: TableRow) -> str:
        """The row's action with the enabled options' overrides applied."""
        acts = {a for col, a in row.options.items() if col in self.enabled_options}
        if "C" in acts:
            return "C"
        if "K" in acts:
            return "K"
        if acts:  # an option with another action (not in the current standard)
            return sorted(acts)[0]
        return row.basic

    def code_for(self, tag: int) -> str | None:
        """Effective action code for a standard tag, or None when not in the table."""
        return self._codes.get(tag)

    def attribute_type(self, tag: int, sop_class: str, parent: int) -> str | None:
        """PS3.3 type of ``tag`` in the IOD of ``sop_class`` inside sequence ``parent`` (0: top)."""
        per_sop = self._types.get(tag)
        if per_sop is None:
            return None
        places = per_sop.get(sop_class)
        if places is None:
            return None
        return places.get(parent)

    def resolve(self, tag: int, code: str, sop_class: str, parent: int) -> str:
        """Resolve ``code`` (effective action of ``tag``) for this place in the instance."""
        if code in SIMPLE_ACTIONS:
            return code
        return resolve_compound(code, self.attribute_type(tag, sop_class, parent))

    @property
    def tags(self) -> frozenset[int]:
        return frozenset(self._codes)


@lru_cache(maxsize=1)
def load_table_data() -> dict:
    """The committed table (parsed JSON)."""
    text = resources.files("brainmets.deid").joinpath(TABLE_FILE).read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=32)
def action_table(enabled_options: frozenset[str]) -> ActionTable:
    """The action table with ``enabled_options`` (JSON column keys) applied (cached)."""
    return ActionTable(load_table_data(), enabled_options)
