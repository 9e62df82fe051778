#!/usr/bin/env python3
"""Catalog scale benchmark (not a test): the coordinator's catalog at 10,000 patients.

    .venv/bin/python benchmarks/catalog_scale.py                      # 10,000 x 30 x 200
    .venv/bin/python benchmarks/catalog_scale.py --patients 1000      # 6 M instances

A workspace is made with ``brainmets init`` and a small real source folder (real DICOM of
the shared test data) is ingested for real. Then its catalog is filled, in SQL, with
``--patients`` generated patients x ``--series`` series x ``--instances`` instances: the
``instances`` and ``source_files`` rows (paths, UIDs and hashes of realistic length, files
under ``/archive/...`` that are not on disk), one study per patient, the series, a
``done`` row per patient for the six patient stages and three outputs per patient stage.
Generation time is printed but is not a result.

Timed, as users run them (subprocesses, median of ``--repeat``):

* ``brainmets status`` (the table) and ``brainmets status --json``;
* ``brainmets ingest`` of the unchanged real source (the catalog's other files are outside
  it);
* the coordinator's catalog operations at this size, in-process: reading one patient's
  source files (the deid stage's fingerprint input), recording a new patient's deid result
  (6,000 instance and source-file rows in one transaction, as the runner does), the whole
  ``stage_runs`` table, the input-file counts;
* a pipeline run and a re-run with nothing to do over every patient: the toy pipeline
  (``brainmets.pipeline.toy``: two small patient stages and two cohort stages, real
  outputs, fingerprints and catalog writes) is selected, since the generated patients have
  no images; the first run does 2 x patients tasks (the runner's per-task recording cost
  at this catalog size), the second nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from brainmets.shared import testdata_dir  # noqa: E402

BRAINMETS = [sys.executable, "-m", "brainmets"]
PATIENT_STAGES = ("deid", "classify", "convert", "preprocess", "segment", "features")


def timed(args: list[str], ok: tuple[int, ...] = (0,)) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode not in ok:
        sys.exit(f"{' '.join(args)} -> {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr}")
    return dt


def median_of(args: list[str], repeat: int, ok: tuple[int, ...] = (0,)) -> tuple[float, list]:
    runs = [timed(args, ok) for _ in range(repeat)]
    return statistics.median(runs), [round(r, 2) for r in runs]


def counter(n: int, name: str) -> str:
    return f"{name}(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM {name} WHERE x < {n - 1})"


def generate(db: Path, patients: int, series: int, instances: int) -> float:
    """Fill the catalog in SQL; return the seconds it took."""
    t0 = time.perf_counter()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("PRAGMA journal_mode = OFF")
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -1000000")
    now = "2026-12-04T00:00:00.000+00:00"
    pid = "printf('BM-G%07d', p.x)"
    study = "printf('2.25.1%038d', p.x)"
    ser = f"printf('2.25.2%038d', p.x * {series} + s.x)"
    sop = f"printf('2.25.3%038d', (p.x * {series} + s.x) * {instances} + i.x)"
    cte_p, cte_s, cte_i = counter(patients, "p"), counter(series, "s"), counter(instances, "i")
    with con:
        con.execute(
            f"WITH RECURSIVE {cte_p} INSERT INTO patients(id, created_at) SELECT {pid}, ? FROM p",
            (now,),
        )
        con.execute(
            f"WITH RECURSIVE {cte_p} INSERT INTO studies(uid, patient_id, study_date, "
            f"description, accession) SELECT {study}, {pid}, '20200101', 'MRI BRAIN W WO', "
            "printf('ACC-%08d', p.x) FROM p"
        )
        con.execute(
            f"WITH RECURSIVE {cte_p}, {cte_s} INSERT INTO series(uid, study_uid, patient_id, "
            "modality, sop_class_uid, series_number, description, n_instances, header_json) "
            f"SELECT {ser}, {study}, {pid}, 'MR', '1.2.840.10008.5.1.4.1.1.4', s.x + 1, "
            f"'AX T1 POST', {instances}, "
            '\'{"Modality": "MR", "SeriesDescription": "AX T1 POST", '
            '"MRAcquisitionType": "3D", "SliceThickness": 1.0}\' FROM p, s'
        )
    for table, select in (
        (
            "instances(sop_uid, series_uid, patient_id, path, sha256, size)",
            f"SELECT {sop}, {ser}, {pid}, 'dicom/' || {pid} || '/' || {study} || '/' || {ser} "
            f"|| '/' || {sop} || '.dcm', printf('%016x%016x%016x%016x', p.x, s.x, i.x, 7), "
            "520000 FROM p, s, i",
        ),
        (
            "source_files(path, size, mtime_ns, status, patient_id, sop_uid, seen_at)",
            "SELECT printf('/archive/%05d/MR%07d/%03d/IM%05d', p.x % 97, p.x, s.x, i.x), "
            f"520000, 1700000000000000000, 'deidentified', {pid}, {sop}, '{now}' FROM p, s, i",
        ),
    ):
        with con:
            con.execute(f"WITH RECURSIVE {cte_p}, {cte_s}, {cte_i} INSERT INTO {table} {select}")
        print(f"  {table.split('(')[0]}: {time.perf_counter() - t0:.0f} s", flush=True)
    stages = " UNION ALL ".join(f"SELECT '{s}' AS st" for s in PATIENT_STAGES)
    with con:
        con.execute(
            f"WITH RECURSIVE {cte_p}, st AS ({stages}) INSERT INTO stage_runs(patient_id, stage, "
            "status, fingerprint, started_at, ended_at, duration_s, params_json, tools_json, "
            "inputs_json, metrics_json, run_id, attempts) "
            f"SELECT {pid}, st.st, 'done', printf('%064x', p.x), '{now}', '{now}', 1.0, '{{}}', "
            '\'{"brainmets": "0"}\', '
            # each result made from the one before it (one fingerprint per patient): done,
            # not stale
            "CASE st.st WHEN 'deid' THEN '{}' ELSE json_object('upstream', printf('%064x', p.x)) "
            "END, '{\"n\": 1}', 1, 1 FROM p, st"
        )
        con.execute(
            f"WITH RECURSIVE {cte_p}, st AS ({stages}), r(role) AS (SELECT 'a' UNION ALL "
            "SELECT 'b' UNION ALL SELECT 'c') INSERT INTO stage_outputs(patient_id, stage, "
            f"role, path, sha256, size) SELECT {pid}, st.st, r.role, 'data/derivatives/' || "
            f"{pid} || '/' || st.st || '/' || r.role || '.nii.gz', printf('%064x', p.x), "
            "1000 FROM p, st, r"
        )
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("ANALYZE")
    con.close()
    return time.perf_counter() - t0


def catalog_ops(ws: Path, patients: int, instances: int, series: int) -> None:
    from brainmets.catalog import Catalog

    cat = Catalog.open(ws / "catalog.sqlite")
    try:
        picks = [f"BM-G{(i * 7919) % patients:07d}" for i in range(20)]
        t = []
        for p in picks:
            t0 = time.perf_counter()
            rows = cat.source_files(patient_id=p, statuses=("pending", "deidentified"))
            t.append(time.perf_counter() - t0)
        print(
            f"one patient's source files ({len(rows)} rows, the deid fingerprint input): "
            f"median {statistics.median(t) * 1000:.1f} ms"
        )
        t = []
        for k in range(5):
            p = f"BM-NEW{k:05d}"
            n = series * instances
            recs = {
                "patients": [{"id": p, "created_at": "2026-12-04T00:00:00+00:00"}],
                "studies": [{"uid": f"2.25.9{k:038d}", "patient_id": p}],
                "series": [
                    {
                        "uid": f"2.25.8{k:033d}{s:05d}",
                        "study_uid": f"2.25.9{k:038d}",
                        "patient_id": p,
                        "modality": "MR",
                        "n_instances": instances,
                    }
                    for s in range(series)
                ],
                "instances": [
                    {
                        "sop_uid": f"2.25.7{k:030d}{j:08d}",
                        "series_uid": f"2.25.8{k:033d}{j // instances:05d}",
                        "patient_id": p,
                        "path": f"dicom/{p}/x/{j:08d}.dcm",
                        "sha256": "f" * 64,
                        "size": 520000,
                    }
                    for j in range(n)
                ],
                "source_files": [
                    {
                        "path": f"/new/{p}/{j:08d}",
                        "size": 520000,
                        "mtime_ns": 1,
                        "patient_id": p,
                        "status": "deidentified",
                        "sop_uid": f"2.25.7{k:030d}{j:08d}",
                        "seen_at": "2026-12-04T00:00:00+00:00",
                    }
                    for j in range(n)
                ],
            }
            t0 = time.perf_counter()
            cat.finish_stage_run(
                p,
                "deid",
                status="done",
                fingerprint="0" * 64,
                started_at=None,
                duration_s=1.0,
                outputs={"manifest": (f"data/{p}/m.json", "0" * 64, 10)},
                records=recs,
            )
            t.append(time.perf_counter() - t0)
        print(
            f"record a new patient's deid result ({2 * series * instances} instance + "
            f"source-file rows, one transaction): median {statistics.median(t):.2f} s"
        )
        for label, fn in (
            ("all stage_runs rows", cat.stage_runs),
            ("input-file counts by status", cat.source_file_counts),
            ("patient list", cat.patients),
        ):
            t0 = time.perf_counter()
            n = len(fn())
            print(f"{label} ({n}): {time.perf_counter() - t0:.2f} s")
    finally:
        cat.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--series", type=int, default=30)
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep it")
    args = ap.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="bm-catalog-"))
    tmp.mkdir(parents=True, exist_ok=True)
    ws, src = tmp / "ws", tmp / "source"
    try:
        timed([*BRAINMETS, "init", str(ws)])
        series_dir = testdata_dir() / "dicom" / "siemens_trio_epi_orientation" / "dicom"
        shutil.copytree(series_dir, src)
        for p in src.rglob("*.nii"):
            p.unlink()
        real = sum(1 for p in src.rglob("*") if p.is_file())
        timed([*BRAINMETS, "ingest", "-w", str(ws), str(src)])
        n_inst = args.patients * args.series * args.instances
        print(
            f"generating {args.patients} patients x {args.series} series x "
            f"{args.instances} instances = {n_inst:,} instances",
            flush=True,
        )
        gen = generate(ws / "catalog.sqlite", args.patients, args.series, args.instances)
        size = (ws / "catalog.sqlite").stat().st_size
        print(f"generated in {gen:.0f} s; catalog {size / 2**30:.1f} GiB")

        t, runs = median_of([*BRAINMETS, "status", "-w", str(ws)], args.repeat)
        print(f"brainmets status: {t:.2f} s (runs {runs})")
        t, runs = median_of([*BRAINMETS, "status", "-w", str(ws), "--json"], args.repeat)
        print(f"brainmets status --json: {t:.2f} s (runs {runs})")
        t, runs = median_of([*BRAINMETS, "ingest", "-w", str(ws)], args.repeat)
        print(f"brainmets ingest, unchanged source of {real} files: {t:.2f} s (runs {runs})")
        catalog_ops(ws, args.patients, args.instances, args.series)

        timed(
            [
                *BRAINMETS,
                "config",
                "set",
                "-w",
                str(ws),
                "runner.pipeline",
                "brainmets.pipeline.toy:pipeline",
            ]
        )
        timed([*BRAINMETS, "config", "set", "-w", str(ws), "stages.enrol.patients", "0"])
        t0 = time.perf_counter()
        timed([*BRAINMETS, "run", "-w", str(ws), "-q", "-j", "2"])
        t_first = time.perf_counter() - t0
        con = sqlite3.connect(ws / "catalog.sqlite")
        tasks = con.execute(
            "SELECT COUNT(*) FROM stage_runs WHERE stage IN ('make', 'digest')"
        ).fetchone()[0]
        con.close()
        print(
            f"toy pipeline run over every patient: {tasks} patient tasks in {t_first:.0f} s "
            f"= {t_first / max(tasks, 1) * 1000:.1f} ms per task"
        )
        t, runs = median_of([*BRAINMETS, "run", "-w", str(ws), "-q", "-j", "2"], args.repeat)
        print(
            f"re-run with nothing to do ({tasks} up-to-date patient tasks): {t:.1f} s (runs {runs})"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
