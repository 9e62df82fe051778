"""Outside inputs: what a stage reads that no earlier stage produced.

A stage that reads files from outside the pipeline's own outputs (the source folders, the
SRI24 atlas, the clinical sheet, the annotation folder) declares them with
``Stage(fingerprint_inputs=callback)``. Before deciding whether to (re)run the stage for a
patient, the runner calls ``callback(InputContext)``, which carries the workspace, the catalog
(read-only use), the patient and the stage's **merged parameters** (the callback never re-reads
the configuration for them). The JSON-able description it returns is part of the stage's
fingerprint: when it changes, the stage and every later stage are redone.

Descriptions hash file **contents** (SHA-256, :func:`file_digest`; digests are cached in this
process by (path, size, mtime_ns), so a large atlas is read once per run, not once per
patient). A touched but unchanged file therefore re-runs nothing, a changed one re-runs.

Problems are reported, never swallowed: a file that does not exist or cannot be read is
described as ``{"missing": true}`` or ``{"unreadable": "<error>"}`` (so the stage runs, or
runs again once the file is back, and fails with its own message if it needs the file); any
exception raised by a callback fails that (patient, stage) with an
:class:`OutsideInputError` naming the stage, and the patient's later stages wait.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainmets.catalog import Catalog
    from brainmets.config import Config
    from brainmets.workspace import Workspace

__all__ = [
    "InputContext",
    "OutsideInputError",
    "atlas_inputs",
    "describe_atlas",
    "describe_file",
    "describe_folder",
    "file_digest",
]

_CHUNK = 1 << 20
_DIGESTS: dict[tuple[str, int, int], str] = {}


class OutsideInputError(RuntimeError):
    """A stage's outside inputs could not be described (the callback raised)."""


@dataclass(frozen=True)
class InputContext:
    """What an outside-input callback receives.

    Attributes:
        workspace: the workspace (root, configuration: folders, atlas, key file).
        catalog: the catalog, to read from only.
        patient_id: the patient (or :data:`brainmets.catalog.COHORT`).
        params: the stage's merged parameters (defaults overridden by ``[stages.<name>]``).
    """

    workspace: Workspace
    catalog: Catalog
    patient_id: str
    params: Mapping[str, Any]

    @property
    def root(self) -> Path:
        return self.workspace.root

    @property
    def config(self) -> Config:
        return self.workspace.config

    def key(self) -> bytes:
        """The workspace key (raises with the reason when it cannot be read)."""
        return self.workspace.key()


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256", "size"}`` of a file's contents, or ``{"missing": True}`` /
    ``{"unreadable": "<error>"}``. Cached by (resolved path, size, mtime_ns)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        return {"missing": True}
    except OSError as exc:
        return {"unreadable": f"{type(exc).__name__}: {exc.strerror or exc}"}
    if not p.is_file():
        return {"unreadable": "not a file"}
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    sha = _DIGESTS.get(key)
    if sha is None:
        h = hashlib.sha256()
        try:
            with open(p, "rb") as fh:
                while block := fh.read(_CHUNK):
                    h.update(block)
        except OSError as exc:
            return {"unreadable": f"{type(exc).__name__}: {exc.strerror or exc}"}
        sha = _DIGESTS[key] = h.hexdigest()
    return {"sha256": sha, "size": st.st_size}


def describe_file(path: Path | None) -> dict[str, Any] | None:
    """A file's path and :func:`file_digest` (None for no file configured)."""
    if path is None:
        return None
    return {"path": str(path), **file_digest(path)}


def describe_folder(folder: Path, label: str = "folder") -> dict[str, Any]:
    """Every file under ``folder`` (relative name -> digest), or the folder as missing."""
    try:
        if not folder.is_dir():
            return {"missing": label}
        files = sorted(p for p in folder.rglob("*") if p.is_file())
    except OSError as exc:
        return {"unreadable": f"{label}: {type(exc).__name__}: {exc.strerror or exc}"}
    return {"files": {os.path.relpath(p, folder): file_digest(p) for p in files}}


def describe_atlas(names: Iterable[str], atlas_dir: Path | None) -> dict[str, Any]:
    """The contents of the named SRI24 atlas files, looked up as the stages look them up
    (:func:`brainmets.atlas.locate_atlas`). The folder's location is not part of it: the same
    files elsewhere re-run nothing."""
    from brainmets.atlas import locate_atlas

    rep = locate_atlas(atlas_dir)
    if rep.directory is None:
        return {"atlas": "not found", "source": rep.source}
    return {"atlas": {name: file_digest(rep.directory / name) for name in names}}


@dataclass(frozen=True)
class AtlasInputs:
    """An outside-input callback for a stage that reads these SRI24 atlas files (a plain,
    picklable object: stages travel to worker processes)."""

    names: tuple[str, ...]

    def __call__(self, inp: InputContext) -> Any:
        return describe_atlas(self.names, inp.config.atlas_dir)


def atlas_inputs(*names: str) -> AtlasInputs:
    """The outside-input callback of a stage that reads the SRI24 atlas files ``names``."""
    return AtlasInputs(tuple(names))
