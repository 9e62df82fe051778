"""``MANIFEST.sha256``: the SHA-256 of every file of an export.

Format: the one ``sha256sum`` writes and checks (``sha256sum -c MANIFEST.sha256``): one line
per file, ``<64 hex digits><two spaces><path relative to the folder, '/'-separated>``, sorted
by path. The manifest does not list itself. Paths are plain names (no newline, no backslash).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from brainmets.fsutil import atomic_write_text, sha256_file

MANIFEST_NAME = "MANIFEST.sha256"


def dataset_files(root: Path) -> list[str]:
    """Every regular file (or link to one) under ``root``, relative POSIX paths, sorted;
    the manifest itself excluded."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if rel != MANIFEST_NAME and p.is_file():
                out.append(rel)
    return sorted(out)


def manifest_text(root: Path, files: Iterable[str] | None = None) -> str:
    lines = []
    for rel in sorted(files if files is not None else dataset_files(root)):
        if "\n" in rel or "\\" in rel:
            raise ValueError(f"cannot list {rel!r} in a sha256sum manifest")
        lines.append(f"{sha256_file(root / rel)}  {rel}")
    return "".join(line + "\n" for line in lines)


def write_manifest(root: Path) -> Path:
    """Write ``root/MANIFEST.sha256`` for every file under ``root`` (atomically)."""
    return atomic_write_text(root / MANIFEST_NAME, manifest_text(root))


@dataclass
class ManifestCheck:
    """Result of :func:`check_manifest`."""

    checked: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # listed, not present
    unlisted: list[str] = field(default_factory=list)  # present, not listed
    malformed: list[int] = field(default_factory=list)  # line numbers

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.missing or self.unlisted or self.malformed)


def read_manifest(path: Path) -> tuple[dict[str, str], list[int]]:
    """``(relative path -> sha256, malformed line numbers)`` of a manifest file."""
    entries: dict[str, str] = {}
    bad: list[int] = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep:  # sha256sum's binary marker: "<hash> *<path>"
            digest, sep, rel = line.partition(" *")
        digest = digest.strip().lower()
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            bad.append(i)
            continue
        entries[rel] = digest
    return entries, bad


def check_manifest(root: Path, manifest: Path | None = None) -> ManifestCheck:
    """Re-hash every file the manifest lists and find files it does not list."""
    manifest = manifest or root / MANIFEST_NAME
    entries, bad = read_manifest(manifest)
    res = ManifestCheck(malformed=bad)
    for rel, digest in sorted(entries.items()):
        p = root / rel
        if not p.is_file():
            res.missing.append(rel)
            continue
        res.checked += 1
        if sha256_file(p) != digest:
            res.mismatched.append(rel)
    res.unlisted = [rel for rel in dataset_files(root) if rel not in entries]
    return res
