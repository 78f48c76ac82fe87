"""Read a chest X-ray file (PNG, JPEG or DICOM) into one grayscale float32 array in [0, 1].

The file type is decided by its first bytes, never by its name, and every failure is a specific
ImageInputError (see errors.py) naming the problem and what is accepted. Sizes are checked from headers
before pixels are decoded or anything is inflated (image_budget.py), so a hostile or huge file cannot
exhaust memory.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np

from mmnar_core.encoders.config import ImageEncoderConfig
from mmnar_core.encoders.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageInputError,
    ImageTooLargeError,
    TruncatedImageError,
    UnsupportedImageTypeError,
)
from mmnar_core.encoders.image_budget import check_encapsulated_frame, check_pil_header, readable_dicom

DICOM_SYNTAXES = "uncompressed, deflated, RLE, JPEG baseline/extended and JPEG 2000 (decoded by Pillow)"
ACCEPTED = f"PNG, JPEG or DICOM (Part 10 file with a 'DICM' preamble; {DICOM_SYNTAXES})"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
_DEFAULTS = ImageEncoderConfig()


def sniff_format(data: bytes) -> str | None:
    """'png', 'jpeg', 'dicom' or None, from the magic bytes only."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    return None


class DecodedImageBytes(bytes):
    """An image file's bytes that carry the pixels `load_image` already decoded from them, so a reader that
    gets them (the encoder, an explanation) skips decoding the same file again. Everything that needs the
    bytes (hashes, caches) sees plain bytes. `pixels` is shared: read it, do not modify it."""

    pixels: np.ndarray

    def __new__(cls, data: bytes, pixels: np.ndarray) -> DecodedImageBytes:
        self = super().__new__(cls, data)
        self.pixels = pixels
        return self

    def __reduce__(self):  # pickled and copied with its pixels
        return type(self), (bytes(self), self.pixels)


def read_image_bytes(source: str | Path | bytes, max_bytes: int = _DEFAULTS.max_bytes) -> bytes:
    """The raw bytes of an image source (also what the embedding cache hashes)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "image bytes"
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"image file {path} does not exist")
        size = path.stat().st_size
        if size > max_bytes:
            raise ImageTooLargeError(f"{path}: {size:,} bytes is larger than the limit of {max_bytes:,} bytes")
        data = path.read_bytes()
        name = str(path)
    else:
        raise ImageInputError(f"image source must be a file path or bytes, got {type(source).__name__}")
    if len(data) == 0:
        raise EmptyImageError(f"{name}: the file is empty (0 bytes); expected {ACCEPTED}")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"{name}: {len(data):,} bytes is larger than the limit of {max_bytes:,} bytes")
    return data


def load_image(
    source: str | Path | bytes,
    max_bytes: int = _DEFAULTS.max_bytes,
    max_pixels: int = _DEFAULTS.max_pixels,
) -> np.ndarray:
    """Decode `source` to a (H, W) float32 array in [0, 1], 0 = black (no X-ray attenuation shown).
    DecodedImageBytes within the limits give their pixels as they are (decoded once per upload)."""
    if isinstance(source, DecodedImageBytes) and len(source) <= max_bytes and source.pixels.size <= max_pixels:
        return source.pixels
    data = read_image_bytes(source, max_bytes)
    name = str(source) if isinstance(source, (str, Path)) else "image bytes"
    kind = sniff_format(data)
    if kind is None:
        raise UnsupportedImageTypeError(
            f"{name}: not a supported image (starts with {data[:8]!r}{_guess(data)}); accepted: {ACCEPTED}"
        )
    if kind == "dicom":
        return _decode_dicom(data, name, max_pixels)
    return _decode_pil(data, name, kind, max_pixels)


def _guess(data: bytes) -> str:
    for magic, label in (
        (b"%PDF", "PDF"),
        (b"GIF8", "GIF"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"PK\x03\x04", "ZIP"),
        (b"BM", "BMP"),
        (b"RIFF", "RIFF/WebP"),
    ):
        if data.startswith(magic):
            return f", looks like {label}"
    try:
        data[:64].decode("utf-8")
        return ", looks like text"
    except UnicodeDecodeError:
        return ""


def _check_pixels(name: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise EmptyImageError(f"{name}: the image has no pixels ({width} x {height})")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width} x {height} = {width * height:,} pixels is more than the limit of {max_pixels:,}"
        )


def _decode_pil(data: bytes, name: str, kind: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            _check_pixels(name, image.width, image.height, max_pixels)
            check_pil_header(name, kind, image, max_pixels)
            image.load()
    except ImageInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLargeError(f"{name}: more pixels than the limit of {max_pixels:,} ({error})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        reason = str(error).split(" <_io.")[0]
        if "truncated" in reason.lower() or not _has_end_marker(data, kind):
            raise TruncatedImageError(
                f"{name}: the {kind.upper()} file is truncated (it ends before its image data does: {reason})"
            ) from None
        raise CorruptImageError(f"{name}: the {kind.upper()} data cannot be decoded ({reason})") from None
    if kind == "jpeg":
        image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L"):
        array = np.asarray(image, dtype=np.float32) / 65535.0
    elif mode == "I":  # 16-bit PNGs decode as 32-bit ints holding 0..65535
        array = np.asarray(image, dtype=np.float64)
        array = (array / 65535.0 if array.max(initial=0) <= 65535 else _minmax(array)).astype(np.float32)
    elif mode == "F":
        array = _minmax(np.asarray(image, dtype=np.float64)).astype(np.float32)
    else:
        if mode not in ("L",):
            image = image.convert("L")  # RGB, RGBA, palette, 1-bit: ITU-R 601 luma
        array = np.asarray(image, dtype=np.float32) / 255.0
    return np.ascontiguousarray(np.clip(array, 0.0, 1.0), dtype=np.float32)


def _has_end_marker(data: bytes, kind: str) -> bool:
    """PNG ends with an IEND chunk, JPEG with an EOI marker; a file without one was cut short."""
    tail = data[-4096:]
    return (b"IEND" in tail) if kind == "png" else (b"\xff\xd9" in tail)


def _minmax(array: np.ndarray) -> np.ndarray:
    low, high = float(np.min(array)), float(np.max(array))
    if high <= low:
        return np.zeros_like(array, dtype=np.float64)
    return (array - low) / (high - low)


def _decode_dicom(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    import pydicom
    from pydicom.errors import InvalidDicomError

    data = readable_dicom(data, name, max_pixels)  # budget checked from the header; nothing left to inflate
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as error:
        raise CorruptImageError(f"{name}: invalid DICOM ({error})") from None
    except Exception as error:  # pydicom raises many types on damaged headers
        raise CorruptImageError(
            f"{name}: the DICOM header cannot be parsed ({type(error).__name__}: {error})"
        ) from None
    if "PixelData" not in ds:
        if len(ds) == 0 or "Rows" in ds or "Columns" in ds:
            raise TruncatedImageError(f"{name}: the DICOM file is truncated (it ends before its pixel data)")
        sop = getattr(ds, "SOPClassUID", "unknown")
        raise UnsupportedImageTypeError(
            f"{name}: the DICOM file has no pixel data (SOP class {sop}); accepted: an image DICOM"
        )
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    _check_pixels(name, cols, rows, max_pixels)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    check_encapsulated_frame(ds, name)  # a JPEG frame's own size, before the codec decodes it
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:  # a multi-frame radiograph: the first frame is the acquired image; decode only that one
        ds.pixel_array_options(index=0)
    try:
        pixels = ds.pixel_array
    except (NotImplementedError, RuntimeError) as error:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        reason = str(error).splitlines()[0]
        if isinstance(error, NotImplementedError) or "missing dependencies" in str(error):
            raise UnsupportedImageTypeError(
                f"{name}: DICOM transfer syntax {syntax} needs a decoder that is not installed ({reason}); "
                f"accepted here: {DICOM_SYNTAXES} (install pylibjpeg plugins for others)"
            ) from None
        raise CorruptImageError(
            f"{name}: the compressed DICOM pixel data ({syntax}) cannot be decoded ({' '.join(str(error).split())})"
        ) from None
    except Exception as error:
        message = str(error)
        if any(k in message.lower() for k in ("length", "truncat", "less than expected")) or isinstance(
            error, EOFError
        ):
            raise TruncatedImageError(f"{name}: the DICOM pixel data is truncated ({message})") from None
        raise CorruptImageError(
            f"{name}: the DICOM pixel data cannot be decoded ({type(error).__name__}: {message})"
        ) from None
    pixels = np.asarray(pixels)
    if samples > 1 or photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        if photometric.startswith("YBR"):
            from pydicom.pixels import convert_color_space

            pixels = convert_color_space(pixels, photometric, "RGB")
        pixels = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.ascontiguousarray(_minmax(pixels), dtype=np.float32)
    if pixels.ndim != 2:
        raise UnsupportedImageTypeError(f"{name}: DICOM pixel array has shape {pixels.shape}; accepted: one 2-D frame")
    # float32 throughout: exact for 16-bit stored values, and 4x less memory traffic than float64
    values = _modality_lut(ds, pixels.astype(np.float32))
    scaled = _window(ds, values)
    if photometric == "MONOCHROME1":  # MONOCHROME1: low values are displayed white
        np.subtract(1.0, scaled, out=scaled)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    return np.ascontiguousarray(scaled, dtype=np.float32)


def _modality_lut(ds, values: np.ndarray) -> np.ndarray:
    """Rescale slope and intercept (stored value -> modality value), as DICOM PS3.3 C.11.1 says."""
    slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
    intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
    if slope != 1.0:
        values *= np.float32(slope)
    if intercept != 0.0:
        values += np.float32(intercept)
    return values


def _first(value) -> float:
    try:
        return float(value[0])
    except (TypeError, IndexError):
        return float(value)


def _window(ds, values: np.ndarray) -> np.ndarray:
    """Window centre/width (PS3.3 C.11.2.1.2, LINEAR / LINEAR_EXACT / SIGMOID) to [0, 1]; without a
    window, the image's own min-max (what a viewer shows by default)."""
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        function = str(getattr(ds, "VOILUTFunction", "LINEAR") or "LINEAR").upper()
        if function == "SIGMOID" and width > 0:
            return (1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))).astype(np.float32)
        if function == "LINEAR_EXACT" and width > 0:
            return _linear(values, center, width, 0.5)
        if width >= 1:
            if width == 1:
                return (values > center - 0.5).astype(np.float32)
            return _linear(values, center - 0.5, width - 1, 0.5)
    if "VOILUTSequence" in ds:
        from pydicom.pixels import apply_voi_lut

        return _minmax(np.asarray(apply_voi_lut(values, ds), dtype=np.float64)).astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float32)
    return _linear(values, low, high - low, 0.0)


def _linear(values: np.ndarray, offset: float, width: float, shift: float) -> np.ndarray:
    """(values - offset) / width + shift, clipped to [0, 1], in place on float32 values."""
    values -= np.float32(offset)
    values *= np.float32(1.0 / width)
    if shift:
        values += np.float32(shift)
    return np.clip(values, 0.0, 1.0, out=values)
