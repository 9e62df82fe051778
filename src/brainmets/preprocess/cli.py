"""Plain functions behind ``brainmets preprocess`` (standalone, without a workspace).

``run_standalone`` preprocesses one case from four NIfTI files into a folder, exactly as the
pipeline stage does (same code, same outputs, QC as JSON, transforms); ``run_to_native``
maps an image or label map on the SRI24 grid back to a native grid with the saved
transforms. Both print a one-line summary or a clear error and return an exit code:
0 success, 1 bad input or failed step, 2 usage error.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import nibabel as nib

from brainmets.atlas import AtlasError
from brainmets.fsutil import atomic_path
from brainmets.preprocess.errors import PreprocessError
from brainmets.preprocess.pipeline import PreprocessOptions, preprocess_case
from brainmets.preprocess.transforms import map_to_native
from brainmets.spatial import CaseTransforms

PathLike = str | os.PathLike[str]


def _case_id_from(path: Path) -> str:
    """A case ID from a file name: ``BraTS-MET-00110-000-t1c.nii.gz`` -> the part before the
    sequence suffix, else the name without extension."""
    name = path.name
    for suf in (".nii.gz", ".nii"):
        if name.endswith(suf):
            name = name[: -len(suf)]
    m = re.match(r"(.+?)[-_](t1c|t1ce|t1n|t1|t2w|t2|t2f|flair)$", name, re.IGNORECASE)
    return m.group(1) if m else name


def run_standalone(
    t1: PathLike,
    t1c: PathLike,
    t2: PathLike,
    flair: PathLike,
    out: PathLike,
    segs: Sequence[PathLike] = (),
    case_id: str | None = None,
    seg_space: str = "auto",
    atlas_dir: PathLike | None = None,
    stream: TextIO | None = None,
    **params: Any,
) -> int:
    """Preprocess one case without a workspace.

    Writes into ``out``: ``<ID>-t1n.nii.gz``, ``<ID>-t1c.nii.gz``, ``<ID>-t2w.nii.gz``,
    ``<ID>-t2f.nii.gz``, ``<ID>-mask.nii.gz``, ``<ID>-qc.json``, ``<ID>-transforms.json`` and
    ITK transform files, and for each label map in ``segs`` (drawn on a native series: the
    T1c unless ``seg_space`` or its grid says otherwise) ``<ID>-seg.nii.gz`` (one) or
    ``<ID>-seg-<name>.nii.gz`` (several). ``case_id`` defaults to the T1c file name without
    its sequence suffix. ``params``: :class:`PreprocessOptions` fields (e.g.
    ``atlas_registration="affine"``, ``skull_stripper="atlas"``). Returns the exit code.
    """
    err = stream or sys.stderr
    try:
        opts = PreprocessOptions.from_params(params)
    except (TypeError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    cid = case_id or _case_id_from(Path(t1c))
    inputs = {"t1": t1, "t1c": t1c, "t2": t2, "flair": flair}
    try:
        res = preprocess_case(
            inputs,
            Path(out),
            cid,
            opts,
            atlas_dir=atlas_dir,
            segs=list(segs),
            seg_space=seg_space,
            log=lambda m: print(f"{cid}: {m}", file=err),
        )
    except (PreprocessError, AtlasError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    flags = res.qc.get("flags") or []
    print(
        f"{cid}: wrote {len(res.outputs)} files to {out} "
        f"(skull stripper {res.qc.get('skull_stripper')}, brain "
        f"{res.qc.get('brain_volume_cm3')} cm3, {res.timings.get('total_s', 0):.0f} s"
        + (f"; QC flags: {', '.join(flags)}" if flags else "")
        + ")",
        file=err,
    )
    return 0


def run_to_native(
    image: PathLike,
    transforms: PathLike,
    out: PathLike,
    space: str = "t1c",
    kind: str | None = None,
    reference: PathLike | None = None,
    stream: TextIO | None = None,
) -> int:
    """Map ``image`` (on the SRI24 output grid of a case) to the native grid of ``space``
    (``t1c``, ``t1``, ``t2``, ``flair``) using ``transforms`` (``<ID>-transforms.json``),
    writing ``out``. ``kind``: ``"label"``/``"mask"`` (label-preserving), ``"image"``
    (linear), or None to guess from the values. ``reference``: a native image whose grid to
    use instead of the recorded one. Returns the exit code."""
    err = stream or sys.stderr
    if kind not in (None, "image", "label", "mask"):
        print(f"error: kind must be image, label or mask, not {kind!r}", file=err)
        return 2
    try:
        tr = CaseTransforms.load(transforms)
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read transforms {transforms}: {exc}", file=err)
        return 1
    try:
        img = map_to_native(image, tr, space, kind, reference)  # type: ignore[arg-type]
    except (OSError, ValueError, KeyError, PreprocessError) as exc:
        print(f"error: case {tr.case_id}, file {image}: {exc}", file=err)
        return 1
    dest = Path(out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        nib.save(img, str(tmp))
    print(f"{tr.case_id}: wrote {dest} ({space} native grid {img.shape})", file=err)
    return 0
