"""De-identify one synthetic patient and check that every planted identifier is gone.

The synthetic cohort generator (:mod:`brainmets.synth`) writes ``truth.json`` listing each
identifier it planted (value, attribute path, category). Generating one patient takes tens of
seconds, hence the ``slow`` mark.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pydicom
import pytest

from bm_testutil import anatomy_missing_errors
from brainmets.deid import deidentify_tree, verify_tree

pytest_plugins = ["deid_helpers"]  # shared fixtures (see deid_helpers.py)

pytestmark = pytest.mark.slow

# Attributes the Basic Profile removes or empties: checked by attribute, since their values
# ("F", "1.67", short numbers) also occur legitimately elsewhere in the files.
BY_ATTRIBUTE = {"sex", "age", "patient_characteristic", "study_id", "burned_in_flag"}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    try:
        from brainmets.synth import generate_cohort
    except ImportError as exc:  # the generator is optional for this suite
        pytest.skip(f"synthetic cohort generator not available ({exc})")
    out = tmp_path_factory.mktemp("synth")
    try:
        generate_cohort(out, 1, 11, workers=1)
    except anatomy_missing_errors() as exc:  # neither the SRI24 atlas nor the MNI152 fallback
        pytest.skip(f"no anatomy to generate a synthetic cohort ({exc})")
    return out, json.loads((out / "truth.json").read_text("utf-8"))


def _header_text(path: Path) -> str:
    data = path.read_bytes()
    ds = pydicom.dcmread(path)
    if "PixelData" in ds:
        data = data.replace(ds.PixelData, b"")
    return data.decode("latin-1")


def test_every_planted_identifier_is_gone(
    tmp_path: Path, synthetic: tuple[Path, dict], key: bytes
) -> None:
    root, truth = synthetic
    dst = tmp_path / "deid"
    report = deidentify_tree(root / "dicom", dst, key, workers=2, progress=False)
    assert report.consistent and report.rejected == 0
    outputs = sorted(dst.rglob("*.dcm"))
    assert outputs
    texts = [_header_text(p) for p in outputs]
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in outputs]
    identifiers = [i for p in truth["patients"] for i in p["identifiers"]]
    assert identifiers
    for ident in identifiers:
        category, value, path = ident["category"], str(ident["value"]), ident["tag_path"]
        if category == "burned_in_text":  # pixels: the instance must have been quarantined
            assert report.quarantined >= 1
            continue
        if category in BY_ATTRIBUTE:
            keyword = path.split("[")[0]
            for ds in datasets:
                if keyword in ds:
                    assert ds[keyword].value in (None, "", []), (keyword, category)
            continue
        pattern = re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", re.I)
        for p, text in zip(outputs, texts, strict=True):
            assert not pattern.search(text), f"{category} {path} still in {p.name}"
    assert all(str(ds.get("BurnedInAnnotation", "")) != "YES" for ds in datasets)
    assert verify_tree(root / "dicom", dst, workers=2).ok
