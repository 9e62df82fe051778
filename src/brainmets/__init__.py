"""brainmets: an open pipeline from hospital brain-MRI studies to a de-identified,
AI-ready brain-metastasis dataset."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
