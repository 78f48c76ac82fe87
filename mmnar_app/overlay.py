"""An attribution heatmap drawn over the X-ray, as an RGB image (opacity chosen by the user)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mmnar_core.encoders.image_io import load_image


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    if array.shape == (height, width):
        return array
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def heat_colours(values: np.ndarray, signed: bool) -> np.ndarray:
    """(H, W) -> (H, W, 3) in [0, 1]: red for risk-raising, blue for risk-lowering (signed IG); a
    yellow-red ramp for Grad-CAM (non-negative). Normalised by the map's largest magnitude."""
    scale = float(np.abs(values).max()) or 1.0
    v = values / scale
    rgb = np.zeros((*v.shape, 3), np.float32)
    if signed:
        pos, neg = np.clip(v, 0, 1), np.clip(-v, 0, 1)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = pos, 0.2 * (pos + neg), neg
    else:
        v = np.clip(v, 0, 1)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = 1.0, 1.0 - v, 0.0
        rgb *= v[..., None]
    return rgb


def overlay(
    image: bytes | np.ndarray, heatmap: np.ndarray, opacity: float, signed: bool, max_side: int = 768
) -> np.ndarray:
    """The X-ray (bytes of PNG/JPEG/DICOM, or a (H, W) array in [0, 1]) with the heatmap blended in where
    it is strong: alpha = opacity * |map| / max|map|. Returns uint8 RGB, longest side <= max_side."""
    gray = load_image(image) if isinstance(image, (bytes, bytearray)) else np.asarray(image, np.float32)
    height, width = gray.shape
    factor = min(1.0, max_side / max(height, width))
    h, w = max(1, round(height * factor)), max(1, round(width * factor))
    gray = _resize(gray, h, w)
    heat = _resize(np.asarray(heatmap, np.float32), h, w)
    if signed:  # pixel-level IG is speckled: smooth it for reading (about 1 % of the image side)
        from scipy.ndimage import gaussian_filter

        heat = gaussian_filter(heat, sigma=max(1.0, max(h, w) / 100))
    colours = heat_colours(heat, signed)
    strength = np.abs(heat) / (float(np.abs(heat).max()) or 1.0)
    alpha = (float(np.clip(opacity, 0, 1)) * strength)[..., None]
    rgb = (1 - alpha) * gray[..., None] + alpha * colours
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
