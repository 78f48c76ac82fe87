"""Decompression bombs (issue 18, item 1): the decoded size is checked from headers before any pixel or
deflate work, on the one path every reader uses (load_image; read_image_upload for the app and server)."""

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image, ImageFile
from pydicom.uid import DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit

from mmnar_core.encoders.errors import ImageTooLargeError
from mmnar_core.encoders.image_budget import decoded_budget
from mmnar_core.encoders.image_io import load_image
from mmnar_core.inputs import InputError, read_image_upload
from mmnar_lab.dicom import deflated_zero_dicom, dicom_bytes

MB = 2**20


# tracemalloc traces the whole process: in a pytest-xdist worker a background thread left by an earlier test
# can allocate meanwhile (19 MB seen once against a 16 MB bound), so the refusals are held to 48 MB, still
# far below the 128-200 MB a bomb that was inflated would take.
REFUSAL_PEAK = 48 * MB


def _peak_bytes(call) -> tuple[int, BaseException | None]:
    """Peak traced allocation while `call` runs, and what it raised."""
    tracemalloc.start()
    try:
        call()
        raised = None
    except Exception as error:  # noqa: BLE001 - returned to the test
        raised = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, raised


def test_deflated_dicom_bomb_is_refused_from_its_header_without_inflating():
    bomb = deflated_zero_dicom(4000, 4000, frames=4)  # 4 x 32 MB of zeros in about 60 kB
    assert len(bomb) < 200_000
    peak, error = _peak_bytes(lambda: load_image(bomb))
    assert isinstance(error, ImageTooLargeError), error
    assert "4000 x 4000 pixels x 4 frame(s)" in str(error) and "decoding budget" in str(error)
    assert peak < REFUSAL_PEAK, f"peak {peak / MB:.0f} MB while refusing"
    peak, error = _peak_bytes(lambda: read_image_upload("bomb.dcm", bomb))
    assert isinstance(error, InputError) and error.kind == "invalid", error
    assert "bomb.dcm" in str(error) and "128,000,000 bytes of pixel data" in str(error)
    assert peak < REFUSAL_PEAK, f"peak {peak / MB:.0f} MB while refusing the upload"


def test_deflated_dicom_that_inflates_past_its_header_is_cut_off():
    liar = deflated_zero_dicom(16, 16, frames=1, pixel_bytes=200 * MB)  # declares 512 bytes, holds 200 MB
    peak, error = _peak_bytes(lambda: load_image(liar))
    assert isinstance(error, ImageTooLargeError), error
    assert "inflates to more than" in str(error)
    assert peak < REFUSAL_PEAK, f"peak {peak / MB:.0f} MB while refusing"


def test_deflated_dicom_within_budget_decodes_like_the_uncompressed_file():
    pixels = np.arange(64 * 48, dtype=np.uint16).reshape(64, 48) * 20
    plain = dicom_bytes(pixels, bits_stored=16, Modality="CR")
    deflated = dicom_bytes(pixels, bits_stored=16, Modality="CR", transfer_syntax=DeflatedExplicitVRLittleEndian)
    assert deflated != plain
    np.testing.assert_array_equal(load_image(deflated), load_image(plain))
    upload = read_image_upload("x.dcm", deflated)
    assert (upload.width, upload.height, upload.kind) == (48, 64, "dicom")


def test_multi_frame_dicom_decodes_only_its_first_frame():
    frames = np.stack([np.full((2, 3), 100, np.uint16), np.full((2, 3), 900, np.uint16)])
    frames[0, 0, 0] = 0
    data = dicom_bytes(frames, bits_stored=16)
    image = load_image(data)
    assert image.shape == (2, 3) and image[0, 0] == 0.0 and image[0, 1] == 1.0


def test_uncompressed_multi_frame_dicom_over_budget_is_refused_from_its_header():
    data = dicom_bytes(np.zeros((2, 20, 30), np.uint16), bits_stored=16)
    with pytest.raises(ImageTooLargeError, match="2 frame"):
        load_image(data, max_pixels=700)  # one 20 x 30 16-bit frame (1,200 bytes) fits the budget, two do not
    assert decoded_budget(700) == 2100 and load_image(data, max_pixels=800).shape == (20, 30)


def test_png_whose_header_declares_too_many_bytes_is_refused_before_decoding(monkeypatch):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((30, 30, 4), np.uint8), "RGBA").save(buffer, "PNG")
    rgba = buffer.getvalue()
    gray = io.BytesIO()
    Image.fromarray(np.zeros((30, 30), np.uint8)).save(gray, "PNG")
    assert load_image(gray.getvalue(), max_pixels=1000).shape == (30, 30)  # 900 bytes: within 3,000

    def no_decoding(self):
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageTooLargeError, match=r"30 x 30 pixels in mode RGBA = 3,600 bytes decoded"):
        load_image(rgba, max_pixels=1000)  # 900 pixels are within the limit, 4 bytes each are not


def test_compressed_frame_larger_than_its_dicom_header_is_refused_before_decoding():
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((3000, 3000), np.uint8)).save(jpeg, "JPEG", quality=50)  # ~100 kB, 9 MB decoded
    header = np.zeros((16, 16), np.uint8)
    data = dicom_bytes(header, bits_stored=8, transfer_syntax=JPEGBaseline8Bit, fragments=[jpeg.getvalue()])
    peak, error = _peak_bytes(lambda: load_image(data))
    assert "the compressed frame is 3000 x 3000 pixels but the DICOM header says 16 x 16" in str(error), error
    assert peak < 4 * MB, f"peak {peak / MB:.1f} MB: the frame was decoded"
