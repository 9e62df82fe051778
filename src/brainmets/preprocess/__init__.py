"""BraTS-convention preprocessing: co-registration, SRI24 registration, one resampling to
1 mm 240 x 240 x 155, skull stripping. See ``docs/preprocessing.md``.

Public API:

* :func:`preprocess_case` / :class:`PreprocessOptions` — one case, four NIfTI files in,
  atlas-space outputs, mask, transforms and QC out.
* :func:`map_to_atlas` / :func:`map_to_native` — carry masks, label maps or images between
  a native series and the atlas grid with the saved :class:`CaseTransforms`.
* :func:`run_standalone` / :func:`run_to_native` — the command-line entry points.
* :data:`STAGE` lives in :mod:`brainmets.preprocess.stage` (imported lazily by the pipeline).
"""

from __future__ import annotations

from brainmets.preprocess.cli import run_standalone, run_to_native
from brainmets.preprocess.errors import PreprocessError, RegistrationFailed
from brainmets.preprocess.pipeline import CaseResult, PreprocessOptions, preprocess_case
from brainmets.preprocess.transforms import map_to_atlas, map_to_native
from brainmets.spatial import CaseTransforms

__all__ = [
    "CaseResult",
    "CaseTransforms",
    "PreprocessError",
    "PreprocessOptions",
    "RegistrationFailed",
    "map_to_atlas",
    "map_to_native",
    "preprocess_case",
    "run_standalone",
    "run_to_native",
]
