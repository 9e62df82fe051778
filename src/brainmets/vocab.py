"""The project's shared vocabularies, each defined once (core layer: imports no stage).

* **Label values** of a fused label map (the reference collection's, ``docs/lesions.md``):
  1 necrosis, 2 peritumoral edema, 3 enhancing tumour; BraTS regions built from them.
* **Sequence names**: the classifier's / converter's names of the four pretreatment
  sequences (``t1``, ``t1c``, ``t2``, ``flair``) and the published collection's file
  suffixes (``t1n``, ``t1c``, ``t2w``, ``t2f``, BraTS-METS naming).

Coded concepts (SNOMED CT) are in :mod:`brainmets.codes`.
"""

from __future__ import annotations

from typing import Final

# ------------------------------------------------------------------ label values
NECROSIS: Final = 1
EDEMA: Final = 2
ENHANCING: Final = 3
#: label value -> name
LABELS: Final[dict[int, str]] = {
    0: "background",
    NECROSIS: "necrosis",
    EDEMA: "edema",
    ENHANCING: "enhancing",
}
#: BraTS evaluation regions -> the label values they contain
REGIONS: Final[dict[str, tuple[int, ...]]] = {
    "ET": (ENHANCING,),
    "TC": (NECROSIS, ENHANCING),
    "WT": (NECROSIS, EDEMA, ENHANCING),
}

# ------------------------------------------------------------------ stages
#: the default pipeline's stages, in data-flow order (:mod:`brainmets.stages` assembles them)
STAGE_ORDER: Final[tuple[str, ...]] = (
    "ingest",
    "deid",
    "classify",
    "convert",
    "preprocess",
    "segment",
    "features",
    "report",
    "export",
)
#: the stages of the default pipeline that run once for the whole cohort
COHORT_STAGES: Final[frozenset[str]] = frozenset({"ingest", "report", "export"})
#: the default pipeline's per-patient stages, in order
PATIENT_STAGES: Final[tuple[str, ...]] = tuple(s for s in STAGE_ORDER if s not in COHORT_STAGES)

# ------------------------------------------------------------------ clinical codebooks
# The reference collection's clinical sheet codes (``docs/lesions.md``): code -> label.
SEX: Final[dict[int, str]] = {0: "male", 1: "female"}
ETHNICITY: Final[dict[int, str]] = {
    0: "White",
    1: "White Hispanic",
    2: "White/Black",
    3: "Black",
    4: "Asian/Pacific Islander",
}
PRIMARY: Final[dict[int, str]] = {
    1: "breast",
    2: "GI",
    3: "SCLC",
    4: "melanoma",
    5: "NSCLC",
    6: "RCC",
    7: "other",
}
NO_YES: Final[dict[int, str]] = {0: "no", 1: "yes"}
DEATH: Final[dict[int, str]] = {0: "alive at last follow-up", 1: "deceased"}

# ------------------------------------------------------------------ sequences
#: the four pretreatment sequences as classify and convert name them, in report order
SEQUENCES: Final[tuple[str, ...]] = ("t1", "t1c", "t2", "flair")
#: sequence -> file suffix of the published collection (BraTS-METS naming)
SUFFIX: Final[dict[str, str]] = {"t1": "t1n", "t1c": "t1c", "t2": "t2w", "flair": "t2f"}
#: file suffix -> sequence
SEQUENCE_OF_SUFFIX: Final[dict[str, str]] = {v: k for k, v in SUFFIX.items()}
#: the four image suffixes in the collection's order (also the nnU-Net channel order)
IMAGE_SUFFIXES: Final[tuple[str, ...]] = tuple(SUFFIX[s] for s in SEQUENCES)
#: file suffix -> short display name
SUFFIX_TITLES: Final[dict[str, str]] = {"t1n": "T1", "t1c": "T1c", "t2w": "T2", "t2f": "FLAIR"}
