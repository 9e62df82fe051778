"""Find each patient's four pretreatment sequences (the hanging protocol).

* :mod:`brainmets.classify.header` — the header index of a series (:class:`SeriesHeader`).
* :mod:`brainmets.classify.vocabulary` — multi-vendor, multi-language description vocabulary.
* :mod:`brainmets.classify.rules` — evidence from acquisition physics and Image Type.
* :mod:`brainmets.classify.classifier` — series -> ``t1``/``t1c``/``t2``/``flair``/``other``.
* :mod:`brainmets.classify.selection` — pretreatment study, competing series, inclusion rule.
* :mod:`brainmets.classify.evaluation` — the labelled evaluation set and real-series check.
* :mod:`brainmets.classify.stage` — the ``classify`` pipeline stage (``STAGE``).
* :mod:`brainmets.classify.cli` — ``brainmets classify --evaluate`` / ``--set UID=CLASS``.

See ``docs/classification.md``.
"""

from brainmets.classify.classifier import (
    CLASSES,
    TARGETS,
    Classification,
    classify_series,
    classify_study,
)
from brainmets.classify.header import FolderSeries, SeriesHeader, index_series, read_series

__all__ = [
    "CLASSES",
    "TARGETS",
    "Classification",
    "FolderSeries",
    "SeriesHeader",
    "classify_series",
    "classify_study",
    "index_series",
    "read_series",
]
