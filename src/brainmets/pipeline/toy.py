"""A small, deterministic example pipeline.

It shows how to write stages and is what the test suite uses to check the runner
(resumability, kills, parameter changes, executors) without medical images. Select it in
a workspace's config with ``[runner] pipeline = "brainmets.pipeline.toy:pipeline"``.

Stages: ``enrol`` (cohort: creates ``patients`` pseudo-patients), ``make`` (per patient:
writes ``size`` deterministic bytes, slowly when ``delay_s`` > 0, fails for the patients in
``fail``, waits for the patients in ``wait``: "awaiting toy input: ..."), ``digest`` (per
patient: a JSON digest of make's output, scaled by ``factor``) and ``summarise`` (cohort:
one table of all digests).
"""

from __future__ import annotations

import hashlib
import json
import time

from brainmets.catalog import utcnow
from brainmets.fsutil import atomic_path, atomic_write_text
from brainmets.pipeline.stage import Pipeline, Stage, StageContext, StageResult


def _enrol(ctx: StageContext) -> StageResult:
    n = int(ctx.params["patients"])
    rows = [{"id": f"TOY-{i:03d}", "created_at": utcnow()} for i in range(1, n + 1)]
    out = atomic_write_text(ctx.out_dir / "patients.txt", "\n".join(r["id"] for r in rows) + "\n")
    return StageResult(outputs={"list": out}, records={"patients": rows}, metrics={"n": n})


def _make(ctx: StageContext) -> StageResult:
    if ctx.patient_id in ctx.params["fail"]:
        raise ValueError(f"toy failure requested for {ctx.patient_id}")
    if ctx.patient_id in ctx.params["wait"]:
        return StageResult(waiting=f"awaiting toy input: none for {ctx.patient_id} yet")
    size = int(ctx.params["size"])
    delay = float(ctx.params["delay_s"])
    seed = hashlib.sha256(f"{ctx.patient_id}:{size}".encode()).digest()
    dest = ctx.out_dir / "data.bin"
    chunks = 8
    with atomic_path(dest) as tmp, open(tmp, "wb") as fh:
        for i in range(chunks):
            block = hashlib.sha256(seed + bytes([i])).digest()
            n = size // chunks + (1 if i < size % chunks else 0)
            fh.write((block * (n // 32 + 1))[:n])
            fh.flush()
            if delay:
                time.sleep(delay / chunks)
    return StageResult(outputs={"data": dest}, metrics={"bytes": size})


def _digest(ctx: StageContext) -> StageResult:
    data = ctx.input("make", "data").read_bytes()
    digest = {
        "patient": ctx.patient_id,
        "sha256": hashlib.sha256(data).hexdigest(),
        "scaled": len(data) * int(ctx.params["factor"]),
    }
    out = atomic_write_text(ctx.out_dir / "digest.json", json.dumps(digest, sort_keys=True))
    return StageResult(outputs={"digest": out})


def _summarise(ctx: StageContext) -> StageResult:
    cat = ctx.catalog()
    try:
        rows = cat.output_files(stage="digest", status="done")
    finally:
        cat.close()
    lines = [(ctx.root / r.path).read_text() for r in rows]
    out = atomic_write_text(ctx.out_dir / "summary.jsonl", "\n".join(lines) + "\n")
    return StageResult(outputs={"summary": out}, metrics={"patients": len(rows)})


def pipeline() -> Pipeline:
    return Pipeline(
        (
            Stage("enrol", _enrol, scope="cohort", defaults={"patients": 3}, summary="enrol"),
            Stage(
                "make",
                _make,
                defaults={"size": 4096, "delay_s": 0.0, "fail": [], "wait": []},
                summary="write bytes",
            ),
            Stage("digest", _digest, defaults={"factor": 1}, summary="digest them"),
            Stage("summarise", _summarise, scope="cohort", summary="summary table"),
        )
    )
