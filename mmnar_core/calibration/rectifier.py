"""The pattern rectifier (v2): corrects each missingness pattern's bias on the logit scale, only where it helps.

Why: a site that orders X-rays and writes notes differently changes what "has an X-ray" says about a
patient, so the model's risk can be biased for some availability patterns. Fit on held-out labelled rows
(validation, cross-fitted train, or a new site; never test), for one task, with z the calibrated logit
and g the pattern:

    logit P(y = 1) = a + b z + d_g,        d_g ~ N(x_g' beta, tau^2)

- a, b: a global intercept + slope recalibration (Platt), fit on every row.
- d_g: the pattern's offset. Its unshrunk estimate (maximum likelihood on top of a + b z, with a weak
  normal prior so a pattern without events stays finite) has sampling variance v_g (inverse Fisher
  information): residuals and variances live on the logit scale, where the correction is applied.
- The parent of a pattern is additive per-modality offsets x_g' beta (x_g: which modalities pattern g
  holds; an intercept makes the global level their parent), because a change of ordering policy moves
  patterns by what they contain. beta and tau^2 come from a weighted meta-regression of the d_g; tau^2 by
  REML (default) or the generalised DerSimonian-Laird method of moments with the right degrees of freedom
  (G - p). Shrunk offset: x_g' beta + B_g (d_g - x_g' beta), B_g = tau^2 / (tau^2 + v_g).

The gate: four levels, none < global (a + b z) < modality (+ x_g' beta) < pattern (+ the shrunk
deviation). Each is scored by K-fold cross-validated log loss on the fit rows; the simplest level that
the best one does not beat by `gate_se` paired standard errors is used, and nothing at all below
`min_rows` rows or `min_events` events of either class. At the pattern level a pattern keeps its own
deviation only where that lowers the cross-validated loss of its own rows; otherwise it gets its parent.

Uncertainty: the interval of a patient's corrected logit adds the global fit's variance at its z, the
correction's posterior variance (B_g v_g + (1 - B_g)^2 x_g' Cov(beta) x_g), and, when given, the model's
own spread (e.g. the fusion members' standard deviation). It is the uncertainty of the estimated risk for
patients with this record; it cannot include what no recorded input shows (docs/calibration.md). The
pattern-mean estimate is prediction-powered inference: mean prediction of the unlabelled rows plus the
unshrunk mean residual of the labelled rows of that pattern, with both sampling variances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import t as student_t

from mmnar_core.numeric import logit as _logit
from mmnar_core.numeric import sigmoid as _sigmoid
from mmnar_core.patterns import decode_pattern, n_patterns, pattern_label

ALLOWED_FIT_SOURCES = ("val", "crossfit", "external")
LEVELS = ("none", "global", "modality", "pattern")
ESTIMATORS = ("reml", "moments")
Z_95 = 1.959964
FORMAT = "pattern-rectifier/2"


class RectifierError(ValueError):
    """The rectifier was asked to do something that would bias it (e.g. fit on test labels)."""


@dataclass(frozen=True)
class RectifierConfig:
    """Every default of the rectifier in one place."""

    estimator: str = "reml"  # between-pattern variance: "reml" or "moments" (generalised DerSimonian-Laird)
    folds: int = 5  # cross-validation folds of the gate
    gate_se: float = 2.0  # a richer level must beat a simpler one by this many paired standard errors
    min_rows: int = 100  # below this many labelled rows: no correction
    min_events: int = 10  # ... or this many events (or non-events)
    events_per_parameter: float = 10.0  # a level is a candidate only with this many minority-class rows per parameter
    prior_sd: float = 2.0  # weak normal prior (logit units) on each pattern's unshrunk offset
    ridge: float = 1.0  # pull of the global fit toward (intercept 0, slope 1), in pseudo-observations
    seed: int = 0  # fold assignment
    level: str | None = None  # None: the gate chooses; or force one level (for comparisons, e.g. shift-study)

    def __post_init__(self) -> None:
        if self.level is not None and self.level not in LEVELS:
            raise RectifierError(f"level {self.level!r} is not known (accepted: {', '.join(LEVELS)} or None)")
        if self.estimator not in ESTIMATORS:
            raise RectifierError(f"estimator {self.estimator!r} is not known (accepted: {', '.join(ESTIMATORS)})")
        if self.folds < 2:
            raise RectifierError(f"folds must be at least 2, got {self.folds}")
        if (
            self.min_rows < 2 * self.folds
            or self.min_events < 1
            or self.prior_sd <= 0
            or self.ridge < 0
            or self.events_per_parameter < 0
        ):
            raise RectifierError(
                "min_rows must be at least 2 x folds, min_events at least 1, prior_sd > 0, ridge >= 0, "
                "events_per_parameter >= 0"
            )


# ------------------------------------------------------------------------------------------ the pieces


def log_loss_rows(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row binary log loss of logits (numerically stable)."""
    return np.logaddexp(0.0, logits) - labels * logits


def fit_global(
    z: np.ndarray, y: np.ndarray, ridge: float, offset: np.ndarray | float = 0.0
) -> tuple[float, float, np.ndarray]:
    """(a, b, Cov) of logit P(y) = a + b z + offset by Newton's method, ridge toward (0, 1)."""
    design = np.column_stack([np.ones_like(z), z])
    z_offset = np.broadcast_to(np.asarray(offset, dtype=float), z.shape)
    prior = np.array([0.0, 1.0])
    theta = prior.copy()
    for _ in range(50):
        p = _sigmoid(design @ theta + z_offset)
        gradient = design.T @ (y - p) - ridge * (theta - prior)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta = theta + step
        if np.abs(step).max() < 1e-9:
            break
    p = _sigmoid(design @ theta + z_offset)
    hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
    return float(theta[0]), float(theta[1]), np.linalg.inv(hessian)


def pattern_offsets(
    eta: np.ndarray, y: np.ndarray, groups: np.ndarray, n_groups: int, prior_sd: float
) -> tuple[np.ndarray, np.ndarray]:
    """Each group's offset d on top of eta (maximum a posteriori under N(0, prior_sd^2)) and its variance
    (inverse of the Fisher information plus the prior's precision); variance inf for empty groups."""
    d = np.zeros(n_groups)
    precision = 1.0 / prior_sd**2
    for _ in range(60):
        p = _sigmoid(eta + d[groups])
        gradient = np.bincount(groups, weights=y - p, minlength=n_groups) - precision * d
        hessian = np.bincount(groups, weights=p * (1 - p), minlength=n_groups) + precision
        step = gradient / hessian
        d = d + step
        if np.abs(step).max() < 1e-10:
            break
    p = _sigmoid(eta + d[groups])
    information = np.bincount(groups, weights=p * (1 - p), minlength=n_groups) + precision
    counts = np.bincount(groups, minlength=n_groups)
    return d, np.where(counts > 0, 1.0 / information, np.inf)


def _independent_columns(x: np.ndarray) -> list[int]:
    """Indices of a maximal set of linearly independent columns, in order (intercept first)."""
    kept: list[int] = []
    for j in range(x.shape[1]):
        if np.linalg.matrix_rank(x[:, kept + [j]]) == len(kept) + 1:
            kept.append(j)
    return kept


@dataclass
class MetaRegression:
    beta: np.ndarray  # on the kept columns
    cov: np.ndarray
    tau2: float
    columns: list[int]  # which columns of the full design were kept


def _weighted_fit(d: np.ndarray, x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    information = (x * weights[:, None]).T @ x
    cov = np.linalg.inv(information)
    return cov @ (x * weights[:, None]).T @ d, cov


def between_variance_moments(d: np.ndarray, v: np.ndarray, x: np.ndarray) -> float:
    """Generalised DerSimonian-Laird tau^2 for a meta-regression: (Q - (G - p)) / (tr W - tr((X'WX)^-1 X'W^2X)),
    floored at 0. With p = 1 it is the classic DerSimonian-Laird estimator."""
    g, p = x.shape
    if g <= p:
        return 0.0
    w = 1.0 / v
    beta, cov = _weighted_fit(d, x, w)
    q = float((w * (d - x @ beta) ** 2).sum())
    denominator = w.sum() - np.trace(cov @ (x * (w**2)[:, None]).T @ x)
    return max(0.0, (q - (g - p)) / denominator) if denominator > 0 else 0.0


def between_variance_reml(d: np.ndarray, v: np.ndarray, x: np.ndarray, upper: float = 25.0) -> float:
    """Restricted maximum likelihood tau^2 (bounded search on tau in [0, sqrt(upper)], endpoint 0 compared)."""
    g, p = x.shape
    if g <= p:
        return 0.0

    def negative_restricted_loglik(tau: float) -> float:
        w = 1.0 / (v + tau**2)
        beta, cov = _weighted_fit(d, x, w)
        residual = d - x @ beta
        _, logdet_cov = np.linalg.slogdet(cov)
        return 0.5 * (np.log(v + tau**2).sum() - logdet_cov + (w * residual**2).sum())

    found = minimize_scalar(
        negative_restricted_loglik, bounds=(0.0, np.sqrt(upper)), method="bounded", options={"xatol": 1e-5}
    )
    tau = float(found.x) if negative_restricted_loglik(float(found.x)) < negative_restricted_loglik(0.0) else 0.0
    return tau**2


def meta_regression(d: np.ndarray, v: np.ndarray, x: np.ndarray, estimator: str) -> MetaRegression:
    """Weighted regression of the groups' offsets on their design, with between-group variance tau^2."""
    columns = _independent_columns(x)
    design = x[:, columns]
    estimate = between_variance_reml if estimator == "reml" else between_variance_moments
    tau2 = estimate(d, v, design)
    beta, cov = _weighted_fit(d, design, 1.0 / (v + tau2))
    return MetaRegression(beta, cov, tau2, columns)


# ------------------------------------------------------------------------------------------ one fit


@dataclass
class LevelFit:
    """Everything one fit of the four levels needs to predict (used for the cross-validation and the final fit)."""

    intercept: float  # the global level's a + b z
    slope: float
    global_cov: np.ndarray
    joint: tuple[float, float, np.ndarray]  # (a, b, Cov) refit beside the pattern offsets (modality, pattern levels)
    parent: np.ndarray  # (n_patterns,) x_g' beta
    parent_var: np.ndarray  # x_g' Cov(beta) x_g
    raw: np.ndarray  # unshrunk offsets d_g (0 where unobserved)
    raw_var: np.ndarray  # v_g (inf where unobserved)
    shrunk: np.ndarray  # parent + B (raw - parent)
    shrunk_var: np.ndarray
    tau2: float
    parameters: dict  # level -> number of fitted parameters (for the events-per-parameter rule)

    def logits(self, level: str, z: np.ndarray, patterns: np.ndarray) -> np.ndarray:
        if level == "none":
            return z
        if level == "global":
            return self.intercept + self.slope * z
        eta = self.joint[0] + self.joint[1] * z
        if level == "modality":
            return eta + self.parent[patterns]
        return eta + self.shrunk[patterns]


def _fit_levels(
    z: np.ndarray, y: np.ndarray, patterns: np.ndarray, design: np.ndarray, config: RectifierConfig
) -> LevelFit:
    a, b, global_cov = fit_global(z, y, config.ridge)
    n_all = design.shape[0]
    joint = (a, b, global_cov)
    raw, raw_var = pattern_offsets(a + b * z, y, patterns, n_all, config.prior_sd)
    for _ in range(3):  # intercept and slope beside the offsets (a slope fit without them absorbs their spread)
        joint = fit_global(z, y, config.ridge, offset=raw[patterns])
        raw, raw_var = pattern_offsets(joint[0] + joint[1] * z, y, patterns, n_all, config.prior_sd)
    observed = np.isfinite(raw_var)
    meta = meta_regression(raw[observed], raw_var[observed], design[observed], config.estimator)
    x = design[:, meta.columns]
    parent = x @ meta.beta
    parent_var = np.einsum("gi,ij,gj->g", x, meta.cov, x)
    weight = np.where(observed, meta.tau2 / (meta.tau2 + np.where(observed, raw_var, 1.0)), 0.0)
    shrunk = parent + weight * (np.where(observed, raw, 0.0) - parent)
    shrunk_var = np.where(
        observed, weight * np.where(observed, raw_var, 0.0) + (1 - weight) ** 2 * parent_var, parent_var + meta.tau2
    )
    parameters = {"none": 0, "global": 2, "modality": 1 + len(meta.columns), "pattern": 2 + int(observed.sum())}
    return LevelFit(
        a,
        b,
        global_cov,
        joint,
        parent,
        parent_var,
        np.where(observed, raw, 0.0),
        raw_var,
        shrunk,
        shrunk_var,
        meta.tau2,
        parameters,
    )


def _folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per row, stratified by label."""
    fold = np.empty(len(y), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for value in (0.0, 1.0):
        rows = rng.permutation(np.flatnonzero(y == value))
        fold[rows] = np.arange(len(rows)) % k
    return fold


# ------------------------------------------------------------------------------------------ the rectifier


class PatternRectifier:
    """Per-pattern logit correction for one task, scikit-learn style: `fit` returns self, the fitted state
    lives in trailing-underscore attributes and round-trips through to_dict / from_dict (the bundle)."""

    def __init__(self, n_modalities: int, config: RectifierConfig | None = None):
        self.n_modalities = n_modalities
        self.config = config or RectifierConfig()

    # ---------------------------------------------------------------- fitting
    def _design(self) -> np.ndarray:
        """(n_patterns, 1 + M): intercept + which modalities each pattern holds."""
        bits = np.asarray(decode_pattern(np.arange(n_patterns(self.n_modalities)), self.n_modalities), dtype=float)
        return np.column_stack([np.ones(len(bits)), bits])

    def _checked(self, patterns, probs, labels, source) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if source == "test":
            raise RectifierError(
                "the rectifier must never be fit on the test split (it would leak test labels); "
                f"use one of {', '.join(ALLOWED_FIT_SOURCES)}"
            )
        if source not in ALLOWED_FIT_SOURCES:
            raise RectifierError(f"fit source {source!r} is not accepted (accepted: {', '.join(ALLOWED_FIT_SOURCES)})")
        patterns, probs, labels = (np.asarray(a) for a in (patterns, probs, labels))
        if not len(patterns) == len(probs) == len(labels):
            raise RectifierError(
                f"patterns, probs and labels must have the same length "
                f"(got {len(patterns)}, {len(probs)}, {len(labels)})"
            )
        known = ~np.isnan(labels.astype(float))
        patterns, probs, labels = (
            patterns[known].astype(np.int64),
            probs[known].astype(float),
            labels[known].astype(float),
        )
        if len(labels) < 2:
            raise RectifierError(f"the rectifier needs labelled rows; got {len(labels)}")
        if not np.isin(labels, (0.0, 1.0)).all():
            raise RectifierError("labels must be 0, 1 or NaN (unlabelled)")
        if not np.all((probs > 0) & (probs < 1)):
            raise RectifierError("probabilities must lie strictly between 0 and 1")
        n_all = n_patterns(self.n_modalities)
        if patterns.min() < 0 or patterns.max() >= n_all:
            raise RectifierError(f"pattern ids must be in 0..{n_all - 1}")
        return patterns, probs, labels

    def fit(self, patterns, probs, labels, source: str) -> PatternRectifier:
        """Fit on held-out labelled rows (calibrated probabilities). `source` says where they come from and
        may not be 'test'. Unlabelled rows (NaN) are ignored."""
        patterns, probs, labels = self._checked(patterns, probs, labels, source)
        config, n_all = self.config, n_patterns(self.n_modalities)
        z = _logit(probs)
        design = self._design()
        events = int(labels.sum())
        self.n_ = np.bincount(patterns, minlength=n_all).astype(int)
        self.events_ = np.bincount(patterns, weights=labels, minlength=n_all).astype(int)
        residual = labels - probs
        self.residual_mean_ = np.bincount(patterns, weights=residual, minlength=n_all) / np.maximum(self.n_, 1)
        squares = np.bincount(patterns, weights=(residual - self.residual_mean_[patterns]) ** 2, minlength=n_all)
        # the sample variance of y - p, floored at the Bernoulli variance mean p(1 - p) the rows would have if
        # calibrated (a pattern with 5 rows and no event would otherwise claim a variance near 0)
        bernoulli = np.bincount(patterns, weights=probs * (1 - probs), minlength=n_all) / np.maximum(self.n_, 1)
        self.residual_var_ = np.maximum(squares / np.maximum(self.n_ - 1, 1), bernoulli)
        self.source_, self.n_fit_ = source, int(len(labels))

        fit = _fit_levels(z, labels, patterns, design, config)
        self.raw_offset_, self.raw_offset_var_ = fit.raw, np.where(np.isfinite(fit.raw_var), fit.raw_var, -1.0)
        self.tau2_ = fit.tau2
        self.cv_loss_: dict[str, float | None] = {level: None for level in LEVELS}
        if config.level is not None:
            if config.level != "none" and min(events, len(labels) - events) < 1:
                raise RectifierError(
                    f"a forced {config.level!r} correction needs events and non-events; got {events} "
                    f"events in {len(labels)} rows"
                )
            self.level_, self.kept_ = config.level, (self.n_ > 0) & (config.level == "pattern")
            self.reason_ = f"level {config.level} forced by the configuration (no gate)"
        elif len(labels) < config.min_rows or min(events, len(labels) - events) < config.min_events:
            self.level_ = "none"
            self.kept_ = np.zeros(n_all, bool)
            self.reason_ = (
                f"{len(labels)} labelled rows with {events} events: below the minimum "
                f"({config.min_rows} rows, {config.min_events} events of each class); no correction"
            )
        else:
            self._gate(z, labels, patterns, design, fit)
        self._set_correction(fit)
        return self

    def _gate(self, z, y, patterns, design, full: LevelFit) -> None:
        """Cross-validated log loss per level and row; choose the level; per-pattern keep flags."""
        config, n_all = self.config, len(design)
        fold = _folds(y, config.folds, config.seed)
        losses = {level: np.empty(len(y)) for level in LEVELS}
        for k in range(config.folds):
            out = fold == k
            fit = _fit_levels(z[~out], y[~out], patterns[~out], design, config)
            for level in LEVELS:
                losses[level][out] = log_loss_rows(fit.logits(level, z[out], patterns[out]), y[out])
        cv_loss = {level: float(losses[level].mean()) for level in LEVELS}
        self.cv_loss_ = dict(cv_loss)
        minority = min(y.sum(), len(y) - y.sum())
        allowed = [level for level in LEVELS if full.parameters[level] * config.events_per_parameter <= minority]
        best = min(allowed, key=lambda level: cv_loss[level])
        chosen = best
        for level in allowed[: allowed.index(best)]:  # the simplest level the best does not clearly beat
            gain = losses[level] - losses[best]
            if gain.mean() <= config.gate_se * gain.std(ddof=1) / np.sqrt(len(gain)):
                chosen = level
                break
        self.level_ = chosen
        difference = np.bincount(patterns, weights=losses["pattern"] - losses["modality"], minlength=n_all)
        self.kept_ = (self.n_ > 0) & (difference < 0) if chosen == "pattern" else np.zeros(n_all, bool)
        self.reason_ = (
            "cross-validated log loss (x1000): "
            + ", ".join(f"{level} {1000 * cv_loss[level]:.2f}" for level in LEVELS)
            + f"; levels with at least {config.events_per_parameter:g} minority-class rows per parameter: "
            f"{', '.join(allowed)}; best {best}, used {chosen} (the simplest level within "
            f"{config.gate_se:g} paired SE of the best)"
        )

    def _set_correction(self, fit: LevelFit) -> None:
        n_all = len(fit.parent)
        level = self.level_
        if level == "none":
            self.intercept_, self.slope_, self.global_cov_ = 0.0, 1.0, np.zeros((2, 2))
        elif level == "global":
            self.intercept_, self.slope_, self.global_cov_ = fit.intercept, fit.slope, fit.global_cov
        else:
            self.intercept_, self.slope_, self.global_cov_ = fit.joint
        if level in ("none", "global"):
            self.offset_, self.offset_var_ = np.zeros(n_all), np.zeros(n_all)
        elif level == "modality":
            self.offset_, self.offset_var_ = fit.parent.copy(), fit.parent_var.copy()
        else:
            self.offset_ = np.where(self.kept_, fit.shrunk, fit.parent)
            self.offset_var_ = np.where(
                self.kept_, fit.shrunk_var, fit.parent_var + np.where(self.n_ > 0, 0.0, fit.tau2)
            )

    # ---------------------------------------------------------------- using it
    @property
    def fitted(self) -> bool:
        return hasattr(self, "level_")

    def _check(self, patterns) -> np.ndarray:
        if not self.fitted:
            raise RectifierError("the rectifier is not fitted")
        patterns = np.asarray(patterns, dtype=np.int64)
        if patterns.size and (patterns.min() < 0 or patterns.max() >= len(self.offset_)):
            raise RectifierError(f"pattern ids must be in 0..{len(self.offset_) - 1}")
        return patterns

    def affine(self, pattern: int) -> tuple[float, float]:
        """(slope, shift): the corrected logit of a patient of this pattern is slope * z + shift, z the
        calibrated logit. The one formula numpy (transform) and torch (explanations) both apply."""
        pattern = int(self._check(np.array([pattern]))[0])
        return float(self.slope_), float(self.intercept_ + self.offset_[pattern])

    def corrected_logits(self, patterns, probs) -> np.ndarray:
        patterns = self._check(patterns)
        return self.slope_ * _logit(np.asarray(probs, dtype=float)) + self.intercept_ + self.offset_[patterns]

    def transform(self, patterns, probs) -> np.ndarray:
        """Rectified risks of calibrated probabilities."""
        return _sigmoid(self.corrected_logits(patterns, probs))

    def logit_variance(self, patterns, probs, model_sd=None) -> np.ndarray:
        """Variance of each corrected logit: the global fit's at z, the pattern correction's, and the model's
        own spread (`model_sd`, logit units) when given."""
        return self.logit_variance_at(patterns, _logit(np.asarray(probs, dtype=float)), model_sd)

    def logit_variance_at(self, patterns, z, model_sd=None) -> np.ndarray:
        """`logit_variance` at calibrated logits z."""
        patterns = self._check(patterns)
        z = np.asarray(z, dtype=float)
        c = self.global_cov_
        variance = c[0, 0] + 2 * c[0, 1] * z + c[1, 1] * z**2 + self.offset_var_[patterns]
        if model_sd is not None:
            variance = variance + np.asarray(model_sd, dtype=float) ** 2
        return np.maximum(variance, 0.0)

    def interval(self, patterns, probs, model_sd=None) -> tuple[np.ndarray, np.ndarray]:
        """95 % interval of the estimated risk (correction uncertainty, plus the model's spread if given)."""
        z = _logit(np.asarray(probs, dtype=float))
        return self.interval_from_logits(patterns, z, self.corrected_logits(patterns, probs), model_sd)

    def interval_from_logits(self, patterns, z, centre, model_sd=None) -> tuple[np.ndarray, np.ndarray]:
        """The interval around a corrected logit `centre` (computed by the calibrated model) of calibrated
        logits z."""
        half = Z_95 * np.sqrt(self.logit_variance_at(patterns, z, model_sd))
        centre = np.asarray(centre, dtype=float)
        return _sigmoid(centre - half), _sigmoid(centre + half)

    def pattern_mean_risk(self, patterns, probs) -> dict[int, dict]:
        """Prediction-powered inference of each pattern's mean risk in a (possibly unlabelled) population:
        mean calibrated prediction + the labelled rows' unshrunk mean residual of that pattern, 95 % interval
        from both sampling variances and a Student t quantile on the labelled rows' degrees of freedom. Patterns
        with fewer than 2 labelled rows get no estimate (None)."""
        patterns = self._check(patterns)
        probs = np.asarray(probs, dtype=float)
        result = {}
        for g in np.unique(patterns):
            p = probs[patterns == g]
            n_labelled = int(self.n_[g])
            row = {
                "n": int(len(p)),
                "n_labelled": n_labelled,
                "mean_model": float(p.mean()),
                "estimate": None,
                "low": None,
                "high": None,
            }
            if n_labelled >= 2 and self.residual_mean_ is not None:
                estimate = p.mean() + self.residual_mean_[g]
                variance = (p.var(ddof=1) / len(p) if len(p) > 1 else 0.0) + self.residual_var_[g] / n_labelled
                quantile = float(student_t.ppf(0.975, n_labelled - 1))
                row.update(
                    estimate=float(estimate),
                    low=float(estimate - quantile * np.sqrt(variance)),
                    high=float(estimate + quantile * np.sqrt(variance)),
                )
            result[int(g)] = row
        return result

    def report(self, modality_names: list[str]) -> list[dict]:
        """Per pattern: support, the unshrunk and the used correction (logit) with its 95 % interval, whether
        the gate kept the pattern's own correction."""
        if not self.fitted:
            raise RectifierError("the rectifier is not fitted")
        rows = []
        for g in range(len(self.offset_)):
            se = float(np.sqrt(self.offset_var_[g]))
            raw_se = float(np.sqrt(self.raw_offset_var_[g])) if self.raw_offset_var_[g] >= 0 else None
            rows.append(
                {
                    "pattern": g,
                    "modalities": pattern_label(g, modality_names),
                    "n": int(self.n_[g]),
                    "events": int(self.events_[g]),
                    "raw_offset": float(self.raw_offset_[g]) if self.n_[g] else None,
                    "raw_offset_se": raw_se if self.n_[g] else None,
                    "offset": float(self.offset_[g]),
                    "low": float(self.offset_[g] - Z_95 * se),
                    "high": float(self.offset_[g] + Z_95 * se),
                    "kept": bool(self.kept_[g]),
                    "level": self.level_,
                }
            )
        return rows

    def summary(self) -> dict:
        """What was chosen and why (the gate's cross-validated losses), for reports and the model card."""
        return {
            "level": self.level_,
            "reason": self.reason_,
            "intercept": self.intercept_,
            "slope": self.slope_,
            "tau2": self.tau2_,
            "cv_log_loss": self.cv_loss_,
            "n_fit": self.n_fit_,
            "source": self.source_,
            "estimator": self.config.estimator,
            "patterns_kept": int(self.kept_.sum()),
        }

    # ---------------------------------------------------------------- state
    _ARRAYS = (
        "offset_",
        "offset_var_",
        "raw_offset_",
        "raw_offset_var_",
        "n_",
        "events_",
        "kept_",
        "residual_mean_",
        "residual_var_",
    )

    def to_dict(self) -> dict:
        if not self.fitted:
            raise RectifierError("the rectifier is not fitted")
        state = {
            "format": FORMAT,
            "n_modalities": self.n_modalities,
            "config": asdict(self.config),
            "level": self.level_,
            "reason": self.reason_,
            "source": self.source_,
            "n_fit": self.n_fit_,
            "intercept": self.intercept_,
            "slope": self.slope_,
            "global_cov": self.global_cov_.tolist(),
            "tau2": self.tau2_,
            "cv_loss": self.cv_loss_,
        }
        for key in self._ARRAYS:
            value = getattr(self, key)
            state[key.rstrip("_")] = None if value is None else value.tolist()
        return state

    @classmethod
    def from_dict(cls, data: dict) -> PatternRectifier:
        if data.get("format") is None:
            return cls._from_first_edition(data)
        if data["format"] != FORMAT:
            raise RectifierError(f"rectifier format {data['format']!r} is not supported (expected {FORMAT})")
        rectifier = cls(int(data["n_modalities"]), RectifierConfig(**data["config"]))
        n_all = n_patterns(rectifier.n_modalities)
        for key in cls._ARRAYS:
            value = data[key.rstrip("_")]
            array = None if value is None else np.asarray(value, dtype=bool if key == "kept_" else float)
            if array is not None and array.shape != (n_all,):
                raise RectifierError(f"rectifier state {key.rstrip('_')!r} does not match its number of modalities")
            if array is not None and not np.all(np.isfinite(array)):
                raise RectifierError(f"rectifier state {key.rstrip('_')!r} holds a value that is not a finite number")
            setattr(rectifier, key, array)
        rectifier.n_, rectifier.events_ = rectifier.n_.astype(int), rectifier.events_.astype(int)
        if data["level"] not in LEVELS:
            raise RectifierError(f"rectifier level {data['level']!r} is not one of {', '.join(LEVELS)}")
        rectifier.level_, rectifier.reason_ = data["level"], data["reason"]
        rectifier.source_, rectifier.n_fit_ = data["source"], int(data["n_fit"])
        rectifier.intercept_, rectifier.slope_ = float(data["intercept"]), float(data["slope"])
        rectifier.global_cov_ = np.asarray(data["global_cov"], dtype=float).reshape(2, 2)
        rectifier.tau2_, rectifier.cv_loss_ = float(data["tau2"]), dict(data["cv_loss"])
        numbers = [rectifier.intercept_, rectifier.slope_, rectifier.tau2_, *rectifier.global_cov_.ravel()]
        if not np.all(np.isfinite(numbers)):
            raise RectifierError("rectifier state: intercept, slope, tau2 and global_cov must be finite numbers")
        return rectifier

    @classmethod
    def _from_first_edition(cls, data: dict) -> PatternRectifier:
        """A bundle written before v2: its per-pattern offsets are used as they were (no slope, no gate)."""
        rectifier = cls(int(data["n_modalities"]))
        n_all = n_patterns(rectifier.n_modalities)
        offset = np.asarray(data["offset"], dtype=float)
        if offset.shape != (n_all,):
            raise RectifierError("rectifier state does not match its number of modalities")
        if not np.all(np.isfinite(offset)):
            raise RectifierError("rectifier state 'offset' holds a value that is not a finite number")
        se = (np.asarray(data["offset_high"], dtype=float) - np.asarray(data["offset_low"], dtype=float)) / (2 * Z_95)
        rectifier.offset_, rectifier.offset_var_ = offset, se**2
        rectifier.raw_offset_, rectifier.raw_offset_var_ = offset.copy(), np.full(n_all, -1.0)
        rectifier.n_ = np.asarray(data["n"], dtype=int)
        rectifier.events_ = np.zeros(n_all, int)
        rectifier.kept_ = rectifier.n_ > 0
        rectifier.residual_mean_ = rectifier.residual_var_ = None  # no unshrunk residuals were saved
        rectifier.level_, rectifier.reason_ = "pattern", "first-edition rectifier (no gate): offsets used as saved"
        rectifier.source_, rectifier.n_fit_ = data["source"], int(data["n_fit"])
        rectifier.intercept_, rectifier.slope_, rectifier.global_cov_ = 0.0, 1.0, np.zeros((2, 2))
        rectifier.tau2_, rectifier.cv_loss_ = 0.0, {level: None for level in LEVELS}
        return rectifier
