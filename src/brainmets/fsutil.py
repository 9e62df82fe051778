"""Atomic file writing, content hashing, listing the files of a tree, worker counts.

Every file a stage produces is written to a temporary name in the destination folder and
renamed into place only when complete, so a process killed at any moment never leaves a
half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: mode for finished files: what ``open()`` would give (mkstemp alone gives 0600)
FILE_MODE = 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` on success.

    The temporary name keeps the destination's suffixes (so writers that look at the
    extension, e.g. nibabel's ``.nii.gz``, behave), starts with :data:`TMP_PREFIX` and is
    removed if the block raises. A full disk or quota (``ENOSPC``, ``EDQUOT``) raises
    :class:`DiskFullError` naming ``dest`` (a writer's own error often names no file).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(dest.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, FILE_MODE)
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        full = disk_full(exc)
        if full is not None and not isinstance(exc, DiskFullError):
            raise DiskFullError(full.errno or errno.ENOSPC, dest) from exc
        raise


class DiskFullError(OSError):
    """No space left (or the quota is used up) while writing ``filename``; nothing of it is
    left in place (the temporary file is removed). Picklable (it crosses worker processes)."""

    def __init__(self, code: int, dest: str | os.PathLike[str]) -> None:
        what = "disk quota exceeded" if code == errno.EDQUOT else "no space left on device"
        super().__init__(code, f"{what} while writing {os.fspath(dest)}", os.fspath(dest))

    def __reduce__(self) -> tuple[type[DiskFullError], tuple[int, str]]:
        return (DiskFullError, (self.errno or errno.ENOSPC, str(self.filename)))

    def __str__(self) -> str:
        return f"{self.strerror}; free some space and run again"


@contextlib.contextmanager
def naming_full_disk(dest: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a full disk or quota met in the block into :class:`DiskFullError` naming
    ``dest`` (the writer's own error often names no file)."""
    try:
        yield
    except DiskFullError:
        raise
    except BaseException as exc:
        full = disk_full(exc)
        if full is None:
            raise
        raise DiskFullError(int(full.errno or errno.ENOSPC), dest) from exc


def disk_full(exc: BaseException) -> OSError | None:
    """The ``ENOSPC`` / ``EDQUOT`` error in ``exc`` or its causes (writers such as gzip or
    SimpleITK may wrap it), else None."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def atomic_write_bytes(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically and return the path."""
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``dest`` atomically and return the path."""
    return atomic_write_bytes(dest, text.encode(encoding))


def sync_files(paths: Iterable[str | os.PathLike[str]], threads: int = 8) -> int:
    """Make written files durable: ``fdatasync`` each file and ``fsync`` each folder they are
    in (their names, after an atomic rename), in ``threads`` threads (the waits are the
    disk's). Unlike :func:`os.sync` this flushes only these files, not everything every
    process on the machine has written. Returns the number of files; a file that vanished
    meanwhile is skipped."""
    from concurrent.futures import ThreadPoolExecutor

    files = [Path(p) for p in paths]
    folders = sorted({p.parent for p in files})

    def one(path: Path, flags: int, sync: object) -> None:
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return
        try:
            sync(fd)  # type: ignore[operator]
        finally:
            os.close(fd)

    datasync = getattr(os, "fdatasync", os.fsync)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(lambda p: one(p, os.O_RDONLY, datasync), files))
        list(pool.map(lambda d: one(d, os.O_RDONLY, os.fsync), folders))
    return len(files)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def remove_stale_temporaries(root: str | os.PathLike[str]) -> int:
    """Delete leftovers of interrupted atomic writes under ``root``; return how many."""
    n = 0
    for p in Path(root).rglob(f"{TMP_PREFIX}*"):
        if p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                n += 1
    return n


def iter_files(
    sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    follow_symlinks: bool = False,
    symlinked_files: bool = True,
    skip_temporaries: bool = False,
) -> Iterator[Path]:
    """Every file under ``sources`` (a folder or file, or several), in a stable order.

    Names are sorted and each folder is listed before the next one's (``os.walk`` order); a
    source that is a file is yielded itself. ``follow_symlinks``: descend into linked folders
    too (and yield any entry that exists, not only regular files). ``symlinked_files``: yield
    links to files (False: only files that are not links). ``skip_temporaries``: leave out
    the leftovers of atomic writes (names starting with :data:`TMP_PREFIX`).
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    for source in sources:
        src = Path(source)
        if src.is_file():
            yield src
            continue
        for dirpath, dirnames, filenames in os.walk(src, followlinks=follow_symlinks):
            dirnames.sort()
            for name in sorted(filenames):
                if skip_temporaries and name.startswith(TMP_PREFIX):
                    continue
                p = Path(dirpath) / name
                if not symlinked_files and p.is_symlink():
                    continue
                if p.is_file() or (follow_symlinks and p.exists()):
                    yield p


def default_workers(memory_per_worker: int | None = None) -> int:
    """One worker per core available to this process; with ``memory_per_worker`` (bytes), no
    more workers than the machine's physical memory holds (at least one)."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = max(1, os.cpu_count() or 1)
    if memory_per_worker is None:
        return cpus
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return cpus
    return max(1, min(cpus, int(total // memory_per_worker)))
