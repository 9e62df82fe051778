"""Reading the published collection (Pretreat-MetsToBrain-Masks / BraTS-METS layout).

Layout: ``BraTS-MET-XXXXX-000/BraTS-MET-XXXXX-000-{t1n,t1c,t2w,t2f,seg}.nii.gz`` anywhere
below the given folder. For every case the segmentation is read and checked (float files are
cast after checking that every value is integral), its grid is compared with each image's
(a mismatch is an error naming both files), and every feature is recomputed.

The workbook ID is the integer ``XXXXX`` (86 for ``BraTS-MET-00086-000``) as in the published
sheet; a time point other than ``000`` keeps the full case name.
"""

from __future__ import annotations

import multiprocessing
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import nibabel as nib

from brainmets.atlas import AtlasError
from brainmets.labelmaps.io import LabelMapError, check_same_grid, load_label_map
from brainmets.lesions.analysis import Analysis, FeatureParams, analyse
from brainmets.lesions.atlas import load_atlas_labels
from brainmets.vocab import IMAGE_SUFFIXES

CASE_RE = re.compile(r"^BraTS-MET-(\d{5})-(\d{3})$")
SEQUENCES = IMAGE_SUFFIXES


@dataclass
class CollectionCase:
    """One case folder of the collection."""

    case_id: str
    folder: Path
    met_id: int
    timepoint: int
    seg: Path | None
    images: dict[str, Path] = field(default_factory=dict)

    @property
    def workbook_id(self) -> int | str:
        return self.met_id if self.timepoint == 0 else self.case_id


@dataclass
class CollectionResult:
    """The analysis of one case, or the error that stopped it."""

    case_id: str
    workbook_id: int | str
    analysis: Analysis | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _file(folder: Path, case_id: str, suffix: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        p = folder / f"{case_id}-{suffix}{ext}"
        if p.is_file():
            return p
    return None


def find_cases(root: str | os.PathLike[str]) -> list[CollectionCase]:
    """Every ``BraTS-MET-XXXXX-NNN`` folder below ``root`` (sorted by case name)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"collection folder {root} does not exist")
    cases: list[CollectionCase] = []
    candidates = [root] if CASE_RE.match(root.name) else []
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            if CASE_RE.match(d):
                candidates.append(Path(dirpath) / d)
    for folder in candidates:
        m = CASE_RE.match(folder.name)
        assert m is not None
        images = {s: p for s in SEQUENCES if (p := _file(folder, folder.name, s)) is not None}
        cases.append(
            CollectionCase(
                case_id=folder.name,
                folder=folder,
                met_id=int(m.group(1)),
                timepoint=int(m.group(2)),
                seg=_file(folder, folder.name, "seg"),
                images=images,
            )
        )
    return sorted(cases, key=lambda c: c.case_id)


def analyse_case(
    case: CollectionCase,
    params: FeatureParams | None = None,
    atlas_dir: str | None = None,
    check_images: bool = True,
) -> CollectionResult:
    """Check and analyse one case; problems become ``CollectionResult.error`` (never raised)."""
    res = CollectionResult(case.case_id, case.workbook_id)
    try:
        if case.seg is None:
            raise LabelMapError(
                f"{case.folder}: no segmentation {case.case_id}-seg.nii.gz in the case folder"
            )
        dtype = cast(nib.Nifti1Image, nib.load(str(case.seg))).get_data_dtype()
        lm = load_label_map(case.seg)
        if dtype.kind == "f":
            res.notes.append(f"segmentation stored as {dtype}; cast to uint8 (all values integral)")
        if check_images:
            for path in case.images.values():
                check_same_grid(lm, path)
            missing = [s for s in SEQUENCES if s not in case.images]
            if missing:
                res.notes.append(f"missing image(s): {', '.join(missing)}")
        atlas = load_atlas_labels(atlas_dir)
        res.analysis = analyse(lm, params=params or FeatureParams(), atlas=atlas)
    except (LabelMapError, AtlasError, ValueError, OSError) as exc:
        res.error = str(exc)
    return res


def _work(args: tuple[CollectionCase, FeatureParams, str | None, bool]) -> CollectionResult:
    return analyse_case(*args)


def analyse_collection(
    cases: Iterable[CollectionCase],
    params: FeatureParams | None = None,
    atlas_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    check_images: bool = True,
    progress: Callable[[CollectionResult], None] | None = None,
) -> list[CollectionResult]:
    """Analyse cases, in ``workers`` processes (default: all cores); results in case order.

    The atlas is checked first, so a missing atlas is one clear :class:`AtlasError`.
    """
    cases = list(cases)
    params = params or FeatureParams()
    atlas = str(atlas_dir) if atlas_dir else None
    load_atlas_labels(atlas)
    n = max(1, min(workers or os.cpu_count() or 1, len(cases) or 1))
    jobs = [(c, params, atlas, check_images) for c in cases]
    results: list[CollectionResult] = []
    if n == 1:
        for j in jobs:
            results.append(_work(j))
            if progress:
                progress(results[-1])
        return results
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as ex:
        for r in ex.map(_work, jobs, chunksize=max(1, len(jobs) // (n * 8))):
            results.append(r)
            if progress:
                progress(r)
    return results
