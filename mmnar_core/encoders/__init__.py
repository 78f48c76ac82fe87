"""Modality encoders: one vector per available modality, from raw inputs (docs/encoders.md).

Modules, one job each: `image_io` (PNG/JPEG/DICOM -> [0, 1] array), `image_preprocess` (pad, resize,
normalise, as an nn.Module), `image_backbone` (torchvision CNN + projection, weight files),
`text_clean` (note cleaner), `text_encoder` (transformers, overlapping windows, pooling), `tabular`
(fit on train, transform, JSON state), `cache` and `embed` (the embedding cache and what fills it),
`patient` (one patient at prediction time), `image_train` (demo image encoder training and linear
probe), `bench` (figures for `python -m mmnar_core bench encoders`), `command` (CLI).

This package imports only configs and errors eagerly, so `python -m mmnar_core --help` stays fast.
"""

from mmnar_core.encoders.config import (
    ImageEncoderConfig,
    TabularEncoderConfig,
    TextCleanerConfig,
    TextEncoderConfig,
)
from mmnar_core.encoders.errors import (
    CorruptImageError,
    EmptyImageError,
    EmptyTextError,
    EncoderInputError,
    EncoderStateError,
    ImageInputError,
    ImageTooLargeError,
    TabularInputError,
    TextEncodingError,
    TextInputError,
    TextTooLongError,
    TruncatedImageError,
    UnsupportedImageTypeError,
)

__all__ = [
    "CorruptImageError",
    "EmptyImageError",
    "EmptyTextError",
    "EncoderInputError",
    "EncoderStateError",
    "ImageEncoderConfig",
    "ImageInputError",
    "ImageTooLargeError",
    "TabularEncoderConfig",
    "TabularInputError",
    "TextCleanerConfig",
    "TextEncoderConfig",
    "TextEncodingError",
    "TextInputError",
    "TextTooLongError",
    "TruncatedImageError",
    "UnsupportedImageTypeError",
]
