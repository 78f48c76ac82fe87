"""Captum attributions within each modality, end to end: raw input -> encoder -> MMNAR fusion -> task
head -> temperature scaling -> pattern rectifier (docs/explanations.md).

What is attributed (`AttributionSettings.output`): by default the patient's **rectified, calibrated
risk** sigmoid(slope_t * logit_t / T_t + shift_t[pattern]), computed by the calibrated model
(mmnar_core.calibration.calibrated), the one map `Predictor.predict` shows too, so every attribution is in
units of the displayed risk (probability). The explained model comes in as an `AttributionTarget` (the
calibrated model, the encoders, the patient's embeddings), never as the predictor. The other modalities stay fixed at the patient's own
embeddings and the availability pattern is the patient's, so the rectifier offset is the patient's; it
is a constant logit shift, which matters in probability space (it changes the slope of the sigmoid) but
cancels in logit space (`output="logit"`).

Every outcome is attributed in one run: the IG paths are shared across tasks (one forward, one backward
per task: `integrated_gradients_rows`), and the note phrases come from forward passes that give every task.

- structured: expected gradients: Integrated Gradients from each of `tabular_references` training patients
  (`AttributionTarget.tabular_references`), averaged; without references the all-zero encoded vector (the
  training-median patient with no category set). A feature's encoded columns (value + missing indicator,
  or its one-hot columns) are summed to one value.
- image: Integrated Gradients on the model-input pixels (after the differentiable pad + resize) against the
  reference X-ray (or a black image) plus Layer Grad-CAM on the deepest CNN block with >= `gradcam_cells`
  cells per side, both mapped back to the original image geometry (padding removed, bilinear resize).
- notes: phrases (`phrases`, with their negation status from `negation`) scored by deleting each one
  (`note_occlusion`): risk(note) - risk(note without the phrase), forward passes only; optionally
  (`text_words`) Layer Integrated Gradients on the word-embedding layer, [PAD] baseline, per word. Both are
  mapped to character spans of the ORIGINAL note (`text_spans`).

Integrated Gradients use Gauss-Legendre quadrature; the convergence delta
(sum of attributions - (f(x) - f(baseline))) is returned per task.
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Self, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmnar_core.calibration.calibrated import CalibratedModel, patterns_of
from mmnar_core.cancel import check_cancelled
from mmnar_core.encoders.runtime import native_bf16
from mmnar_core.schema import FeatureKind, ModalitySpec

OUTPUTS = ("probability", "logit")
TEXT_PRECISIONS = ("auto", "bf16", "fp32")
TABULAR_BASELINES = ("training", "zero")
PHRASE_SCORES = ("deletion", "integrated_gradients")


class AttributionError(ValueError):
    """An attribution cannot be computed as asked (e.g. unknown task, modality not available)."""


# --------------------------------------------------------------------------- settings and plain data
@dataclass(frozen=True)
class AttributionSettings:
    """Step counts are modest on purpose: on a 2-core CPU the note transformer dominates the cost
    (n_steps forward + backward passes over every window of the note), and 16 Gauss-Legendre steps
    keep the convergence delta small on this model (see docs/explanations.md for measured deltas)."""

    output: str = "probability"  # or "logit" (the rectified, calibrated logit)
    tabular_steps: int = 16  # Gauss-Legendre steps per baseline path
    tabular_baseline: str = "training"  # "training" (expected gradients over training patients) or "zero"
    tabular_references: int = 16  # training patients used as structured baselines
    image_steps: int = 32
    text_steps: int = 16
    image_gradcam: bool = True
    gradcam_cells: int = 16  # Grad-CAM on the deepest CNN block whose map has >= this many cells per side
    max_heatmap_side: int = 1024  # heatmaps of larger images are returned at this longest side
    windows_per_batch: int = 8  # transformer windows per forward pass inside Layer IG
    smooth_sigma: float = 2.0  # model-input pixels; Gaussian smoothing of the signed IG for the peak
    # the note transformer inside Layer IG: "auto" = bfloat16 autocast where the device computes it natively
    # (AVX512-BF16/AMX CPUs, recent GPUs: about 2x faster, same top words; docs/explanations.md), else fp32
    text_precision: str = "auto"
    # the token budget of one note's attributions (issue 18): Layer IG costs text_steps passes over every window,
    # so a longer note is attributed on its first max_note_chars characters (the prediction still reads all of
    # it) and the explanation says so in its notes; 20,000 characters are about 20 windows of 256 tokens
    max_note_chars: int = 20_000
    # notes (issue 16): phrases by occlusion (forward passes only, every task from the same passes) are the
    # default; word-level Layer IG costs text_steps forward + backward passes over every window per task
    text_phrases: bool = True
    text_words: bool = False
    occlusion_batch: int = 16  # windows per transformer pass in the phrase occlusion
    # how phrases are scored: "deletion" (risk change when the phrase is deleted, forward passes only) or
    # "integrated_gradients" (sum of the phrase's tokens' Layer IG, text_steps steps, one forward shared by all
    # outcomes: closer to the ground truth on the demo cohort at 8 steps, about 1.5x the cost; docs/explanations.md)
    phrase_scores: str = "deletion"

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise AttributionError(f"output {self.output!r} is not accepted (accepted: {', '.join(OUTPUTS)})")
        if self.tabular_baseline not in TABULAR_BASELINES:
            raise AttributionError(
                f"tabular_baseline {self.tabular_baseline!r} is not accepted (accepted: {', '.join(TABULAR_BASELINES)})"
            )
        if self.text_precision not in TEXT_PRECISIONS:
            raise AttributionError(
                f"text_precision {self.text_precision!r} is not accepted (accepted: {', '.join(TEXT_PRECISIONS)})"
            )
        for name in (
            "tabular_steps",
            "tabular_references",
            "image_steps",
            "text_steps",
            "max_heatmap_side",
            "windows_per_batch",
            "max_note_chars",
            "occlusion_batch",
            "gradcam_cells",
        ):
            if int(getattr(self, name)) < 1:
                raise AttributionError(f"{name} must be >= 1")
        if self.phrase_scores not in PHRASE_SCORES:
            raise AttributionError(
                f"phrase_scores {self.phrase_scores!r} is not accepted (accepted: {', '.join(PHRASE_SCORES)})"
            )
        if not (self.text_phrases or self.text_words):
            raise AttributionError("text_phrases and text_words are both off: a note would get no attributions")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> AttributionSettings:
        return cls(**data)


class HeatMap:
    """A 2-D float map stored as float16 values normalised to [-1, 1] times a float64 scale, so it
    serialises compactly (base64) and round-trips exactly. `array()` gives float32 values."""

    def __init__(self, values: np.ndarray, scale: float):
        self.values = np.asarray(values, dtype=np.float16)
        self.scale = float(scale)

    @classmethod
    def from_array(cls, array: np.ndarray) -> HeatMap:
        array = np.asarray(array, dtype=np.float64)
        scale = float(np.abs(array).max()) if array.size else 0.0
        return cls(array / scale if scale > 0 else np.zeros_like(array), scale)

    def array(self) -> np.ndarray:
        return self.values.astype(np.float32) * np.float32(self.scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def to_dict(self) -> dict:
        data = base64.b64encode(np.ascontiguousarray(self.values).astype("<f2").tobytes()).decode("ascii")
        return {"dtype": "float16", "shape": list(self.values.shape), "scale": self.scale, "data": data}

    @classmethod
    def from_dict(cls, data: dict) -> HeatMap:
        values = np.frombuffer(base64.b64decode(data["data"]), dtype="<f2").reshape(data["shape"])
        return cls(values.astype(np.float16), float(data["scale"]))

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, HeatMap)
            and self.scale == other.scale
            and self.values.shape == other.values.shape
            and self.values.tobytes() == other.values.tobytes()
        )

    def __repr__(self) -> str:
        return f"HeatMap(shape={self.shape}, scale={self.scale:.3g})"


def _at_default(f: Any, value: Any) -> bool:
    """Whether `value` is the default of field `f`, for a field that has one (the fields added after the first
    edition: older explanations lack them, and writing them unused would change those explanations' JSON)."""
    if f.default is not MISSING:
        return bool(value == f.default)
    if f.default_factory is not MISSING:
        return bool(value == f.default_factory())
    return False


class _Plain:
    """to_dict / from_dict for the dataclasses below (nested lists of them and HeatMap dicts)."""

    _nested: dict[str, type[_Plain]] = {}  # field -> type of the items of a list of _Plain
    _single: tuple[str, ...] = ()  # fields holding one IGSummary
    _heatmaps: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in fields(cast(Any, self)):  # every subclass is a dataclass
            value = getattr(self, f.name)
            if _at_default(f, value):  # a field added later, unused here: the JSON stays as older versions wrote it
                continue
            if f.name in self._single:
                value = None if value is None else value.to_dict()
            elif f.name in self._nested:
                value = [v.to_dict() for v in value]
            elif f.name in self._heatmaps:
                value = {k: v.to_dict() for k, v in value.items()}
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        kwargs = {}
        for f in fields(cast(Any, cls)):
            if f.name not in data and (f.default is not MISSING or f.default_factory is not MISSING):
                continue  # a field added later: older saved explanations lack it and get its default
            value = data[f.name]
            if f.name in cls._single:
                value = None if value is None else IGSummary.from_dict(value)
            elif f.name in cls._nested:
                value = [cls._nested[f.name].from_dict(v) for v in value]
            elif f.name in cls._heatmaps:
                value = {k: HeatMap.from_dict(v) for k, v in value.items()}
            kwargs[f.name] = value
        return cast(Callable[..., Self], cls)(**kwargs)


@dataclass
class IGSummary(_Plain):
    """Per task: f(input), f(baseline) and Captum's convergence delta (sum(attr) - (f(x) - f(b)))."""

    value: dict[str, float]
    baseline_value: dict[str, float]
    delta: dict[str, float]


@dataclass
class FeatureAttribution(_Plain):
    feature: str
    value: Any  # the patient's raw value (None = not measured)
    unit: str | None
    missing: bool
    attribution: dict[str, float]  # task -> sum over the feature's encoded columns


@dataclass
class TabularAttribution(_Plain):
    modality: str
    method: str
    output: str
    baseline: str
    n_steps: int
    features: list[FeatureAttribution]
    summary: IGSummary
    _nested = {"features": FeatureAttribution}
    _single = ("summary",)


@dataclass
class ImageAttribution(_Plain):
    modality: str
    method: str
    output: str
    baseline: str
    n_steps: int
    image_shape: list[int]  # original (H, W)
    heatmap_shape: list[int]  # (H, W) of the maps (== image_shape unless the image is larger than the cap)
    integrated_gradients: dict[str, HeatMap]  # task -> signed IG per pixel (model-input pixels, resized)
    gradcam: dict[str, HeatMap]  # task -> ReLU(Grad-CAM), resized (empty when disabled)
    peak: dict[str, list[int]]  # task -> (row, col) in original pixels where the smoothed signed IG is largest
    gradcam_peak: dict[str, list[int] | None]
    summary: IGSummary
    _heatmaps = ("integrated_gradients", "gradcam")
    _single = ("summary",)


@dataclass
class WordAttribution(_Plain):
    text: str  # the ORIGINAL text of the word's span
    start: int  # [start, end) in the original note (code points)
    end: int
    attribution: dict[str, float]
    negated: bool = False  # inside a negation scope (cue included): never show it as a risk-raising finding


@dataclass
class PhraseAttribution(_Plain):
    """One phrase of the note (mmnar_core.explain.phrases) and, per task, the risk change when it is deleted:
    risk(note) - risk(note without the phrase), > 0 when the phrase raises the risk."""

    text: str  # the ORIGINAL text of the phrase's span (negation cue included)
    start: int  # [start, end) in the original note (code points)
    end: int
    assertion: str  # "affirmed", "negated" or "hedged" (mmnar_core.explain.negation)
    cue: str | None  # the negation / hedge cue found, e.g. "no evidence of"
    n_tokens: int
    attribution: dict[str, float]


@dataclass
class TextAttribution(_Plain):
    modality: str
    method: str
    output: str
    baseline: str
    n_steps: int
    n_tokens: int
    n_windows: int
    words: list[WordAttribution]  # empty unless AttributionSettings.text_words (Layer IG per word)
    other: dict[str, float]  # task -> attribution of tokens outside every word (punctuation)
    summary: IGSummary  # the word IG's; the phrase occlusion's (= phrase_summary) when words were not attributed
    # added in issue 16 (older saved explanations read with the defaults): phrase occlusion, every task at once
    phrases: list[PhraseAttribution] = field(default_factory=list)
    phrase_method: str = ""
    phrase_summary: IGSummary | None = None  # value, baseline = every content token deleted, delta = non-additivity
    _nested = {"words": WordAttribution, "phrases": PhraseAttribution}
    _single = ("summary", "phrase_summary")

    def top_words(self, task: str, k: int = 10, absolute: bool = True) -> list[WordAttribution]:
        key = (lambda w: abs(w.attribution[task])) if absolute else (lambda w: w.attribution[task])
        return sorted(self.words, key=key, reverse=True)[:k]

    def top_phrases(self, task: str, k: int = 5, absolute: bool = True) -> list[PhraseAttribution]:
        """The k phrases whose deletion moves the risk most (|change|), or that raise it most (absolute=False)."""
        key = (lambda p: abs(p.attribution[task])) if absolute else (lambda p: p.attribution[task])
        return sorted(self.phrases, key=key, reverse=True)[:k]

    def risk_raising_findings(self, task: str, k: int = 5) -> list[PhraseAttribution]:
        """Affirmed or hedged phrases that raise the risk, largest first: a negated phrase ("No large pleural
        effusion") is never listed as a finding that raises the risk, whatever its sign."""
        chosen = [p for p in self.phrases if p.assertion != "negated" and p.attribution[task] > 0]
        return sorted(chosen, key=lambda p: p.attribution[task], reverse=True)[:k]


# --------------------------------------------------------------------------- the differentiable path
@dataclass
class AttributionTarget:
    """What the attributions explain: one patient's embeddings through the calibrated model, and the encoders
    that made them (for attributions back to features, pixels and words). The predictor builds it
    (`Predictor.attribution_target`); nothing here needs the predictor itself."""

    calibrated: CalibratedModel  # network + temperatures + site correction: the displayed risk
    encoder: Any  # mmnar_core.encoders.patient.PatientEncoder: .tabular[name], .image, .text
    modalities: Sequence[ModalitySpec]
    inputs: list[torch.Tensor]  # (1, dim) per modality (zeros where absent)
    availability: np.ndarray  # (M,) bool
    reference_images: Mapping[str, torch.Tensor] = field(default_factory=dict)  # image IG baselines
    # structured IG baselines (issue 16): encoded vectors of training patients who had the modality, (R, dim)
    # per tabular modality (`tabular_references`); without them the all-zero encoded vector is the baseline
    tabular_references: Mapping[str, torch.Tensor] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.calibrated.tasks)


class RiskHead(nn.Module):
    """Modality embeddings -> (B, T) displayed risk (or its logit) for ONE patient's pattern, through the
    calibrated model (the same map as the risk on screen).

    forward(replace) takes {modality index: (B, dim) tensor}; every other modality is the patient's own
    embedding, broadcast to B rows. Absent modalities stay absent (the model's exact missing path)."""

    def __init__(
        self,
        calibrated: CalibratedModel,
        inputs: Sequence[torch.Tensor],
        availability: np.ndarray | torch.Tensor,
        output: str = "probability",
    ):
        super().__init__()
        self.calibrated = calibrated.eval()
        device = calibrated.temperature.device
        self.inputs = [x.float().to(device) for x in inputs]
        self.availability = torch.as_tensor(np.asarray(availability, dtype=bool)).reshape(1, -1).to(device)
        self.pattern = patterns_of(self.availability)
        self.output = output

    def forward(self, replace: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        check_cancelled()  # every attribution pass (each Captum internal batch) ends here
        replace = replace or {}
        rows = next(iter(replace.values())).shape[0] if replace else 1
        inputs = [replace[i] if i in replace else x.expand(rows, -1) for i, x in enumerate(self.inputs)]
        assert self.calibrated.network is not None
        logits = self.calibrated.network(inputs, self.availability.expand(rows, -1))
        z = self.calibrated.corrected_logits(logits, self.pattern.expand(rows))
        return torch.sigmoid(z) if self.output == "probability" else z


def _summary(tasks: Sequence[str], value: torch.Tensor, base: torch.Tensor, delta: torch.Tensor) -> IGSummary:
    return IGSummary(
        {t: float(v) for t, v in zip(tasks, value)},
        {t: float(v) for t, v in zip(tasks, base)},
        {t: float(d) for t, d in zip(tasks, delta)},
    )


def _plain_value(value):
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- structured
TABULAR_BASELINE = (
    "the training-median patient: the all-zero encoded vector (numeric features at their training "
    "median, binary features 0, no category set, every missing indicator off)"
)
TABULAR_REFERENCE_BASELINE = (
    "training patients: Integrated Gradients from each of {k} training patients who had the structured data "
    "(expected gradients), averaged; the summary baseline is their mean risk"
)


def feature_columns(encoder) -> list[tuple[Any, list[int]]]:
    """(FeatureSpec, its column indices in the encoded vector), in `encoder.output_names` order."""
    groups, column = [], 0
    for f in encoder.features:
        if f.kind is FeatureKind.CATEGORICAL:
            width = len(encoder.levels(f))  # categories, <unknown> where the encoder has it, <missing>
        else:
            width = 2 if encoder.config.missing_indicators else 1
        groups.append((f, list(range(column, column + width))))
        column += width
    if column != encoder.dim:
        raise AttributionError("tabular encoder columns do not match its output names")
    return groups


def tabular_references_from(
    inputs: Sequence[torch.Tensor], availability: torch.Tensor, modalities: Sequence[ModalitySpec]
) -> dict[str, torch.Tensor]:
    """{tabular modality: (R, dim) encoded vectors of the reference patients who had it}, from a training
    reference set (`Predictor.reference`: `.inputs`, `.availability`): the structured IG baselines."""
    from mmnar_core.schema import ModalityKind

    return {
        m.name: inputs[i][availability[:, i].bool()]
        for i, m in enumerate(modalities)
        if m.kind is ModalityKind.TABULAR and bool(availability[:, i].any())
    }


def pick_references(pool: torch.Tensor, k: int) -> torch.Tensor:
    """k rows of `pool` evenly spaced (deterministic: the same baselines for every call and patient)."""
    if len(pool) <= k:
        return pool
    return pool[torch.linspace(0, len(pool) - 1, k).round().long()]


def integrated_gradients_rows(
    forward: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    baselines: torch.Tensor,
    task_ids: Sequence[int],
    n_steps: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IG of every task from each baseline row, averaged over the rows (expected gradients with a fixed sample
    and Gauss-Legendre steps): one forward over (K * n_steps) rows and one backward per task.

    `forward((B, *shape)) -> (B, T_all)`; x (1, *shape); baselines (K, *shape) (a structured vector, an image).
    Returns (attributions (T, *shape), f(x) (T,), mean over baselines of f(baseline) (T,)); completeness:
    the sum of a task's attributions ~ f(x) - mean f(baseline). Sharing the forward across tasks is what makes
    all outcomes cost little more than one."""
    import numpy.polynomial.legendre as legendre

    nodes, weights = legendre.leggauss(n_steps)
    alphas = torch.tensor((nodes + 1) / 2, dtype=x.dtype, device=x.device)
    step_weights = torch.tensor(weights / 2, dtype=x.dtype, device=x.device)
    k, shape = len(baselines), tuple(x.shape[1:])
    ones = (1,) * len(shape)
    diff = x - baselines  # (K, *shape)
    path = (baselines[:, None] + alphas.view(1, n_steps, *ones) * diff[:, None]).reshape(k * n_steps, *shape)
    path = path.detach().requires_grad_(True)
    out = forward(path)
    grads = []
    for r, task in enumerate(task_ids):
        (grad,) = torch.autograd.grad(out[:, task].sum(), path, retain_graph=r < len(task_ids) - 1)
        weighted = (grad.reshape(k, n_steps, *shape) * step_weights.view(1, n_steps, *ones)).sum(1)  # (K, *shape)
        grads.append((weighted * diff).mean(0))
    with torch.no_grad():
        value = forward(x)[0, list(task_ids)]
        base = forward(baselines)[:, list(task_ids)].mean(0)
    return torch.stack(grads), value, base


def attribute_tabular(
    head: RiskHead,
    index: int,
    modality: str,
    encoder,
    values: dict,
    task_ids: list[int],
    tasks: list[str],
    settings: AttributionSettings,
    references: torch.Tensor | None = None,
) -> TabularAttribution:
    """Every task at once. With `references` (encoded training patients) and settings.tabular_baseline
    "training": expected gradients over `settings.tabular_references` of them, so a feature gets credit only
    for how this patient differs from real patients (a categorical's "no category set" zero vector is a
    state no patient has: against it `sex` ranked first for everyone). Otherwise the all-zero baseline."""
    x = head.inputs[index]
    use_references = references is not None and len(references) > 0 and settings.tabular_baseline == "training"
    if use_references:
        assert references is not None
        baselines = pick_references(references.to(x.device, x.dtype), settings.tabular_references)
        baseline_text = TABULAR_REFERENCE_BASELINE.format(k=len(baselines))
    else:
        baselines, baseline_text = torch.zeros_like(x), TABULAR_BASELINE
    attr_t, value, base = integrated_gradients_rows(
        lambda v: head({index: v}), x, baselines, task_ids, settings.tabular_steps
    )
    delta = attr_t.sum(1) - (value - base)
    attr = attr_t.detach().double().cpu().numpy()
    features = []
    for spec, columns in feature_columns(encoder):
        raw = _plain_value(values.get(spec.name))
        features.append(
            FeatureAttribution(
                spec.name, raw, spec.unit, raw is None, {t: float(attr[r, columns].sum()) for r, t in enumerate(tasks)}
            )
        )
    return TabularAttribution(
        modality,
        "ExpectedGradients" if use_references else "IntegratedGradients",
        settings.output,
        baseline_text,
        settings.tabular_steps,
        features,
        _summary(tasks, value, base, delta.detach()),
    )


# --------------------------------------------------------------------------- image
IMAGE_BASELINE = "a black image (all pixels 0) in the model's input space"
IMAGE_REFERENCE_BASELINE = (
    "the reference X-ray: the pixel-wise median of training X-rays in the model's input space "
    "(bundle file explain_reference.safetensors)"
)


@dataclass
class ImageCase:
    """What the faithfulness code needs beyond the public result."""

    model_input: torch.Tensor  # (1, 1, S, S), normalised
    ig: np.ndarray  # (T, S, S) signed IG in model-input space
    baseline: torch.Tensor  # (1, 1, S, S) the IG baseline (reference X-ray or black), normalised
    forward: Any


def _geometry(height: int, width: int, max_side: int) -> tuple[int, int, int, int, int]:
    side = max(height, width)
    ratio = min(1.0, max_side / side)
    side_r = max(1, round(side * ratio))
    h, w = max(1, round(height * ratio)), max(1, round(width * ratio))
    top, left = round((side - height) // 2 * ratio), round((side - width) // 2 * ratio)
    return side_r, h, w, min(top, side_r - h), min(left, side_r - w)


def to_image_geometry(maps: torch.Tensor, height: int, width: int, max_side: int = 10**9) -> np.ndarray:
    """(T, S, S) maps in model-input space -> (T, h, w) on the original image (padding removed)."""
    side_r, h, w, top, left = _geometry(height, width, max_side)
    up = F.interpolate(maps[:, None].float(), size=(side_r, side_r), mode="bilinear", align_corners=False)[:, 0]
    return up[:, top : top + h, left : left + w].cpu().numpy()


def input_to_image(row: float, col: float, size: int, height: int, width: int) -> list[int]:
    """A model-input pixel centre -> (row, col) in original image pixels."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    r = (row + 0.5) * side / size - 0.5 - top
    c = (col + 0.5) * side / size - 0.5 - left
    return [int(min(max(round(r), 0), height - 1)), int(min(max(round(c), 0), width - 1))]


def _gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return maps
    radius = max(1, int(3 * sigma))
    grid = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(grid**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = maps[:, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return x[:, 0]


def gradcam_layer(encoder, size: int, min_cells: int) -> tuple[str, nn.Module]:
    """(name, module): the deepest block of the CNN whose output map still has >= `min_cells` cells per side at
    input size `size`. Why not the last block: on MobileNet at 128 pixels it is 4 x 4 cells, 12 of them on the
    border; its ReLU'd map was all zero for half the X-rays and its peak sat on the image border."""
    key = (id(encoder), size, min_cells)
    if key in _GRADCAM_LAYERS:
        return _GRADCAM_LAYERS[key]
    backbone = encoder.backbone
    if hasattr(backbone, "features"):
        candidates = [(f"features.{i}", m) for i, m in enumerate(cast(nn.Sequential, backbone.features))]
    else:  # resnet
        candidates = [(name, getattr(backbone, name)) for name in ("layer1", "layer2", "layer3", "layer4")]
    sides: dict[str, int] = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: sides.__setitem__(name, int(out.shape[-1])))
        for name, module in candidates
    ]
    try:
        with torch.no_grad():
            device = next(encoder.parameters()).device
            encoder(torch.zeros(1, 1, size, size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    chosen = [(name, module) for name, module in candidates if sides.get(name, 0) >= min_cells]
    _GRADCAM_LAYERS[key] = chosen[-1] if chosen else candidates[0]
    return _GRADCAM_LAYERS[key]


_GRADCAM_LAYERS: dict[tuple[int, int, int], tuple[str, nn.Module]] = {}


def _cells_inside_image(cells: int, size: int, height: int, width: int) -> torch.Tensor:
    """(cells, cells) bool: cells whose centre lies on the image, not on the square's padding."""
    side = max(height, width)
    top, left = (side - height) / 2 * size / side, (side - width) / 2 * size / side
    centres = (torch.arange(cells) + 0.5) * size / cells
    rows = (centres >= top) & (centres < size - top)
    cols = (centres >= left) & (centres < size - left)
    return rows[:, None] & cols[None, :]


def _cell_peak(cells: torch.Tensor, inside: torch.Tensor, size: int, height: int, width: int) -> list[int] | None:
    """The centre of the largest Grad-CAM cell on the image, in original pixels; None for an all-zero map. The
    peak is taken on the cells, not on the upsampled map, whose edge cells stretch to the border pixels."""
    values = torch.where(inside, cells, torch.full_like(cells, -1.0))
    if float(values.max()) <= 0:
        return None
    n = cells.shape[-1]
    row, col = divmod(int(torch.argmax(values)), n)
    step = size / n
    return input_to_image((row + 0.5) * step - 0.5, (col + 0.5) * step - 0.5, size, height, width)


def attribute_image(
    head: RiskHead,
    index: int,
    modality: str,
    embedder,
    pixels: np.ndarray,
    task_ids: list[int],
    tasks: list[str],
    settings: AttributionSettings,
    reference: torch.Tensor | None = None,
) -> tuple[ImageAttribution, ImageCase]:
    """IG against `reference` (the bundle's reference X-ray, (1, 1, S, S) in model-input space) or, for a
    bundle without one, a black image, every task from one batch of path images; Layer Grad-CAM on the
    deepest CNN block with >= settings.gradcam_cells cells per side. `peak[task]` is where the smoothed signed
    IG is largest: where the image most raises the risk."""
    from captum.attr import LayerAttribution, LayerGradCam

    from mmnar_core.encoders.image_preprocess import to_model_input

    encoder = embedder.encoder
    x = to_model_input([pixels], embedder.preprocess).to(head.availability.device)
    height, width = pixels.shape
    size = x.shape[-1]
    if reference is not None:  # its shape is checked when the predictor loads the bundle
        reference, baseline_text = reference.to(x.device, x.dtype), IMAGE_REFERENCE_BASELINE
    else:
        black = -embedder.preprocess.mean / embedder.preprocess.std
        reference, baseline_text = torch.full_like(x, black), IMAGE_BASELINE

    def forward(images: torch.Tensor) -> torch.Tensor:
        check_cancelled()  # before the CNN, not only after it (RiskHead checks too)
        return head({index: encoder(images)})

    rows = len(task_ids)
    inputs = x.expand(rows, -1, -1, -1).clone()
    attr, value, base = integrated_gradients_rows(forward, x, reference, task_ids, settings.image_steps)
    delta = attr.detach().flatten(1).sum(1) - (value - base)
    ig_maps = attr.detach()[:, 0]  # (T, S, S)
    smooth = _gaussian_blur(ig_maps, settings.smooth_sigma)
    peaks = {}
    for r, task in enumerate(tasks):
        flat = int(torch.argmax(smooth[r]))
        peaks[task] = input_to_image(flat // size, flat % size, size, height, width)
    ig_image = to_image_geometry(ig_maps, height, width, settings.max_heatmap_side)
    cams: dict[str, HeatMap] = {}
    cam_peaks: dict[str, list[int] | None] = {}
    layer_name = ""
    if settings.image_gradcam:
        layer_name, layer = gradcam_layer(encoder, size, settings.gradcam_cells)
        cells = LayerGradCam(forward, layer).attribute(inputs, target=task_ids, relu_attributions=True).detach()
        cam = LayerAttribution.interpolate(cells, (size, size), interpolate_mode="bilinear")[:, 0]
        cam_image = to_image_geometry(cam, height, width, settings.max_heatmap_side)
        inside = _cells_inside_image(cells.shape[-1], size, height, width).to(cells.device)
        for r, task in enumerate(tasks):
            cams[task] = HeatMap.from_array(cam_image[r])
            cam_peaks[task] = _cell_peak(cells[r, 0], inside, size, height, width)
        layer_name = f"{layer_name} ({cells.shape[-2]}x{cells.shape[-1]} cells)"
    result = ImageAttribution(
        modality,
        "IntegratedGradients" + (f"+LayerGradCam on {layer_name}" if settings.image_gradcam else ""),
        settings.output,
        baseline_text,
        settings.image_steps,
        [height, width],
        list(ig_image.shape[1:]),
        {t: HeatMap.from_array(ig_image[r]) for r, t in enumerate(tasks)},
        cams,
        peaks,
        cam_peaks,
        _summary(tasks, value, base, delta),
    )
    return result, ImageCase(x, ig_maps.cpu().numpy(), reference, forward)


# --------------------------------------------------------------------------- notes
TEXT_BASELINE = "[PAD] at every content token of the note (special tokens, positions and attention mask kept)"


@dataclass
class TextCase:
    """What the faithfulness code needs beyond the public result."""

    ids: torch.Tensor  # (1, W*L)
    mask: torch.Tensor
    weights: torch.Tensor
    positions: torch.Tensor  # (W*L,) note token index per slot (-1 special / padding)
    token_word: list[int]
    pad_id: int
    forward: Any  # (ids, mask, weights) -> (B, T)
    baseline: torch.Tensor | None = None  # [PAD] at every content slot (the word IG baseline)
    token_phrase: list[int] = field(default_factory=list)  # per note token: its phrase index, -1 none


def attribute_text(
    head: RiskHead,
    index: int,
    modality: str,
    embedder,
    note: str | bytes,
    task_ids: list[int],
    tasks: list[str],
    settings: AttributionSettings,
    where: str = "note",
) -> tuple[TextAttribution, TextCase]:
    """Phrase occlusion (every task from the same forward passes) and, with `settings.text_words`, Layer IG
    per word and task; both mapped to character spans of the ORIGINAL note."""
    from mmnar_core.encoders.text_encoder import NoteForward
    from mmnar_core.explain.phrases import split_phrases, token_phrase
    from mmnar_core.explain.text_spans import clean_with_offsets, token_offsets, word_map

    config = embedder.config
    tracked = clean_with_offsets(note, config.cleaner, config.max_chars, where)
    original = note.decode("utf-8") if isinstance(note, (bytes, bytearray)) else note
    windows = embedder.windower([tracked.text])
    offsets = token_offsets(embedder.tokenizer, tracked.text)
    if len(offsets) != windows.n_tokens[0]:
        raise AttributionError(
            f"{where}: tokenizer offsets ({len(offsets)}) do not match the note's tokens ({windows.n_tokens[0]})"
        )
    words = word_map(tracked, original, offsets)
    phrases = split_phrases(tracked.text)
    owner = token_phrase(phrases, offsets)
    device = head.availability.device
    n_windows, length = windows.input_ids.shape
    note_forward = NoteForward(embedder.encoder, length).eval()
    ids, mask, weights = (t.to(device) for t in NoteForward.flatten(windows))
    positions = windows.positions.reshape(-1).to(device)
    pad = int(embedder.tokenizer.pad_token_id or 0)
    bf16 = settings.text_precision == "bf16" or (settings.text_precision == "auto" and native_bf16(device))
    precision = " (transformer in bfloat16)" if bf16 else ""

    def forward(i, m, w):  # the transformer in bfloat16 when chosen; the fusion, heads and calibration in fp32
        check_cancelled()  # before the transformer: the costly part of each Captum internal batch
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            embedding = note_forward(i, m, w)
        return head({index: embedding.float()})

    phrase_results: list[PhraseAttribution] = []
    phrase_summary = None
    if settings.text_phrases:
        phrase_results, phrase_summary = _phrase_attributions(
            head, index, embedder, windows, tracked, original, phrases, owner, task_ids, tasks, settings, pad, bf16
        )
    word_results: list[WordAttribution] = []
    other: dict[str, float] = {}
    summary = phrase_summary
    if settings.text_words:
        word_results, other, summary = _word_attributions(
            forward,
            embedder,
            windows,
            words,
            tracked,
            phrases,
            (ids, mask, weights, positions, pad),
            task_ids,
            tasks,
            settings,
        )
    assert summary is not None  # the settings accept no run without phrases and without words
    word_method = "LayerIntegratedGradients" + precision
    phrase_kind = "PhraseOcclusion" if settings.phrase_scores == "deletion" else "PhraseLayerIntegratedGradients"
    phrase_method = (phrase_kind + precision) if settings.text_phrases else ""
    result = TextAttribution(
        modality,
        "+".join(
            m for m in (phrase_method if settings.text_phrases else "", word_method if settings.text_words else "") if m
        ),
        settings.output,
        TEXT_BASELINE if settings.text_words or settings.phrase_scores != "deletion" else OCCLUSION_BASELINE,
        settings.text_steps if settings.text_words or settings.phrase_scores != "deletion" else 0,
        int(windows.n_tokens[0]),
        int(n_windows),
        word_results,
        other,
        summary,
        phrase_results,
        phrase_method,
        phrase_summary,
    )
    baseline = torch.where(positions.unsqueeze(0) >= 0, torch.full_like(ids, pad), ids)
    return result, TextCase(ids, mask, weights, positions, words.token_word, pad, forward, baseline, owner)


OCCLUSION_BASELINE = (
    "phrases: the note without the phrase (its tokens deleted from the windows that hold it); "
    "summary baseline: every content token deleted"
)


def _phrase_attributions(
    head, index, embedder, windows, tracked, original, phrases, owner, task_ids, tasks, settings, pad, bf16
):
    from mmnar_core.explain.note_ig import note_integrated_gradients
    from mmnar_core.explain.note_occlusion import occlude_phrases

    def task_head(embedding):
        return head({index: embedding})[:, task_ids]

    counts = np.bincount(np.asarray([o for o in owner if o >= 0], dtype=np.int64), minlength=len(phrases))
    if settings.phrase_scores == "integrated_gradients":  # phrase = sum of its tokens' Layer IG, one shared forward
        ig = note_integrated_gradients(
            embedder.encoder, windows, task_head, pad, settings.text_steps, bf16, settings.windows_per_batch
        )
        token_owner = np.asarray(owner)
        effects = np.zeros((len(phrases), len(tasks)))
        inside = token_owner >= 0
        for r in range(len(tasks)):
            np.add.at(effects[:, r], token_owner[inside], ig.token_scores[r, inside])
        gap_value, gap_base = ig.value, ig.baseline
        delta = ig.token_scores.sum(1) - (ig.value - ig.baseline)  # tokens outside every phrase included
    else:
        occlusion = occlude_phrases(
            embedder.encoder, windows, np.asarray(owner), len(phrases), task_head, pad, bf16, settings.occlusion_batch
        )
        effects, gap_value, gap_base = occlusion.effects, occlusion.value, occlusion.baseline
        delta = effects.sum(0) - (gap_value - gap_base)
    results = []
    for p, phrase in enumerate(phrases):
        if counts[p] == 0:
            continue
        a, b = phrase.span
        start, end = tracked.starts[a], tracked.ends[b - 1]
        results.append(
            PhraseAttribution(
                original[start:end],
                int(start),
                int(end),
                phrase.assertion,
                phrase.cue,
                int(counts[p]),
                {t: float(effects[p, r]) for r, t in enumerate(tasks)},
            )
        )
    summary = _summary(tasks, torch.from_numpy(gap_value), torch.from_numpy(gap_base), torch.from_numpy(delta))
    return results, summary


def _word_attributions(forward, embedder, windows, words, tracked, phrases, flat, task_ids, tasks, settings):
    from captum.attr import LayerIntegratedGradients

    from mmnar_core.encoders.text_encoder import NoteForward
    from mmnar_core.explain.negation import negated_mask

    ids, mask, weights, positions, pad = flat
    n_windows = windows.input_ids.shape[0]
    baseline = torch.where(positions.unsqueeze(0) >= 0, torch.full_like(ids, pad), ids)
    lig = LayerIntegratedGradients(forward, embedder.encoder.model.get_input_embeddings())
    token_scores, deltas = [], []
    for task_id in task_ids:
        attr, delta = lig.attribute(
            ids,
            baselines=baseline,
            additional_forward_args=(mask, weights),
            target=task_id,
            n_steps=settings.text_steps,
            internal_batch_size=max(1, settings.windows_per_batch // n_windows),
            return_convergence_delta=True,
        )
        token_scores.append(NoteForward.token_scores(windows, attr.detach().sum(-1)[0].cpu()).double().numpy())
        deltas.append(float(delta))
    with torch.no_grad():
        value = forward(ids, mask, weights)[0, task_ids]
        base = forward(baseline, mask, weights)[0, task_ids]
    scores = np.stack(token_scores)  # (T, n_tokens)
    owner = np.asarray(words.token_word)
    word_scores = np.zeros((len(tasks), len(words.words)))
    inside = owner >= 0
    for r in range(len(tasks)):
        np.add.at(word_scores[r], owner[inside], scores[r, inside])
    negated = [False] * len(words.words)
    for phrase in phrases:  # negation scopes are found per phrase, words flagged by their cleaned spans
        a, b = phrase.part
        in_phrase = [w for w, (s, e) in enumerate(words.clean_spans) if a <= s and e <= b]
        flags = negated_mask(
            tracked.text[a:b], [(words.clean_spans[w][0] - a, words.clean_spans[w][1] - a) for w in in_phrase]
        )
        for w, flag in zip(in_phrase, flags):
            negated[w] = flag
    results = [
        WordAttribution(text, int(a), int(b), {t: float(word_scores[r, w]) for r, t in enumerate(tasks)}, negated[w])
        for w, (text, (a, b)) in enumerate(zip(words.words, words.spans))
    ]
    other = {t: float(scores[r, ~inside].sum()) for r, t in enumerate(tasks)}
    return results, other, _summary(tasks, value, base, torch.tensor(deltas))


# --------------------------------------------------------------------------- one patient, all modalities
@dataclass
class ModalityAttributions:
    tabular: list[TabularAttribution] = field(default_factory=list)
    images: list[ImageAttribution] = field(default_factory=list)
    texts: list[TextAttribution] = field(default_factory=list)
    cases: dict[str, Any] = field(default_factory=dict)  # modality -> ImageCase / TextCase (not serialised)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. a note attributed on its first characters only


def attributed_part(note, limit: int, modality: str) -> tuple[str | bytes, str | None]:
    """(the part of `note` that is attributed, the visible note saying it was cut or None): the first
    `limit` characters of a longer note (AttributionSettings.max_note_chars), the whole note otherwise."""
    text = note.decode("utf-8", errors="strict") if isinstance(note, (bytes, bytearray)) else note
    if len(text) <= limit:
        return note, None
    return text[:limit], (
        f"{modality}: the note has {len(text):,} characters; its words were attributed on the "
        f"first {limit:,} only (the prediction and what-if read the whole note)"
    )


def task_indices(tasks_of_model: Sequence[str], tasks: Sequence[str] | None) -> tuple[list[int], list[str]]:
    names = list(tasks_of_model)
    if tasks is None:
        return list(range(len(names))), names
    unknown = [t for t in tasks if t not in names]
    if unknown or not tasks:
        raise AttributionError(f"unknown or no task(s) {list(unknown)} (accepted: {', '.join(names)})")
    chosen = [t for t in names if t in set(tasks)]
    return [names.index(t) for t in chosen], chosen


def attribute_record(
    target: AttributionTarget,
    record,
    tasks: Sequence[str] | None = None,
    settings: AttributionSettings = AttributionSettings(),
    modalities: Sequence[str] | None = None,
    progress=None,
) -> ModalityAttributions:
    """Attributions within every available modality of one patient (or those in `modalities`);
    `progress(modality)` is called before each one (the app shows steps, not a bare spinner)."""
    from mmnar_core.schema import ModalityKind

    task_ids, task_names = task_indices(target.tasks, tasks)
    head = RiskHead(target.calibrated, target.inputs, target.availability, settings.output)
    out = ModalityAttributions()
    names = [m.name for m in target.modalities]
    kinds = {m.name: m.kind for m in target.modalities}
    wanted = set(names if modalities is None else modalities)
    with torch.enable_grad():
        for index, name in enumerate(names):
            if not target.availability[index] or name not in wanted:
                continue
            if progress is not None:
                progress(name)
            check_cancelled()
            started = time.perf_counter()
            kind = kinds[name]
            if kind is ModalityKind.TABULAR:
                encoder = target.encoder.tabular[name]
                out.tabular.append(
                    attribute_tabular(
                        head,
                        index,
                        name,
                        encoder,
                        record.structured,
                        task_ids,
                        task_names,
                        settings,
                        target.tabular_references.get(name),
                    )
                )
            elif kind is ModalityKind.IMAGE:
                embedder = target.encoder.image
                pixels = embedder.decode(record.images[name])
                image_result, image_case = attribute_image(
                    head,
                    index,
                    name,
                    embedder,
                    pixels,
                    task_ids,
                    task_names,
                    settings,
                    target.reference_images.get(name),
                )
                out.images.append(image_result)
                out.cases[name] = image_case
            else:
                embedder = target.encoder.text
                note, cut = attributed_part(record.texts[name], settings.max_note_chars, name)
                if cut is not None:
                    out.notes.append(cut)
                text_result, text_case = attribute_text(
                    head, index, name, embedder, note, task_ids, task_names, settings, f"{name} of {record.patient_id}"
                )
                out.texts.append(text_result)
                out.cases[name] = text_case
            out.timings[name] = round(time.perf_counter() - started, 4)
    out.cases["_head"] = head
    return out
