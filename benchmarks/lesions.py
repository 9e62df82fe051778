"""Benchmark: lesion counting and measurement, brainmets (cc3d) vs a plain scipy.ndimage.label
implementation, measured in the same run on the same data.

* one 240 x 240 x 155 case in memory (median of repeats);
* a cohort of ``--cases`` cases in the published collection's layout, read from disk and
  analysed with ``--workers`` processes (the first ``--unique`` label maps are distinct, the
  others are hard links to them: every case is still read and decoded).

Usage::

    .venv/bin/python benchmarks/lesions.py [--cases 200] [--workers 2] [--unique 20]

The plain implementation counts components per label with ``scipy.ndimage.label`` (26-
connectivity), sums volumes with ``numpy.bincount`` and flags infratentorial lesions from
their centroids and voxel fractions with ``scipy.ndimage`` (no diameters, no edema split):
it computes less than brainmets does.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainmets.cohort.workbook import write_workbook
from brainmets.lesions import analyse, analyse_collection, find_cases, load_atlas_labels

SHAPE = (240, 240, 155)


def synthetic_label_map(rng: np.random.Generator, brain: np.ndarray) -> np.ndarray:
    """1-15 lesions (enhancing rim, some necrotic, edema around) at random brain voxels."""
    lab = np.zeros(SHAPE, np.uint8)
    centres = np.argwhere(brain)
    n = int(rng.integers(1, 16))
    for _ in range(n):
        c = centres[rng.integers(len(centres))]
        r = float(rng.choice([rng.uniform(1.5, 4), rng.uniform(4, 15)]))
        re = r * float(rng.uniform(1.3, 2.5)) if rng.random() < 0.8 else 0.0
        ext = int(np.ceil(max(r, re))) + 1
        lo = np.maximum(c - ext, 0)
        hi = np.minimum(c + ext + 1, SHAPE)
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        g = np.ogrid[sl]
        d2 = sum((ax - cc) ** 2 for ax, cc in zip(g, c, strict=True))
        sub = lab[sl]
        if re:
            sub[(d2 <= re * re) & (sub == 0) & brain[sl]] = 2
        sub[d2 <= r * r] = 3
        if r > 5 and rng.random() < 0.6:
            sub[d2 <= (0.5 * r) ** 2] = 1
    return lab


def plain_scipy(lab: np.ndarray, infra: np.ndarray, vox_mm3: float) -> dict[str, float]:
    """The reference features with scipy.ndimage only, on the full grid."""
    s = np.ones((3, 3, 3), bool)
    out: dict[str, float] = {}
    for name, v in (("ET", 3), ("Nec", 1), ("Edema", 2)):
        _, n = ndimage.label(lab == v, structure=s)
        out[f"{name}_num"] = n
    counts = np.bincount(lab.ravel(), minlength=4)
    for name, v in (("ET", 3), ("Nec", 1), ("Edema", 2)):
        out[f"{name}_vol"] = round(counts[v] * vox_mm3 / 1000, 3)
    core, n = ndimage.label((lab == 1) | (lab == 3), structure=s)
    flag = 0
    if n:
        idx = np.arange(1, n + 1)
        frac = ndimage.mean(infra, core, idx)
        cents = ndimage.center_of_mass(core > 0, core, idx)
        for f, c in zip(frac, cents, strict=True):
            at = infra[tuple(int(round(x)) for x in c)]
            flag |= int(bool(at) or f > 0.5)
    out["Infratentorial"] = flag
    core_v = counts[1] + counts[3]
    out["Nec_ET_ratio"] = round(counts[1] / core_v, 4) if core_v else float("nan")
    return out


def _plain_case(args: tuple[str, str]) -> int:
    seg, atlas_dir = args
    atlas = load_atlas_labels(atlas_dir or None)
    img = nib.load(seg)
    lab = np.asarray(img.dataobj).astype(np.uint8)
    plain_scipy(lab, atlas.infratentorial, float(abs(np.linalg.det(img.affine[:3, :3]))))
    return 1


def make_collection(
    root: Path, n_cases: int, n_unique: int, brain: np.ndarray, affine: np.ndarray
) -> None:
    rng = np.random.default_rng(2024)
    root.mkdir(parents=True, exist_ok=True)
    image = root.parent / "image.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(SHAPE, np.int16), affine), str(image))
    uniques: list[Path] = []
    for i in range(n_cases):
        case = f"BraTS-MET-{i + 1:05d}-000"
        d = root / case
        d.mkdir(parents=True)
        seg = d / f"{case}-seg.nii.gz"
        if i < n_unique:
            nib.save(nib.Nifti1Image(synthetic_label_map(rng, brain), affine), str(seg))
            uniques.append(seg)
        else:
            os.link(uniques[i % n_unique], seg)
        for s in ("t1n", "t1c", "t2w", "t2f"):
            (d / f"{case}-{s}.nii.gz").symlink_to(image)


def _cpu() -> float:
    """CPU seconds of this process and its reaped children (the worker pools)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _pool(fn: Callable[[Any], int], jobs: list[Any], workers: int) -> list[int]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        return list(ex.map(fn, jobs, chunksize=max(1, len(jobs) // (workers * 8))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--unique", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument(
        "--plain-cases",
        type=int,
        default=40,
        help="cases for the (slow) plain scipy run; 0 = all (default 40, rate extrapolated)",
    )
    ap.add_argument("--atlas-dir", default="")
    args = ap.parse_args(argv)
    atlas = load_atlas_labels(args.atlas_dir or None)
    brain = ndimage.binary_erosion(
        np.asarray(nib.load(str(Path(atlas.source) / "tissues.nii.gz")).dataobj) > 0, iterations=3
    )
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPU(s), workers {args.workers}, "
        f"load average {load} (wall times grow with other load; CPU times do not)"
    )

    # one case in memory
    rng = np.random.default_rng(7)
    lab = synthetic_label_map(rng, brain)
    vox = float(abs(np.linalg.det(atlas.affine[:3, :3])))
    analyse(lab, atlas.affine, atlas=atlas)  # warm up
    t_bm, t_sp, c_bm, c_sp = [], [], [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        a = analyse(lab, atlas.affine, atlas=atlas)
        t_bm.append(time.perf_counter() - t0)
        c_bm.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        p = plain_scipy(lab, atlas.infratentorial, vox)
        t_sp.append(time.perf_counter() - t0)
        c_sp.append(time.process_time() - c0)
    same = all(
        a.features.row()[k] == p[k]
        for k in ("ET_num", "Nec_num", "Edema_num", "ET_vol", "Infratentorial")
    )
    med = statistics.median
    print(
        f"\none case 240x240x155 in memory ({a.features.n_lesions} lesions), "
        f"median of {args.repeats} (wall / CPU):"
    )
    print(
        f"  brainmets (cc3d, full per-lesion table)   {med(t_bm) * 1000:7.1f} / "
        f"{med(c_bm) * 1000:7.1f} ms"
    )
    print(
        f"  plain scipy.ndimage.label (features only) {med(t_sp) * 1000:7.1f} / "
        f"{med(c_sp) * 1000:7.1f} ms"
    )
    print(f"  same counts / volumes / infratentorial: {same}")

    with tempfile.TemporaryDirectory(prefix="bm-bench-") as tmp:
        root = Path(tmp) / "collection"
        t0 = time.perf_counter()
        make_collection(root, args.cases, min(args.unique, args.cases), brain, atlas.affine)
        print(
            f"\ncohort: {args.cases} cases written in {time.perf_counter() - t0:.1f} s "
            "(not timed below)"
        )
        cases = find_cases(root)
        t0, c0 = time.perf_counter(), _cpu()
        results = analyse_collection(cases, workers=args.workers, atlas_dir=args.atlas_dir or None)
        t_coll, c_coll = time.perf_counter() - t0, _cpu() - c0
        failed = [r for r in results if r.error]
        t0 = time.perf_counter()
        write_workbook(
            Path(tmp) / "out.xlsx",
            {r.case_id: r.analysis.features for r in results if r.analysis},
            {r.case_id: r.analysis.lesions for r in results if r.analysis},
        )
        t_wb = time.perf_counter() - t0
        n_plain = len(cases) if args.plain_cases <= 0 else min(args.plain_cases, len(cases))
        jobs = [(str(c.seg), args.atlas_dir) for c in cases[:n_plain]]
        t0, c0 = time.perf_counter(), _cpu()
        n = sum(_pool(_plain_case, jobs, args.workers))
        t_plain, c_plain = time.perf_counter() - t0, _cpu() - c0
        n_les = sum(r.analysis.features.n_lesions for r in results if r.analysis)
        k = len(cases) / max(n, 1)
        print(
            f"cohort of {len(cases)} cases from disk, {args.workers} worker processes "
            "(incl. start-up), wall / CPU:"
        )
        print(
            f"  brainmets analyse_collection  {t_coll:7.1f} / {c_coll:7.1f} s  "
            f"({len(results) - len(failed)} ok, {n_les} lesions; seg values and image grids "
            "checked)"
        )
        print(f"  + write_workbook              {t_wb:7.1f} s")
        extra = "" if n == len(cases) else f" x {k:.1f} = {t_plain * k:.1f} / {c_plain * k:.1f} s"
        print(
            f"  plain scipy.ndimage.label     {t_plain:7.1f} / {c_plain:7.1f} s  ({n} cases)"
            + extra
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
