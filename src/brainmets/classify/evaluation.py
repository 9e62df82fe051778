"""Accuracy evidence for the classifier: a labelled evaluation set and real DICOM series.

* ``evaluation_set.csv`` (package data) holds series descriptions and key acquisition
  parameters as clinical scanners write them — Siemens, GE, Philips, Hitachi and
  Canon/Toshiba; English, German, French, Spanish, Italian, Portuguese, Dutch, Polish,
  Swedish, Turkish and Japanese-site naming — with the true class. It was written by hand
  from clinical protocol knowledge, never produced by the classifier. Rows that share an
  ``exam`` form one study, in ``order`` (series number), so that the study-level contrast
  rules (acquisition order, repeated T1, non-discriminative agent fields) are exercised.
* ``real_series_labels.csv`` labels the real DICOM series of the shared test data
  (``testdata/dicom``); every folder is read as one study.

:func:`evaluate_rows` and :func:`evaluate_real` classify them and return an
:class:`Evaluation` (confusion matrix and the misclassified series).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from brainmets.classify.classifier import CLASSES, classify_study
from brainmets.classify.header import SeriesHeader, read_series

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
_SKIP_SUFFIXES = (".nii", ".gz", ".json", ".md", ".txt", ".png", ".csv", ".bval", ".bvec")


@dataclass
class Evaluation:
    """A confusion matrix (true class -> predicted class -> count) and the errors."""

    name: str
    matrix: dict[str, dict[str, int]] = field(
        default_factory=lambda: {t: dict.fromkeys(CLASSES, 0) for t in CLASSES}
    )
    errors: list[tuple[str, str, str, str]] = field(default_factory=list)  # what, true, pred, why
    total: int = 0

    def add(self, what: str, true: str, pred: str, reason: str) -> None:
        self.matrix[true][pred] += 1
        self.total += 1
        if true != pred:
            self.errors.append((what, true, pred, reason))

    @property
    def correct(self) -> int:
        return sum(self.matrix[c][c] for c in CLASSES)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def per_class(self) -> dict[str, tuple[float, float]]:
        """Class -> (sensitivity, positive predictive value)."""
        out = {}
        for c in CLASSES:
            tp = self.matrix[c][c]
            true_n = sum(self.matrix[c].values())
            pred_n = sum(self.matrix[t][c] for t in CLASSES)
            out[c] = (
                tp / true_n if true_n else float("nan"),
                tp / pred_n if pred_n else float("nan"),
            )
        return out


# ---------------------------------------------------------------- evaluation set
def _text(path: str) -> str:
    return resources.files("brainmets.classify").joinpath(path).read_text(encoding="utf-8")


def load_evaluation_set(path: Path | None = None) -> list[dict[str, str]]:
    """The rows of the labelled evaluation set (the packaged one by default)."""
    text = path.read_text(encoding="utf-8") if path else _text("evaluation_set.csv")
    rows = list(csv.DictReader(text.splitlines()))
    for i, r in enumerate(rows, start=2):
        if r["label"] not in CLASSES:
            raise ValueError(f"evaluation set line {i}: unknown label {r['label']!r}")
    return rows


def _num(v: str | None) -> float | None:
    v = (v or "").strip()
    return float(v) if v else None


def header_from_row(row: dict[str, str], uid: str) -> SeriesHeader:
    """A :class:`SeriesHeader` with the fields an evaluation-set row gives."""
    order = (row.get("order") or "").strip()
    return SeriesHeader(
        uid=uid,
        study_uid=row.get("exam") or uid,
        series_number=int(order) if order else None,
        modality="MR",
        sop_class_uid=MR_IMAGE,
        sop_class="MR Image Storage",
        manufacturer=row.get("vendor") or None,
        model=row.get("model") or None,
        field_strength=_num(row.get("field")),
        description=row.get("description") or None,
        protocol_name=row.get("protocol") or None,
        sequence_name=row.get("sequence_name") or None,
        scanning_sequence=[s for s in (row.get("scanning_sequence") or "").split("\\") if s],
        sequence_variant=[s for s in (row.get("sequence_variant") or "").split("\\") if s],
        mr_acquisition_type=row.get("acq") or None,
        echo_time=_num(row.get("te")),
        echo_times=[t for t in [_num(row.get("te"))] if t is not None],
        repetition_time=_num(row.get("tr")),
        inversion_time=_num(row.get("ti")),
        flip_angle=_num(row.get("flip")),
        image_type=[s for s in (row.get("image_type") or "").split("\\") if s],
        contrast_agent=row.get("agent") or None,
        n_instances=1,
        n_frames=1,
    )


def evaluate_rows(rows: Sequence[dict[str, str]], name: str = "evaluation set") -> Evaluation:
    """Classify the evaluation set, study by study, against its labels."""
    studies: dict[str, list[tuple[int, dict[str, str], SeriesHeader]]] = defaultdict(list)
    for i, row in enumerate(rows):
        h = header_from_row(row, f"eval-{i + 2}")
        studies[h.study_uid].append((i + 2, row, h))
    ev = Evaluation(name)
    for members in studies.values():
        result = classify_study([h for _, _, h in members])
        for line, row, h in members:
            c = result[h.uid]
            what = f"line {line}: {row.get('vendor', '')} {row.get('description') or '(none)'!r}"
            ev.add(what, row["label"], c.cls, c.reason)
    return ev


# ------------------------------------------------------------------- real series
def load_real_labels() -> dict[str, tuple[str, str]]:
    """Folder (relative to ``testdata/dicom``) -> (true class, why)."""
    rows = csv.DictReader(_text("real_series_labels.csv").splitlines())
    return {r["folder"]: (r["label"], r["why"]) for r in rows}


def read_folder_series(folder: Path) -> list[SeriesHeader]:
    """The series (by SeriesInstanceUID) of the DICOM files directly in a folder (the
    labelled test folders: licence and reference conversions beside the DICOM are ignored)."""
    found = read_series(
        folder, recursive=False, ignore_suffixes=_SKIP_SUFFIXES, ignore_names=("LICENSE",)
    )
    return found.series


def evaluate_real(dicom_dir: Path) -> Evaluation:
    """Classify the labelled real series under ``dicom_dir`` (``testdata/dicom``)."""
    ev = Evaluation("real DICOM series")
    for folder, (label, _why) in sorted(load_real_labels().items()):
        path = dicom_dir / folder
        if not path.is_dir():
            continue
        headers = read_folder_series(path)
        images = [h for h in headers if h.n_instances]
        result = classify_study(headers)
        for h in images:
            c = result[h.uid]
            ev.add(f"{folder} ({h.text})", label, c.cls, c.reason)
    return ev
