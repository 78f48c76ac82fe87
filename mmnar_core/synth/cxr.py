"""Procedural frontal chest X-rays with findings tied to the latent state, and a mask per finding.

Radiological convention: the patient's right is on the image's left. The thorax is drawn from
smooth shapes (body, lungs above diaphragm domes, heart, mediastinum and spine, ribs, clavicles),
vascular texture and noise, under a random pose (shift, rotation, scale, inspiration) and view (PA or
the magnifying, noisier portable AP). Findings are separate layers, so a test can render with and
without a finding and check that the difference lies inside its saved mask.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

SIZE = 224
# lobe centres in normalised (x, y) image coordinates; patient right = image left
LOBE_CENTRES = {
    "right upper lobe": (0.31, 0.31),
    "right middle lobe": (0.34, 0.52),
    "right lower lobe": (0.30, 0.64),
    "left upper lobe": (0.69, 0.32),
    "left lower lobe": (0.70, 0.63),
}


@dataclass
class CXRSpec:
    """Everything that determines one image; drawn once per patient from its own random stream."""

    seed: int
    view: str = "PA"
    shift: tuple[float, float] = (0.0, 0.0)
    rotation_deg: float = 0.0
    scale: float = 1.0
    inspiration: float = 1.0
    heart_scale: float = 1.0
    opacity_lobe: str | None = None
    opacity_extent: float = 1.0
    effusion_side: str | None = None
    effusion_height: float = 0.1
    brightness: float = 1.0
    findings: tuple[str, ...] = field(default_factory=tuple)


def draw_spec(
    rng: np.random.Generator,
    seed: int,
    severity: float,
    opacity: bool,
    lobe: str,
    effusion: bool,
    side: str,
    cardiomegaly: bool,
    hyperinflation: bool,
) -> CXRSpec:
    """Pose, view and finding geometry for one patient; sicker patients get portable AP films."""
    view = "AP" if rng.random() < 1 / (1 + np.exp(0.3 - 1.0 * severity)) else "PA"
    findings = tuple(
        name
        for name, present in (("opacity", opacity), ("effusion", effusion), ("cardiomegaly", cardiomegaly))
        if present
    )
    return CXRSpec(
        seed=seed,
        view=view,
        shift=(float(rng.normal(0, 0.018)), float(rng.normal(0, 0.018))),
        rotation_deg=float(rng.normal(0, 2.5)),
        scale=float(rng.uniform(0.93, 1.04)),
        inspiration=float(rng.uniform(0.92, 1.03)) * (1.12 if hyperinflation else 1.0),
        heart_scale=float(rng.uniform(1.38, 1.6)) if cardiomegaly else float(rng.uniform(0.9, 1.08)),
        opacity_lobe=lobe if opacity else None,
        opacity_extent=float(np.clip(1.0 + 0.25 * severity + rng.normal(0, 0.15), 0.6, 1.8)),
        effusion_side=side if effusion else None,
        effusion_height=float(np.clip(0.08 + 0.03 * severity + rng.normal(0, 0.02), 0.05, 0.2)),
        brightness=float(rng.uniform(0.9, 1.1)),
        findings=findings,
    )


_BASE_GRID = np.meshgrid(np.linspace(0, 1, SIZE, dtype=np.float32), np.linspace(0, 1, SIZE, dtype=np.float32))


def _soft(distance: np.ndarray, sharpness: float = 40.0) -> np.ndarray:
    """1 inside (distance < 0), 0 outside, with a smooth edge."""
    return 0.5 - 0.5 * np.tanh(sharpness * distance)


def _ellipse(x, y, cx, cy, ax, ay) -> np.ndarray:
    return np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2) - 1.0


def _superellipse(x, y, cx, cy, ax, ay, power) -> np.ndarray:
    return (np.abs((x - cx) / ax) ** power + np.abs((y - cy) / ay) ** power) ** (1.0 / power) - 1.0


def _smooth_noise(rng: np.random.Generator, cells: int) -> np.ndarray:
    coarse = rng.normal(0, 1, (cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((SIZE, SIZE), Image.Resampling.BICUBIC)
    return np.asarray(image)


def render(spec: CXRSpec, include: set[str] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render the image (uint8, SIZE x SIZE) and one boolean mask per finding drawn.

    `include` limits which of spec.findings are drawn (default: all); the noise and anatomy do not
    depend on it, so two renders differ only by the finding layers.
    """
    include = set(spec.findings) if include is None else set(include) & set(spec.findings)
    rng = np.random.default_rng([spec.seed, 7])
    gx, gy = _BASE_GRID
    theta = np.deg2rad(spec.rotation_deg)
    u, w = gx - 0.5 - spec.shift[0], gy - 0.5 - spec.shift[1]
    x = (np.cos(theta) * u + np.sin(theta) * w) / spec.scale + 0.5
    y = (-np.sin(theta) * u + np.cos(theta) * w) / spec.scale + 0.5

    body = _soft(_superellipse(x, y, 0.5, 0.60, 0.50, 0.62, 3.5), 20)
    dome_top = 0.70 + 0.25 * (spec.inspiration - 1.0)
    dome_right = dome_top - 0.02 + 0.75 * (x - 0.31) ** 2  # right hemidiaphragm sits higher (liver)
    dome_left = dome_top + 0.015 + 0.75 * (x - 0.69) ** 2
    lung_half_height = 0.33 * spec.inspiration
    right_lung = _soft(_superellipse(x, y, 0.30, 0.50, 0.165, lung_half_height, 2.4), 45) * _soft(y - dome_right, 60)
    left_lung = _soft(_superellipse(x, y, 0.70, 0.51, 0.155, lung_half_height, 2.4), 45) * _soft(y - dome_left, 60)
    lungs = np.maximum(right_lung, left_lung)

    magnification = 1.12 if spec.view == "AP" else 1.0
    heart_w, heart_h = 0.125 * spec.heart_scale * magnification, 0.12 * magnification
    heart_cx = 0.535 + 0.45 * (heart_w - 0.125)
    heart = _soft(_ellipse(x, y, heart_cx, dome_top - 0.045, heart_w, heart_h), 28) * _soft(y - dome_top - 0.02, 50)
    mediastinum = _soft(np.abs(x - 0.505) - 0.05 - 0.015 * (y > 0.35), 45) * _soft(y - dome_top, 30)
    spine = _soft(np.abs(x - 0.5) - 0.028, 60) * (np.sin(y * 2 * np.pi / 0.045) > -0.6)

    rib_coord = (y - 0.42 * np.abs(x - 0.5) ** 1.6 - 0.12) / 0.062
    ribs = (
        np.exp(-((((rib_coord % 1.0) - 0.5) / 0.15) ** 2))
        * (rib_coord > 0)
        * (rib_coord < 10)
        * (np.abs(x - 0.5) > 0.04)
    )
    clavicles = np.exp(-(((y - 0.14 + 0.16 * np.abs(x - 0.5)) / 0.016) ** 2)) * _soft(np.abs(x - 0.5) - 0.34, 30)
    stomach_gas = _soft(_ellipse(x, y, 0.70, dome_left.min() + 0.075, 0.05, 0.03), 40) * (y > dome_left)

    hilum = np.exp(-(((x - 0.5) / 0.2) ** 2 + ((y - 0.47) / 0.22) ** 2))
    texture = _smooth_noise(rng, 40) * (0.02 + 0.035 * hilum)

    image = 0.05 + 0.55 * body
    image = image - 0.36 * lungs * (1 - heart) + texture * lungs * (1 - heart) + 0.05 * hilum * lungs
    image = image + 0.07 * heart + 0.16 * mediastinum * (1 - heart) + 0.08 * spine * body - 0.15 * stomach_gas
    image = image + 0.09 * ribs * body + 0.12 * clavicles * body

    masks: dict[str, np.ndarray] = {}
    if "opacity" in include:
        layer, masks["opacity"] = _opacity(spec, rng_child(spec, 1), x, y, lungs * (1 - heart))
        image = image + layer
    if "effusion" in include:
        layer, masks["effusion"] = _effusion(spec, x, y, right_lung, left_lung, dome_right, dome_left)
        image = image + layer
    if "cardiomegaly" in include:
        masks["cardiomegaly"] = heart > 0.5

    noise_sd = 0.035 if spec.view == "AP" else 0.022
    image = image * spec.brightness + noise_sd * rng.standard_normal(image.shape, dtype=np.float32)
    pixels = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return pixels, masks


def rng_child(spec: CXRSpec, stream: int) -> np.random.Generator:
    return np.random.default_rng([spec.seed, 7, stream])


def _opacity(spec, rng, x, y, lungs) -> tuple[np.ndarray, np.ndarray]:
    """Patchy consolidation: a cluster of soft blobs around the lobe centre, confined to the lung."""
    cx, cy = LOBE_CENTRES[spec.opacity_lobe]
    field_ = np.zeros_like(x)
    for _ in range(4):
        bx, by = cx + rng.normal(0, 0.035), cy + rng.normal(0, 0.035)
        radius = rng.uniform(0.035, 0.06) * spec.opacity_extent
        field_ = np.maximum(field_, np.exp(-(((x - bx) ** 2 + (y - by) ** 2) / (2 * radius**2))))
    layer = 0.26 * field_ * lungs
    return layer, layer > 0.26 * 0.12


def _effusion(spec, x, y, right_lung, left_lung, dome_right, dome_left) -> tuple[np.ndarray, np.ndarray]:
    """Fluid layering at the base with a meniscus that climbs laterally, blunting the costophrenic angle."""
    layer = np.zeros_like(x)
    sides = {"right": [(right_lung, dome_right, 0.31, -1)], "left": [(left_lung, dome_left, 0.69, 1)]}
    sides["bilateral"] = sides["right"] + sides["left"]
    height = spec.effusion_height
    for lung, dome, centre, lateral_sign in sides[spec.effusion_side]:
        lateral = np.clip(lateral_sign * (x - centre) / 0.14, -1, 1.5)
        meniscus = dome - height * (1.0 + 0.9 * np.maximum(lateral, 0))
        fluid = _soft(meniscus - y, 45)
        layer = np.maximum(layer, 0.30 * fluid * lung)
    return layer, layer > 0.30 * 0.12


def encode_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def encode_mask(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").convert("1").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()
