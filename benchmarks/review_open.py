"""Benchmark: opening a case in the review app (``brainmets review``), against a plain static
file server (Python's ``http.server``) serving the same five files, measured in the same run.

A case view loads the case's JSON and its five volumes (t1n, t1c, t2w, t2f, seg) in parallel.
The workspace here holds one real brain-metastasis case (``$BRAINMETS_SHARED/testdata/nifti/
brats_met_00110_000``: four sequences, 240 x 240 x 155, SRI24) with a synthetic label map; the
review server runs as its own process (``brainmets review``), the client logs in once, then:

* **first load**: the JSON and the five gzip volumes, transferred in full;
* **after the first load** (the target: < 1 s): the browser revalidates its cached copies with
  ``If-None-Match`` (ETag = the catalog's SHA-256) and gets ``304 Not Modified``;
* the same two for the peer (``If-Modified-Since``; no login, no catalog, no path checks).

Usage::

    .venv/bin/python benchmarks/review_open.py [--repeats 20]

Prints the median times (ms) of each and the ratio brainmets / peer. Exit 1 when the case
open after the first load takes 1 s or more.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import nibabel as nib
import numpy as np

from brainmets.review import add_user
from brainmets.workspace import Workspace

PW = "correct horse battery staple"
ROLES = ("t1n", "t1c", "t2w", "t2f")
CASE = "brats_met_00110_000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"the server at {url} did not start within {timeout:.0f} s")


def _label_map(reference: Path, out: Path) -> None:
    """A label map on the case's grid: three lesions with necrosis, enhancing rim, edema."""
    img = nib.load(str(reference))
    shape = img.shape[:3]
    lab = np.zeros(shape, np.uint8)
    grid = np.ogrid[: shape[0], : shape[1], : shape[2]]
    for centre, r in (((150, 150, 90), 8.0), ((90, 120, 100), 4.0), ((120, 80, 40), 6.0)):
        d2 = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
        lab[(d2 <= (2 * r) ** 2) & (lab == 0)] = 2
        lab[d2 <= r * r] = 3
        lab[d2 <= (r / 2) ** 2] = 1
    nib.save(nib.Nifti1Image(lab, img.affine), str(out))


def make_workspace(root: Path, case_dir: Path) -> tuple[Workspace, str, Path]:
    """A workspace with the case recorded as preprocess/segment outputs, a reviewer, and a
    plain folder with the same five files for the peer."""
    from brainmets.fsutil import sha256_file

    ws = Workspace.init(root / "ws")
    pid = "BM-BENCH001"
    der = ws.root / "data" / "derivatives" / pid
    der.mkdir(parents=True)
    plain = root / "plain"
    plain.mkdir()
    files: dict[str, Path] = {}
    for role in ROLES:
        src = next(case_dir.glob(f"*-{role}.nii.gz"))
        files[role] = der / f"{role}.nii.gz"
        shutil.copyfile(src, files[role])
    files["seg"] = der / "seg.nii.gz"
    _label_map(files["t1c"], files["seg"])
    for role, p in files.items():
        shutil.copyfile(p, plain / f"{role}.nii.gz")
    with ws.lock(), ws.catalog() as cat:
        cat.ensure_patient(pid)
        add_user(cat, "bench", "reviewer", PW)
        common = {"status": "done", "fingerprint": "x", "started_at": None, "duration_s": 0.1}

        def rec(role: str) -> tuple[str, str, int]:
            p = files[role]
            return (str(p.relative_to(ws.root)), sha256_file(p), p.stat().st_size)

        cat.finish_stage_run(pid, "preprocess", **common, outputs={r: rec(r) for r in ROLES})
        cat.finish_stage_run(pid, "segment", **common, outputs={"seg": rec("seg")})
    return Workspace.open(ws.root), pid, plain


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def _parallel(client: httpx.Client, urls: list[str], headers: list[dict[str, str]]) -> list[int]:
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        got = list(
            pool.map(lambda uh: client.get(uh[0], headers=uh[1]), zip(urls, headers, strict=True))
        )
    for r in got:
        if r.status_code not in (200, 304):
            raise SystemExit(f"GET {r.url}: {r.status_code} {r.text[:200]}")
    return [r.status_code for r in got]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    shared = Path(
        os.environ.get("BRAINMETS_SHARED", Path(__file__).resolve().parents[2] / "shared")
    )
    case_dir = shared / "testdata" / "nifti" / CASE
    if not case_dir.is_dir():
        print(f"no test case at {case_dir} (set BRAINMETS_SHARED)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bm-review-bench-") as tmp:
        ws, pid, plain = make_workspace(Path(tmp), case_dir)
        total = sum(p.stat().st_size for p in plain.iterdir())
        port, peer_port = _free_port(), _free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        ours = subprocess.Popen(
            [sys.executable, "-m", "brainmets", "review", "-w", str(ws.root), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        peer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "http.server",
                str(peer_port),
                "-b",
                "127.0.0.1",
                "-d",
                str(plain),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base, peer_base = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer_port}"
            _wait(base + "/login")
            _wait(peer_base + "/")
            c = httpx.Client(base_url=base, timeout=60.0)
            r = c.post(
                "/api/login", json={"username": "bench", "password": PW}, headers={"origin": base}
            )
            r.raise_for_status()
            urls = [f"/api/patients/{pid}"] + [
                f"/api/patients/{pid}/images/{role}" for role in (*ROLES, "seg")
            ]
            first = [c.get(u) for u in urls]
            etags = [x.headers.get("etag") for x in first]
            assert all(x.status_code == 200 for x in first), [x.status_code for x in first]
            assert all(etags[1:]), "the volumes are served without an ETag"
            assert all(x.headers.get("content-type") == "application/gzip" for x in first[1:])
            fresh = [{} for _ in urls]
            revalidate = [{}] + [{"if-none-match": e} for e in etags[1:]]
            codes = _parallel(c, urls, revalidate)
            assert codes[1:] == [304] * 5, codes
            ours_full = _median_ms(lambda: _parallel(c, urls, fresh), args.repeats)
            ours_304 = _median_ms(lambda: _parallel(c, urls, revalidate), args.repeats)

            pc = httpx.Client(base_url=peer_base, timeout=60.0)
            purls = [f"/{role}.nii.gz" for role in (*ROLES, "seg")]
            plast = [pc.get(u).headers["last-modified"] for u in purls]
            pfresh = [{} for _ in purls]
            preval = [{"if-modified-since": x} for x in plast]
            assert _parallel(pc, purls, preval) == [304] * 5
            peer_full = _median_ms(lambda: _parallel(pc, purls, pfresh), args.repeats)
            peer_304 = _median_ms(lambda: _parallel(pc, purls, preval), args.repeats)
        finally:
            ours.terminate()
            peer.terminate()
            ours.wait(10)
            peer.wait(10)
    print(f"case {CASE}: five volumes, {total / 1e6:.1f} MB gzip; median of {args.repeats}")
    print(f"{'':34}{'brainmets':>11}{'http.server':>13}{'ratio':>8}")
    print(
        f"{'first load (full transfer)':34}{ours_full:9.0f} ms{peer_full:11.0f} ms"
        f"{ours_full / peer_full:8.2f}"
    )
    print(
        f"{'after the first load (304)':34}{ours_304:9.0f} ms{peer_304:11.0f} ms"
        f"{ours_304 / peer_304:8.2f}"
    )
    ok = ours_304 < 1000
    print(f"target: case open after the first load < 1000 ms: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
