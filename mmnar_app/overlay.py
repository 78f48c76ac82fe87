"""An attribution heatmap drawn over the X-ray, as an RGB image (opacity chosen by the user), with its colour
scale as HTML and a text alternative that says where the map is strongest."""

from __future__ import annotations

import html
import io

import numpy as np
from PIL import Image

from mmnar_app.display import LOWERS_RGB, RAISES_RGB
from mmnar_core.encoders.image_io import load_image

SCALE_PERCENTILE = 99.0  # colours saturate at this percentile of |map|: a few extreme pixels cannot wash it out
FLOOR = 0.15  # below this share of the scale the X-ray shows through untouched (noise is not drawn)
GRADCAM_LOW, GRADCAM_HIGH = (250, 204, 21), (220, 38, 38)  # yellow (weak) to red (strong)


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    if array.shape == (height, width):
        return array
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize((width, height), Image.BILINEAR))


def heat_scale(values: np.ndarray) -> float:
    """The |map| value at which the colours saturate (a high percentile of the non-zero magnitudes)."""
    magnitude = np.abs(values)
    nonzero = magnitude[magnitude > 0]
    return float(np.percentile(nonzero, SCALE_PERCENTILE)) if nonzero.size else 1.0


def heat_colours(values: np.ndarray, signed: bool, scale: float | None = None) -> np.ndarray:
    """(H, W) -> (H, W, 3) in [0, 1], full-strength hues (the strength is the blend's alpha, not a darker
    colour, so a weak region is faint rather than black): red for risk-raising, blue for risk-lowering
    (signed IG); yellow to red for Grad-CAM (non-negative)."""
    scale = scale or float(np.abs(values).max()) or 1.0
    v = np.clip(values / scale, -1, 1)
    rgb = np.zeros((*v.shape, 3), np.float32)
    if signed:
        rgb[v > 0] = np.asarray(RAISES_RGB, np.float32) / 255
        rgb[v < 0] = np.asarray(LOWERS_RGB, np.float32) / 255
    else:
        low, high = (np.asarray(c, np.float32) / 255 for c in (GRADCAM_LOW, GRADCAM_HIGH))
        t = np.clip(v, 0, 1)[..., None]
        rgb = (1 - t) * low + t * high
    return rgb


def strength(heat: np.ndarray, scale: float) -> np.ndarray:
    """Per pixel in [0, 1]: 0 under FLOOR of the scale, rising to 1 at the scale (the blend's alpha / opacity)."""
    share = np.clip(np.abs(heat) / (scale or 1.0), 0, 1)
    return np.clip((share - FLOOR) / (1 - FLOOR), 0, 1) ** 0.75


def overlay(
    image: bytes | np.ndarray,
    heatmap: np.ndarray,
    opacity: float,
    signed: bool,
    max_side: int = 768,
    min_side: int = 0,
) -> np.ndarray:
    """The X-ray (bytes of PNG/JPEG/DICOM, or a (H, W) array in [0, 1]) with the heatmap blended in where
    it is strong. Returns uint8 RGB, longest side <= max_side; with `min_side`, a small X-ray is enlarged to
    that longest side so the map is drawn at a readable size (the app shows it at its own pixel size)."""
    gray = load_image(image) if isinstance(image, (bytes, bytearray)) else np.asarray(image, np.float32)
    height, width = gray.shape
    factor = min(max_side / max(height, width), max(1.0, min_side / max(height, width)))
    h, w = max(1, round(height * factor)), max(1, round(width * factor))
    gray = _resize(gray, h, w)
    heat = _resize(np.asarray(heatmap, np.float32), h, w)
    if signed:  # pixel-level IG is speckled: smooth it for reading (about 1 % of the image side)
        from scipy.ndimage import gaussian_filter

        heat = gaussian_filter(heat, sigma=max(1.0, max(h, w) / 100))
    scale = heat_scale(heat)
    colours = heat_colours(heat, signed, scale)
    alpha = (float(np.clip(opacity, 0, 1)) * strength(heat, scale))[..., None]
    rgb = (1 - alpha) * gray[..., None] + alpha * colours
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def legend_html(signed: bool) -> str:
    """The heatmap's colour scale: a gradient bar with its ends and middle in words (text, so a screen reader
    and a reader without colour vision get it too)."""
    if signed:
        gradient = f"{_hex(LOWERS_RGB)}, #ffffff, {_hex(RAISES_RGB)}"
        ends = ("lowers the risk (strongest)", "no effect", "raises the risk (strongest)")
        title = "Colour scale, Integrated Gradients"
    else:
        gradient = f"#ffffff, {_hex(GRADCAM_LOW)}, {_hex(GRADCAM_HIGH)}"
        ends = ("no focus", "some focus", "strongest focus")
        title = "Colour scale, Grad-CAM"
    labels = "".join(
        f'<span style="flex: 1; text-align: {align}">{html.escape(text)}</span>'
        for text, align in zip(ends, ("left", "center", "right"))
    )
    return (
        f'<div role="img" aria-label="{html.escape(title)}: {html.escape(" to ".join((ends[0], ends[2])))}" '
        'style="font-size: 0.85rem; color: #0f172a; max-width: 28rem">'
        f'<div style="font-weight: 600">{html.escape(title)}</div>'
        f'<div style="height: 0.9rem; border: 1px solid #64748b; border-radius: 3px; '
        f'background: linear-gradient(to right, {gradient})"></div>'
        f'<div style="display: flex; gap: 0.5rem">{labels}</div></div>'
    )


def _where(heat: np.ndarray) -> str:
    """Where the map's largest positive value lies, in thirds of the image ("upper left"), or "" if none."""
    heat = np.asarray(heat, np.float32)
    if heat.ndim != 2 or not heat.size or float(heat.max()) <= 0:
        return ""
    row, column = np.unravel_index(int(np.argmax(heat)), heat.shape)
    vertical = ("upper", "middle", "lower")[min(2, 3 * int(row) // heat.shape[0])]
    horizontal = ("left", "centre", "right")[min(2, 3 * int(column) // heat.shape[1])]
    return f"{vertical} {horizontal}"


def alt_text(modality: str, outcome: str, heat: np.ndarray, signed: bool) -> str:
    """What the overlay shows in words: the method, the outcome, the colours and where the map is strongest
    (the image's left is the patient's right on a frontal X-ray)."""
    where = _where(heat)
    if signed:
        method, colours, peak = (
            "Integrated Gradients",
            "red marks regions that raised the risk, blue regions that lowered it",
            "risk-raising region",
        )
    else:
        method, colours, peak = (
            "Grad-CAM",
            "yellow to red marks where the model's features responded most, without a direction",
            "response",
        )
    strongest = f"; the strongest {peak} is in the {where} of the image" if where else ""
    return f"{modality} with the {method} heatmap for {outcome}: {colours}{strongest}."
