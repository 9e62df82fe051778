"""Convert the selected series to NIfTI.

* :mod:`brainmets.convert.geometry` — checks that a series forms one regular volume.
* :mod:`brainmets.convert.dcm2niix` — the dcm2niix wrapper (Philips scaling convention).
* :mod:`brainmets.convert.stage` — the ``convert`` pipeline stage (``STAGE``).
"""

from brainmets.convert.dcm2niix import ConversionError, convert_files, find_dcm2niix
from brainmets.convert.geometry import GeometryError, check_geometry, read_frames

__all__ = [
    "ConversionError",
    "GeometryError",
    "check_geometry",
    "convert_files",
    "find_dcm2niix",
    "read_frames",
]
