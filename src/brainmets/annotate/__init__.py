"""Annotation tools (issue 13): click-to-segment and lesion proposals on a case's
preprocessed images.

* :class:`CaseImages` / :func:`load_case_images` — one case's sequences on the SRI24 grid,
  normalised inside the brain, and its enhancement map;
* :func:`grow_lesion` — one lesion's enhancing core, necrosis and whole tumour from a seed
  voxel (grow / shrink by steps);
* :func:`propose_lesions` — candidate enhancing lesions with a confidence.

Image-analysis methods (scipy, cc3d); no trained model is needed.
"""

from brainmets.annotate.grow import GrowOptions, LesionMasks, NoLesionHere, grow_lesion, split_core
from brainmets.annotate.images import CaseImages, load_case_images, robust_z
from brainmets.annotate.propose import Candidate, ProposeOptions, propose_lesions

__all__ = [
    "Candidate",
    "CaseImages",
    "GrowOptions",
    "LesionMasks",
    "NoLesionHere",
    "ProposeOptions",
    "grow_lesion",
    "load_case_images",
    "propose_lesions",
    "robust_z",
    "split_core",
]
