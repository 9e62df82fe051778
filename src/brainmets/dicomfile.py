"""Whether a DICOM file is complete, and whether two copies of an instance hold the same
content (core layer: pydicom only, imports no stage).

Shared by the stages that read source files: ``deid`` refuses a cut-off file
(:func:`truncation`), ``ingest`` chooses between files that carry the same SOP Instance UID
(:func:`read_complete`, :func:`same_content`). Reading a whole file is slow for an archive:
callers read pixel data only where they must (ingest: only for files that collide).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pydicom
from pydicom.encaps import generate_frames


def truncation(ds: pydicom.Dataset) -> str | None:
    """Why ``ds`` looks cut off (None when it looks complete).

    The last element shorter than its declared length; native Pixel Data shorter than Rows x
    Columns x Samples x Frames x Bits Allocated.
    """
    tags = list(ds.keys())
    if tags:
        last = ds.get_item(max(tags))
        length = getattr(last, "length", None)
        value = last.value
        if isinstance(value, bytes) and length not in (None, 0xFFFFFFFF) and len(value) < length:
            return "truncated (last element incomplete)"
    pixels = ds.get_item(0x7FE00010)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if pixels is not None and ts is not None and not pydicom.uid.UID(ts).is_compressed:
        try:
            bits = int(ds.BitsAllocated)
            n = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
            n *= int(ds.get("NumberOfFrames", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            return None
        expected = (n * bits + 7) // 8
        value = pixels.value
        if isinstance(value, bytes) and len(value) < expected:
            return "truncated (Pixel Data incomplete)"
    return None


def missing_pixels(ds: pydicom.Dataset) -> str | None:
    """Why ``ds`` is an image without pixels (None when it has them or is not an image).

    An image by its SOP class (a standard "... Image Storage" class, or a private class with
    Rows and Bits Allocated) without Pixel Data, Float or Double Float Pixel Data. What the
    file holds is complete (:func:`truncation` found nothing); whether it was written
    without pixels or cut off exactly before them cannot be told from the file.
    """
    sop_class = pydicom.uid.UID(str(ds.get("SOPClassUID", "") or ""))
    if sop_class.name != str(sop_class):  # a standard SOP class: its name tells
        if "Image Storage" not in sop_class.name:
            return None
        what = sop_class.name
    elif "Rows" in ds and "BitsAllocated" in ds:  # private: a pixel description
        what = f"private SOP class {sop_class or '(none)'} with Rows and Bits Allocated"
    else:
        return None
    if {0x7FE00008, 0x7FE00009, 0x7FE00010} & set(ds.keys()):
        return None
    return (
        f"no Pixel Data (7FE0,0010) in an image instance ({what}); its other elements are complete"
    )


def read_complete(path: str | os.PathLike[str]) -> tuple[pydicom.Dataset | None, str | None]:
    """Read the whole file, pixel data included: ``(dataset, None)`` when it reads
    completely, else ``(dataset or None, why not)``.

    Complete means: pydicom reads it without reaching the end of the file early (a cut-off
    encapsulated Pixel Data makes pydicom warn and drop the data set), it has a SOP Instance
    UID, :func:`truncation` finds nothing (for uncompressed transfer syntaxes: Pixel Data of
    Rows x Columns x SamplesPerPixel x BitsAllocated / 8 x NumberOfFrames bytes), and
    encapsulated Pixel Data parses into NumberOfFrames frames.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except Exception as exc:  # truncated or corrupt files raise all sorts of errors
            return None, f"unreadable ({type(exc).__name__}: {exc})"
    if any("end of file" in str(w.message).lower() for w in caught):
        return ds, "truncated (the file ends before the data set does)"
    if "SOPInstanceUID" not in ds:
        return ds, "truncated (the data set ends early)"
    why = truncation(ds) or missing_pixels(ds)
    if why:
        return ds, why
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    pixels = ds.get_item(0x7FE00010)
    if pixels is not None and ts is not None and pydicom.uid.UID(ts).is_encapsulated:
        try:
            n = int(ds.get("NumberOfFrames", 1) or 1)
            frames = list(generate_frames(ds.PixelData, number_of_frames=n))
        except Exception as exc:
            return ds, f"encapsulated Pixel Data does not parse ({type(exc).__name__}: {exc})"
        if len(frames) != n or not all(frames):
            return ds, f"encapsulated Pixel Data holds {len(frames)} frame(s), expected {n}"
        if max(ds.keys()) == 0x7FE00010 and _tail(path, 8) != _SEQUENCE_DELIMITER:
            return ds, "truncated (encapsulated Pixel Data without its sequence delimiter)"
    return ds, None


#: the Sequence Delimitation Item (FFFE,E0DD) with length 0 that ends encapsulated Pixel Data
_SEQUENCE_DELIMITER = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _tail(path: str | os.PathLike[str], n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - n))
        return fh.read()


def same_content(
    a: str | os.PathLike[str],
    b: str | os.PathLike[str],
    ds_a: pydicom.Dataset | None = None,
    ds_b: pydicom.Dataset | None = None,
) -> bool:
    """Whether two files hold the same instance: byte-identical, or the same data set (every
    element but the File Meta Information, pixel data included, compared by value)."""
    pa, pb = Path(a), Path(b)
    if pa.stat().st_size == pb.stat().st_size and pa.read_bytes() == pb.read_bytes():
        return True
    try:
        ds_a = ds_a if ds_a is not None else pydicom.dcmread(pa)
        ds_b = ds_b if ds_b is not None else pydicom.dcmread(pb)
        return bool(ds_a == ds_b)
    except Exception:
        return False
