"""Bytes of an uploaded text-like file (CSV, JSON, FHIR, a note) -> str, with specific errors: empty,
a binary file (and which kind, when recognisable), UTF-16, or the first byte that is not UTF-8."""

from __future__ import annotations

from mmnar_core.encoders.image_io import sniff_format
from mmnar_core.inputs.errors import InputError

# (offset, magic bytes, what it is) for files people upload by mistake
FILE_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive (an Excel .xlsx, a Word .docx or a .zip)"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file (.xls / .doc)"),
    (0, b"{\\rtf", "an RTF document"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"GIF8", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"BM", "a BMP image"),
    (4, b"ftypheic", "a HEIC photo"),
    (4, b"ftypheix", "a HEIC photo"),
    (4, b"ftypmif1", "a HEIF photo"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
)
_IMAGE_NAMES = {"png": "a PNG image", "jpeg": "a JPEG image", "dicom": "a DICOM file"}


def describe_content(data: bytes) -> str | None:
    """What the bytes look like ('a PDF document', 'a PNG image', ...) when recognisable, else None."""
    kind = sniff_format(data)
    if kind:
        return _IMAGE_NAMES[kind]
    if len(data) >= 8 and data[8:12] == b"WEBP" and data.startswith(b"RIFF"):
        return "a WebP image"
    for offset, magic, label in FILE_SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return label
    return None


def decode_utf8(data: bytes | str, where: str, accepted: str) -> str:
    """Strict UTF-8 (a UTF-8 BOM is dropped). Raises InputError naming `where`."""
    if isinstance(data, str):
        return data[1:] if data.startswith("\ufeff") else data
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(where, f"expected file bytes or text, got {type(data).__name__}", accepted)
    data = bytes(data)
    if not data.strip():
        raise InputError(where, "the file is empty" if not data else "the file holds only whitespace", accepted)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or _looks_utf16(data):
        raise InputError(
            where,
            "the file is UTF-16 encoded (as Windows Notepad or Excel 'Unicode text' saves it); save it as UTF-8",
            accepted,
        )
    label = describe_content(data)
    if label == "an RTF document":
        raise InputError(
            where,
            "this is an RTF document (formatted text), not plain text; save it as plain text",
            accepted,
            kind="wrong_type",
        )
    if label:
        raise InputError(where, f"this is not a text file: it looks like {label}", accepted, kind="wrong_type")
    if b"\x00" in data[:8192]:
        raise InputError(where, "this is a binary file, not text (it contains NUL bytes)", accepted, kind="wrong_type")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        bad = data[error.start]
        line = data[: error.start].count(b"\n") + 1
        guess = ""
        try:
            data.decode("cp1252")
            guess = "; the file looks like Windows-1252 / Latin-1"
        except UnicodeDecodeError:
            pass
        raise InputError(
            where,
            f"byte {error.start} (0x{bad:02x}, line {line}) is not valid UTF-8{guess}; save the file as UTF-8",
            accepted,
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _looks_utf16(data: bytes) -> bool:
    """UTF-16 without a BOM: every other byte of ASCII text is NUL."""
    sample = data[:512]
    if len(sample) < 8:
        return False
    even, odd = sample[0::2], sample[1::2]
    little = odd.count(0) > 0.8 * len(odd) and even.count(0) < 0.1 * len(even)
    big = even.count(0) > 0.8 * len(even) and odd.count(0) < 0.1 * len(odd)
    return little or big
