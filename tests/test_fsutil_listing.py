"""Listing the files of a tree and counting workers: one definition each (brainmets.fsutil)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from brainmets import fsutil
from brainmets.deid.tree import tree_files
from brainmets.fsutil import TMP_PREFIX, default_workers, iter_files


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "b" / "c").mkdir(parents=True)
    (root / "a").mkdir()
    for rel in ("z.dcm", "b/y.dcm", "b/c/x.dcm", "a/w.dcm", f"a/{TMP_PREFIX}half.dcm"):
        (root / rel).write_text(rel)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "linked.dcm").write_text("outside")
    (root / "link.dcm").symlink_to(outside / "linked.dcm")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    return root


def rels(paths: object, root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in paths]  # type: ignore[attr-defined]


def test_ingest_listing_keeps_file_links_and_does_not_enter_linked_folders(tree: Path) -> None:
    assert rels(iter_files([tree]), tree) == [
        "link.dcm",
        "z.dcm",
        f"a/{TMP_PREFIX}half.dcm",
        "a/w.dcm",
        "b/y.dcm",
        "b/c/x.dcm",
    ]
    followed = rels(iter_files(tree, follow_symlinks=True), tree)
    assert "linkdir/linked.dcm" in followed and len(followed) == 7


def test_deid_listing_skips_links_and_temporaries(tree: Path) -> None:
    got = rels(tree_files(tree), tree)
    assert got == ["z.dcm", "a/w.dcm", "b/y.dcm", "b/c/x.dcm"]
    assert rels(iter_files(tree, symlinked_files=False, skip_temporaries=True), tree) == got


def test_sources_may_be_files_and_several(tree: Path) -> None:
    files = list(iter_files([tree / "z.dcm", tree / "b"]))
    assert rels(files, tree) == ["z.dcm", "b/y.dcm", "b/c/x.dcm"]
    assert list(iter_files(str(tree / "z.dcm"))) == [tree / "z.dcm"]
    assert list(iter_files(tree / "missing")) == []


def test_default_workers_counts_cores_and_caps_by_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert default_workers() == 6
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 3 * 1024**3 // 4096}  # 3 GiB
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])
    assert default_workers(memory_per_worker=1024**3) == 3
    assert default_workers(memory_per_worker=2 * 1024**3) == 1
    assert default_workers(memory_per_worker=4 * 1024**3) == 1  # at least one
    assert default_workers(memory_per_worker=1024**2) == 6  # never more than the cores


def test_one_definition_is_used_everywhere() -> None:
    from brainmets.pipeline import default_workers as pipeline_workers
    from brainmets.synth.cohort import WORKER_MEMORY
    from brainmets.synth.cohort import default_workers as synth_workers

    assert pipeline_workers is fsutil.default_workers
    assert synth_workers() == fsutil.default_workers(memory_per_worker=WORKER_MEMORY)
