"""How many pixels an uploaded image will decode to, read from its header only (no pixel, no deflate work).

Why: the server admits a request by the work it brings before decoding anything (issue 18, case 3: 24
requests of 15 kB PNGs that each decode to 16 million pixels). A 15 kB body says nothing about that; the
PNG / JPEG header (Pillow's lazy open reads only it) and the DICOM data set before its pixel data do.

Only the first frame of a DICOM is decoded (mmnar_core.encoders.image_io), so only rows x columns count. A
deflated DICOM states its size inside the compressed stream; reading it would mean inflating, so it counts
as unknown (None) here and is sized by the decoder's own budget check. A header that cannot be read, or
that declares more than `max_pixels`, is None too: the decoder refuses it from the same header at once.
"""

from __future__ import annotations

import io
import warnings


def declared_pixels(data: bytes, max_pixels: int) -> int | None:
    """Pixels of the first frame the file declares, or None when unknown or refused from the header anyway."""
    from mmnar_core.encoders.image_io import sniff_format

    kind = sniff_format(data)
    pixels: int | None
    try:
        if kind in ("png", "jpeg"):
            pixels = _pil_pixels(data)
        elif kind == "dicom":
            pixels = _dicom_pixels(data)
        else:
            return None
    except Exception:  # noqa: BLE001 - a damaged header: the decoder reports it, in its own words
        return None
    if pixels is None or pixels <= 0 or pixels > max_pixels:
        return None
    return pixels


def _pil_pixels(data: bytes) -> int:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a decompression-bomb warning: the decoder refuses it itself
        with Image.open(io.BytesIO(data)) as image:  # reads the header, not the pixels
            return int(image.width) * int(image.height)


def _dicom_pixels(data: bytes) -> int | None:
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_preamble
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    fp = DicomBytesIO(data)  # the calls of dcmread (and of encoders.image_budget): the same meta
    read_preamble(fp, False)  # type: ignore[arg-type]  # pydicom hints BinaryIO; DicomBytesIO reads the same
    meta = _read_file_meta_info(fp)  # type: ignore[arg-type]
    if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
        return None  # pydicom would inflate the whole data set to read it
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    rows, columns = ds.get("Rows"), ds.get("Columns")
    if not isinstance(rows, int) or not isinstance(columns, int):
        return None
    return rows * columns
