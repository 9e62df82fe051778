"""The workspace key is recognised by its fingerprint: another key, or none, is refused
before anything runs (issue 18)."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from pathlib import Path

import pytest

from bm_testutil import make_toy_workspace, run_cli
from brainmets import api
from brainmets.catalog import LATEST_VERSION, Catalog
from brainmets.ids import key_fingerprint
from brainmets.workspace import KeyMismatch, Workspace, WorkspaceError

NOT_THE_KEY = "is not the key this workspace was created with"


def _replace_key(ws: Workspace) -> bytes:
    """Put another valid key (32 random bytes, mode 0600) where the workspace key was;
    return the workspace's own key."""
    own = ws.key()
    key_file = ws.config.key_file
    key_file.unlink()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, secrets.token_bytes(32))
    os.close(fd)
    return own


def _restore_key(ws: Workspace, key: bytes) -> None:
    ws.config.key_file.write_bytes(key)


def test_key_fingerprint_is_one_way_stable_and_per_key() -> None:
    key, other = bytes(range(32)), bytes(range(1, 33))
    fp = key_fingerprint(key)
    assert fp == key_fingerprint(key) and fp != key_fingerprint(other)
    assert len(fp) == 64 and int(fp, 16) >= 0  # 256 bits as hex
    assert key.hex() not in fp and fp != hashlib.sha256(key).hexdigest()
    with pytest.raises(ValueError):
        key_fingerprint(b"")


def test_init_records_the_fingerprint_never_the_key(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    with ws.catalog(readonly=True) as cat:
        assert cat.key_fingerprint() == key_fingerprint(ws.key())
    data = ws.catalog_path.read_bytes()
    assert ws.key() not in data and ws.key().hex().encode() not in data
    with ws.lock():
        assert ws.checked_key() == ws.key()
    assert api.status(ws).key_problem is None


def test_replaced_key_is_refused_and_no_second_patient_is_made(
    tmp_path: Path, testdata: Path
) -> None:
    tcia = testdata / "dicom" / "tcia_vs_seg_t1_mprage_3slices"
    src = tmp_path / "export"
    shutil.copytree(tcia, src)
    ws = Workspace.init(tmp_path / "ws")
    r = run_cli("ingest", "-w", str(ws.root), str(src))
    assert r.returncode == 0, r.stderr
    with ws.catalog(readonly=True) as cat:
        (patient,) = cat.patient_ids()
    own = _replace_key(ws)
    again = tmp_path / "same-files-again"
    shutil.copytree(tcia, again)
    config_before = (ws.root / "brainmets.toml").read_text()
    key_file = str(ws.config.key_file)
    for args in (("ingest", str(again)), ("run",), ("deid",), ("classify",), ("export",)):
        r = run_cli(*args, "-w", str(ws.root))
        assert r.returncode == 3, (args, r.stdout, r.stderr)
        text = " ".join(r.stderr.split())
        assert NOT_THE_KEY in text and key_file in text, (args, text)
        assert "backup" in text and "brainmets init" in text
    assert (ws.root / "brainmets.toml").read_text() == config_before  # source not added
    with ws.catalog(readonly=True) as cat:
        assert cat.patient_ids() == [patient]
        assert cat.key_fingerprint() == key_fingerprint(own)  # not overwritten
    # status does not use the key: it warns and exits 0
    s = run_cli("status", "-w", str(ws.root))
    assert s.returncode == 0, s.stderr
    assert "warning" in s.stderr and NOT_THE_KEY in " ".join(s.stderr.split())
    # the workspace's own key back: accepted, and the same files are the same patient
    _restore_key(ws, own)
    r = run_cli("ingest", "-w", str(ws.root), str(again))
    assert r.returncode == 0, r.stderr
    with ws.catalog(readonly=True) as cat:
        assert cat.patient_ids() == [patient]
    assert "warning" not in run_cli("status", "-w", str(ws.root)).stderr


def test_missing_key_stops_run_at_once(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")  # the default pipeline: ingest reads the key
    ws.config.key_file.unlink()
    r = run_cli("run", "-w", str(ws.root), "--workers", "1")
    assert r.returncode == 3, r.stdout + r.stderr
    text = " ".join(r.stderr.split())
    assert str(ws.config.key_file) in text and "key is missing" in text
    assert "backup" in text
    with ws.catalog(readonly=True) as cat:
        assert cat.runs() == [] and cat.stage_runs() == []  # nothing started
    assert "key is missing" in str(api.status(ws).key_problem)
    with pytest.raises(WorkspaceError, match="key is missing"):
        api.ingest(ws, [])


def test_a_workspace_from_before_fingerprints_records_its_key_on_first_use(
    tmp_path: Path,
) -> None:
    ws = make_toy_workspace(tmp_path / "toy")
    ws.catalog_path.unlink()  # the catalog as an older brainmets made it (schema 2)
    Catalog.open(ws.catalog_path, create=True, target_version=2).close()
    rep = api.run(ws, workers=1)  # migrates, records the fingerprint of the key in use
    assert rep.ok
    with ws.catalog(readonly=True) as cat:
        assert cat.version() == LATEST_VERSION
        assert cat.key_fingerprint() == key_fingerprint(ws.key())
    own = _replace_key(ws)
    with pytest.raises(KeyMismatch, match=NOT_THE_KEY):
        api.run(ws, workers=1)
    problem = api.status(ws).key_problem
    assert problem is not None and NOT_THE_KEY in problem
    _restore_key(ws, own)
    assert api.run(ws, workers=1).ok


def test_the_receiver_refuses_another_key_before_it_listens(tmp_path: Path) -> None:
    pytest.importorskip("pynetdicom")
    from brainmets.deid.receive import start_receiver

    ws = Workspace.init(tmp_path / "ws")
    _replace_key(ws)
    with pytest.raises(KeyMismatch, match=NOT_THE_KEY):
        start_receiver(ws, "BRAINMETS", 0)
    with ws.catalog(readonly=True) as cat:
        assert cat.source_files() == []
