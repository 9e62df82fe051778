"""Workspace creation, opening, key handling and the lock."""

from __future__ import annotations

import hashlib
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from brainmets.config import Config, ConfigError
from brainmets.workspace import Workspace, WorkspaceError, WorkspaceLocked, read_key


def test_init_creates_layout_and_private_key(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    key_file = ws.config.key_file
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(ws.key()) == 32
    assert (ws.root / "brainmets.toml").is_file()
    assert ws.catalog_path.is_file()
    for name in ("dicom", "derivatives", "exports", "logs", "quarantine"):
        assert ws.config.path(name).is_dir()
    # the key never appears in the config or the catalog
    assert ws.key() not in (ws.root / "brainmets.toml").read_bytes()
    assert ws.key().hex() not in (ws.root / "brainmets.toml").read_text()


def test_two_workspaces_have_different_keys(tmp_path: Path) -> None:
    assert Workspace.init(tmp_path / "a").key() != Workspace.init(tmp_path / "b").key()


def test_init_refuses_existing_workspace(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "ws")
    with pytest.raises(WorkspaceError, match="already"):
        Workspace.init(tmp_path / "ws")


def test_open_missing_or_not_a_workspace(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="no such"):
        Workspace.open(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkspaceError, match="not a brainmets workspace"):
        Workspace.open(tmp_path / "empty")


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    ws.config.key_file.chmod(0o644)
    with pytest.raises(WorkspaceError, match="chmod 600"):
        ws.key()


def test_invalid_config_is_reported_with_file_name(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    (ws.root / "brainmets.toml").write_text("[paths\nbroken")
    with pytest.raises(ConfigError, match="brainmets.toml"):
        Workspace.open(ws.root)


def test_unknown_stage_parameter_is_an_error(tmp_path: Path) -> None:
    cfg = Config(root=tmp_path)
    cfg.set_stage_param("features", "conectivity", 18)
    with pytest.raises(ConfigError, match="conectivity"):
        cfg.stage_params("features", {"connectivity": 26})


def test_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    other = Workspace.open(ws.root)
    with ws.lock(), pytest.raises(WorkspaceLocked, match="in use"), other.lock():
        pass
    with other.lock():  # released
        pass


def test_lock_held_by_another_process_and_released_when_it_is_killed(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "ws")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from brainmets.workspace import Workspace
                ws = Workspace.open({str(ws.root)!r})
                with ws.lock():
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        catalog_before = hashlib.sha256(ws.catalog_path.read_bytes()).hexdigest()
        with pytest.raises(WorkspaceLocked, match=r"pid"), ws.lock():
            pass
        assert hashlib.sha256(ws.catalog_path.read_bytes()).hexdigest() == catalog_before
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while True:  # the kernel drops the flock with the process
        try:
            with ws.lock():
                break
        except WorkspaceLocked:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_key_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o755)
    with pytest.raises(WorkspaceError, match="is a folder, not a key file") as info:
        read_key(folder)
    assert "chmod" not in str(info.value)  # not taken for a permission problem


def test_a_short_key_is_too_short_before_its_mode_is_looked_at(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    short.chmod(0o644)  # wrong mode too: the length is the problem to report
    with pytest.raises(WorkspaceError, match=r"too short \(3 bytes") as info:
        read_key(short)
    assert "chmod" not in str(info.value)
    short.chmod(0o600)
    with pytest.raises(WorkspaceError, match=r"too short \(3 bytes"):
        read_key(short)
    empty = tmp_path / "empty.key"
    empty.touch(mode=0o600)
    with pytest.raises(WorkspaceError, match=r"too short \(0 bytes"):
        read_key(empty)


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="missing") as info:
        read_key(tmp_path / "none.key")
    assert str(tmp_path / "none.key") in str(info.value)
