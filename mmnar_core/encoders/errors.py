"""Errors raised for bad encoder input. Each names what was wrong and what is accepted, so the app
can show the message as is and the CLI can print it without a traceback (they are ValueErrors)."""

from __future__ import annotations


class EncoderInputError(ValueError):
    """Base class: an input an encoder cannot use."""


class ImageInputError(EncoderInputError):
    """An image file or array that cannot be turned into a model input."""


class EmptyImageError(ImageInputError):
    """Zero bytes, or an image with no pixels."""


class UnsupportedImageTypeError(ImageInputError):
    """Not a PNG, JPEG or DICOM file (or a DICOM without usable pixel data)."""


class CorruptImageError(ImageInputError):
    """Claims to be a supported format but cannot be decoded."""


class TruncatedImageError(CorruptImageError):
    """A supported file that ends before its pixel data does."""


class ImageTooLargeError(ImageInputError):
    """More pixels (or bytes) than the configured limit; protects memory from huge or hostile files."""


class TextInputError(EncoderInputError):
    """A note that cannot be encoded."""


class TextEncodingError(TextInputError):
    """Bytes that are not UTF-8."""


class EmptyTextError(TextInputError):
    """Empty or whitespace-only after cleaning."""


class TextTooLongError(TextInputError):
    """Longer than the configured limit (a real note is tens of kB; a megabyte is a wrong file)."""


class TabularInputError(EncoderInputError):
    """Structured values that do not match the fitted feature schema."""


class EncoderStateError(EncoderInputError):
    """A saved encoder state or weight file that is missing, malformed or does not match its config."""
