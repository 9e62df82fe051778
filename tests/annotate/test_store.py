"""Saved annotations: versions never overwritten, the current one where segment reads it,
masks found before the first save kept as version 1, two annotators at once."""

from __future__ import annotations

import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmets.annotate.store import (
    AnnotationStoreError,
    Lesion,
    current_lesions,
    save_version,
)
from brainmets.catalog import Catalog
from brainmets.fsutil import sha256_file
from brainmets.workspace import Workspace

PID = "BM-AAAAAAAA"
SHAPE = (30, 30, 20)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    with ws.lock(), ws.catalog() as cat:
        cat.ensure_patient(PID)
    return Workspace.open(ws.root)


def _ball(c: tuple[int, int, int], r: float) -> np.ndarray:
    g = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return sum((a - x) ** 2 for a, x in zip(g, c, strict=True)) <= r * r


def _lesion(c: tuple[int, int, int], r: float, nec: float = 0.0) -> Lesion:
    return Lesion(_ball(c, r), _ball(c, nec) if nec else np.zeros(SHAPE, bool), _ball(c, r + 3))


def test_versions_are_kept_and_the_latest_is_current(ws: Workspace) -> None:
    v1 = save_version(ws, PID, [_lesion((10, 10, 10), 4, 2)], np.eye(4), "ann", "grow")
    v2 = save_version(
        ws, PID, [_lesion((10, 10, 10), 4, 2), _lesion((22, 20, 10), 3)], np.eye(4), "bob", "brush"
    )
    assert (v1.version, v2.version, v2.parent) == (1, 2, 1)
    here = ws.root / "annotations" / PID
    assert sorted(p.name for p in here.iterdir()) == sorted(
        [
            "Core1_PGGE.nii.gz",
            "Necrosis1_PGGE.nii.gz",
            "Whole1_FLAIR.nii.gz",
            "Core2_PGGE.nii.gz",
            "Whole2_FLAIR.nii.gz",
        ]
    )
    # version 1's files are untouched, and their hashes are the recorded ones
    for name, digest in v1.files.items():
        assert sha256_file(ws.root / v1.folder / name) == digest
    assert len(current_lesions(ws, PID)) == 2
    img = nib.load(str(here / "Core2_PGGE.nii.gz"))
    assert img.get_data_dtype() == np.uint8 and img.shape == SHAPE
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        assert [(v.version, v.user_name, v.tool) for v in cat.annotation_versions(PID)] == [
            (1, "ann", "grow"),
            (2, "bob", "brush"),
        ]
    with Catalog.open(ws.catalog_path) as cat, pytest.raises(Exception, match="never"):
        cat._conn.execute("DELETE FROM annotation_versions")


def test_masks_found_before_the_first_save_become_version_one(ws: Workspace) -> None:
    here = ws.root / "annotations" / PID
    here.mkdir(parents=True)
    nib.save(
        nib.Nifti1Image(_ball((10, 10, 10), 3).astype(np.uint8), np.eye(4)),
        str(here / "Core1_PGGE.nii.gz"),
    )
    (here / "notes.txt").write_text("from the PACS")
    rec = save_version(ws, PID, [_lesion((20, 20, 10), 3)], np.eye(4), "ann", "grow")
    assert rec.version == 2 and rec.parent == 1
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        first = cat.annotation_versions(PID)[0]
    assert first.tool == "import" and set(first.files) == {"Core1_PGGE.nii.gz", "notes.txt"}
    assert (ws.root / first.folder / "notes.txt").read_text() == "from the PACS"


def test_two_annotators_at_once_both_kept(ws: Workspace) -> None:
    errors: list[BaseException] = []

    def save(user: str, c: tuple[int, int, int]) -> None:
        try:
            save_version(ws, PID, [_lesion(c, 3)], np.eye(4), user, "grow")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=save, args=(u, c))
        for u, c in (("ann", (8, 8, 8)), ("bob", (20, 20, 10)))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        versions = cat.annotation_versions(PID)
    assert sorted(v.user_name for v in versions) == ["ann", "bob"]
    later = versions[-1]
    current = current_lesions(ws, PID)
    centre = np.argwhere(current[0].core).mean(axis=0)
    want = (8, 8, 8) if later.user_name == "ann" else (20, 20, 10)
    assert np.allclose(centre, want, atol=0.5)  # the later save is current
    assert all((ws.root / v.folder).is_dir() for v in versions)  # the earlier not lost


def test_another_annotation_folder_is_refused(ws: Workspace) -> None:
    ws.config.set_stage_param("segment", "annotations_dir", "/mnt/pacs/{mrn}")
    with pytest.raises(AnnotationStoreError, match="annotations_dir"):
        save_version(ws, PID, [_lesion((10, 10, 10), 3)], np.eye(4), "ann", "grow")
