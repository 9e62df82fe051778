"""Lesion-wise evaluation of segmentation models (``brainmets evaluate``).

Compares predicted label maps with reference ones lesion by lesion, under the BraTS-METS
2023 definition (:mod:`brainmets.evaluate.brats2023`, the official lesion-wise script) or
the 2025 one (:mod:`brainmets.evaluate.brats2025`, ``brats-evaluation``'s ``mets``
configuration on panoptica), with the official metric names, per-lesion detail and a
breakdown by lesion size (:mod:`brainmets.evaluate.sizes`).
``docs/evaluation.md`` states every rule.

>>> from brainmets.evaluate import evaluate_folders, write_json
>>> ev = evaluate_folders("preds/", "labels/", "brats2023", workers=2)  # doctest: +SKIP
>>> write_json(ev, "metrics.json")  # doctest: +SKIP
"""

from __future__ import annotations

from brainmets.evaluate.model import CaseResult, Lesion
from brainmets.evaluate.output import metrics_json, write_csv_dir, write_json
from brainmets.evaluate.pairing import Pairing, case_key, pair_folders
from brainmets.evaluate.run import (
    DEFINITIONS,
    Definition,
    Evaluation,
    definition,
    evaluate_folders,
    evaluate_pair,
)
from brainmets.evaluate.sizes import DEFAULT_BINS, froc, parse_bins, size_breakdown

__all__ = [
    "DEFAULT_BINS",
    "DEFINITIONS",
    "CaseResult",
    "Definition",
    "Evaluation",
    "Lesion",
    "Pairing",
    "case_key",
    "definition",
    "evaluate_folders",
    "evaluate_pair",
    "froc",
    "metrics_json",
    "pair_folders",
    "parse_bins",
    "size_breakdown",
    "write_csv_dir",
    "write_json",
]
