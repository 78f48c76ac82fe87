"""The project's one DICOM writer, for the tests, the benchmarks and the attack replay. This project cannot
ship real DICOM files, so each builds its own here, from a pixel array and a few parameters:

    dicom_bytes(pixels)                                  16-bit MONOCHROME2 Secondary Capture, Explicit VR LE
    dicom_bytes(pixels, "MONOCHROME1", bits_stored=12)   photometric interpretation and bits stored
    dicom_bytes(pixels, signed=True, RescaleSlope=2)     signed pixels; any other attribute by keyword
    dicom_bytes(np.zeros((2, 20, 30)))                   a 3-D array is a multi-frame image
    dicom_bytes(pixels, transfer_syntax=DeflatedExplicitVRLittleEndian)   the whole data set deflated
    dicom_bytes(pixels, transfer_syntax=JPEGBaseline8Bit, fragments=[jpeg])  compressed: the encapsulated
                                                         frame is `fragments`, whatever the header says
    dicom_bytes(pixels, pixel_data=False)                the image attributes without the pixel data element
    dicom_bytes(None, sop_class=BasicTextSRStorage)      no image at all (a report); see `report_dicom`
    dicom_bytes(pixels, Rows=60000)                      a header that lies: attributes win over the array
    dicom_bytes(pixels, damage=[(old, new)])             bytes of the written file replaced (each `old` must
                                                         occur exactly once): a damaged element
    deflated_zero_dicom(4000, 4000, frames=30)           a decompression bomb, streamed (the same header)

UIDs are new for every file unless `uid` fixes the SOP instance UID."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    BasicTextSRStorage,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

CHUNK = 2**20


def dicom_dataset(
    shape: Sequence[int] | None,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    signed: bool = False,
    *,
    sop_class: str = SecondaryCaptureImageStorage,
    transfer_syntax: str = ExplicitVRLittleEndian,
    uid: str | None = None,
    **attributes,
) -> Dataset:
    """The data set of `dicom_bytes` without its pixel data element: file meta, SOP class and instance, and for
    a `shape` (rows, columns) or (frames, rows, columns) the image pixel attributes; `attributes` last."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid or generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    if shape is not None:
        if len(shape) == 3:
            ds.NumberOfFrames = shape[0]
        ds.Rows, ds.Columns = shape[-2:]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 8 if bits_stored <= 8 else 16
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    for key, value in attributes.items():
        setattr(ds, key, value)
    return ds


def dicom_bytes(
    pixels,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 16,
    signed: bool = False,
    *,
    sop_class: str = SecondaryCaptureImageStorage,
    transfer_syntax: str = ExplicitVRLittleEndian,
    fragments: Sequence[bytes] | None = None,
    pixel_data: bool = True,
    uid: str | None = None,
    damage: Iterable[tuple[bytes, bytes]] = (),
    **attributes,
) -> bytes:
    """A DICOM Part 10 file of `pixels` (2-D, or 3-D for several frames; None: no image) stored with
    `bits_stored` bits (8 or up to 16) in `transfer_syntax`. The module docstring lists the cases."""
    shape = None if pixels is None else np.shape(pixels)
    ds = dicom_dataset(
        shape,
        photometric,
        bits_stored,
        signed,
        sop_class=sop_class,
        transfer_syntax=transfer_syntax,
        uid=uid,
        **attributes,
    )
    if fragments is not None:
        ds.PixelData = encapsulate(list(fragments))
        ds["PixelData"].VR = "OB"
    elif pixels is not None and pixel_data:
        dtype = {(8, False): np.uint8, (16, False): np.uint16, (8, True): np.int8, (16, True): np.int16}
        ds.PixelData = np.asarray(pixels).astype(dtype[ds.BitsAllocated, signed]).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    for old, new in damage:
        assert data.count(old) == 1, f"{old!r} occurs {data.count(old)} times in the file, not once"
        data = data.replace(old, new)
    return data


def report_dicom() -> bytes:
    """A valid DICOM file without pixel data: a Basic Text Structured Report."""
    return dicom_bytes(None, sop_class=BasicTextSRStorage, Modality="SR", PatientID="anon")


def deflated_zero_dicom(
    rows: int = 4000, columns: int = 4000, frames: int = 30, bits: int = 16, pixel_bytes: int | None = None
) -> bytes:
    """A Deflated Explicit VR Little Endian DICOM of `frames` frames of rows x columns zeros at `bits` bits: a few
    hundred kB that inflate to gigabytes (the decompression bomb of issue 18). The zeros are streamed into the
    compressor, so building one costs little memory. `pixel_bytes` makes the pixel data that long instead (a
    header that lies about its pixel data)."""
    ds = dicom_dataset((frames, rows, columns), bits_stored=bits, transfer_syntax=DeflatedExplicitVRLittleEndian)
    ds.Modality = "CR"
    head = DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, ds.file_meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    length = rows * columns * frames * ds.BitsAllocated // 8 if pixel_bytes is None else pixel_bytes
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [
        head.getvalue(),
        compressor.compress(body.getvalue()),
        compressor.compress(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW" if bits > 8 else b"OB", 0, length)),
    ]
    zeros = bytes(CHUNK)
    for start in range(0, length, CHUNK):
        parts.append(compressor.compress(zeros[: min(CHUNK, length - start)]))
    parts.append(compressor.flush())
    return b"".join(parts)
