"""Fixtures for the classify tests (helpers are in ``classify_helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

PRISMA_T1 = "siemens_prisma_t1_fl2d_patient_position/dicom/HFS/3_t1_fl2d_sag"


@pytest.fixture(scope="session")
def dicom_dir(testdata: Path) -> Path:
    return testdata / "dicom"


@pytest.fixture(scope="session")
def prisma_files(dicom_dir: Path) -> list[Path]:
    """35 slices of a real Siemens 2D sagittal T1 (the template for cloned series)."""
    return sorted((dicom_dir / PRISMA_T1).glob("*.dcm"))
