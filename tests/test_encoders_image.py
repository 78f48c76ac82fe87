"""Image reading (PNG, JPEG, DICOM from mmnar_lab/dicom.py), preprocessing, backbone and weights."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mmnar_core.encoders.config import ImageEncoderConfig
from mmnar_core.encoders.errors import (
    CorruptImageError,
    EmptyImageError,
    EncoderStateError,
    ImageInputError,
    ImageTooLargeError,
    TruncatedImageError,
    UnsupportedImageTypeError,
)
from mmnar_core.encoders.image_backbone import (
    ImageEmbedder,
    ImageEncoder,
    ImagePipeline,
    load_image_encoder,
    save_image_encoder,
)
from mmnar_core.encoders.image_io import load_image, sniff_format
from mmnar_core.encoders.image_preprocess import ImagePreprocess, to_model_input
from mmnar_lab.dicom import dicom_bytes

SMALL = ImageEncoderConfig(arch="mobilenet_v3_small", input_size=32, embed_dim=8)


def pil_bytes(array, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


# ---- DICOM round trips: hand-computed expectations -------------------------------------------------


def test_dicom_16bit_monochrome2_minmax(tmp_path):
    path = tmp_path / "x.dcm"
    path.write_bytes(dicom_bytes([[0, 16384], [32768, 65535]], bits_stored=16))
    assert sniff_format(path.read_bytes()) == "dicom"
    # No window: the image's own min-max, 0 -> 0, 65535 -> 1.
    np.testing.assert_allclose(load_image(path), [[0, 16384 / 65535], [32768 / 65535, 1]], atol=1e-6)


def test_dicom_monochrome1_is_inverted():
    pixels = [[0, 1000], [2000, 4095]]
    mono2 = load_image(dicom_bytes(pixels, "MONOCHROME2", bits_stored=12))
    mono1 = load_image(dicom_bytes(pixels, "MONOCHROME1", bits_stored=12))
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono1[0, 0] == pytest.approx(1.0)  # the lowest stored value is displayed white


def test_dicom_rescale_then_window():
    # stored 0, 1000, 2000, 4095 -> modality 2*x - 1000 = -1000, 1000, 3000, 7190.
    # Window centre 1000, width 2001 (PS3.3 linear): y = (v - 999.5) / 2000 + 0.5, clipped to [0, 1].
    image = load_image(
        dicom_bytes(
            [[0, 1000], [2000, 4095]],
            bits_stored=12,
            RescaleSlope=2,
            RescaleIntercept=-1000,
            WindowCenter=1000,
            WindowWidth=2001,
        )
    )
    np.testing.assert_allclose(image, [[0.0, 0.50025], [1.0, 1.0]], atol=1e-6)


def test_dicom_signed_16bit_with_intercept_and_multivalue_window():
    # signed stored -100, 0, 100, 300; intercept -1024 -> -1124, -1024, -924, -724
    # first window: centre -924, width 401 -> y = (v + 924.5) / 400 + 0.5
    image = load_image(
        dicom_bytes(
            [[-100, 0], [100, 300]],
            bits_stored=16,
            signed=True,
            RescaleSlope=1,
            RescaleIntercept=-1024,
            WindowCenter=[-924, 0],
            WindowWidth=[401, 10],
        )
    )
    expected = np.clip((np.array([[-1124, -1024], [-924, -724]]) + 924.5) / 400 + 0.5, 0, 1)
    np.testing.assert_allclose(image, expected, atol=1e-6)


def test_dicom_8bit():
    np.testing.assert_allclose(
        load_image(dicom_bytes([[0, 51], [102, 255]], bits_stored=8)), [[0, 0.2], [0.4, 1]], atol=1e-6
    )


def test_png_8_and_16_bit_and_jpeg():
    np.testing.assert_allclose(load_image(pil_bytes(np.array([[0, 255]], np.uint8))), [[0, 1]])
    np.testing.assert_allclose(
        load_image(pil_bytes(np.array([[0, 65535, 32768]], np.uint16))), [[0, 1, 32768 / 65535]], atol=1e-6
    )
    flat = load_image(pil_bytes(np.full((16, 16), 128, np.uint8), "JPEG"))
    assert flat.shape == (16, 16) and np.allclose(flat, 128 / 255, atol=2 / 255)
    rgb = load_image(pil_bytes(np.zeros((4, 4, 3), np.uint8) + np.array([255, 0, 0], np.uint8)))
    np.testing.assert_allclose(rgb, 76 / 255, atol=1 / 255)  # ITU-R 601 luma of pure red


# ---- bad input: each a specific error naming the problem --------------------------------------------


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(EmptyImageError, match="empty"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "nope.png")


@pytest.mark.parametrize(
    "data,looks_like",
    [(b"%PDF-1.4 something", "PDF"), (b"hello, this is a note", "text"), (b"GIF89a" + bytes(20), "GIF")],
)
def test_wrong_type(data, looks_like):
    with pytest.raises(UnsupportedImageTypeError, match=f"looks like {looks_like}.*accepted: PNG, JPEG or DICOM"):
        load_image(data)


def test_wrong_python_type():
    with pytest.raises(ImageInputError, match="file path or bytes"):
        load_image(12345)


def test_corrupt_png_payload():
    data = bytearray(pil_bytes((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)))
    start = data.index(b"IDAT") + 8
    data[start : start + 200] = bytes(200)  # zeroed compressed stream, file still ends with IEND
    with pytest.raises(CorruptImageError) as error:
        load_image(bytes(data))
    assert not isinstance(error.value, TruncatedImageError)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_png_jpeg(fmt):
    data = pil_bytes((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8), fmt)
    for cut in (len(data) // 2, 40):
        with pytest.raises(TruncatedImageError, match="truncated"):
            load_image(data[:cut])


def test_truncated_dicom():
    data = dicom_bytes(np.arange(64).reshape(8, 8), bits_stored=16)
    with pytest.raises(TruncatedImageError, match="truncated"):
        load_image(data[:-10])  # cut inside the pixel data
    with pytest.raises(TruncatedImageError, match="truncated"):
        load_image(data[:300])  # cut right after the file meta header


def test_dicom_without_pixels_is_unsupported():
    report = dicom_bytes(None, sop_class="1.2.840.10008.5.1.4.1.1.88.11")  # basic text structured report
    with pytest.raises(UnsupportedImageTypeError, match="no pixel data"):
        load_image(report)


def test_huge_images_rejected_before_decoding(tmp_path):
    # A 1-bit 20000 x 20000 PNG compresses to a few kB but would be 400 M pixels once decoded.
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)
    assert huge.stat().st_size < 200_000
    with pytest.raises(ImageTooLargeError, match=r"400000000 pixels|400,000,000 pixels"):
        load_image(huge)
    # A DICOM header claiming 60000 x 60000 with almost no data: rejected from the header.
    liar = dicom_bytes(np.zeros((2, 2)), bits_stored=16, Rows=60000, Columns=60000)
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_image(liar)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_image(pil_bytes(np.zeros((8, 8), np.uint8)), max_bytes=10)


# ---- preprocessing ----------------------------------------------------------------------------------


def test_preprocess_pads_to_square_and_normalises():
    config = ImageEncoderConfig(input_size=32, mean=0.5, std=0.25)
    pixels = torch.ones(1, 1, 2, 4)  # 2 rows x 4 columns of white: padded to 4 x 4 with one black row each side
    out = ImagePreprocess(config)(pixels)
    assert out.shape == (1, 1, 32, 32)
    # upsampled 8x: rows 0-7 and 24-31 come from black padding (-2 after normalisation), 12-19 from white (+2)
    assert torch.allclose(out[0, 0, 14:18], torch.full((4, 32), 2.0))
    assert torch.allclose(out[0, 0, :3], torch.full((3, 32), -2.0))
    same = ImagePreprocess(config)(torch.full((1, 1, 32, 32), 0.75))
    assert torch.allclose(same, torch.ones(1, 1, 32, 32))  # (0.75 - 0.5) / 0.25, no resize at the right size


def test_to_model_input_rejects_bad_arrays():
    preprocess = ImagePreprocess(SMALL)
    with pytest.raises(ImageInputError, match="2-D"):
        to_model_input([np.zeros((3, 4, 4), np.float32)], preprocess)
    with pytest.raises(ImageInputError, match=r"\[0, 1\]"):
        to_model_input([np.full((4, 4), 2.0, np.float32)], preprocess)


# ---- backbone, weights, determinism, gradients ------------------------------------------------------


@pytest.mark.parametrize("arch,width", [("mobilenet_v3_small", 576), ("resnet18", 512)])
def test_backbone_shapes(arch, width):
    encoder = ImageEncoder(ImageEncoderConfig(arch=arch, input_size=32, embed_dim=0)).eval()
    assert encoder.feature_dim == width and encoder.embed_dim == width
    assert encoder(torch.zeros(2, 1, 32, 32)).shape == (2, width)


def test_save_load_round_trip_and_determinism(tmp_path):
    torch.manual_seed(0)
    encoder = ImageEncoder(SMALL)
    path = save_image_encoder(encoder, tmp_path / "enc.safetensors", info={"note": "test"})
    loaded = load_image_encoder(path)
    assert loaded.config == SMALL
    images = [np.random.default_rng(1).random((40, 30)).astype(np.float32) for _ in range(3)]
    a, b = ImageEmbedder(encoder).embed_arrays(images), ImageEmbedder(loaded).embed_arrays(images)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, ImageEmbedder(loaded).embed_arrays(images))  # same input, same bits
    # batch composition does not change a vector beyond float noise
    np.testing.assert_allclose(ImageEmbedder(loaded).embed_arrays(images[:1])[0], a[0], atol=1e-5)
    assert ImageEmbedder(encoder).id == ImageEmbedder(loaded).id
    with torch.no_grad():
        loaded.projection.weight.add_(1e-3)
    assert ImageEmbedder(loaded).id != ImageEmbedder(encoder).id  # any weight change, new identity


def test_load_torchvision_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(reference.state_dict(), path)  # what a user with real weights would have
    config = ImageEncoderConfig(arch="resnet18", input_size=32, embed_dim=0)
    encoder = load_image_encoder(path, config).eval()
    reference.fc = torch.nn.Identity()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(encoder(x), reference.eval()(x.expand(-1, 3, -1, -1)), atol=1e-5)
    with pytest.raises(EncoderStateError, match="does not match"):
        load_image_encoder(path, ImageEncoderConfig(arch="mobilenet_v3_small", input_size=32))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(EncoderStateError, match="cannot read weights"):
        load_image_encoder(bad, config)


def test_pipeline_is_differentiable_to_pixels():
    torch.manual_seed(0)
    pipeline = ImagePipeline(ImageEncoder(SMALL)).eval()
    pixels = torch.rand(1, 1, 50, 40, requires_grad=True)
    pipeline(pixels).sum().backward()
    assert pixels.grad is not None and pixels.grad.shape == pixels.shape and pixels.grad.abs().sum() > 0
    assert isinstance(pipeline.encoder.gradcam_layer, torch.nn.Module)


def test_config_rejects_unknown_values():
    with pytest.raises(EncoderStateError, match="accepted: mobilenet_v3_small"):
        ImageEncoderConfig(arch="vgg11")
    with pytest.raises(EncoderStateError, match="unknown key"):
        ImageEncoderConfig.from_dict({"arch": "resnet18", "colour": True})


# ---- real data (read in place from ../shared/data) --------------------------------------------------


def test_real_covid_cxr_jpegs_encode(shared_data):
    folder = shared_data / "covid-cxr-notes" / "images"
    files = sorted(folder.iterdir())[:: max(1, len(list(folder.iterdir())) // 24)]
    assert len(files) >= 20
    torch.manual_seed(0)
    embedder = ImageEmbedder(ImageEncoder(ImageEncoderConfig(input_size=64, embed_dim=16)), batch_size=8)
    vectors = embedder.embed(files)
    assert vectors.shape == (len(files), 16) and np.isfinite(vectors).all()
    decoded = embedder.decode(files[0])
    assert decoded.dtype == np.float32 and max(decoded.shape) <= 512 and 0 <= decoded.min() <= decoded.max() <= 1


def test_dicom_jpeg2000_lossless_round_trip_and_unsupported_codecs():
    pixels = (np.arange(32 * 32).reshape(32, 32) * 4 % 4096).astype(np.uint16)
    plain = dicom_bytes(pixels, bits_stored=12)
    j2k = io.BytesIO()
    Image.fromarray(pixels).save(j2k, "JPEG2000", irreversible=False, no_jp2=True)

    def compressed(syntax: str, frame: bytes) -> bytes:
        return dicom_bytes(pixels, bits_stored=12, transfer_syntax=syntax, fragments=[frame])

    jpeg2000 = compressed("1.2.840.10008.1.2.4.90", j2k.getvalue())
    np.testing.assert_allclose(load_image(jpeg2000), load_image(plain), atol=1e-6)
    with pytest.raises(CorruptImageError, match="compressed DICOM pixel data"):
        load_image(compressed("1.2.840.10008.1.2.4.90", b"\xff\x4f\xff\x51" + bytes(40)))
    with pytest.raises(UnsupportedImageTypeError, match="1.2.840.10008.1.2.4.70 needs a decoder"):
        load_image(compressed("1.2.840.10008.1.2.4.70", j2k.getvalue()))  # JPEG Lossless: no plugin here
