"""A brainmets workspace: configuration, catalog, secret key, data folders and a lock.

Layout created by :meth:`Workspace.init`::

    WORKSPACE/
      brainmets.toml        configuration (paths, atlas, stage parameters)
      catalog.sqlite        the catalog (versioned schema)
      private/deid.key      de-identification secret key (mode 0600, never printed; the
                            catalog records its fingerprint, and another key is refused)
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
from brainmets.ids import key_fingerprint

CATALOG_NAME = "catalog.sqlite"
LOCK_NAME = ".brainmets.lock"
KEY_BYTES = 32
#: the shortest key :func:`read_key` accepts
MIN_KEY_BYTES = 16


class WorkspaceError(RuntimeError):
    """The workspace is missing, invalid or unusable for the requested operation."""


class WorkspaceLocked(WorkspaceError):
    """Another brainmets process holds the workspace."""


class KeyMismatch(WorkspaceError):
    """The key file is not the key the workspace was created with."""


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
                with Catalog.open(root / CATALOG_NAME, create=True) as cat:
                    cat.record_key_fingerprint(key_fingerprint(ws.key()), "init")
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
        """The de-identification key, as :func:`read_key` reads it (not compared with the
        catalog: commands check it once with :meth:`checked_key` before they start)."""
        return read_key(self.config.key_file)

    def checked_key(self, catalog: Catalog | None = None, *, command: str = "") -> bytes:
        """The key, refused unless it is the key this workspace was created with.

        Its fingerprint (:func:`brainmets.ids.key_fingerprint`) is compared with the one
        the catalog recorded at ``init``; a workspace made before fingerprints were recorded
        gets this key's recorded now (``recorded_by``: ``command``). Raises
        :class:`WorkspaceError` for a missing or unusable key file and :class:`KeyMismatch`
        for another key. ``catalog``: a catalog open for writing to use; without it the
        workspace's own is opened, which needs the lock.
        """
        key = self._read_own_key()
        fingerprint = key_fingerprint(key)
        if catalog is not None:
            recorded = _recorded_fingerprint(catalog, fingerprint, command)
        else:
            with self.catalog() as cat:
                recorded = _recorded_fingerprint(cat, fingerprint, command)
        if recorded != fingerprint:
            raise KeyMismatch(self._mismatch(fingerprint, recorded))
        return key

    def key_problem(self) -> str | None:
        """Why :meth:`checked_key` would refuse the key now (None: it would accept it);
        reads only (for ``brainmets status``, which warns)."""
        try:
            key = self._read_own_key()
        except WorkspaceError as exc:
            return str(exc)
        with self.catalog(readonly=True) as cat:
            recorded = cat.key_fingerprint()
        fingerprint = key_fingerprint(key)
        return None if recorded in (None, fingerprint) else self._mismatch(fingerprint, recorded)

    def _read_own_key(self) -> bytes:
        key_file = self.config.key_file
        if not os.path.lexists(key_file):
            raise WorkspaceError(
                f"{key_file}: the workspace's de-identification key is missing. Every "
                "pseudonym of this workspace is derived from it: put the workspace's key back "
                "(from your backup); a new key would make the same files new patients"
            )
        return read_key(key_file)

    def _mismatch(self, fingerprint: str, recorded: str | None) -> str:
        key_file = self.config.key_file
        return (
            f"{key_file} is not the key this workspace was created with (its fingerprint "
            f"{fingerprint[:12]} differs from the recorded {str(recorded)[:12]}). Every "
            "pseudonym is derived from the key: with this key the same files would become "
            f"new patients. Put the workspace's own key back at {key_file} (from your "
            "backup), or make a new workspace for this key (`brainmets init`)"
        )

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


def _recorded_fingerprint(cat: Catalog, fingerprint: str, command: str) -> str:
    """The catalog's key fingerprint, recording ``fingerprint`` when there is none."""
    recorded = cat.key_fingerprint()
    if recorded is None:
        recorded = cat.record_key_fingerprint(fingerprint, command or "first use")
    return recorded


def find_workspace(path: str | os.PathLike[str]) -> Path | None:
    """The workspace that holds ``path`` (the nearest folder, ``path`` itself or one above
    it, with a config and a catalog), or None."""
    here = Path(path).expanduser().resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_NAME).is_file() and (folder / CATALOG_NAME).is_file():
            return folder
    return None


def read_key(key_file: str | os.PathLike[str]) -> bytes:
    """Read a de-identification key file: raw random bytes, mode 0600.

    The one definition of what a usable key file is, for the workspace, its stages and
    ``brainmets deid --key``. Raises :class:`WorkspaceError` with the reason, checked in
    this order so that each problem gets its own message: missing; a folder (or anything
    but a regular file); shorter than :data:`MIN_KEY_BYTES`; accessible by group or others;
    unreadable. ``brainmets init`` writes :data:`KEY_BYTES` random bytes.
    """
    key_file = Path(key_file)
    try:
        st = key_file.stat()
    except FileNotFoundError as exc:
        raise WorkspaceError(f"{key_file}: de-identification key is missing") from exc
    except OSError as exc:
        raise WorkspaceError(f"{key_file}: cannot read the key file ({exc.strerror})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise WorkspaceError(
            f"{key_file} is a folder, not a key file; give the key file itself "
            "(e.g. WORKSPACE/private/deid.key)"
        )
    if not stat.S_ISREG(st.st_mode):
        raise WorkspaceError(f"{key_file} is not a regular file, so it cannot be a key file")
    if st.st_size < MIN_KEY_BYTES:
        raise WorkspaceError(_too_short(key_file, st.st_size))
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise WorkspaceError(
            f"{key_file}: key file is accessible by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}); run `chmod 600 {key_file}`"
        )
    try:
        data = key_file.read_bytes()
    except OSError as exc:
        raise WorkspaceError(f"{key_file}: cannot read the key file ({exc.strerror})") from exc
    if len(data) < MIN_KEY_BYTES:  # changed since the stat
        raise WorkspaceError(_too_short(key_file, len(data)))
    return data


def _too_short(key_file: Path, n: int) -> str:
    return (
        f"{key_file}: key is too short ({n} byte{'' if n == 1 else 's'}; a key has at least "
        f"{MIN_KEY_BYTES} random bytes, `brainmets init` writes {KEY_BYTES})"
    )
