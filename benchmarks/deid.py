#!/usr/bin/env python3
"""Speed benchmark (not a test): brainmets de-identification against dicognito and
dicom-anonymizer on the same corpus of real MR files, in one run.

The peers are installed in their own virtual environment, never as project dependencies::

    python3 -m venv /tmp/peers-venv
    /tmp/peers-venv/bin/pip install dicognito dicom-anonymizer

    .venv/bin/python benchmarks/deid.py                      # default corpus, 3 repeats
    .venv/bin/python benchmarks/deid.py --limit 200 --repeat 5

Every tool runs as a separate process on a flat copy of the corpus (dicom-anonymizer only
reads flat folders), with its own output folder, and is timed wall-clock including start-up;
brainmets is timed as users run it (``brainmets deid IN OUT --key K -j N``: the command
line with its progress bar and per-file report), next to the floor (a bare pydicom read and
write of the same files in one process);
the best of ``--repeat`` runs counts. "1 core" runs are pinned to one CPU with
``sched_setaffinity`` (the peers are single-process, so that is their normal speed);
brainmets also runs with one worker per available core. Prints files/s and the ratio to
the fastest peer.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from brainmets.shared import testdata_dir  # noqa: E402

DEFAULT_SERIES = (
    "ge_hdxt_3d_t1_irspgr_refaced",
    "ge_pioneer_3d_t1_mprage",
    "siemens_prisma_t1_fl2d_patient_position",
)
#: the floor: a bare pydicom read + write of every file, one process, no de-identification
FLOOR_SNIPPET = (
    "import sys, pydicom; from pathlib import Path; src, dst = Path(sys.argv[1]), "
    "Path(sys.argv[2]); [pydicom.dcmread(p).save_as(dst / p.name) for p in sorted(src.iterdir())]"
)


@dataclass
class Timing:
    tool: str
    mode: str
    files: int
    seconds: float
    outputs: int

    @property
    def rate(self) -> float:
        return self.files / self.seconds


def build_corpus(sources: list[Path], dest: Path, limit: int) -> int:
    """Copy up to ``limit`` DICOM files (recursively) into the flat folder ``dest``."""
    import pydicom

    dest.mkdir(parents=True)
    n = 0
    for src in sources:
        for p in sorted(src.rglob("*")):
            if n >= limit:
                return n
            if (
                not p.is_file()
                or p.suffix in (".json", ".nii", ".gz", ".txt")
                or p.name == "LICENSE"
            ):
                continue
            try:
                pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:
                continue
            shutil.copy(p, dest / f"{n:05d}.dcm")
            n += 1
    return n


def _pin_one_cpu() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})


def run_tool(cmd: list[str], out: Path, one_core: bool) -> float:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_pin_one_cpu if one_core else None,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[-500:]}")
    return elapsed


def count_outputs(out: Path) -> int:
    return sum(1 for p in out.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, nargs="*", help="folders of DICOM files")
    ap.add_argument("--limit", type=int, default=400, help="at most this many files")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool (best counts)")
    ap.add_argument("--peers-python", type=Path, default=Path("/tmp/peers-venv/bin/python"))
    args = ap.parse_args(argv)
    sources = args.corpus or [testdata_dir() / "dicom" / s for s in DEFAULT_SERIES]
    sources = [s for s in sources if s.is_dir()]
    if not sources:
        print("no corpus found (set BRAINMETS_SHARED or pass --corpus)")
        return 2
    workers = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="bm-deid-bench-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = tmp / "corpus"
        n = build_corpus(sources, corpus, args.limit)
        size_mb = sum(p.stat().st_size for p in corpus.iterdir()) / 1e6
        print(f"corpus: {n} files, {size_mb:.0f} MB, from {', '.join(s.name for s in sources)}")
        for p in corpus.iterdir():  # warm the page cache
            p.read_bytes()
        py = sys.executable
        keyfile = tmp / "deid.key"
        keyfile.write_bytes(os.urandom(32))
        keyfile.chmod(0o600)
        # what users run: the command line, progress bar and per-file report included
        cli = [py, "-m", "brainmets", "deid", str(corpus), "{out}", "--key", str(keyfile),
               "--report", str(tmp / "report.csv")]  # fmt: skip
        tools: list[tuple[str, str, list[str], bool, Path]] = [
            ("brainmets", "1 core", [*cli, "-j", "1"], True, tmp / "bm1"),
            ("brainmets", f"{workers} cores", [*cli, "-j", str(workers)], False, tmp / "bmN"),
            ("pydicom floor", "1 core", [py, "-c", FLOOR_SNIPPET, str(corpus), "{out}"], True,
             tmp / "floor"),
        ]  # fmt: skip
        peers = args.peers_python
        if peers.exists():
            tools += [
                (
                    "dicognito",
                    "1 core",
                    [str(peers), "-m", "dicognito", "--quiet", "-o", "{out}", str(corpus)],
                    True,
                    tmp / "dicognito",
                ),
                (
                    "dicom-anonymizer",
                    "1 core",
                    [str(peers.parent / "dicom-anonymizer"), str(corpus), "{out}"],
                    True,
                    tmp / "dicom_anonymizer",
                ),
            ]
        else:
            print(f"peers not found at {peers}: install them there (see this file's docstring)")
        timings: list[Timing] = []
        for tool, mode, cmd, one_core, out in tools:
            best = float("inf")
            for _ in range(args.repeat):
                command = [c.replace("{out}", str(out)) for c in cmd]
                best = min(best, run_tool(command, out, one_core))
            timings.append(Timing(tool, mode, n, best, count_outputs(out)))
    peer_rates = [t.rate for t in timings if t.tool not in ("brainmets", "pydicom floor")]
    fastest = max(peer_rates) if peer_rates else None
    print(
        f"\n{'tool':18} {'mode':8} {'files':>6} {'outputs':>8} {'s':>7} {'files/s':>8} "
        f"{'vs fastest peer':>16}"
    )
    for t in timings:
        ratio = f"{t.rate / fastest:.2f}x" if fastest else "-"
        print(
            f"{t.tool:18} {t.mode:8} {t.files:6d} {t.outputs:8d} {t.seconds:7.2f} "
            f"{t.rate:8.1f} {ratio:>16}"
        )
    bm = {t.mode: t for t in timings if t.tool == "brainmets"}
    floor = next((t for t in timings if t.tool == "pydicom floor"), None)
    if len(bm) == 2:
        one, many = bm["1 core"], next(t for m, t in bm.items() if m != "1 core")
        print(f"\nbrainmets {many.mode} vs 1 core: {one.seconds / many.seconds:.2f}x")
    if floor is not None and "1 core" in bm:
        print(f"brainmets 1 core vs the pydicom floor: {bm['1 core'].seconds / floor.seconds:.2f}x "
              "the time")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
