"""Coded concepts (SNOMED CT) used in DICOM objects brainmets writes or reads.

Taken from :data:`pydicom.sr.codedict.codes`, as highdicom does, so that code values and
meanings are never typed by hand. One entry per label value of :mod:`brainmets.vocab`.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from brainmets.vocab import EDEMA, ENHANCING, NECROSIS

#: segmented property category of every tumour segment
CATEGORY: Code = codes.SCT.MorphologicallyAbnormalStructure
#: anatomic region of the segmentations
BRAIN: Code = codes.SCT.Brain
NECROSIS_TYPE: Code = codes.SCT.Necrosis
EDEMA_TYPE: Code = codes.SCT.Edema
METASTASIS_TYPE: Code = codes.SCT.NeoplasmMetastatic
#: label value -> segmented property type
LABEL_TYPES: dict[int, Code] = {
    NECROSIS: NECROSIS_TYPE,
    EDEMA: EDEMA_TYPE,
    ENHANCING: METASTASIS_TYPE,
}
#: SNOMED code value -> region name, to read segmentations that others coded
REGION_OF_CODE: dict[str, str] = {
    NECROSIS_TYPE.value: "necrosis",
    EDEMA_TYPE.value: "edema",
    "267038008": "edema",  # Edema (finding), used by some tools instead of the morphology
}
