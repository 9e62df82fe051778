#!/usr/bin/env python3
"""Scale benchmark (not a test): the whole pipeline on N synthetic patients, and the same
cohort slice on the local pool and on a Dask cluster.

    .venv/bin/python benchmarks/scale.py --patients 200            # the issue's size
    .venv/bin/python benchmarks/scale.py --patients 50 --dask-patients 4
    .venv/bin/python benchmarks/scale.py --patients 0 --dask-patients 4   # Dask part only

**Main run.** ``brainmets demo-data`` makes the cohort (its mix of vendors, distractor
series, follow-ups and defects), then the commands users run: ``brainmets init``,
``brainmets config set`` (the synthetic annotators' masks, the clinical sheet),
``brainmets ingest`` and ``brainmets run -j W``, each timed wall-clock as a subprocess.
While ``run`` works, the process tree is sampled every 0.2 s (psutil) for each process's
peak resident memory (the runner and each worker). Afterwards, from the catalog: each
stage's summed and median task time, patients per hour overall and per stage
(patients / (stage task seconds / workers)), and the disk used per patient (the
workspace's files, and the source DICOM). The stage with the most task time is then
profiled (cProfile) on one patient: ``brainmets <stage> --patient P --force``.

**Dask part.** A separate small cohort (``--dask-patients``) in three copies of one fresh
workspace (same key, so the same pseudonyms and the same bytes): ``brainmets run -j 2``
(the local pool), then on ``dask scheduler`` + one and two ``dask worker`` processes
(``--nworkers 1 --nthreads 1`` each) on loopback with ``--scheduler tcp://...``. Prints
each run's wall time, the 1 -> 2 Dask worker scaling efficiency (t1 / (2 t2)), and
whether every recorded patient-stage output has the same SHA-256 in all three.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from brainmets.vocab import COHORT_STAGES, STAGE_ORDER  # noqa: E402

BIN = Path(sys.executable).parent
BRAINMETS = [sys.executable, "-m", "brainmets"]


def sh(args: list[str], **kw) -> float:
    """Run a command; return its wall time; raise with its output on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # 1: some patient failed or was excluded (reported)
        sys.exit(f"{' '.join(map(str, args))} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return dt


class MemorySampler:
    """Peak RSS of a process and its descendants, per process (psutil, every 0.2 s)."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.peak: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                break
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = "runner" if p.pid == self.root.pid else "worker"
                except psutil.Error:
                    continue
                if rss > self.peak.get(p.pid, ("", 0))[1]:
                    self.peak[p.pid] = (name, rss)
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run_pipeline(ws: Path, extra: list[str]) -> tuple[float, MemorySampler]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*BRAINMETS, "run", "-w", str(ws), "-q", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    mem = MemorySampler(proc.pid)
    out, _ = proc.communicate()
    mem.stop()
    dt = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"brainmets run -> {proc.returncode}\n{out}")
    return dt, mem


def du(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def make_workspace(root: Path, cohort: Path, atlas: str | None) -> Path:
    ws = root
    sh([*BRAINMETS, "init", str(ws), *(["--atlas", atlas] if atlas else [])])
    sh(
        [
            *BRAINMETS,
            "config",
            "set",
            "-w",
            str(ws),
            "stages.segment.annotations_dir",
            str(cohort / "truth" / "{mrn}"),
        ]
    )
    sh(
        [
            *BRAINMETS,
            "config",
            "set",
            "-w",
            str(ws),
            "stages.report.clinical_sheet",
            str(cohort / "clinical.xlsx"),
        ]
    )
    return ws


def catalog_rows(ws: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(f"file:{ws / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return list(con.execute(sql))
    finally:
        con.close()


def main_run(args: argparse.Namespace, tmp: Path) -> None:
    n, w = args.patients, args.workers
    cohort, ws = tmp / "cohort", tmp / "ws"
    t_gen = sh(
        [*BRAINMETS, "demo-data", str(cohort), "-n", str(n), "--seed", str(args.seed), "-j", str(w)]
    )
    make_workspace(ws, cohort, args.atlas)
    t_ingest = sh([*BRAINMETS, "ingest", "-w", str(ws), str(cohort / "dicom")])
    t_run, mem = run_pipeline(ws, ["-j", str(w)])
    t_noop, _ = run_pipeline(ws, ["-j", str(w)])

    rows = catalog_rows(ws, "SELECT patient_id, stage, status, duration_s FROM stage_runs")
    by_stage: dict[str, list[float]] = defaultdict(list)
    status: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _pid, stage, st, dur in rows:
        status[stage][st] += 1
        if dur is not None:
            by_stage[stage].append(float(dur))
    patients = catalog_rows(ws, "SELECT COUNT(*) FROM patients")[0][0]
    print(f"\n== main run: {n} synthetic patients (seed {args.seed}), {w} workers")
    print(f"catalog patients (incl. follow-up studies' patients): {patients}")
    print(
        f"demo-data {t_gen:.1f} s; ingest {t_ingest:.1f} s; run {t_run:.1f} s; "
        f"no-op re-run {t_noop:.1f} s"
    )
    total = t_ingest + t_run
    print(f"overall (ingest + run): {total:.0f} s = {n / total * 3600:.0f} patients/hour")
    print(f"{'stage':<11}{'tasks':>6}{'task s':>9}{'median':>8}{'max':>8}{'pat/h':>8}  statuses")
    for stage in STAGE_ORDER:
        durs = by_stage.get(stage, [])
        if not durs:
            continue
        s = sum(durs)
        cohort_stage = stage in COHORT_STAGES
        rate = n / s * 3600 if cohort_stage else n / (s / w) * 3600
        print(
            f"{stage:<11}{len(durs):>6}{s:>9.1f}{statistics.median(durs):>8.2f}"
            f"{max(durs):>8.2f}{rate:>8.0f}  {dict(status[stage])}"
        )
    workers = sorted((rss for name, rss in mem.peak.values() if name == "worker"), reverse=True)
    runner = max((rss for name, rss in mem.peak.values() if name == "runner"), default=0)
    print(
        f"peak RSS: runner {runner / 2**20:.0f} MiB; workers (max first) "
        f"{[round(r / 2**20) for r in workers[:8]]} MiB"
    )
    data = du(ws / "data")
    src = du(cohort / "dicom")
    print(
        f"disk: workspace data {data / 2**20:.0f} MiB = {data / n / 2**20:.1f} MiB/patient; "
        f"exports {du(ws / 'exports') / 2**20:.0f} MiB; source DICOM "
        f"{src / n / 2**20:.1f} MiB/patient"
    )

    if args.profile and by_stage:
        top = max(
            (s for s in by_stage if s not in COHORT_STAGES),
            key=lambda s: sum(by_stage[s]),
        )
        pid = next(p for p, s, st, _ in rows if s == top and st == "done")
        prof = tmp / "top.prof"
        t_prof = time.perf_counter()
        code = (
            "import sys; from brainmets.cli import app; "
            f"sys.argv = ['brainmets', {top!r}, '-w', {str(ws)!r}, '-p', {pid!r}, '--force', "
            "'-j', '1', '-q']\ntry:\n    app()\nexcept SystemExit:\n    pass"
        )
        cProfile.run(code, str(prof))
        print(
            f"\n== profile: {top} (the most task time) on {pid}, "
            f"{time.perf_counter() - t_prof:.1f} s"
        )
        stats = pstats.Stats(str(prof))
        stats.sort_stats("tottime").print_stats(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def output_hashes(ws: Path) -> dict[tuple[str, str, str], str]:
    rows = catalog_rows(ws, "SELECT patient_id, stage, role, sha256 FROM stage_outputs")
    return {(p, s, r): h for p, s, r, h in rows if p != "*"}


def dask_run(ws: Path, workers: int) -> float:
    port = free_port()
    addr = f"tcp://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-dashboard",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        str(BIN / "dask"),
                        "worker",
                        addr,
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(ws.parent / "dask-scratch"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        from distributed import Client

        with Client(addr, timeout=60) as c:
            c.wait_for_workers(workers, timeout=120)
        dt, _ = run_pipeline(ws, ["--scheduler", addr])
        return dt
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def dask_part(args: argparse.Namespace, tmp: Path) -> None:
    k = args.dask_patients
    cohort = tmp / "dask-cohort"
    sh(
        [
            *BRAINMETS,
            "demo-data",
            str(cohort),
            "-n",
            str(k),
            "--seed",
            str(args.seed + 1),
            "-j",
            "2",
        ]
    )
    template = make_workspace(tmp / "dask-template", cohort, args.atlas)
    names = {
        "local pool -j 2": tmp / "ws-local",
        "dask 1 worker": tmp / "ws-dask1",
        "dask 2 workers": tmp / "ws-dask2",
    }
    times: dict[str, float] = {}
    for label, ws in names.items():
        shutil.copytree(template, ws)  # same key -> same pseudonyms -> same bytes
        sh([*BRAINMETS, "ingest", "-w", str(ws), str(cohort / "dicom")])
        if label.startswith("local"):
            times[label], _ = run_pipeline(ws, ["-j", "2"])
        else:
            times[label] = dask_run(ws, 1 if "1 worker" in label else 2)
    print(f"\n== Dask: {k} synthetic patients (seed {args.seed + 1})")
    for label, t in times.items():
        print(f"{label:<16}{t:8.1f} s")
    eff = times["dask 1 worker"] / (2 * times["dask 2 workers"])
    print(
        f"scaling 1 -> 2 Dask workers: {times['dask 1 worker'] / times['dask 2 workers']:.2f}x, "
        f"efficiency {eff:.0%}"
    )
    hashes = {label: output_hashes(ws) for label, ws in names.items()}
    ref = hashes["local pool -j 2"]
    for label, h in hashes.items():
        diff = sorted(key for key in set(ref) | set(h) if ref.get(key) != h.get(key))
        print(
            f"{label:<16}{len(h)} patient-stage outputs, "
            f"{'all equal to the local pool' if not diff else f'{len(diff)} differ: {diff[:5]}'}"
        )
    dup = catalog_rows(
        names["dask 2 workers"], "SELECT COUNT(*) - COUNT(DISTINCT sop_uid) FROM instances"
    )[0][0]
    print(f"duplicated instance rows in the 2-worker catalog: {dup}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=200, help="main run size (0: skip it)")
    ap.add_argument("--dask-patients", type=int, default=4, help="Dask part size (0: skip it)")
    ap.add_argument("--workers", "-j", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--atlas", default=None, help="SRI24 folder (default: lookup)")
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bm-scale-"))
    tmp.mkdir(parents=True, exist_ok=True)
    print(
        json.dumps(
            {
                "patients": args.patients,
                "dask_patients": args.dask_patients,
                "workers": args.workers,
                "cpus": os.cpu_count(),
                "dir": str(tmp),
            }
        )
    )
    try:
        if args.patients:
            main_run(args, tmp)
        if args.dask_patients:
            dask_part(args, tmp)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
