"""Fixtures and helpers shared by the de-identification tests.

Test modules load this as a plugin (``pytest_plugins = ["deid_helpers"]``): a
``conftest.py`` in this folder would shadow the top-level ``tests/conftest.py`` module that
other tests import by name. ``testdata`` and ``shared`` come from ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture(scope="session")
def key() -> bytes:
    return KEY


@pytest.fixture(scope="session")
def other_key() -> bytes:
    return OTHER_KEY


def _package_data(package: str, relative: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{pip_name} is not installed (pip install {pip_name})")
    path = Path(spec.origin).parent / relative
    if not path.is_file():
        pytest.skip(f"{relative} not found in {pip_name}")
    return path


@pytest.fixture(scope="session")
def mr_overlays() -> Path:
    """Siemens MR with name, birth date, address, overlays, private tags (pydicom-data)."""
    return _package_data("data_store", "data/MR-SIEMENS-DICOM-WithOverlays.dcm", "pydicom-data")


@pytest.fixture(scope="session")
def ctbrain1() -> Path:
    """CT (stored as secondary capture) full of planted identifiers (deid-data)."""
    return _package_data("deid_data", "data/humans/ctbrain1.dcm", "deid-data")


@pytest.fixture(scope="session")
def prisma_hfs(testdata: Path) -> Path:
    """A real Siemens MR series (36 files) of one volunteer."""
    d = (
        testdata
        / "dicom"
        / "siemens_prisma_t1_fl2d_patient_position"
        / "dicom"
        / "HFS"
        / "3_t1_fl2d_sag"
    )
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    return d


@pytest.fixture(scope="session")
def prisma_hfp(testdata: Path) -> Path:
    """The same volunteer, another study (head first prone)."""
    d = testdata / "dicom" / "siemens_prisma_t1_fl2d_patient_position" / "dicom" / "HFP"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    return d


def copy_files(files: list[Path], dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        shutil.copy(f, dest / f"{i:04d}_{f.name}")
    return dest
