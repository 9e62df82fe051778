"""Annotation in the review app: each user's draft of a patient's lesions, edited with the
tools of :mod:`brainmets.annotate` and saved as a new version of the patient's masks.

A :class:`Draft` starts from the patient's current masks (``annotations/<patient>/``) and
holds a *pending* lesion — the last click-to-segment result or a proposal — that the user
grows, shrinks, accepts or rejects; every accepted change can be undone and redone. Saving
writes the draft's lesions as a new version (:func:`brainmets.annotate.store.save_version`)
with the tool that made the last change; from then on the case is pending review
(:func:`brainmets.cohort.review.review_state`), and the next ``brainmets run`` fuses it.
Drafts live in the server's memory (one per user and patient; the two most recently used
cases' images are kept loaded).
"""

from __future__ import annotations

import gzip
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

from brainmets.annotate.case import add_lesion, affine_of, case_files
from brainmets.annotate.grow import LesionMasks, grow_lesion
from brainmets.annotate.images import CaseImages, load_case_images
from brainmets.annotate.propose import Candidate
from brainmets.annotate.proposers import proposer_from_config
from brainmets.annotate.store import Lesion, current_lesions, save_version
from brainmets.catalog import AnnotationVersion
from brainmets.workspace import Workspace

__all__ = ["DRAFT_LABELS", "Draft", "Drafts"]

#: values of the draft label map the browser shows: the reference's labels for accepted
#: lesions, and 4 for the pending lesion (drawn in magenta)
DRAFT_LABELS = {"necrosis": 1, "edema": 2, "enhancing": 3, "pending": 4}


def _brush(
    shape: tuple[int, int, int], centre: tuple[int, int, int], radius: float, brush: str
) -> np.ndarray:
    g = np.ogrid[: shape[0], : shape[1], : shape[2]]
    d2 = (g[0] - centre[0]) ** 2 + (g[1] - centre[1]) ** 2
    if brush == "sphere":
        d2 = d2 + (g[2] - centre[2]) ** 2
        return np.asarray(d2 <= radius * radius)
    return np.asarray((d2 <= radius * radius) & (g[2] == centre[2]))  # a disc in the slice


#: what the brush paints, and its shapes
BRUSH_REGIONS = ("core", "necrosis", "whole")
BRUSHES = ("sphere", "disc")


@dataclass
class Draft:
    """One user's draft of one patient's lesions."""

    patient_id: str
    lesions: list[Lesion]
    base_version: int | None
    pending: LesionMasks | None = None
    pending_seed: tuple[int, int, int] | None = None
    pending_steps: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    undo: list[list[Lesion]] = field(default_factory=list)
    redo: list[list[Lesion]] = field(default_factory=list)
    tool: str = "grow"
    changed: bool = False

    def label_map(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The draft as one label map (:data:`DRAFT_LABELS`)."""
        out = np.zeros(shape, np.uint8)
        for les in self.lesions:
            out[les.whole & (out == 0)] = DRAFT_LABELS["edema"]
        for les in self.lesions:
            out[les.core] = DRAFT_LABELS["enhancing"]
            out[les.necrosis] = DRAFT_LABELS["necrosis"]
        if self.pending is not None:
            out[self.pending.full("core", shape)] = DRAFT_LABELS["pending"]
        return out

    def summary(self) -> dict[str, Any]:
        pend = None
        if self.pending is not None:
            pend = {
                **self.pending.counts(),
                "seed": list(self.pending_seed or self.pending.seed),
                "steps": self.pending_steps,
                "centre_voxel": [round(c, 1) for c in self.pending.centroid()],
            }
        return {
            "patient": self.patient_id,
            "lesions": [
                {
                    "lesion": n,
                    "core": int(les.core.sum()),
                    "necrosis": int(les.necrosis.sum()),
                    "whole": int(les.whole.sum()),
                }
                for n, les in enumerate(self.lesions, start=1)
            ],
            "pending": pend,
            "candidates": [c.as_dict(i) for i, c in enumerate(self.candidates, start=1)],
            "can_undo": bool(self.undo),
            "can_redo": bool(self.redo),
            "changed": self.changed,
            "base_version": self.base_version,
        }


class Drafts:
    """The drafts of one server, with a small cache of loaded cases (thread-safe)."""

    def __init__(self, ws: Workspace, cases_kept: int = 2) -> None:
        self.ws = ws
        self._cases: OrderedDict[str, tuple[CaseImages, np.ndarray]] = OrderedDict()
        self._drafts: dict[tuple[str, str], Draft] = {}
        self._lock = threading.RLock()
        self._kept = cases_kept

    def case(self, patient_id: str) -> tuple[CaseImages, np.ndarray]:
        """The patient's images (loaded once, kept for the next clicks) and their affine."""
        with self._lock:
            if patient_id in self._cases:
                self._cases.move_to_end(patient_id)
                return self._cases[patient_id]
        files = case_files(self.ws, patient_id)  # CaseNotReady for a patient without them
        case = load_case_images(files)
        _ = case.smooth_enhancement
        got = (case, affine_of(files))
        with self._lock:
            self._cases[patient_id] = got
            while len(self._cases) > self._kept:
                self._cases.popitem(last=False)
        return got

    def draft(self, user: str, patient_id: str) -> Draft:
        with self._lock:
            d = self._drafts.get((user, patient_id))
            if d is None:
                from brainmets.catalog import Catalog

                with Catalog.open(self.ws.catalog_path, readonly=True) as cat:
                    versions = cat.annotation_versions(patient_id)
                d = Draft(
                    patient_id,
                    current_lesions(self.ws, patient_id),
                    versions[-1].version if versions else None,
                )
                self._drafts[(user, patient_id)] = d
            return d

    def discard(self, user: str, patient_id: str) -> None:
        with self._lock:
            self._drafts.pop((user, patient_id), None)

    # ------------------------------------------------------------------- edits
    def grow(self, user: str, patient_id: str, voxel: tuple[int, int, int], steps: int) -> Draft:
        case, _ = self.case(patient_id)
        d = self.draft(user, patient_id)
        m = grow_lesion(case, voxel, steps=steps)  # NoLesionHere: nothing there
        with self._lock:
            d.pending, d.pending_seed, d.pending_steps, d.tool = m, voxel, steps, "grow"
        return d

    def step(self, user: str, patient_id: str, delta: int) -> Draft:
        d = self.draft(user, patient_id)
        if d.pending_seed is None:
            raise ValueError("no pending lesion to grow or shrink (click a lesion first)")
        return self.grow(user, patient_id, d.pending_seed, d.pending_steps + delta)

    def propose(self, user: str, patient_id: str) -> Draft:
        case, _ = self.case(patient_id)
        d = self.draft(user, patient_id)
        proposer = proposer_from_config(self.ws.config.data)  # [annotate]; built-in default
        cands = proposer.propose(case, case_files(self.ws, patient_id))
        with self._lock:
            d.candidates = cands
        return d

    def pick(self, user: str, patient_id: str, candidate: int) -> Draft:
        d = self.draft(user, patient_id)
        if not 1 <= candidate <= len(d.candidates):
            raise ValueError(f"no candidate {candidate} (run the proposals first)")
        with self._lock:
            c = d.candidates[candidate - 1]
            d.pending, d.pending_seed, d.pending_steps, d.tool = c.masks, c.masks.peak, 0, "propose"
        return d

    def accept(self, user: str, patient_id: str) -> tuple[Draft, int]:
        case, _ = self.case(patient_id)
        d = self.draft(user, patient_id)
        with self._lock:
            if d.pending is None:
                raise ValueError("no pending lesion to accept")
            d.undo.append(list(d.lesions))
            d.redo.clear()
            d.lesions, n = add_lesion(d.lesions, d.pending, case.shape)
            d.pending = d.pending_seed = None
            d.pending_steps = 0
            d.changed = True
        return d, n

    def reject(self, user: str, patient_id: str) -> Draft:
        d = self.draft(user, patient_id)
        with self._lock:
            d.pending = d.pending_seed = None
            d.pending_steps = 0
        return d

    def remove(self, user: str, patient_id: str, lesion: int) -> Draft:
        d = self.draft(user, patient_id)
        with self._lock:
            if not 1 <= lesion <= len(d.lesions):
                raise ValueError(f"no lesion {lesion} in the draft")
            d.undo.append(list(d.lesions))
            d.redo.clear()
            d.lesions = [x for i, x in enumerate(d.lesions, start=1) if i != lesion]
            d.tool, d.changed = "edit", True
        return d

    def paint(
        self,
        user: str,
        patient_id: str,
        voxel: tuple[int, int, int],
        radius: float,
        region: str,
        lesion: int,
        erase: bool = False,
        brush: str = "sphere",
    ) -> Draft:
        """Paint (or erase) a brush — a 3D ``sphere`` or a ``disc`` in the axial slice — of
        ``radius`` voxels at ``voxel`` into one region (``core``, ``necrosis``, ``whole``) of
        lesion ``lesion`` (0: a new lesion, painting its core). Keeps each lesion consistent:
        necrosis inside the core, the core inside the whole tumour."""
        if region not in BRUSH_REGIONS:
            raise ValueError(f"region must be one of {', '.join(BRUSH_REGIONS)}")
        if brush not in BRUSHES:
            raise ValueError(f"brush must be one of {', '.join(BRUSHES)}")
        if not 0.5 <= radius <= 25:
            raise ValueError("radius must be between 0.5 and 25 voxels")
        case, _ = self.case(patient_id)
        ball = _brush(case.shape, voxel, radius, brush) & case.brain
        d = self.draft(user, patient_id)
        with self._lock:
            if not 0 <= lesion <= len(d.lesions):
                raise ValueError(f"no lesion {lesion} in the draft (0: a new one)")
            if lesion == 0 and erase:
                raise ValueError("choose the lesion to erase from")
            before = list(d.lesions)
            if lesion == 0:
                d.lesions = [*d.lesions, Lesion(ball, np.zeros_like(ball), ball.copy())]
            else:
                old = d.lesions[lesion - 1]
                core, nec, whole = old.core.copy(), old.necrosis.copy(), old.whole.copy()
                target = {"core": core, "necrosis": nec, "whole": whole}[region]
                if erase:
                    target &= ~ball
                else:
                    target |= ball
                if region == "necrosis" and not erase:
                    core |= ball  # necrosis is part of the core
                if region == "whole" and erase:
                    core &= whole
                if not core.any():  # erased away: the lesion is gone
                    d.lesions = [x for i, x in enumerate(d.lesions, start=1) if i != lesion]
                else:
                    d.lesions = [
                        Lesion(core, nec, whole) if i == lesion else x
                        for i, x in enumerate(d.lesions, start=1)
                    ]
            d.undo.append(before)
            d.redo.clear()
            d.tool, d.changed = "brush", True
        return d

    def undo(self, user: str, patient_id: str) -> Draft:
        return self._swap(user, patient_id, redo=False)

    def redo(self, user: str, patient_id: str) -> Draft:
        return self._swap(user, patient_id, redo=True)

    def _swap(self, user: str, patient_id: str, *, redo: bool) -> Draft:
        """Undo (or redo) the last accepted change."""
        d = self.draft(user, patient_id)
        with self._lock:
            source, target = (d.redo, d.undo) if redo else (d.undo, d.redo)
            if not source:
                raise ValueError(f"nothing to {'redo' if redo else 'undo'}")
            target.append(list(d.lesions))
            d.lesions = source.pop()
            d.changed = True
        return d

    def save(self, user: str, patient_id: str) -> AnnotationVersion:
        _, affine = self.case(patient_id)
        d = self.draft(user, patient_id)
        with self._lock:
            if not d.lesions:
                raise ValueError("the draft has no lesion to save")
            lesions = list(d.lesions)
            parent, tool = d.base_version, d.tool
        rec = save_version(self.ws, patient_id, lesions, affine, user, tool, parent=parent)
        self.discard(user, patient_id)  # the next draft starts from the saved version
        return rec

    def label_map_gz(self, user: str, patient_id: str) -> bytes:
        """The draft as a gzip NIfTI (uint8) on the case's grid."""
        case, affine = self.case(patient_id)
        d = self.draft(user, patient_id)
        with self._lock:
            data = d.label_map(case.shape)
        img = nib.Nifti1Image(data, affine)
        img.header.set_data_dtype(np.uint8)
        raw = io.BytesIO()
        raw.write(img.to_bytes())
        return gzip.compress(raw.getvalue(), compresslevel=1)
