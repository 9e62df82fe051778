"""Label maps and masks: reading, checking, writing, and array utilities (library layer).

Label values follow the reference collection: 1 necrosis, 2 edema, 3 enhancing tumour
(:mod:`brainmets.vocab`). Every stage that reads or writes a label map uses this package.
"""

from __future__ import annotations

from brainmets.labelmaps.arrays import grid_overlap, nonzero_box
from brainmets.labelmaps.io import (
    ALLOWED,
    LABELS,
    MAPPINGS,
    LabelMap,
    LabelMapError,
    as_label_array,
    check_same_grid,
    grid_difference,
    load_instance_map,
    load_label_map,
    parse_mapping,
    save_instance_map,
    save_label_map,
)

__all__ = [
    "ALLOWED",
    "LABELS",
    "MAPPINGS",
    "LabelMap",
    "LabelMapError",
    "as_label_array",
    "check_same_grid",
    "grid_difference",
    "grid_overlap",
    "load_instance_map",
    "load_label_map",
    "nonzero_box",
    "parse_mapping",
    "save_instance_map",
    "save_label_map",
]
