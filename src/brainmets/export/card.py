"""The dataset card (``README.md``) written into every export."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import brainmets
from brainmets.atlas import CITATION as SRI24_CITATION
from brainmets.cohort.render import table_markdown
from brainmets.cohort.tables import Table

REFERENCE_PAPER = (
    "Ramakrishnan D. et al., 'A large open access dataset of brain metastasis 3D segmentations "
    "on MRI with clinical and imaging information', Scientific Data, 2024 "
    "(the Pretreat-MetsToBrain-Masks collection, whose layout and conventions this dataset "
    "follows)."
)

LABELS_MD = """| value | meaning | drawn on | BraTS-METS name |
|---:|---|---|---|
| 0 | background | | |
| 1 | necrosis (non-enhancing tumour core) | T1 post-contrast | NETC |
| 2 | peritumoral edema (whole tumour minus core) | FLAIR | SNFH |
| 3 | contrast-enhancing tumour | T1 post-contrast | ET |

Regions: enhancing tumour ET = {3}; tumour core TC = {1, 3}; whole tumour WT = {1, 2, 3}.
Other collections number the labels differently (older BraTS: 4 = enhancing): map explicitly."""


def header_text(header: str) -> str:
    """The orientation/header convention of the NIfTI files, for the card."""
    common = (
        "Every image and label map lies on the SRI24 atlas grid, 240 x 240 x 155 voxels of "
        "1 mm, and its array is in the **SRI24 template's array order** — the same order as "
        "the published Pretreat-MetsToBrain-Masks / BraTS-METS files, so arrays overlay those "
        "cases and feed BraTS-trained models voxel for voxel (index i runs to the patient's "
        "left, j to anterior, k to superior)."
    )
    if header == "brats-met":
        return (
            common + " Header: the published collection's (affine diag(1, 1, 1), origin "
            "(0, 239, 0), qform = sform code 1), so files overlay the published cases by array "
            "index and by world coordinates. That header does not put the images on the SRI24 "
            "template in world coordinates (it also states that i runs to the patient's right); "
            "to overlay the atlas, use the array index, or export with header 'sri24'."
        )
    return (
        common + " Header: the SRI24 distribution's (affine diag(-1, 1, 1), origin (0, 0, 0), "
        "qform = sform code 1, as in the atlas' t1_brain.nii.gz), so files overlay the SRI24 "
        "atlas, and any file with a correct header, in world coordinates. The published "
        "BraTS-METS files carry another header (origin (0, 239, 0)) with the same array order: "
        "against them, overlay by array index (or export with header 'brats-met')."
    )


def dataset_card(
    *,
    layout: str,
    dataset_name: str,
    n_patients: int,
    files_md: str,
    header: str,
    id_scheme: str,
    licence: str,
    citation: str,
    tables: Sequence[Table] = (),
    now: dt.datetime | None = None,
) -> str:
    """The Markdown dataset card."""
    now = now or dt.datetime.now(dt.UTC)
    ids = (
        "`BraTS-MET-XXXXX-000` (the published collection's numbering; the workbook's "
        "`BraTS_MET_ID` holds the number, e.g. 86 for `BraTS-MET-00086-000`)"
        if id_scheme == "brats"
        else "the pseudonymous workspace ID (`BM-XXXXXXXX`, a keyed hash; the workbook's "
        "`BraTS_MET_ID` holds it as text)"
    )
    parts = [
        f"# {dataset_name}",
        "",
        f"Brain-metastasis MRI dataset, layout `{layout}`, {n_patients} patients. Exported "
        f"{now.strftime('%Y-%m-%d')} by brainmets {brainmets.__version__}.",
        "",
        "## Content",
        "",
        files_md,
        "",
        "Images: T1 (`t1n`), T1 post-contrast (`t1c`), T2 (`t2w`), FLAIR (`t2f`) of each "
        "patient's pretreatment study, de-identified (DICOM PS3.15 Basic Profile with Clean "
        "Descriptors, Clean Structured Content, Retain Longitudinal Temporal Information with "
        "Modified Dates), co-registered, registered to the SRI24 atlas, resampled once to 1 mm, "
        "skull stripped; intensities as acquired (no normalisation).",
        "",
        "## Labels",
        "",
        LABELS_MD,
        "",
        "## Conventions",
        "",
        header_text(header)
        if layout != "dicom-seg"
        else (
            "One DICOM Segmentation per patient (BINARY, segments 1 necrosis, 2 edema, 3 "
            "enhancing, numbered as the labels) on the de-identified T1 post-contrast series it "
            "references; frames follow that series' geometry."
        ),
        "",
        f"Patient IDs: {ids}. Volumes in cm^3, times in ms, lengths in mm.",
        "",
        "Integrity: `MANIFEST.sha256` lists the SHA-256 of every file "
        "(`sha256sum -c MANIFEST.sha256`); `brainmets validate DIR` checks files, grids, "
        "labels, checksums and the workbook.",
    ]
    if tables:
        parts += ["", "## Acquisition", ""]
        for t in tables:
            parts += [table_markdown(t), ""]
    parts += [
        "",
        "## Licence",
        "",
        licence,
        "",
        "The images' grid and brain masks derive from the SRI24 atlas, licensed CC BY-SA 3.0; "
        "anything derived from it carries that licence.",
        "",
        "## How to cite",
        "",
        citation or "Cite this dataset as its publisher asks, and:",
        "",
        f"- {REFERENCE_PAPER}",
        f"- SRI24 atlas: {SRI24_CITATION}",
        f"- brainmets {brainmets.__version__} (the software that built this export).",
        "",
    ]
    return "\n".join(parts)
