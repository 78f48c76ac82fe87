"""Simple statistics of a decoded X-ray (brightness, contrast, grain, edges, shape), for the image side of the
distribution check.

Why: the image encoder was trained on the simulator's X-rays, so a real X-ray can land close to them in
embedding space (a prototype flagged only 69 % of real COVID-19 X-rays from embeddings alone). How the
pixels themselves look (their histogram, how grainy and how sharp they are, the picture's shape) is a
second, independent view that does not depend on what the encoder learnt to ignore.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIDE = 128  # statistics are computed on the image resized to SIDE x SIDE, so its pixel size does not matter

# (name, words a clinician can read) in the order of the vector image_statistics returns
STATISTICS: tuple[tuple[str, str], ...] = (
    ("p01", "darkest tones (1st percentile of brightness)"),
    ("p05", "dark tones (5th percentile of brightness)"),
    ("p25", "lower quartile of brightness"),
    ("p50", "median brightness"),
    ("p75", "upper quartile of brightness"),
    ("p95", "bright tones (95th percentile of brightness)"),
    ("p99", "brightest tones (99th percentile of brightness)"),
    ("mean", "mean brightness"),
    ("contrast", "contrast (spread of brightness)"),
    ("dark_fraction", "share of near-black pixels"),
    ("bright_fraction", "share of near-white pixels"),
    ("gradient", "edge strength"),
    ("edge_density", "share of pixels on an edge"),
    ("grain", "grain / noise (difference from a smoothed copy)"),
    ("entropy", "richness of grey levels (histogram entropy)"),
    ("symmetry", "left-right symmetry"),
    ("top_minus_bottom", "brightness of the top third minus the bottom third"),
    ("border_minus_centre", "brightness of the border minus the centre"),
    ("aspect", "shape (width / height)"),
    ("levels", "grey levels used (of 256)"),
)
NAMES = tuple(name for name, _ in STATISTICS)
WORDS = dict(STATISTICS)
PERCENT = frozenset({"dark_fraction", "bright_fraction", "edge_density"})  # shares, shown as percentages


def image_statistics(pixels: np.ndarray) -> np.ndarray:
    """(H, W) grayscale in [0, 1] -> float64 vector of len(STATISTICS) statistics, in that order."""
    array = np.asarray(pixels, dtype=np.float32)
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"expected a non-empty 2-D grayscale image, got shape {array.shape}")
    height, width = array.shape
    # grey levels by counting, not sorting (np.unique on a 16-megapixel X-ray took 1-2 s); same rounding as np.round
    grey = np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)
    levels = np.count_nonzero(np.bincount(grey.ravel(), minlength=256)) / 256.0
    tensor = torch.from_numpy(np.ascontiguousarray(array))[None, None]
    small = F.interpolate(tensor, size=(SIDE, SIDE), mode="bilinear", align_corners=False, antialias=True)
    x = small[0, 0].clamp(0, 1).numpy().astype(np.float64)
    quantiles = np.quantile(x, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
    dy, dx = np.diff(x, axis=0)[:, :-1], np.diff(x, axis=1)[:-1, :]
    gradient = np.hypot(dx, dy)
    blurred = F.avg_pool2d(small.double(), 3, stride=1, padding=1, count_include_pad=False)[0, 0].numpy()
    histogram = np.histogram(x, bins=64, range=(0.0, 1.0))[0] / x.size
    entropy = float(-(histogram[histogram > 0] * np.log2(histogram[histogram > 0])).sum())
    mirrored = x[:, ::-1]
    spread = x.std() * mirrored.std()
    symmetry = float(((x - x.mean()) * (mirrored - mirrored.mean())).mean() / spread) if spread > 0 else 1.0
    third, edge = SIDE // 3, SIDE // 10
    border = np.ones_like(x, dtype=bool)
    border[edge:-edge, edge:-edge] = False
    return np.array(
        [
            *quantiles,
            x.mean(),
            x.std(),
            (x < 0.05).mean(),
            (x > 0.95).mean(),
            gradient.mean(),
            (gradient > 0.1).mean(),
            np.abs(x - blurred).mean(),
            entropy,
            symmetry,
            x[:third].mean() - x[-third:].mean(),
            x[border].mean() - x[~border].mean(),
            width / height,
            levels,
        ],
        dtype=np.float64,
    )
