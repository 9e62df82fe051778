"""Lesion analysis: connected components, per-lesion measurements and the per-patient
features of the reference dataset, the published collection reader and workbook comparison.
Conventions are documented in :mod:`brainmets.lesions.analysis` and ``docs/lesions.md``."""

from __future__ import annotations

from brainmets.labelmaps.io import (
    LABELS,
    MAPPINGS,
    LabelMap,
    LabelMapError,
    as_label_array,
    check_same_grid,
    load_label_map,
    parse_mapping,
    save_label_map,
)
from brainmets.lesions.analysis import (
    FEATURE_COLUMNS,
    Analysis,
    FeatureParams,
    LesionRecord,
    PatientFeatures,
    analyse,
    count_components,
    max_diameter_mm,
)
from brainmets.lesions.atlas import AtlasLabels, Placement, load_atlas_labels, place_on_atlas
from brainmets.lesions.collection import (
    CollectionCase,
    CollectionResult,
    analyse_case,
    analyse_collection,
    find_cases,
)
from brainmets.lesions.compare import Comparison, Difference, compare_workbooks, read_data_sheet

__all__ = [
    "FEATURE_COLUMNS",
    "LABELS",
    "MAPPINGS",
    "Analysis",
    "AtlasLabels",
    "CollectionResult",
    "CollectionCase",
    "Comparison",
    "Difference",
    "FeatureParams",
    "LabelMap",
    "LabelMapError",
    "LesionRecord",
    "PatientFeatures",
    "Placement",
    "analyse",
    "analyse_case",
    "analyse_collection",
    "as_label_array",
    "check_same_grid",
    "compare_workbooks",
    "count_components",
    "find_cases",
    "load_atlas_labels",
    "load_label_map",
    "max_diameter_mm",
    "parse_mapping",
    "place_on_atlas",
    "read_data_sheet",
    "save_label_map",
]
