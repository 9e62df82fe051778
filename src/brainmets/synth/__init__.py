"""Synthetic brain-metastasis cohort written as DICOM, with exact ground truth.

The built-in demo data and the ground truth for the tests of every later stage
(de-identification, series classification, conversion, registration, segmentation
fusion, lesion counting). See ``docs/synthetic_cohort.md``.
"""

from __future__ import annotations

from brainmets.synth.cohort import CohortSummary, generate_cohort, generate_patient

__all__ = ["CohortSummary", "generate_cohort", "generate_patient"]
