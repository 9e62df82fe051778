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

import cc3d
import nibabel as nib
import numpy as np
from scipy import ndimage

from brainmets.annotate.case import add_lesion, affine_of, case_files
from brainmets.annotate.grow import LesionMasks, grow_lesion, split_core
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


def enclosed_at(mask: np.ndarray, voxel: tuple[int, int, int], in_slice: bool) -> np.ndarray:
    """The part of the background of ``mask`` that contains ``voxel`` and that ``mask``
    encloses (in the axial slice of ``voxel`` when ``in_slice``, else in 3D), on the whole
    grid; empty when ``voxel`` is in ``mask`` or the background there reaches past the
    mask's bounding box (it is not enclosed)."""
    out = np.zeros(mask.shape, bool)
    if mask[voxel] or not mask.any():
        return out
    if in_slice:
        k = voxel[2]
        sub = mask[:, :, k : k + 1]
    else:
        k = 0
        sub = mask
    idx = np.argwhere(sub)
    lo = idx.min(axis=0)
    hi = idx.max(axis=0) + 1
    at = np.array([voxel[0], voxel[1], voxel[2] - k])
    if np.any(at < lo) or np.any(at >= hi):
        return out
    box = sub[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    pad = np.pad(~box, 1, constant_values=True)  # the background around the box is outside
    if in_slice:
        labels = cc3d.connected_components(np.ascontiguousarray(pad[:, :, 1]), connectivity=4)
        labels = np.pad(labels[:, :, None], ((0, 0), (0, 0), (1, 1)))
    else:
        labels = cc3d.connected_components(pad, connectivity=6)
    lab = labels[tuple(at - lo + 1)]
    if lab == 0 or lab == labels[0, 0, 1]:  # the outside's component
        return out
    hole = np.asarray(labels == lab)[1:-1, 1:-1, 1:-1]
    out[lo[0] : hi[0], lo[1] : hi[1], lo[2] + k : hi[2] + k] = hole
    return out


def _split(les: Lesion) -> list[Lesion]:
    """A lesion's core in its separate parts (pieces that do not touch, else the touching
    lesions :func:`~brainmets.annotate.grow.split_core` finds), each with its necrosis and
    the whole tumour nearest to it."""
    labels, n = cc3d.connected_components(les.core, connectivity=26, return_N=True)
    pieces = [np.asarray(labels == i) for i in range(1, n + 1)]
    parts = pieces if n > 1 else split_core(les.core)
    if len(parts) < 2:
        return [les]
    markers = np.zeros(les.core.shape, np.int32)
    for i, part in enumerate(parts, start=1):
        markers[part] = i
    _, idx = ndimage.distance_transform_edt(markers == 0, return_indices=True)
    nearest = markers[idx[0], idx[1], idx[2]]
    return [
        Lesion(part, les.necrosis & part, les.whole & (nearest == i))
        for i, part in enumerate(parts, start=1)
    ]


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
            if lesion == 0 and not ball.any():
                raise ValueError("the brush is outside the brain: nothing to paint there")
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

    def fill(
        self,
        user: str,
        patient_id: str,
        voxel: tuple[int, int, int],
        region: str,
        lesion: int,
        brush: str = "disc",
    ) -> Draft:
        """Fill the hole of one region of lesion ``lesion`` that contains ``voxel``, in its
        axial slice (``brush`` ``disc``) or in 3D (``sphere``): for ``core`` and ``whole`` the
        background that region encloses joins it; for ``necrosis`` the hole of the
        enhancing rim (the core without necrosis) becomes necrosis."""
        if region not in BRUSH_REGIONS:
            raise ValueError(f"region must be one of {', '.join(BRUSH_REGIONS)}")
        if brush not in BRUSHES:
            raise ValueError(f"brush must be one of {', '.join(BRUSHES)}")
        case, _ = self.case(patient_id)
        if not all(0 <= v < n for v, n in zip(voxel, case.shape, strict=True)):
            raise ValueError(f"voxel {list(voxel)} is outside the image")
        d = self.draft(user, patient_id)
        with self._lock:
            if not 1 <= lesion <= len(d.lesions):
                raise ValueError(f"choose the lesion to fill (1 to {len(d.lesions)})")
            old = d.lesions[lesion - 1]
            wall = old.core & ~old.necrosis if region == "necrosis" else getattr(old, region)
            hole = enclosed_at(wall, voxel, brush == "disc") & case.brain
            where = "in this slice" if brush == "disc" else "in 3D"
            if not hole.any():
                raise ValueError(
                    f"nothing to fill here: the click is not in a hole that lesion {lesion}'s "
                    f"{'enhancing rim' if region == 'necrosis' else region} encloses {where}"
                )
            core, nec, whole = old.core.copy(), old.necrosis.copy(), old.whole.copy()
            if region == "whole":
                whole |= hole
            else:
                core |= hole
                if region == "necrosis":
                    nec |= hole
            d.undo.append(list(d.lesions))
            d.redo.clear()
            d.lesions = [
                Lesion(core, nec, whole) if i == lesion else x
                for i, x in enumerate(d.lesions, start=1)
            ]
            d.tool, d.changed = "fill", True
        return d

    def split(self, user: str, patient_id: str, lesion: int) -> Draft:
        """Split lesion ``lesion`` into its parts (see :func:`_split`); they take its
        number and the next ones."""
        d = self.draft(user, patient_id)
        with self._lock:
            if not 1 <= lesion <= len(d.lesions):
                raise ValueError(f"no lesion {lesion} in the draft")
            parts = _split(d.lesions[lesion - 1])
            if len(parts) < 2:
                raise ValueError(
                    f"lesion {lesion} is one piece: erase the bridge between its parts with "
                    "the brush first"
                )
            d.undo.append(list(d.lesions))
            d.redo.clear()
            d.lesions = [*d.lesions[: lesion - 1], *parts, *d.lesions[lesion:]]
            d.tool, d.changed = "edit", True
        return d

    def merge(self, user: str, patient_id: str, lesions: list[int]) -> Draft:
        """Merge two or more lesions into one (the union of each region), numbered as the
        first of them."""
        d = self.draft(user, patient_id)
        with self._lock:
            chosen = sorted(set(lesions))
            if len(chosen) < 2:
                raise ValueError("choose at least two lesions to merge")
            if chosen[0] < 1 or chosen[-1] > len(d.lesions):
                raise ValueError(f"the draft has lesions 1 to {len(d.lesions)}")
            parts = [d.lesions[i - 1] for i in chosen]
            merged = Lesion(
                np.logical_or.reduce([x.core for x in parts]),
                np.logical_or.reduce([x.necrosis for x in parts]),
                np.logical_or.reduce([x.whole for x in parts]),
            )
            d.undo.append(list(d.lesions))
            d.redo.clear()
            out: list[Lesion] = []
            for i, x in enumerate(d.lesions, start=1):
                if i == chosen[0]:
                    out.append(merged)
                elif i not in chosen:
                    out.append(x)
            d.lesions = out
            d.tool, d.changed = "edit", True
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
