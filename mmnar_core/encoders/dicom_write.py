"""Writes a minimal valid DICOM (Secondary Capture) from a pixel array: for tests, benchmarks and
fixtures of DICOM inputs, which this project cannot ship real examples of."""

from __future__ import annotations

import io

import numpy as np


def dicom_bytes(
    pixels, photometric: str = "MONOCHROME2", bits_stored: int = 16, signed: bool = False, **attributes
) -> bytes:
    """`pixels` (2-D) stored with `bits_stored` bits (8 or up to 16); extra DICOM attributes by keyword."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    pixels = np.asarray(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
    for key, value in attributes.items():
        setattr(ds, key, value)
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(ds.BitsAllocated, signed)]
    ds.PixelData = pixels.astype(dtype).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
