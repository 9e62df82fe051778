"""A workspace patient's case for the annotation tools: its preprocessed images (read through
the catalog's recorded ``preprocess`` outputs) and the lesions saved so far."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainmets.annotate.grow import LesionMasks
from brainmets.annotate.images import CaseImages, load_case_images
from brainmets.annotate.store import Lesion
from brainmets.catalog import Catalog
from brainmets.workspace import Workspace

__all__ = ["CaseNotReady", "add_lesion", "affine_of", "case_files", "load_workspace_case"]

#: preprocess output roles the tools read
ROLES = ("t1c", "t1n", "t2w", "t2f", "mask")


class CaseNotReady(ValueError):
    """The patient is unknown or has no preprocessed images yet."""


def case_files(ws: Workspace, patient_id: str) -> dict[str, Path]:
    """The recorded preprocess outputs the tools read (``t1c`` at least)."""
    with Catalog.open(ws.catalog_path, readonly=True) as cat:
        if cat.patient(patient_id) is None:
            raise CaseNotReady(f"no patient {patient_id!r} in this workspace")
        run = cat.stage_run(patient_id, "preprocess")
        outs = cat.stage_outputs(patient_id, "preprocess")
    if run is None or run.status != "done" or "t1c" not in outs:
        raise CaseNotReady(
            f"{patient_id} has no preprocessed images yet (brainmets run --stages preprocess)"
        )
    root = ws.root.resolve()
    files = {}
    for role in ROLES:
        if role in outs:
            p = (ws.root / outs[role][0]).resolve()
            if not p.is_relative_to(root) or not p.is_file():
                raise CaseNotReady(f"{patient_id}: the recorded {role} image is missing")
            files[role] = p
    return files


def load_workspace_case(ws: Workspace, patient_id: str) -> CaseImages:
    """The patient's normalised images (see :class:`CaseImages`)."""
    return load_case_images(case_files(ws, patient_id))


def add_lesion(
    lesions: list[Lesion], masks: LesionMasks, shape: tuple[int, int, int]
) -> tuple[list[Lesion], int]:
    """``lesions`` with ``masks`` added: it replaces the lesion whose core it overlaps most
    (by more than half of either), else it is appended. Returns the list and its number."""
    new = Lesion(
        masks.full("core", shape), masks.full("necrosis", shape), masks.full("whole", shape)
    )
    best, best_overlap = -1, 0.0
    for i, les in enumerate(lesions):
        inter = int((les.core & new.core).sum())
        if not inter:
            continue
        frac = inter / max(1, min(int(les.core.sum()), int(new.core.sum())))
        if frac > best_overlap:
            best, best_overlap = i, frac
    out = list(lesions)
    if best >= 0 and best_overlap > 0.5:
        out[best] = new
        return out, best + 1
    # where it touches another lesion, the other keeps its voxels
    for les in out:
        new.core &= ~les.core
        new.necrosis &= new.core
    out.append(new)
    return out, len(out)


def affine_of(files: dict[str, Path]) -> np.ndarray:
    import nibabel as nib

    return np.asarray(nib.load(str(files["t1c"])).affine, float)  # type: ignore[attr-defined]
