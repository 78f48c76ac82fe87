"""The two novelty scores of the distribution check and the calibration that turns a score into a flag.

- `ShrunkMahalanobis`: distance of a vector from the training rows' mean under their covariance, shrunk
  toward a scaled identity (Ledoit-Wolf), so a column that never varies in training still gets a finite
  but large weight. Used on the standardised structured features and on the X-ray's image statistics.
- `CosineNeighbours`: mean cosine distance to the k nearest training embeddings. Used on the X-ray and note
  embeddings, whose clusters are not one ellipse.
- `ScoreScale`: where the training patients' own (held-out) scores lie. The threshold is its `level`
  quantile, so about 1 - level of patients like the training ones are flagged; `percentile` says how
  far out a patient is ("farther than 99.7 % of the training patients").

Every fitted state is plain numbers: the small parts go to JSON, the arrays to safetensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

GRID = np.linspace(0.0, 1.0, 1001)  # the training scores are stored as these quantiles (every 0.1 %)


@dataclass
class ScoreScale:
    """The distribution of held-out training scores, kept as quantiles, and the flag threshold."""

    level: float
    threshold: float
    quantiles: np.ndarray  # scores at GRID
    n: int  # how many held-out scores it was estimated from

    @classmethod
    def fit(cls, scores: np.ndarray, level: float) -> ScoreScale:
        scores = np.asarray(scores, dtype=np.float64)
        scores = scores[np.isfinite(scores)]
        if len(scores) == 0:
            raise ValueError("no finite held-out scores to set a threshold from")
        quantiles = np.array([float(f"{v:.7g}") for v in np.quantile(scores, GRID)])  # as to_dict stores them
        return cls(level, float(np.quantile(scores, level)), quantiles, len(scores))

    def percentile(self, score: float) -> float:
        """Percentage of held-out training scores below `score` (0-100)."""
        q = self.quantiles
        if score <= q[0]:
            return 0.0
        if score > q[-1]:
            return 100.0
        right = int(np.searchsorted(q, score, side="left"))
        left = int(np.searchsorted(q, score, side="right")) - 1
        # ties (a flat stretch of quantiles) take the middle of their run
        return float(100.0 * (GRID[max(left, 0)] + GRID[min(right, len(GRID) - 1)]) / 2.0)

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "threshold": self.threshold,
            "n": self.n,
            "quantiles": [float(v) for v in self.quantiles],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ScoreScale:
        quantiles = np.asarray(data["quantiles"], dtype=np.float64)
        if quantiles.shape != GRID.shape or not np.all(np.isfinite(quantiles)) or np.any(np.diff(quantiles) < 0):
            raise ValueError(f"quantiles must be {len(GRID)} finite non-decreasing numbers")
        threshold, level = float(data["threshold"]), float(data["level"])
        if not np.isfinite(threshold) or not 0.5 <= level < 1:
            raise ValueError(f"threshold {threshold!r} / level {level!r} out of range")
        return cls(level, threshold, quantiles, int(data["n"]))


class ShrunkMahalanobis:
    """fit(rows) -> score(rows): sqrt((x - mean)' P (x - mean)) with P the inverse Ledoit-Wolf covariance."""

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.precision_: np.ndarray | None = None

    def fit(self, rows: np.ndarray) -> ShrunkMahalanobis:
        from sklearn.covariance import LedoitWolf

        rows = np.asarray(rows, dtype=np.float64)
        estimate = LedoitWolf().fit(rows)
        covariance = estimate.covariance_
        # a floor on the diagonal keeps P finite when every column is constant (the shrinkage target is 0)
        floor = max(1e-6, 1e-6 * float(np.trace(covariance)) / max(covariance.shape[0], 1))
        covariance = covariance + floor * np.eye(covariance.shape[0])
        # kept at the precision they are saved with, so a loaded detector scores exactly as the fitted one
        self.mean_ = estimate.location_.astype(np.float32).astype(np.float64)
        self.precision_ = np.linalg.inv(covariance).astype(np.float32).astype(np.float64)
        return self

    def contributions(self, rows: np.ndarray) -> np.ndarray:
        """(N, D) per-column shares of the squared distance (they sum to it): which columns make a row far."""
        assert self.mean_ is not None and self.precision_ is not None, "fit first"
        centred = np.asarray(rows, dtype=np.float64) - self.mean_
        return centred * (centred @ self.precision_)

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.contributions(rows).sum(axis=1), 0.0))

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        assert self.mean_ is not None and self.precision_ is not None, "fit first"
        return {
            f"{prefix}.mean": self.mean_.astype(np.float32),
            f"{prefix}.precision": self.precision_.astype(np.float32),
        }

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray], prefix: str, dim: int) -> ShrunkMahalanobis:
        detector = cls()
        mean, precision = (
            _tensor(tensors, f"{prefix}.mean", (dim,)),
            _tensor(tensors, f"{prefix}.precision", (dim, dim)),
        )
        detector.mean_, detector.precision_ = mean.astype(np.float64), precision.astype(np.float64)
        return detector


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-8)


class CosineNeighbours:
    """fit(embeddings) -> score(rows): mean cosine distance to the k nearest stored training embeddings."""

    def __init__(self, k: int = 10) -> None:
        self.k = k
        self.reference_: np.ndarray | None = None

    def fit(self, rows: np.ndarray) -> CosineNeighbours:
        self.reference_ = _unit(rows).astype(np.float16).astype(np.float32)  # saved as float16: score as loaded
        return self

    def score(self, rows: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
        """Scores of `rows`; with leave_one_out, `rows` are the reference itself and each skips its own match."""
        assert self.reference_ is not None, "fit first"
        reference = self.reference_.astype(np.float32)
        k = min(self.k, len(reference) - (1 if leave_one_out else 0))
        out = []
        for start in range(0, len(rows), 512):
            block = _unit(rows[start : start + 512])
            distance = 1.0 - block @ reference.T
            if leave_one_out:
                distance[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
            out.append(np.sort(np.partition(distance, k - 1, axis=1)[:, :k], axis=1).mean(axis=1))
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def tensors(self, prefix: str) -> dict[str, np.ndarray]:
        assert self.reference_ is not None, "fit first"
        return {f"{prefix}.reference": self.reference_.astype(np.float16)}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray], prefix: str, dim: int, k: int) -> CosineNeighbours:
        reference = _tensor(tensors, f"{prefix}.reference", (None, dim))
        if len(reference) < 2:
            raise ValueError(f"{prefix}.reference holds {len(reference)} embeddings; at least 2 are needed")
        detector = cls(k)
        detector.reference_ = reference.astype(np.float32)
        return detector


def _tensor(tensors: Mapping[str, np.ndarray], name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    if name not in tensors:
        raise ValueError(f"tensor {name!r} is missing")
    array = np.asarray(tensors[name])
    if array.ndim != len(shape) or any(want is not None and got != want for got, want in zip(array.shape, shape)):
        raise ValueError(f"tensor {name!r} has shape {list(array.shape)}, expected {[s or 'n' for s in shape]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"tensor {name!r} holds non-finite values")
    return array


def out_of_fold_scores(rows: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Mahalanobis score of every row from a detector fit without it (`folds`-fold cross-fitting): the
    scores of training patients the detector has not seen, from which the threshold is set."""
    rows = np.asarray(rows, dtype=np.float64)
    assignment = np.random.default_rng(seed).permutation(len(rows)) % folds
    scores = np.empty(len(rows))
    for fold in range(folds):
        held = assignment == fold
        scores[held] = ShrunkMahalanobis().fit(rows[~held]).score(rows[held])
    return scores
