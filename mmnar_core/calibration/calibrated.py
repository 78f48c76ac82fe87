"""The calibrated model: the network, its temperatures and the site correction, in torch. The one place the
network's logits become the risks a clinician sees.

    risk = sigmoid(slope_t * (logit_t / T_t) + shift_t[pattern])

`slope_t` and `shift_t[pattern]` are the pattern rectifier's own affine map (`PatternRectifier.affine`); with
no correction (or no rectifier for a task) they are 1 and 0. Everything that shows or explains a risk goes through here: the predictor
(what is displayed), the evaluation report (what is measured), the model server (through the predictor)
and every attribution (what is explained), so the attributed risk is the displayed risk, for extreme
patients too. The arithmetic runs in float64 on the network's float32 logits, with no clipping: the
first edition clipped calibrated probabilities at 1e-6 in numpy but not in torch, so for an extreme
patient the attributed risk was not the one on screen.

The intervals stay the rectifier's (`PatternRectifier.interval_from_logits`): their centre is the corrected
logit computed here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from mmnar_core.calibration.rectifier import PatternRectifier
from mmnar_core.calibration.temperature import TemperatureScaler
from mmnar_core.patterns import n_patterns


@dataclass(frozen=True)
class RiskStages:
    """Every stage of one batch, (B, T) float64 arrays: the network's own probability, after temperature
    scaling, and after the site correction (the displayed risk), with the logits behind the last two."""

    raw: np.ndarray
    calibrated_logit: np.ndarray
    calibrated: np.ndarray
    corrected_logit: np.ndarray
    risk: np.ndarray


def patterns_of(availability: torch.Tensor) -> torch.Tensor:
    """(B, M) availability -> (B,) pattern ids, bit m set when modality m is present (as `encode_pattern`)."""
    weights = torch.pow(2, torch.arange(availability.shape[-1], device=availability.device))
    return (availability.long() * weights).sum(dim=-1)


class CalibratedModel(nn.Module):
    """network + temperatures + pattern correction. `forward(inputs, availability)` returns (B, T) risks;
    `risks(logits, patterns)` applies the same map to logits the caller already has (an evaluation run,
    an attribution pass). `network` may be None for a map over stored logits only."""

    temperature: torch.Tensor  # (T,) float64
    slope: torch.Tensor  # (T,) float64
    shift: torch.Tensor  # (P, T) float64: intercept + the pattern's offset

    def __init__(
        self,
        network: nn.Module | None,
        tasks: Sequence[str],
        temperatures: Sequence[float],
        rectifiers: Mapping[str, PatternRectifier],
        n_modalities: int,
    ) -> None:
        super().__init__()
        self.network = network
        self.tasks = list(tasks)
        self.rectifiers = {task: rectifiers[task] for task in self.tasks if task in rectifiers}
        if len(temperatures) != len(self.tasks):
            raise ValueError(f"{len(temperatures)} temperatures for {len(self.tasks)} tasks ({', '.join(self.tasks)})")
        patterns = n_patterns(n_modalities)
        slope = np.ones(len(self.tasks))
        shift = np.zeros((patterns, len(self.tasks)))
        for t, task in enumerate(self.tasks):
            if task not in self.rectifiers:
                continue  # no site correction for this task: slope 1, shift 0
            for pattern in range(patterns):
                slope[t], shift[pattern, t] = self.rectifiers[task].affine(pattern)
        self.register_buffer("temperature", torch.tensor(np.asarray(temperatures, dtype=np.float64)))
        self.register_buffer("slope", torch.from_numpy(slope))
        self.register_buffer("shift", torch.from_numpy(shift))

    @classmethod
    def from_parts(
        cls,
        network: nn.Module | None,
        tasks: Sequence[str],
        temperature: TemperatureScaler,
        rectifiers: Mapping[str, PatternRectifier],
        n_modalities: int,
    ) -> CalibratedModel:
        if temperature.temperatures is None:
            raise ValueError("the temperature scaler is not fitted")
        return cls(network, tasks, list(np.asarray(temperature.temperatures, dtype=float)), rectifiers, n_modalities)

    # ------------------------------------------------------------------ logits -> risks (torch)
    def corrected_logits(self, logits: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
        """(B, T) network logits and (B,) pattern ids -> (B, T) float64 corrected calibrated logits."""
        scaled = logits.double() / self.temperature
        return self.slope * scaled + self.shift[patterns.long()]

    def risks(self, logits: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
        """(B, T) displayed risks of (B, T) network logits."""
        return torch.sigmoid(self.corrected_logits(logits, patterns))

    def forward(self, inputs: list[torch.Tensor], availability: torch.Tensor) -> torch.Tensor:
        """(B, T) risks of a batch of modality embeddings (absent ones are masked by `availability`)."""
        if self.network is None:
            raise ValueError("this calibrated model holds no network: use risks(logits, patterns)")
        return self.risks(self.network(inputs, availability), patterns_of(availability))

    # ------------------------------------------------------------------ numpy convenience
    @torch.no_grad()
    def stages(self, logits: np.ndarray, patterns: np.ndarray) -> RiskStages:
        """Every stage of (B, T) stored network logits (an evaluation run, a prediction), as numpy."""
        # copies: the arrays may be read-only views (a loaded bundle's metrics), which torch warns about
        z = torch.tensor(np.asarray(logits), device=self.temperature.device)
        ids = torch.tensor(np.asarray(patterns, dtype=np.int64), device=self.temperature.device)
        scaled = z.double() / self.temperature
        corrected = self.slope * scaled + self.shift[ids]
        return RiskStages(
            raw=torch.sigmoid(z.double()).cpu().numpy(),
            calibrated_logit=scaled.cpu().numpy(),
            calibrated=torch.sigmoid(scaled).cpu().numpy(),
            corrected_logit=corrected.cpu().numpy(),
            risk=torch.sigmoid(corrected).cpu().numpy(),
        )

    def interval(
        self, stages: RiskStages, patterns: np.ndarray, model_sd: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) low and high ends of the 95 % interval around the displayed risk: the correction's
        uncertainty and, when given, the (B, T) spread of the fusion members' calibrated logits."""
        lows, highs = [], []
        for t, task in enumerate(self.tasks):
            if task not in self.rectifiers:
                raise ValueError(f"no rectifier for task {task!r}: its interval is not known")
            sd = None if model_sd is None else np.asarray(model_sd)[:, t]
            low, high = self.rectifiers[task].interval_from_logits(
                patterns, stages.calibrated_logit[:, t], stages.corrected_logit[:, t], model_sd=sd
            )
            lows.append(low)
            highs.append(high)
        return np.stack(lows, axis=1), np.stack(highs, axis=1)
