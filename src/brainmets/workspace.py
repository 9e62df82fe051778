"""A brainmets workspace: configuration, catalog, secret key, data folders and a lock.

Layout created by :meth:`Workspace.init`::

    WORKSPACE/
      brainmets.toml        configuration (paths, atlas, stage parameters)
      catalog.sqlite        the catalog (versioned schema)
      private/deid.key      de-identification secret key (mode 0600, never printed)
      private/quarantine/   inputs withheld from the dataset, with reasons
      data/dicom/           de-identified DICOM
      data/derivatives/     per-patient stage outputs
      exports/              dataset exports
      logs/brainmets.jsonl  structured log (JSON lines)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from brainmets.catalog import Catalog
from brainmets.config import CONFIG_NAME, Config

CATALOG_NAME = "catalog.sqlite"
LOCK_NAME = ".brainmets.lock"
KEY_BYTES = 32


class WorkspaceError(RuntimeError):
    """The workspace is missing, invalid or unusable for the requested operation."""


class WorkspaceLocked(WorkspaceError):
    """Another brainmets process holds the workspace."""


class Workspace:
    """An opened workspace. Use :meth:`init` or :meth:`open`."""

    def __init__(self, root: Path, config: Config) -> None:
        self.root = root
        self.config = config
        self._lock_fh: int | None = None

    # ------------------------------------------------------------------ creation
    @classmethod
    def init(cls, root: str | os.PathLike[str], atlas_dir: str | None = None) -> Workspace:
        """Create a new workspace in ``root`` (which may exist but must not be a workspace)."""
        root = Path(root).expanduser().resolve()
        if (root / CONFIG_NAME).exists() or (root / CATALOG_NAME).exists():
            raise WorkspaceError(f"{root} is already a brainmets workspace")
        if root.exists() and not root.is_dir():
            raise WorkspaceError(f"{root} exists and is not a folder")
        before = set(root.iterdir()) if root.exists() else None
        root.mkdir(parents=True, exist_ok=True)
        config = Config(root=root)
        if atlas_dir:
            config.data["atlas"]["dir"] = str(Path(atlas_dir).expanduser().resolve())
        ws = cls(root, config)
        try:
            with ws.lock():
                for name in ("private", "dicom", "derivatives", "quarantine", "exports", "logs"):
                    config.path(name).mkdir(parents=True, exist_ok=True)
                os.chmod(config.path("private"), 0o700)
                ws._create_key()
                Catalog.open(root / CATALOG_NAME, create=True).close()
                config.save()  # last: its presence marks a complete workspace
        except BaseException:
            # leave nothing half-made behind: remove what this call created
            if before is None:
                shutil.rmtree(root, ignore_errors=True)
            else:
                for p in set(root.iterdir()) - before:
                    if p.is_dir():
                        shutil.rmtree(p, ignore_errors=True)
                    else:
                        p.unlink(missing_ok=True)
            raise
        return ws

    def _create_key(self) -> None:
        key_file = self.config.key_file
        key_file.parent.mkdir(parents=True, exist_ok=True)
        if key_file.exists():
            raise WorkspaceError(f"{key_file} already exists; refusing to overwrite a key")
        # O_EXCL + mode 0600 from the start: the key is never readable by others.
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------- opening
    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> Workspace:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise WorkspaceError(
                f"{root}: no such workspace folder (create it with `brainmets init`)"
            )
        if not (root / CONFIG_NAME).is_file():
            raise WorkspaceError(f"{root}: not a brainmets workspace (no {CONFIG_NAME})")
        if not (root / CATALOG_NAME).is_file():
            raise WorkspaceError(f"{root}: workspace has no catalog ({CATALOG_NAME})")
        Catalog.check_version(root / CATALOG_NAME)  # refuse a newer schema before any change
        return cls(root, Config.load(root))

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_NAME

    def catalog(self, *, readonly: bool = False) -> Catalog:
        """Open the catalog. Writing opens migrate the schema: hold the lock for them."""
        if not readonly and self._lock_fh is None:
            raise WorkspaceError("internal error: opening the catalog for writing without the lock")
        return Catalog.open(self.catalog_path, readonly=readonly)

    # --------------------------------------------------------------------- lock
    @contextlib.contextmanager
    def lock(self) -> Iterator[Workspace]:
        """Hold the workspace exclusively; a second holder gets :class:`WorkspaceLocked`.

        The lock is an ``flock`` on ``.brainmets.lock``: the kernel releases it when the
        process ends, however it ends, so a killed run never leaves a stale lock.
        """
        if self._lock_fh is not None:
            yield self
            return
        path = self.root / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise WorkspaceLocked(
                    f"{self.root} is in use by another brainmets process"
                    + (f" ({holder})" if holder else "")
                    + "; wait for it to finish. Nothing was modified."
                ) from exc
            raise
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.encode(), 0)
        self._lock_fh = fd
        try:
            yield self
        finally:
            self._lock_fh = None
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    @property
    def locked(self) -> bool:
        return self._lock_fh is not None

    # ---------------------------------------------------------------------- key
    def key(self) -> bytes:
        """The de-identification key. Refuses a key file readable by group or others."""
        return read_key(self.config.key_file)

    # ------------------------------------------------------------------- paths
    def relpath(self, path: Path) -> str:
        """A path relative to the workspace root (how the catalog stores paths)."""
        return os.path.relpath(Path(path).resolve(), self.root)

    def abspath(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def save_config(self) -> None:
        with self.lock():
            self.config.save()


def find_workspace(path: str | os.PathLike[str]) -> Path | None:
    """The workspace that holds ``path`` (the nearest folder, ``path`` itself or one above
    it, with a config and a catalog), or None."""
    here = Path(path).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file() and (folder / CATALOG_NAME).is_file():
            return folder
    return None


def read_key(key_file: Path) -> bytes:
    try:
        st = key_file.stat()
    except FileNotFoundError as exc:
        raise WorkspaceError(f"{key_file}: de-identification key is missing") from exc
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WorkspaceError(
            f"{key_file}: key file is accessible by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}); run `chmod 600 {key_file}`"
        )
    data = key_file.read_bytes()
    if len(data) < 16:
        raise WorkspaceError(f"{key_file}: key is too short ({len(data)} bytes)")
    return data
