"""Which UIDs are replaced by keyed pseudonyms and which are well known (kept).

Instance UIDs (study, series, SOP instance, frame of reference, every referenced instance,
the file meta Media Storage SOP Instance UID) identify an acquisition and are replaced by
``2.25.<integer from the HMAC>``. UIDs that name a class of things rather than an instance are
kept: every UID under the DICOM root ``1.2.840.10008`` (SOP classes, transfer syntaxes,
well-known frames of reference and SOP instances, DICOM coding schemes), HL7 coding-system
OIDs, and the values of attributes that by definition hold such a UID (``...SOPClassUID``,
``...TransferSyntaxUID``, Coding Scheme UID, Mapping Resource UID, ...).
"""

from __future__ import annotations

from pydicom.datadict import DicomDictionary

DICOM_ROOT = "1.2.840.10008."
# HL7 code systems / HL7-defined vocabularies / HL7 tables: identify terminologies only.
WELL_KNOWN_PREFIXES: tuple[str, ...] = (
    DICOM_ROOT,
    "2.16.840.1.113883.5.",
    "2.16.840.1.113883.6.",
    "2.16.840.1.113883.12.",
)
_CLASS_KEYWORD_MARKERS = (
    "SOPClass",
    "TransferSyntax",
    "ImplementationClassUID",
    "CodingSchemeUID",
    "ContextGroupExtensionCreatorUID",
    "MappingResourceUID",
    "ContextUID",
    "PrivateInformationCreatorUID",
    "SegmentationTemplateUID",
    "CreatorVersionUID",
)

CLASS_UID_TAGS: frozenset[int] = frozenset(
    tag
    for tag, entry in DicomDictionary.items()
    if entry[0] == "UI" and any(m in entry[4] for m in _CLASS_KEYWORD_MARKERS)
)


def is_well_known(uid: str) -> bool:
    """Whether ``uid`` names a standard thing (kept) rather than an instance."""
    u = uid.strip()
    return u == "1.2.840.10008" or u.startswith(WELL_KNOWN_PREFIXES)


def is_class_uid_attribute(tag: int) -> bool:
    """Whether the UI attribute ``tag`` holds a class/syntax/scheme UID by definition."""
    return tag in CLASS_UID_TAGS
