"""The one image preprocessing used by training, inference and explanations, as a differentiable
nn.Module (so attributions can reach the original pixels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmnar_core.encoders.config import ImageEncoderConfig
from mmnar_core.encoders.errors import ImageInputError


class ImagePreprocess(nn.Module):
    """(B, 1, H, W) grayscale in [0, 1] -> (B, 1, S, S) normalised model input.

    Pads to a square with black (centred), resizes with antialiasing, then applies (x - mean) / std.
    Every step is differentiable.
    """

    def __init__(self, config: ImageEncoderConfig = ImageEncoderConfig()):
        super().__init__()
        self.size = config.input_size
        self.mean = config.mean
        self.std = config.std

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        if pixels.ndim != 4 or pixels.shape[1] != 1:
            raise ImageInputError(f"expected a (B, 1, H, W) tensor, got shape {tuple(pixels.shape)}")
        height, width = pixels.shape[-2:]
        side = max(height, width)
        if height != width:
            top, left = (side - height) // 2, (side - width) // 2
            pixels = F.pad(pixels, (left, side - width - left, top, side - height - top), value=0.0)
        if side != self.size:
            pixels = F.interpolate(
                pixels, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=side > self.size
            )
        return (pixels - self.mean) / self.std


def check_pixels(array: np.ndarray, where: str = "image") -> np.ndarray:
    """Accept an in-memory image: 2-D, finite, values in [0, 1]."""
    array = np.asarray(array)
    if array.ndim != 2 or array.size == 0:
        raise ImageInputError(f"{where}: expected a non-empty 2-D grayscale array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
        raise ImageInputError(f"{where}: expected finite floats in [0, 1], got dtype {array.dtype}")
    if array.min() < 0 or array.max() > 1:
        raise ImageInputError(f"{where}: values must be in [0, 1], got {array.min():.3g}..{array.max():.3g}")
    return array.astype(np.float32, copy=False)


def to_model_input(arrays: Sequence[np.ndarray], preprocess: ImagePreprocess) -> torch.Tensor:
    """Decoded images of any sizes -> one (B, 1, S, S) batch (each image is padded/resized alone)."""
    batch = []
    for index, array in enumerate(arrays):
        tensor = torch.from_numpy(check_pixels(array, f"image {index}"))[None, None]
        batch.append(preprocess(tensor))
    return torch.cat(batch, dim=0)
