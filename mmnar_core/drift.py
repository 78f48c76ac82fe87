"""Missingness-policy drift: is the local mix of availability patterns still the training site's mix?

Why: the model reads *which* modalities a patient has as a clinician's decision (MMNAR). When the local
ordering policy moves away from the training site's (far fewer X-rays, a note for everyone), per-pattern
risks can be biased, and the remedy is to refit the pattern correction on local labelled cases
(`python -m mmnar_core rectify`). This module says when, from counts alone: how many analysed patients had
each availability pattern (pattern id, mmnar_core.patterns), never who they were.

The figures (docs/serving.md, "Ordering-policy drift"):
- total variation distance TV = 1/2 sum_g |local share_g - training share_g|: the share of local patients
  that would have to move to another pattern for the two mixes to match (0 = same mix, 1 = disjoint);
- its 95 % interval: a multinomial bootstrap of both the local and the training counts, percentile
  interval shifted by the bootstrap estimate of the plug-in TV's upward bias (measured coverage of the true
  TV 0.89-0.95 from 150 to 1,000 local patients; the plain percentile interval fell to 0.75);
- the TV expected with no drift for the same numbers of patients (both samples drawn from the pooled
  mix), and the p-value of the observed TV against it: small local samples do not cry wolf;
- a chi-square test of the 2 x patterns table (patterns whose expected count is under 5 pooled into one
  cell), reported beside it;
- a verdict by the rule in `DriftThresholds` (every threshold in that one place).

numpy only: the library never imports the app, and the app and the model server both call this.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import numpy as np

from mmnar_core.patterns import MAX_MODALITIES, decode_pattern

COUNTS_FORMAT = "mmnar-pattern-counts"  # the JSON file the server writes and `drift --counts` reads
COUNTS_VERSION = 1

TOO_FEW, NO_DRIFT, MILD, ADVISED = "too_few", "no_drift", "mild_drift", "rectify_advised"
VERDICT_TITLES = {
    TOO_FEW: "too few patients to judge",
    NO_DRIFT: "no drift detected",
    MILD: "mild drift",
    ADVISED: "drift: rectify advised",
}


class DriftError(ValueError):
    """Counts or settings that cannot be compared; the message says which and what is accepted."""


@dataclass(frozen=True)
class DriftThresholds:
    """Every threshold of the drift verdict, with its default and why.

    - min_patients: below it the verdict is "too few patients to judge" (the figures are still shown).
      With 4 modalities (16 patterns), 100 patients put ~6 in each of a typical 8 used patterns: fewer
      and chance alone moves the mix by 0.10 or more.
    - advise_tv: "rectify advised" needs the LOWER end of the TV interval above it: at least one patient in
      ten is confidently in another pattern than the training mix would put them. Smaller moves of the
      mix barely bias a mask-aware model (docs/results.md, policy shift).
    - alpha: the no-drift test (TV against its null resampling) must reject at this level for any drift
      verdict ("mild" or "advised"); 1 % so that a site checked every week is rarely alarmed by chance.
    - level: coverage of the TV interval.
    - resamples: bootstrap and null resamples (2,000: the p-value resolves 1/2,001 < alpha).
    - min_expected: the chi-square test pools patterns whose expected count is under this into one cell.
    - seed: resampling is seeded, so the same counts always give the same figures and verdict.
    """

    min_patients: int = 100
    advise_tv: float = 0.10
    alpha: float = 0.01
    level: float = 0.95
    resamples: int = 2000
    min_expected: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if isinstance(self.min_patients, bool) or not isinstance(self.min_patients, int) or self.min_patients < 1:
            problems.append(f"min_patients must be a whole number >= 1, got {self.min_patients!r}")
        if not 0.0 < self.advise_tv < 1.0:
            problems.append(f"advise_tv must be between 0 and 1, got {self.advise_tv!r}")
        if not 0.0 < self.alpha < 0.5:
            problems.append(f"alpha must be between 0 and 0.5, got {self.alpha!r}")
        if not 0.5 <= self.level < 1.0:
            problems.append(f"level must be in [0.5, 1), got {self.level!r}")
        if (
            isinstance(self.resamples, bool)
            or not isinstance(self.resamples, int)
            or not 100 <= self.resamples <= 100_000
        ):
            problems.append(f"resamples must be a whole number from 100 to 100,000, got {self.resamples!r}")
        if not self.min_expected >= 0:
            problems.append(f"min_expected must be >= 0, got {self.min_expected!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed must be a whole number >= 0, got {self.seed!r}")
        if problems:
            raise DriftError("invalid drift thresholds: " + "; ".join(problems))


# ------------------------------------------------------------------------------------------------ input
def pattern_words(pattern: int, modality_names: Sequence[str]) -> str:
    """A pattern in words: 'structured + cxr + discharge_note' ('no modality' when nothing is present)."""
    bits = decode_pattern(int(pattern), len(modality_names))
    present = [name for name, bit in zip(modality_names, bits) if bit]
    return " + ".join(present) if present else "no modality"


def check_modalities(modality_names: Sequence[str]) -> list[str]:
    """The modality names as a list; DriftError when empty, too many, repeated or not text."""
    names = list(modality_names) if not isinstance(modality_names, str) else [modality_names]
    if not names or len(names) > MAX_MODALITIES:
        raise DriftError(f"the model must have 1 to {MAX_MODALITIES} modalities, got {len(names)}")
    if not all(isinstance(n, str) and n.strip() for n in names):
        raise DriftError(f"modality names must be non-empty text, got {names!r}")
    if len(set(names)) != len(names):
        raise DriftError(f"modality names repeat: {names!r}")
    return names


def check_same_modalities(declared: Sequence[str], expected: Sequence[str], where: str) -> None:
    """Counts recorded for another model's modalities (another number or order) mean other pattern ids:
    refuse them instead of comparing the wrong patterns."""
    if list(declared) != list(expected):
        raise DriftError(
            f"{where} counts patterns over the modalities {list(declared)}, but the model's are "
            f"{list(expected)} (in this order): pattern ids would mean different modalities; "
            "count with this model, or compare with the bundle the counts were made with"
        )


def _pattern_key(key: Any, names: list[str], where: str) -> int:
    n_patterns = 1 << len(names)
    if isinstance(key, bool):
        raise DriftError(f"{where}: pattern {key!r} is not a pattern id")
    if isinstance(key, (int, np.integer)):
        pattern = int(key)
    elif isinstance(key, str) and re.fullmatch(r"\s*\d+\s*", key):
        pattern = int(key)
    elif isinstance(key, str):
        parts = [p.strip() for p in re.split(r"[+,]", key)]
        if [p.lower() for p in parts] in (["none"], ["no modality"]):
            return 0
        unknown = [p for p in parts if p not in names]
        if unknown or len(set(parts)) != len(parts):
            raise DriftError(
                f"{where}: pattern {key!r} is neither a pattern id (0..{n_patterns - 1}) nor modality "
                f"names joined by '+' (of: {', '.join(names)})"
            )
        return sum(1 << names.index(p) for p in parts)
    else:
        raise DriftError(f"{where}: pattern {key!r} is a {type(key).__name__}, not a pattern id")
    if not 0 <= pattern < n_patterns:
        raise DriftError(
            f"{where}: pattern id {pattern} is unknown for {len(names)} modalities "
            f"(accepted: 0..{n_patterns - 1}, bit m = modality m present: {', '.join(names)})"
        )
    return pattern


def parse_counts(counts: Mapping, modality_names: Sequence[str], where: str = "counts") -> dict[int, int]:
    """{pattern: count} from a mapping whose keys are pattern ids (int or digits) or modality names joined by
    '+' ('structured+cxr'); counts are whole numbers >= 0. DriftError naming the first problem."""
    names = check_modalities(modality_names)
    if not isinstance(counts, Mapping):
        raise DriftError(f"{where} must be a mapping pattern -> count, got {type(counts).__name__}")
    out: dict[int, int] = {}
    for key, value in counts.items():
        pattern = _pattern_key(key, names, where)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            if isinstance(value, float) and value.is_integer() and value >= 0:
                value = int(value)
            else:
                raise DriftError(f"{where}: the count of pattern {key!r} must be a whole number >= 0, got {value!r}")
        if value < 0:
            raise DriftError(f"{where}: the count of pattern {key!r} is negative ({value}); counts are >= 0")
        if pattern in out:
            raise DriftError(f"{where}: pattern {pattern_words(pattern, names)} (id {pattern}) is given twice")
        out[pattern] = int(value)
    return out


# ------------------------------------------------------------------------------------------------ statistics
def total_variation(p: Sequence[float] | np.ndarray, q: Sequence[float] | np.ndarray) -> float | np.ndarray:
    """1/2 sum |p - q| over the last axis (shares; rows of counts are normalised first)."""
    a, b = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    if a.shape[-1] != b.shape[-1]:
        raise DriftError(f"the two distributions have {a.shape[-1]} and {b.shape[-1]} patterns")
    a = a / np.maximum(a.sum(axis=-1, keepdims=True), 1e-300)
    b = b / np.maximum(b.sum(axis=-1, keepdims=True), 1e-300)
    tv = 0.5 * np.abs(a - b).sum(axis=-1)
    return float(tv) if np.ndim(tv) == 0 else tv


def _gamma_q(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) (series below a + 1, continued fraction above)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        denominator = a
        for _ in range(10_000):
            denominator += 1.0
            term *= x / denominator
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            break
    return min(1.0, math.exp(log_front) * h)


def chi2_sf(statistic: float, df: int) -> float:
    """P(chi-square with `df` degrees of freedom >= statistic)."""
    if df < 1:
        raise DriftError(f"chi-square degrees of freedom must be >= 1, got {df}")
    return _gamma_q(df / 2.0, max(float(statistic), 0.0) / 2.0)


def chi2_two_sample(
    train: np.ndarray, local: np.ndarray, min_expected: float
) -> tuple[float | None, int, float | None, list[int]]:
    """Pearson chi-square of the 2 x K table (training, local) x patterns; patterns whose smaller expected
    count is under `min_expected` are pooled into one cell. (statistic, df, p-value, pooled column indices);
    statistic and p-value None when fewer than two cells remain."""
    table = np.vstack([train, local]).astype(float)
    total = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    sparse = np.flatnonzero(expected.min(axis=0) < min_expected)
    keep = np.flatnonzero(expected.min(axis=0) >= min_expected)
    columns = [table[:, keep]] + ([table[:, sparse].sum(axis=1, keepdims=True)] if len(sparse) else [])
    pooled = np.hstack(columns)
    pooled = pooled[:, pooled.sum(axis=0) > 0]
    if pooled.shape[1] < 2 or (pooled.sum(axis=1) == 0).any():
        return None, 0, None, [int(i) for i in sparse]
    expected = np.outer(pooled.sum(axis=1), pooled.sum(axis=0)) / pooled.sum()
    statistic = float(((pooled - expected) ** 2 / expected).sum())
    df = pooled.shape[1] - 1
    return statistic, df, chi2_sf(statistic, df), [int(i) for i in sparse]


# ------------------------------------------------------------------------------------------------ report
@dataclass
class PatternRow:
    pattern: int
    words: str
    train_count: int
    train_share: float
    local_count: int
    local_share: float | None
    difference: float | None  # local share - training share
    unseen_in_training: bool


@dataclass
class DriftReport:
    """What `compare_patterns` found, as plain data (`to_dict` for JSON, the app and the server)."""

    modalities: list[str]
    n_local: int
    n_train: int
    tv: float | None
    tv_low: float | None
    tv_high: float | None
    null_tv_mean: float | None  # the TV expected with no drift for these numbers of patients
    null_tv_high: float | None  # ... and its upper `level` quantile
    p_value: float | None  # observed TV against that null
    chi2: float | None
    chi2_df: int
    chi2_p_value: float | None
    chi2_pooled: list[str]  # patterns pooled into one cell (expected count under min_expected)
    verdict: str  # TOO_FEW | NO_DRIFT | MILD | ADVISED
    title: str
    message: str
    unseen_patterns: list[str]
    patterns: list[PatternRow]
    thresholds: dict = field(default_factory=dict)

    @property
    def rectify_advised(self) -> bool:
        return self.verdict == ADVISED

    def to_dict(self) -> dict:
        return asdict(self)


def compare_patterns(
    train_counts: Mapping,
    local_counts: Mapping,
    modality_names: Sequence[str],
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Compare local pattern counts with the training counts (both {pattern: count}, see `parse_counts`).

    DriftError for bad counts, unknown patterns, or a training distribution with no patient."""
    thresholds = thresholds or DriftThresholds()
    names = check_modalities(modality_names)
    train_map = parse_counts(train_counts, names, "training counts")
    local_map = parse_counts(local_counts, names, "local counts")
    n_train, n_local = sum(train_map.values()), sum(local_map.values())
    if n_train == 0:
        raise DriftError(
            "the training counts hold no patient: the bundle has no training pattern distribution to compare with"
        )
    support = sorted(p for p in set(train_map) | set(local_map) if train_map.get(p, 0) or local_map.get(p, 0))
    train = np.array([train_map.get(p, 0) for p in support], dtype=np.int64)
    local = np.array([local_map.get(p, 0) for p in support], dtype=np.int64)
    train_share = train / n_train
    local_share = local / n_local if n_local else None

    rows = [
        PatternRow(
            pattern=p,
            words=pattern_words(p, names),
            train_count=int(train[i]),
            train_share=float(train_share[i]),
            local_count=int(local[i]),
            local_share=None if local_share is None else float(local_share[i]),
            difference=None if local_share is None else float(local_share[i] - train_share[i]),
            unseen_in_training=bool(train[i] == 0),
        )
        for i, p in enumerate(support)
    ]
    rows.sort(key=lambda r: (-(abs(r.difference) if r.difference is not None else r.train_share), r.pattern))
    unseen = [r.words for r in rows if r.unseen_in_training and r.local_count]

    figures: dict[str, Any] = dict(
        tv=None,
        tv_low=None,
        tv_high=None,
        null_tv_mean=None,
        null_tv_high=None,
        p_value=None,
        chi2=None,
        chi2_df=0,
        chi2_p_value=None,
        chi2_pooled=[],
    )
    if n_local:
        figures.update(_resampled(train, local, thresholds))
        chi2, df, chi2_p, pooled = chi2_two_sample(train, local, thresholds.min_expected)
        figures.update(
            chi2=chi2, chi2_df=df, chi2_p_value=chi2_p, chi2_pooled=[pattern_words(support[i], names) for i in pooled]
        )
    verdict, message = _verdict(n_local, figures, unseen, thresholds)
    return DriftReport(
        modalities=names,
        n_local=n_local,
        n_train=n_train,
        verdict=verdict,
        title=VERDICT_TITLES[verdict],
        message=message,
        unseen_patterns=unseen,
        patterns=rows,
        thresholds=asdict(thresholds),
        **figures,
    )


def _resampled(train: np.ndarray, local: np.ndarray, t: DriftThresholds) -> dict:
    """TV, its bootstrap interval, and its null distribution (both samples from the pooled mix)."""
    rng = np.random.default_rng(t.seed)
    n_train, n_local = int(train.sum()), int(local.sum())
    p, q = train / n_train, local / n_local
    observed = total_variation(p, q)
    # rows of resampled counts: an array of TVs
    boot = cast(
        np.ndarray,
        total_variation(rng.multinomial(n_train, p, size=t.resamples), rng.multinomial(n_local, q, size=t.resamples)),
    )
    tail = (1.0 - t.level) / 2.0
    q_low, q_high = np.quantile(boot, [tail, 1.0 - tail])
    pooled = (train + local) / (n_train + n_local)
    null = cast(
        np.ndarray,
        total_variation(
            rng.multinomial(n_train, pooled, size=t.resamples), rng.multinomial(n_local, pooled, size=t.resamples)
        ),
    )
    bias = float(boot.mean()) - observed  # the plug-in TV is biased upwards (noise adds |differences|) ...
    return dict(
        tv=float(observed),
        # ... so the percentile interval is shifted down by the bootstrap's estimate of that bias
        tv_low=float(np.clip(q_low - bias, 0.0, 1.0)),
        tv_high=float(np.clip(q_high - bias, 0.0, 1.0)),
        null_tv_mean=float(null.mean()),
        null_tv_high=float(np.quantile(null, t.level)),
        p_value=float((1 + np.count_nonzero(null >= observed - 1e-12)) / (t.resamples + 1)),
    )


def _verdict(n_local: int, f: dict, unseen: list[str], t: DriftThresholds) -> tuple[str, str]:
    new = (
        (
            f" Patterns never seen in training: {'; '.join(unseen)} (the model has no training patients with "
            "exactly these tests)."
        )
        if unseen
        else ""
    )
    if n_local < t.min_patients:
        return TOO_FEW, (
            f"Too few patients to judge: {n_local} analysed here, {t.min_patients} needed. In a small "
            "group the mix of available tests differs from the training mix by chance alone." + new
        )
    share = (
        f"{f['tv']:.0%} of patients here (95 % interval {f['tv_low']:.0%} to {f['tv_high']:.0%}) would need "
        "a different combination of tests for the mix to match the training site's; with no change of "
        f"policy about {f['null_tv_mean']:.0%} is expected by chance alone for {n_local} patients"
    )
    if f["p_value"] < t.alpha and f["tv_low"] > t.advise_tv:
        return ADVISED, (
            f"Drift: rectify advised. The tests ordered here differ from the training site's: {share}. "
            "Risks for the patterns whose share changed may be biased: refit the pattern correction on "
            "local patients with known outcomes (rectify)." + new
        )
    if f["p_value"] < t.alpha:
        return MILD, (
            f"Mild drift: {share}. The difference is more than chance, but not confidently above "
            f"{t.advise_tv:.0%} of patients: no refit needed yet; keep watching." + new
        )
    return NO_DRIFT, (
        f"No drift detected: {share}. This is within what chance gives under the training site's ordering policy." + new
    )


def rectify_command(bundle: str = "BUNDLE", out: str | None = None) -> str:
    """The exact command to refit the correction on local labelled cases: LOCAL_DATA is a dataset folder of
    them, embedded with this bundle's encoders (`embed --from-bundle`, docs/new_site.md); its validation
    split is fitted on and its test split stays free to check the result (`evaluate`)."""
    out = out or f"{str(bundle).rstrip('/')}_local"
    return f"python -m mmnar_core rectify {bundle} LOCAL_DATA --split val --out {out}"


# ------------------------------------------------------------------------------------------------ counts file
def counts_document(
    model_id: str,
    modality_names: Sequence[str],
    counts: Mapping[int, int],
    first_seen: str | None = None,
    last_seen: str | None = None,
    source: str = "",
) -> dict:
    """The counts file the model server and the app write and `drift --counts` reads: per-pattern counts of
    one model, with the modality order that gives the pattern ids their meaning. No patient data."""
    names = check_modalities(modality_names)
    parsed = parse_counts(counts, names)
    return {
        "format": COUNTS_FORMAT,
        "version": COUNTS_VERSION,
        "model_id": model_id,
        "modalities": names,
        "source": source,
        "n": sum(parsed.values()),
        "first_seen": first_seen,
        "last_seen": last_seen,
        "counts": {str(p): c for p, c in sorted(parsed.items())},
        "patterns": {str(p): pattern_words(p, names) for p in sorted(parsed)},
    }


def read_counts_document(
    document: Any, modality_names: Sequence[str], model_id: str | None = None, where: str = "the counts file"
) -> dict[int, int]:
    """{pattern: count} from a counts document (`counts_document`), checked against the model's modalities
    (and model id, when both are known: counts of another model describe another training mix). A bare
    mapping {pattern: count} is accepted too."""
    names = check_modalities(modality_names)
    if not isinstance(document, Mapping):
        raise DriftError(f"{where} must hold a JSON object, got {type(document).__name__}")
    if "counts" not in document:
        return parse_counts(document, names, where)
    if document.get("format", COUNTS_FORMAT) != COUNTS_FORMAT:
        raise DriftError(f"{where} is of format {document.get('format')!r}, not {COUNTS_FORMAT!r}")
    if document.get("version", COUNTS_VERSION) != COUNTS_VERSION:
        raise DriftError(
            f"{where} is version {document.get('version')!r} of {COUNTS_FORMAT}; this code reads "
            f"version {COUNTS_VERSION}"
        )
    if "modalities" in document:
        declared = document["modalities"]
        if not isinstance(declared, list):
            raise DriftError(f"{where}: 'modalities' must be a list of modality names")
        check_same_modalities(declared, names, where)
    if model_id and document.get("model_id") and document["model_id"] != model_id:
        raise DriftError(
            f"{where} counts patients analysed by model {document['model_id']!r}, not {model_id!r}: "
            "compare it with that model's bundle"
        )
    return parse_counts(document["counts"], names, where)
