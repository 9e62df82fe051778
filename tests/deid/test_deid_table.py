"""The committed PS3.15 Table E.1-1 and the resolution of its action codes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from pydicom.sr.codedict import codes

from brainmets.deid import DeidOptions
from brainmets.deid.engine import ALL_METHOD_CODES
from brainmets.deid.table import (
    COMPOUND_ACTIONS,
    OPTION_CLEAN_DESCRIPTORS,
    OPTION_MODIFIED_DATES,
    SIMPLE_ACTIONS,
    action_table,
    load_table_data,
    resolve_compound,
)

MR = "1.2.840.10008.5.1.4.1.1.4"
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding this test


def test_table_has_every_row_and_valid_codes() -> None:
    data = load_table_data()
    assert data["edition"] == "2024b"
    assert len(data["rows"]) == 621
    used = set()
    for row in data["rows"]:
        assert row["basic"] in SIMPLE_ACTIONS | COMPOUND_ACTIONS, row
        used.add(row["basic"])
        for col, act in row["options"].items():
            assert col in data["option_columns"]
            assert act in SIMPLE_ACTIONS | COMPOUND_ACTIONS
    # every code of the standard occurs in the Basic Profile column
    assert used == {"D", "Z", "X", "U", "X/Z", "X/D", "X/Z/D", "X/Z/U*", "Z/D"}


def test_committed_table_matches_generator(shared: Path) -> None:
    """Regenerating from the standard's sources gives the committed file byte for byte."""
    if importlib.util.find_spec("highdicom") is None:
        pytest.skip("highdicom not installed")
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import gen_deid_table
    finally:
        sys.path.pop(0)
    standards = shared / "standards" / "dicom"
    if not (standards / "ps3.15_E.1-1_2024b.json").is_file():
        pytest.skip(f"standards sources not found in {standards}")
    table, _notes = gen_deid_table.build(standards)
    committed = (REPO_ROOT / "src/brainmets/deid/ps315_e11_2024b.json").read_text("utf-8")
    assert gen_deid_table.render(table) == committed


@pytest.mark.parametrize(
    ("code", "attr_type", "expected"),
    [
        ("X/Z", "3", "X"),
        ("X/Z", "2", "Z"),
        ("X/Z", "1", "D"),  # never empty a Type 1 attribute
        ("X/D", None, "X"),
        ("X/D", "1C", "D"),
        ("X/D", "2", "D"),
        ("X/Z/D", "3", "X"),
        ("X/Z/D", "2C", "Z"),
        ("X/Z/D", "1", "D"),
        ("Z/D", "2", "Z"),
        ("Z/D", "1", "D"),
        ("Z/D", None, "Z"),
        ("X/Z/U*", "3", "X"),
        ("X/Z/U*", "2", "Z"),
        ("X/Z/U*", "1", "U"),
        ("K", "1", "K"),
        ("C", None, "C"),
    ],
)
def test_compound_codes_follow_the_standard(code: str, attr_type: str, expected: str) -> None:
    assert resolve_compound(code, attr_type) == expected


def test_option_overrides_basic_profile() -> None:
    basic = action_table(frozenset())
    opts = action_table(frozenset({OPTION_CLEAN_DESCRIPTORS, OPTION_MODIFIED_DATES}))
    series_description, study_date, patient_name = 0x0008103E, 0x00080020, 0x00100010
    assert basic.code_for(series_description) == "X"
    assert opts.code_for(series_description) == "C"
    assert basic.code_for(study_date) == "Z"
    assert opts.code_for(study_date) == "C"
    assert opts.code_for(patient_name) == "Z"  # no option touches it


def test_types_from_the_iod_decide_compound_codes() -> None:
    table = action_table(frozenset())
    # Referenced Image Sequence: X/Z/U*, Type 3 at the top of an MR image -> X
    assert table.resolve(0x00081140, "X/Z/U*", MR, 0) == "X"
    # Device Serial Number: X/Z/D; Type 3 in the MR image IOD -> X
    assert table.resolve(0x00181000, "X/Z/D", MR, 0) == "X"
    # Enhanced MR: Type 1 in the Enhanced General Equipment module -> D
    assert table.resolve(0x00181000, "X/Z/D", "1.2.840.10008.5.1.4.1.1.4.1", 0) == "D"
    # Unknown SOP class: treated as Type 3
    assert table.resolve(0x00181000, "X/Z/D", "1.2.3.4", 0) == "X"


def test_method_codes_match_cid_7050() -> None:
    cid = {c.value: c.meaning for c in codes.cid7050.concepts.values()}
    for value, meaning in ALL_METHOD_CODES:
        assert cid[value] == meaning
    opts = DeidOptions()
    assert [v for v, _ in opts.method_codes()] == ["113100", "113104", "113105", "113107"]
    assert "2024b" in opts.method_text()[0]
    assert all(len(v) <= 64 for v in opts.method_text())  # LO


def test_options_validation() -> None:
    with pytest.raises(ValueError):
        DeidOptions(retain_full_dates=True)  # together with modified dates
    with pytest.raises(ValueError):
        DeidOptions(min_offset_days=0, max_offset_days=-1)
