"""Uploaded chest X-rays and notes -> checked inputs, with messages a user can act on.

Images are validated by the encoder's own reader (mmnar_core.encoders.image_io.load_image: content
sniffing, PNG / JPEG / DICOM decoding, truncated / corrupt / too-large checks), so an upload that passes
here is one the model can read; this module adds the file name, what a non-image looks like, a note
when the name's extension disagrees with the content, and a display preview. Notes are checked by the
text encoder's own decoder and cleaner (mmnar_core.encoders.text_clean).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from mmnar_core.encoders.config import ImageEncoderConfig, TextEncoderConfig
from mmnar_core.encoders.errors import (
    CorruptImageError,
    EmptyTextError,
    ImageInputError,
    ImageTooLargeError,
    TextInputError,
    TruncatedImageError,
    UnsupportedImageTypeError,
)
from mmnar_core.encoders.image_budget import decoded_budget, readable_dicom
from mmnar_core.encoders.image_io import ACCEPTED as IMAGE_ACCEPTED
from mmnar_core.encoders.image_io import DecodedImageBytes, load_image, sniff_format
from mmnar_core.encoders.text_clean import clean_note, decode_note
from mmnar_core.inputs.errors import InputError
from mmnar_core.inputs.files import decode_utf8, describe_content

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "dicom": "application/dicom"}
EXTENSIONS = {"png": (".png",), "jpeg": (".jpg", ".jpeg", ".jpe", ".jfif"), "dicom": (".dcm", ".dicom", ".dic")}
IMAGE_SUFFIXES = frozenset(s for suffixes in EXTENSIONS.values() for s in suffixes)
PREVIEW_MAX_SIDE = 1024
TEXT_ACCEPTED = "a plain-text (.txt) note in UTF-8 with clinical text"
_IMAGE_LIMITS = ImageEncoderConfig()


@dataclass
class ImageUpload:
    """A checked image: the original bytes (what the encoder reads), its type from the content, its size
    and an 8-bit grayscale preview (longest side at most PREVIEW_MAX_SIDE) for display, None when not
    asked for."""

    filename: str
    media_type: str
    data: bytes = field(repr=False)
    preview: np.ndarray | None = field(repr=False)
    width: int
    height: int
    kind: str  # 'png' | 'jpeg' | 'dicom'
    notes: list[str] = field(default_factory=list)


def read_image_upload(
    filename: str,
    data: bytes,
    max_bytes: int = _IMAGE_LIMITS.max_bytes,
    max_pixels: int = _IMAGE_LIMITS.max_pixels,
    *,
    preview: bool = True,
    keep_pixels: bool = False,
) -> ImageUpload:
    """Checks an uploaded image and decodes it once (as the encoder will). Raises InputError naming the
    file: empty, too large, not an image (and what it looks like), truncated, corrupt, DICOM without
    pixel data or with a codec that is not installed.

    A server sets preview=False (it shows nothing) and keep_pixels=True: `data` is then DecodedImageBytes,
    so the encoder and explanations reuse these pixels instead of decoding the file again. The app keeps
    only the small preview (its uploads stay in session state)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(filename, f"expected the file's bytes, got {type(data).__name__}", IMAGE_ACCEPTED)
    data = bytes(data)
    if len(data) == 0:
        raise InputError(filename, "the file is empty (0 bytes)", IMAGE_ACCEPTED)
    if len(data) > max_bytes:
        raise InputError(
            filename,
            f"the file is {_size(len(data))}, larger than the limit of {_size(max_bytes)}",
            f"an image file of at most {_size(max_bytes)}; {IMAGE_ACCEPTED}",
            kind="too_large",
        )
    kind = sniff_format(data)
    if kind is None:
        looks = describe_content(data) or _text_or_unknown(data)
        suffix = PurePath(str(filename)).suffix.lower()
        named = f" although its name ends in {suffix}" if suffix in IMAGE_SUFFIXES else ""
        raise InputError(
            filename,
            f"this is not a PNG, JPEG or DICOM image{named}: the content looks like {looks}",
            IMAGE_ACCEPTED,
            kind="wrong_type",
        )
    if kind == "dicom":  # the size budget from the header first: reading attributes may inflate the data set
        try:
            readable = readable_dicom(data, "image bytes", max_pixels)
        except ImageInputError as error:
            raise _image_error(filename, kind, data, error, max_pixels) from None
        _check_dicom_attributes(filename, readable)
    try:
        pixels = load_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    except ImageInputError as error:
        raise _image_error(filename, kind, data, error, max_pixels) from None
    except MemoryError:
        raise
    except Exception as error:  # damage the decoder does not classify (found by fuzzing, docs/fuzzing.md)
        raise InputError(filename, f"the file is damaged: {_undecodable(kind, error)}", IMAGE_ACCEPTED) from None
    notes = []
    suffix = PurePath(str(filename)).suffix.lower()
    if suffix and suffix not in EXTENSIONS[kind]:
        notes.append(
            f"{filename} is a {kind.upper()} file although its name ends in {suffix}; read as {kind.upper()} "
            "(the content decides)"
        )
    height, width = pixels.shape
    return ImageUpload(
        filename,
        MEDIA_TYPES[kind],
        DecodedImageBytes(data, pixels) if keep_pixels else data,
        _preview(pixels) if preview else None,
        int(width),
        int(height),
        kind,
        notes,
    )


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB ({n:,} bytes)"
    if n >= 2**10:
        return f"{n / 2**10:.1f} kB ({n:,} bytes)"
    return f"{n:,} bytes"


def _text_or_unknown(data: bytes) -> str:
    try:
        data[:512].decode("utf-8")
        return "text"
    except UnicodeDecodeError as error:
        if error.start > 480:  # a multi-byte character cut at the sample's end
            return "text"
        return f"an unknown binary format (starts with {data[:8]!r})"


def _image_error(filename: str, kind: str, data: bytes, error: ImageInputError, max_pixels: int) -> InputError:
    """The encoder's error as an InputError about `filename` (its wording, minus its own prefix)."""
    message = str(error)
    if message.startswith("image bytes: "):
        message = message[len("image bytes: ") :]
    message = message.split("; accepted", 1)[0]
    label = kind.upper()
    if isinstance(error, ImageTooLargeError):  # kind invalid: a file under the byte limit with too many pixels
        return InputError(
            filename,
            message,
            f"an image of at most {max_pixels:,} pixels and "
            f"{decoded_budget(max_pixels):,} bytes of decoded pixels; {IMAGE_ACCEPTED}",
        )
    if isinstance(error, TruncatedImageError) and kind == "dicom" and "before its pixel data" in message:
        return InputError(
            filename,
            "the DICOM file has no pixel data: it has image attributes but ends before its "
            "pixel data (truncated, or the pixels were removed)",
            "a complete DICOM image with pixel data, or a PNG / JPEG export of it",
        )
    if isinstance(error, TruncatedImageError):
        if "truncated" not in message.split("(")[0]:
            message = f"the {label} file is truncated: {message}"
        return InputError(
            filename, f"{message}; the upload or copy may have been interrupted", f"the complete file; {IMAGE_ACCEPTED}"
        )
    if isinstance(error, CorruptImageError):
        return InputError(filename, f"the file is damaged: {message}", IMAGE_ACCEPTED)
    if isinstance(error, UnsupportedImageTypeError) and kind == "dicom" and "no pixel data" in message:
        return InputError(
            filename,
            _dicom_without_pixels(data),
            "a DICOM image (an X-ray with pixel data), or a PNG / JPEG export of it",
        )
    return InputError(filename, message, IMAGE_ACCEPTED)


# the DICOM attributes the decoder reads, and how it reads them (mmnar_core.encoders.image_io and pydicom's
# pixel_array): each must be readable and of the right kind, else the message names it
_DICOM_INTEGERS = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "NumberOfFrames",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
)
_DICOM_NUMBERS = ("RescaleSlope", "RescaleIntercept", "WindowCenter", "WindowWidth")
_DICOM_TEXTS = ("PhotometricInterpretation", "VOILUTFunction")


def _check_dicom_attributes(filename: str, data: bytes) -> None:
    """Names a damaged attribute the decoder would trip on. pydicom converts an element when it is first used,
    so without this a broken RescaleSlope or an unknown value representation surfaces as a bare ValueError /
    NotImplementedError from deep inside the decoder (found by fuzzing, docs/fuzzing.md)."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - an unreadable header is reported by the decoder, with its own words
        return
    for keyword in _DICOM_INTEGERS + _DICOM_NUMBERS + _DICOM_TEXTS:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if tag is None:
            continue
        try:
            if tag not in ds:
                continue
            value = ds[tag].value
        except Exception as error:  # noqa: BLE001 - pydicom raises several types for one damaged element
            raise InputError(
                filename,
                f"the file is damaged: the DICOM attribute {keyword} {pydicom.tag.Tag(tag)} "
                f"cannot be read ({_reason(error)})",
                IMAGE_ACCEPTED,
            ) from None
        values = list(value) if isinstance(value, (list, tuple, pydicom.multival.MultiValue)) else [value]
        values = [v for v in values if v not in (None, "")]
        if keyword in _DICOM_TEXTS:
            bad = [v for v in values if not isinstance(v, str)]
        else:
            bad = []
            for v in values[:1]:  # the decoder uses the first value of a multi-valued number
                try:
                    number = float(v)
                    if keyword in _DICOM_INTEGERS and not number.is_integer():
                        bad.append(v)
                except (TypeError, ValueError, OverflowError):
                    bad.append(v)
            if keyword in _DICOM_INTEGERS and len(values) > 1:
                raise InputError(
                    filename,
                    f"the file is damaged: the DICOM attribute {keyword} {pydicom.tag.Tag(tag)} "
                    f"has {len(values)} values, not one whole number",
                    IMAGE_ACCEPTED,
                )
        if bad:
            shown = repr(bad[0]) if len(repr(bad[0])) <= 40 else repr(bad[0])[:37] + "..."
            kind = (
                "a whole number" if keyword in _DICOM_INTEGERS else "a number" if keyword in _DICOM_NUMBERS else "text"
            )
            raise InputError(
                filename,
                f"the file is damaged: the DICOM attribute {keyword} {pydicom.tag.Tag(tag)} is {shown}, not {kind}",
                IMAGE_ACCEPTED,
            )


def _reason(error: Exception) -> str:
    reason = " ".join(str(error).split()).split(". To replace this error")[0]  # pydicom's advice on its config
    reason = reason if len(reason) <= 160 else reason[:157] + "..."
    return f"{type(error).__name__}{': ' + reason if reason else ''}"


def _undecodable(kind: str, error: Exception) -> str:
    """Why an image could not be read, when the decoder raised something other than an ImageInputError: pydicom
    reads attributes lazily, so a damaged element (an unknown value representation, a length that is not a
    multiple of its value size, a rescale slope that is not a number) surfaces when it is first used."""
    what = "a DICOM attribute cannot be read" if kind == "dicom" else f"the {kind.upper()} data cannot be decoded"
    return f"{what} ({_reason(error)})"


def _dicom_without_pixels(data: bytes) -> str:
    """Names what the pixel-less DICOM is (structured report, presentation state, ...) from its header."""
    import pydicom
    from pydicom.uid import UID

    try:  # readable_dicom: a deflated data set is inflated under the size budget, never by pydicom
        ds = pydicom.dcmread(
            io.BytesIO(readable_dicom(data, "image bytes", _IMAGE_LIMITS.max_pixels)), stop_before_pixels=True
        )
        sop = str(getattr(ds, "SOPClassUID", "") or "")
        modality = str(getattr(ds, "Modality", "") or "")
    except Exception:  # the encoder already parsed it; this only improves the wording
        sop, modality = "", ""
    name = UID(sop).name if sop else "unknown"
    what = (
        f"SOP class {name}"
        + (f" ({sop})" if sop and name != sop else "")
        + (f", modality {modality}" if modality else "")
    )
    return f"the DICOM file has no pixel data ({what}): it is not an image"


def _preview(pixels: np.ndarray) -> np.ndarray:
    """uint8 (H, W) for display, longest side at most PREVIEW_MAX_SIDE."""
    image = np.clip(np.rint(pixels * 255.0), 0, 255).astype(np.uint8)
    height, width = image.shape
    longest = max(height, width)
    if longest <= PREVIEW_MAX_SIDE:
        return image
    from PIL import Image

    scale = PREVIEW_MAX_SIDE / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


def read_text_upload(field: str, data: bytes | str, max_chars: int = TextEncoderConfig().max_chars) -> str:
    """A note as text: strict UTF-8 (a BOM is dropped), not binary, not empty, not only header lines
    or de-identification marks, at most `max_chars` characters. Returns the text as given (the encoder
    cleans it); raises InputError naming `field`."""
    accepted = f"{TEXT_ACCEPTED}, at most {max_chars:,} characters"
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > 4 * max_chars + 4:  # a UTF-8 character is at most 4 bytes: too long whatever it holds
            raise InputError(
                field,
                f"the file is {_size(len(data))}, longer than the limit of {max_chars:,} characters",
                accepted,
                kind="too_large",
            )
        text = decode_utf8(bytes(data), field, accepted)
    elif isinstance(data, str):
        text = data[1:] if data.startswith("\ufeff") else data
    else:
        raise InputError(field, f"expected text or file bytes, got {type(data).__name__}", accepted)
    if not text.strip():
        raise InputError(field, "the note is empty" if not text else "the note holds only whitespace", accepted)
    if len(text) > max_chars:
        raise InputError(
            field,
            f"the note has {len(text):,} characters, more than the limit of {max_chars:,} (one "
            "clinical note is typically under 30,000)",
            accepted,
            kind="too_large",
        )
    try:
        decode_note(text, max_chars, field)  # the encoder's own type and length check
    except TextInputError as error:
        raise InputError(field, str(error), accepted) from None
    control = sum(1 for c in text[:20000] if ord(c) < 32 and c not in "\t\r\n\f")
    if control > max(8, len(text[:20000]) // 100):  # kind invalid: it is UTF-8 text, of unusable content
        raise InputError(field, f"this looks like a binary file, not text ({control} control characters)", accepted)
    try:
        clean_note(text, max_chars=max_chars, where=field)
    except EmptyTextError:
        raise InputError(
            field,
            "the note holds no clinical text (only whitespace, de-identification marks, header or signature lines)",
            accepted,
        ) from None
    return text
