"""Evaluating folders of label maps: pairing, checking, one case per task, in parallel."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, cast

import nibabel as nib
import numpy as np

from brainmets.evaluate.model import CaseResult
from brainmets.evaluate.pairing import Pairing, case_key, pair_folders
from brainmets.labelmaps import LabelMapError, grid_difference, load_label_map


class Definition(Protocol):
    """A lesion-wise evaluation definition (``brats2023`` or ``brats2025``)."""

    @property
    def name(self) -> str: ...

    @property
    def regions(self) -> tuple[str, ...]: ...

    @property
    def metric_names(self) -> tuple[str, ...]: ...

    @property
    def labels(self) -> tuple[int, ...]: ...

    def evaluate(
        self,
        ref_labels: np.ndarray,
        pred_labels: np.ndarray,
        spacing: tuple[float, float, float],
        case_id: str = "",
        probability: np.ndarray | None = None,
    ) -> CaseResult: ...


def definition(name: str) -> Definition:
    """The definition called ``name``, with the challenge's settings."""
    if name == "brats2023":
        from brainmets.evaluate.brats2023 import Brats2023

        return Brats2023()
    if name == "brats2025":
        from brainmets.evaluate.brats2025 import Brats2025

        return Brats2025()
    raise ValueError(f"unknown definition {name!r}: choose one of {', '.join(DEFINITIONS)}")


#: the definitions implemented
DEFINITIONS = ("brats2023", "brats2025")


@dataclass
class Evaluation:
    """All cases of one evaluation run, and every file that was not evaluated (and why)."""

    definition: str
    cases: list[CaseResult] = field(default_factory=list)
    pairing: Pairing = field(default_factory=Pairing)
    errors: dict[str, str] = field(default_factory=dict)  # case id -> message naming the file
    seconds: float = 0.0
    workers: int = 1

    @property
    def accounted(self) -> str:
        return (
            f"{len(self.cases)} case(s) evaluated, {len(self.errors)} failed; "
            + self.pairing.summary()
        )


def load_probability(path: Path, shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """A per-voxel probability map (floats in [0, 1]) on the label map's grid."""
    img = cast(nib.Nifti1Image, nib.load(str(path)))
    diff = grid_difference(shape, affine, img.shape, img.affine)
    if diff is not None:
        raise LabelMapError(f"{path}: probability map grid differs from its label map: {diff}")
    arr = np.asarray(img.dataobj, dtype=np.float32)
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
        raise LabelMapError(f"{path}: a probability map holds finite values in [0, 1]")
    return arr


def evaluate_pair(
    ref_path: Path,
    pred_path: Path,
    definition_name: str,
    case_id: str,
    mapping: Mapping[int, int] | None = None,
    probability_path: Path | None = None,
) -> CaseResult:
    """Check and evaluate one pair of label map files (raises :class:`LabelMapError`)."""
    start = time.perf_counter()
    defn = definition(definition_name)
    ref = load_label_map(ref_path, allowed=defn.labels)
    pred = load_label_map(pred_path, mapping=mapping, allowed=defn.labels)
    diff = grid_difference(ref.shape, ref.affine, pred.shape, pred.affine)
    if diff is not None:
        raise LabelMapError(
            f"{pred_path}: prediction grid differs from the reference {ref_path}: {diff}"
        )
    prob = None
    if probability_path is not None:
        prob = load_probability(probability_path, ref.shape, ref.affine)
    zooms = np.sqrt((ref.affine[:3, :3] ** 2).sum(axis=0))
    spacing = (float(zooms[0]), float(zooms[1]), float(zooms[2]))
    res = defn.evaluate(ref.data, pred.data, spacing, case_id, prob)
    res.ref_file = ref_path.name
    res.pred_file = pred_path.name
    res.seconds = time.perf_counter() - start
    return res


def _task(
    args: tuple[str, Path, Path, str, Mapping[int, int] | None, Path | None],
) -> tuple[str, CaseResult | None, str | None]:
    case_id, ref, pred, name, mapping, prob = args
    try:
        return case_id, evaluate_pair(ref, pred, name, case_id, mapping, prob), None
    except (LabelMapError, OSError, ValueError) as exc:
        return case_id, None, str(exc)


def evaluate_folders(
    pred_dir: str | os.PathLike[str],
    ref_dir: str | os.PathLike[str],
    definition_name: str = "brats2023",
    workers: int = 1,
    mapping: Mapping[int, int] | None = None,
    probability_dir: str | os.PathLike[str] | None = None,
    on_case: Callable[[str, CaseResult | None, str | None], None] | None = None,
) -> Evaluation:
    """Evaluate every prediction of ``pred_dir`` against its reference in ``ref_dir``.

    A case that cannot be evaluated (unreadable file, wrong grid, labels outside the set)
    is recorded in :attr:`Evaluation.errors` with the file named; the others go on.
    ``probability_dir`` holds optional per-voxel probability maps paired by case ID.
    """
    definition(definition_name)  # fail early on an unknown name
    start = time.perf_counter()
    ev = Evaluation(definition=definition_name, workers=max(1, workers))
    ev.pairing = pair_folders(pred_dir, ref_dir)
    probs: dict[str, Path] = {}
    if probability_dir is not None:
        for entry in sorted(Path(probability_dir).iterdir()):
            key = case_key(entry.name)
            if key is not None and entry.is_file():
                probs[key] = entry
    tasks = [
        (cid, ref, pred, definition_name, mapping, probs.get(case_key(ref.name) or ""))
        for cid, ref, pred in ev.pairing.pairs
    ]
    results: list[tuple[str, CaseResult | None, str | None]] = []
    if ev.workers == 1 or len(tasks) <= 1:
        for t in tasks:
            results.append(_task(t))
            if on_case:
                on_case(*results[-1])
    else:
        ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(max_workers=ev.workers, mp_context=ctx) as pool:
            for out in pool.map(_task, tasks):
                results.append(out)
                if on_case:
                    on_case(*out)
    for cid, res, err in results:
        if res is not None:
            ev.cases.append(res)
        else:
            ev.errors[cid] = err or "failed"
    ev.seconds = time.perf_counter() - start
    return ev
