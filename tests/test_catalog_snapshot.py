"""Stages on machines other than the coordinator's read a snapshot of their patient's
catalog rows, not the SQLite file (issue 15: SQLite's WAL needs every reader on the
writer's host, which a shared file system does not give)."""

from __future__ import annotations

import shutil
from pathlib import Path

from bm_testutil import run_cli
from brainmets.catalog import Catalog, SourceFile
from brainmets.pipeline import InlineExecutor, Runner, load_pipeline
from brainmets.workspace import Workspace


class RemoteInline(InlineExecutor):
    """In this process, but flagged as the Dask executor is: tasks carry snapshots."""

    remote = True
    snapshots = 0

    def submit(self, fn, *args):
        ctx = args[1]
        assert ctx.catalog_snapshot is not None, ctx.stage  # patient tasks only come here
        RemoteInline.snapshots += 1
        return super().submit(fn, *args)


def test_patient_snapshot_holds_that_patient_only(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    with Catalog.open(path, create=True) as cat:
        for i, p in enumerate(("BM-AAAA0001", "BM-AAAA0002")):
            cat.record_source_file(
                SourceFile(f"/in/{i}.dcm", i, i, "pending", patient_id=p, seen_at="t")
            )
        cat.add_user("alice", "reviewer", "pw-hash-of-alice")
        snap = cat.patient_snapshot("BM-AAAA0001")
    other = Catalog.from_snapshot(snap, path)
    try:
        assert other.readonly and other.patient_ids() == ["BM-AAAA0001"]
        assert [f.path for f in other.source_files(patient_id="BM-AAAA0001")] == ["/in/0.dcm"]
        assert other.source_files(patient_id="BM-AAAA0002") == []
        tables = {r[0] for r in other._conn.execute("SELECT name FROM sqlite_master")}
        assert "users" not in tables and "source_files" in tables
        assert b"pw-hash" not in snap
    finally:
        other.close()


def test_deid_and_classify_give_the_same_outputs_from_a_snapshot(
    tmp_path: Path, testdata: Path
) -> None:
    src = tmp_path / "src"
    series = testdata / "dicom" / "siemens_prisma_t1_fl2d_patient_position" / "dicom" / "HFS"
    shutil.copytree(series, src)
    for p in src.rglob("*.txt"):
        p.unlink()
    roots = []
    Workspace.init(tmp_path / "template")
    for name in ("file", "snapshot"):
        # copies of one new workspace: the same key, so the same pseudonyms and bytes
        shutil.copytree(tmp_path / "template", tmp_path / name)
        ws = Workspace.open(tmp_path / name)
        assert run_cli("ingest", "-w", str(ws.root), str(src)).returncode == 0
        ws = Workspace.open(ws.root)
        executor = InlineExecutor() if name == "file" else RemoteInline()
        with ws.lock():
            runner = Runner(ws, load_pipeline(ws.config.data["runner"]["pipeline"]), executor,
                            progress=False)  # fmt: skip
            summary = runner.run(["deid", "classify"])
        assert summary.counts["deid"]["done"] >= 1 and not summary.failures, summary.failures
        roots.append(ws.root)
    outs = []
    for root in roots:
        with Workspace.open(root).catalog(readonly=True) as cat:
            outs.append({(o.patient_id, o.stage, o.role): o.sha256 for o in cat.output_files()})
    assert outs[0] == outs[1] and any(k[1] == "classify" for k in outs[0])
    assert RemoteInline.snapshots >= 2  # deid and classify read their snapshots
