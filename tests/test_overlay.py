"""The X-ray heatmap (mmnar_app.overlay): a risk-raising region stays clearly visible when a few extreme
pixels dominate the map, noise leaves the X-ray untouched, both methods are drawn at one display size, and
the colour scale and the text alternative say what the colours mean and where the map is strongest."""

from __future__ import annotations

import numpy as np

from mmnar_app.overlay import alt_text, legend_html, overlay

SIDE = 200


def planted() -> tuple[np.ndarray, np.ndarray]:
    """A flat grey X-ray; a map with a broad risk-raising blob (value 1) in the lower right, a few pixels
    1,000 times stronger in the upper left, and weak noise everywhere."""
    gray = np.full((SIDE, SIDE), 0.5, np.float32)
    heat = np.random.default_rng(0).normal(0, 0.01, (SIDE, SIDE)).astype(np.float32)
    heat[140:180, 140:180] = 1.0
    heat[10:12, 10:12] = 1000.0
    return gray, heat


def test_a_broad_region_stays_visible_beside_extreme_pixels():
    gray, heat = planted()
    rgb = overlay(gray, heat, opacity=0.6, signed=True).astype(float)
    blob = rgb[150:170, 150:170]
    # red rises well above the grey (127) and blue falls below it; normalised by the maximum, the blob was
    # 1/1000 of the scale and left the X-ray within a grey level of itself
    assert blob[..., 0].mean() - 127 > 30 and 127 - blob[..., 2].mean() > 30
    background = rgb[60:100, 100:130]  # noise: 1 % of the blob
    assert np.abs(background - 127).max() <= 2


def test_grad_cam_and_ig_are_drawn_at_one_display_size():
    gray, heat = planted()
    small = gray[:112, :100]
    ig = overlay(small, heat[:112, :100], 0.6, signed=True, max_side=640, min_side=640)
    cam = overlay(small, np.abs(heat[:7, :7]), 0.6, signed=False, max_side=640, min_side=640)
    assert ig.shape == cam.shape == (640, 571, 3)
    assert overlay(small, heat[:112, :100], 0.6, signed=True).shape == (112, 100, 3)  # the export keeps its size


def test_alt_text_names_the_method_and_where_the_map_is_strongest():
    heat = np.zeros((90, 90), np.float32)
    heat[70, 75] = 1.0
    text = alt_text("Chest X-ray", "Death within 180 days", heat, signed=True)
    assert "Integrated Gradients" in text and "Death within 180 days" in text and "lower right" in text
    heat = np.zeros((9, 9), np.float32)
    heat[1, 4] = 0.3
    text = alt_text("Chest X-ray", "ICU admission", heat, signed=False)
    assert "Grad-CAM" in text and "upper centre" in text and "without a direction" in text
    assert "strongest" not in alt_text("Chest X-ray", "ICU", np.zeros((4, 4)), signed=False)


def test_colour_scales_say_their_ends_in_words():
    signed, cam = legend_html(True), legend_html(False)
    assert "lowers the risk" in signed and "raises the risk" in signed and "linear-gradient" in signed
    assert "Grad-CAM" in cam and "strongest focus" in cam and "raises" not in cam
