"""brainmets: an open pipeline from hospital brain-MRI studies to a de-identified,
AI-ready brain-metastasis dataset.

The names most users need are available from the top-level package; each is imported
only when first used, so ``import brainmets`` stays light::

    import brainmets

    brainmets.api.init("ws")                      # run a workspace (see brainmets.api)
    found = brainmets.read_series("deidentified/BM-K7Q2ZP4M")
    result = brainmets.analyse(brainmets.load_label_map("case-seg.nii.gz"))

See ``docs/python_api.md`` for a worked example per pipeline stage.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first access)
_EXPORTS: dict[str, str] = {
    # running a workspace
    "api": "brainmets.api",
    "Workspace": "brainmets.workspace",
    # de-identification
    "Deidentifier": "brainmets.deid",
    "DeidOptions": "brainmets.deid",
    "deidentify_tree": "brainmets.deid",
    "verify_tree": "brainmets.deid",
    # the hanging protocol
    "read_series": "brainmets.classify",
    "classify_series": "brainmets.classify",
    "classify_study": "brainmets.classify",
    # DICOM -> NIfTI
    "convert_files": "brainmets.convert",
    # co-registration, SRI24, 1 mm, skull stripping
    "preprocess_case": "brainmets.preprocess",
    "PreprocessOptions": "brainmets.preprocess",
    # annotations -> one label map
    "RegionMask": "brainmets.segment",
    "FusionRules": "brainmets.segment",
    "fuse": "brainmets.segment",
    "import_annotations": "brainmets.segment",
    # label maps and lesions
    "LabelMap": "brainmets.labelmaps",
    "load_label_map": "brainmets.labelmaps",
    "save_label_map": "brainmets.labelmaps",
    "analyse": "brainmets.lesions",
    "FeatureParams": "brainmets.lesions",
    "load_atlas_labels": "brainmets.lesions",
    # the cohort (who is included, clinical rows, scanners) and the published dataset
    "Cohort": "brainmets.cohort",
    "open_cohort": "brainmets.cohort",
    "validate": "brainmets.export",
    # synthetic patients
    "generate_cohort": "brainmets.synth",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'brainmets' has no attribute {name!r}")
    mod = importlib.import_module(module)
    value = mod if module == f"brainmets.{name}" else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
