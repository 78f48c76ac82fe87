"""The summary card: per outcome, the few things a clinician reads first, in words (docs/explanations.md,
"Summary card").

- the risk in plain words, with its interval, against the held-out population's rate (the baseline) and
  the rate among held-out patients who had the same modalities available;
- a band relative to the baseline (`BANDS`: the ratio risk / baseline, documented thresholds);
- how reliable the model is for this availability pattern: held-out AUROC and calibration error with
  their 95 % intervals and n, from the bundle's evaluation (metrics.json); when too few held-out patients
  had the pattern, the figures over all held-out patients, and the card says so;
- the top drivers across modalities in words: structured values with their unit and the training
  reference range, and for the X-ray and the notes their modality Shapley value (or a note's phrase).

Everything here is computed from an `Explanation` and `SummaryFacts` (the bundle's figures for this
patient's pattern, made once by the predictor), so a saved or served explanation gives the same card.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from mmnar_core.plain_words import modality_name, number, pattern_name, percent

if TYPE_CHECKING:
    from mmnar_core.explain.explanation import Explanation
    from mmnar_core.schema import FeatureSpec, OutcomeSpec

# ratio risk / baseline -> band (upper bounds, exclusive); the words say how the patient compares
BANDS: tuple[tuple[float, str], ...] = (
    (0.5, "well below average"),
    (0.8, "below average"),
    (1.25, "about average"),
    (2.0, "above average"),
    (math.inf, "well above average"),
)
# held-out AUROC -> how well the model ranks patients of this pattern (upper bounds, exclusive)
DISCRIMINATION: tuple[tuple[float, str], ...] = (
    (0.6, "weak: little better than chance"),
    (0.7, "modest"),
    (0.8, "fair"),
    (math.inf, "good"),
)
TOP_DRIVERS = 3
PHRASE_CHARS = 90  # a note's phrase as a driver: at most this many characters, on one line


def band(risk: float, baseline: float) -> str:
    """The band of a risk relative to the baseline rate (`BANDS`)."""
    ratio = risk / baseline if baseline > 0 else math.inf
    return next(words for bound, words in BANDS if ratio < bound)


def discrimination_words(auroc: float) -> str:
    return next(words for bound, words in DISCRIMINATION if auroc < bound)


# --------------------------------------------------------------------------- facts from the bundle
@dataclass(frozen=True)
class Figure:
    """One held-out metric with its 95 % bootstrap interval and the patients it was measured on."""

    value: float
    low: float | None
    high: float | None
    n: int
    events: int | None


@dataclass(frozen=True)
class TaskFacts:
    task: str
    outcome: str  # the outcome's definition in words
    baseline: float  # outcome rate among the labelled held-out patients of the training cohort
    n_heldout: int
    pattern_n: int | None  # held-out patients with this patient's availability pattern (None: not evaluated)
    pattern_events: int | None
    auroc: Figure | None
    calibration_error: Figure | None
    reliability_scope: str  # "this pattern" or "all held-out patients" (too few with this pattern)


@dataclass(frozen=True)
class FeatureRange:
    """What training patients' values of a feature look like, shown beside a patient's value."""

    low: float
    high: float
    unit: str | None
    meaning: str  # e.g. "2.5th-97.5th percentile of training patients"


@dataclass(frozen=True)
class SummaryFacts:
    """The bundle's figures a card needs for one patient: per task, and the structured features' ranges."""

    pattern: str  # the patient's availability pattern (pattern_label)
    tasks: dict[str, TaskFacts]
    feature_names: dict[str, str]  # feature -> words
    ranges: dict[str, FeatureRange] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SummaryFacts:
        def figure(value: Mapping[str, Any] | None) -> Figure | None:
            return None if value is None else Figure(**value)

        tasks = {
            name: TaskFacts(
                **{k: v for k, v in t.items() if k not in ("auroc", "calibration_error")},
                auroc=figure(t["auroc"]),
                calibration_error=figure(t["calibration_error"]),
            )
            for name, t in data["tasks"].items()
        }
        ranges = {name: FeatureRange(**r) for name, r in data.get("ranges", {}).items()}
        return cls(str(data["pattern"]), tasks, dict(data["feature_names"]), ranges)


def _metric(rows: Sequence[Mapping[str, Any]], level: str, group: str | None, metric: str) -> Figure | None:
    for row in rows:
        if row.get("level") == level and row.get("group") == group and row.get("metric") == metric:
            if row.get("value") is None:
                return None
            return Figure(float(row["value"]), row.get("low"), row.get("high"), int(row["n"]), row.get("n_pos"))
    return None


def summary_facts(
    metrics: Mapping[str, Any],
    outcomes: Sequence[OutcomeSpec],
    features: Sequence[FeatureSpec],
    pattern: str,
    ranges: Mapping[str, FeatureRange] | None = None,
) -> SummaryFacts:
    """The card's facts for a patient with availability `pattern` (pattern_label), from the bundle's
    metrics.json (the held-out evaluation of the rectified risks) and dataset specs."""
    tasks: dict[str, TaskFacts] = {}
    described = {o.name: o.description for o in outcomes}
    for task, report in (metrics.get("tasks") or {}).items():
        rows = report.get("rectified") or []
        auroc = _metric(rows, "group", pattern, "auroc")
        ece = _metric(rows, "group", pattern, "ece")
        group_rows = [r for r in rows if r.get("level") == "group" and r.get("group") == pattern]
        pattern_n = int(group_rows[0]["n"]) if group_rows else None
        pattern_events = group_rows[0].get("n_pos") if group_rows else None
        scope = "this pattern"
        if auroc is None:  # too few held-out patients (or events) with this pattern: say so, use everyone
            auroc, ece, scope = _metric(rows, "overall", None, "auroc"), _metric(rows, "overall", None, "ece"), "all"
        tasks[task] = TaskFacts(
            task,
            described.get(task, task),
            float(report.get("prevalence", math.nan)),
            int(report.get("n_labelled", 0)),
            pattern_n,
            None if pattern_events is None else int(pattern_events),
            auroc,
            ece,
            scope if scope == "this pattern" else "all held-out patients",
        )
    names = {f.name: (f.description or f.name.replace("_", " ")) for f in features}
    return SummaryFacts(pattern, tasks, names, dict(ranges or {}))


# --------------------------------------------------------------------------- the card
@dataclass(frozen=True)
class Driver:
    """One of the patient's strongest contributions to a risk, in words."""

    modality: str
    label: str  # "Creatinine", "Chest X-ray", a phrase of a note
    value: str | None  # the patient's value with its unit ("2.4 mg/dL", "not measured")
    reference: str | None  # the training reference range ("training 0.6-1.9 mg/dL")
    effect: float  # change of the risk (probability; x100 = percentage points)
    method: str  # where the number comes from (a within-modality attribution or the modality's Shapley value)
    sentence: str


@dataclass(frozen=True)
class OutcomeSummary:
    task: str
    outcome: str
    risk: float
    low: float
    high: float
    baseline: float
    ratio: float
    band: str
    headline: str  # the risk in plain words
    comparison: str  # against the baseline and the same-pattern patients
    reliability: str  # how reliable the model is for this pattern
    reliability_scope: str
    auroc: Figure | None
    calibration_error: Figure | None
    drivers: list[Driver]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _one_in(risk: float) -> str:
    if risk <= 0:
        return "almost no patients like this"
    n = max(1, round(1 / risk))
    return "almost every patient like this" if n == 1 else f"about 1 in {n} patients like this"


def _figure_text(figure: Figure, digits: int = 2) -> str:
    interval = (
        f" (95 % interval {figure.low:.{digits}f}-{figure.high:.{digits}f})"
        if figure.low is not None and figure.high is not None
        else ""
    )
    return f"{figure.value:.{digits}f}{interval}"


def _reliability(facts: TaskFacts) -> str:
    if facts.auroc is None:
        return "The bundle holds no held-out evaluation for this outcome: its reliability is unknown."
    auroc = facts.auroc
    who = (
        f"patients with this pattern ({auroc.n} held-out"
        + (f", {auroc.events} with the outcome" if auroc.events is not None else "")
        + ")"
    )
    if facts.reliability_scope != "this pattern":
        seen = f"only {facts.pattern_n}" if facts.pattern_n else "no"
        who = (
            f"all held-out patients ({auroc.n}; {seen} held-out patients had this pattern, too few to measure it "
            "on them alone)"
        )
    text = f"For {who} the model ranks risk with AUROC {_figure_text(auroc)}: {discrimination_words(auroc.value)}."
    if facts.calibration_error is not None:
        ece = facts.calibration_error
        text += f" Its risks are off by {100 * ece.value:.1f} points on average (binned calibration error"
        if ece.low is not None and ece.high is not None:
            # a percentile bootstrap of the binned error sits above the estimate (resamples add noise, and
            # the error only grows with noise): the interval shown is widened to hold the estimate
            low, high = min(ece.low, ece.value), max(ece.high, ece.value)
            text += f", 95 % bootstrap interval {100 * low:.1f}-{100 * high:.1f}"
        text += ")."
    return text


def _range_text(feature_range: FeatureRange | None) -> str | None:
    if feature_range is None:
        return None
    return f"training {number(feature_range.low)}-{number(feature_range.high, feature_range.unit)}"


def _direction(effect: float) -> str:
    return "raised" if effect > 0 else "lowered"


def drivers(explanation: Explanation, facts: SummaryFacts, task: str, k: int = TOP_DRIVERS) -> list[Driver]:
    """The k largest contributions (by size) across modalities: each structured feature's attribution, each
    note's strongest risk-raising finding (never a negated phrase) and strongest lowering phrase when phrases
    were attributed, else a note's and the X-ray's Shapley value."""
    candidates: list[Driver] = []
    for tabular in explanation.tabular:
        for item in tabular.features:
            effect = float(item.attribution.get(task, 0.0))
            label = facts.feature_names.get(item.feature, item.feature.replace("_", " "))
            if item.missing or item.value is None:
                value = "not recorded"
            elif isinstance(item.value, (int, float)) and not isinstance(item.value, bool):
                value = number(float(item.value), item.unit)
            else:
                value = str(item.value)
            reference = None if item.missing else _range_text(facts.ranges.get(item.feature))
            detail = f"{value}" + (f", {reference}" if reference else "")
            sentence = f"{label} ({detail}) {_direction(effect)} the risk by {abs(100 * effect):.1f} points."
            if item.missing:
                sentence = (
                    f"{label} was not recorded: that {_direction(effect)} the risk by {abs(100 * effect):.1f} "
                    "points (the model reads what was not measured as part of the picture)."
                )
            candidates.append(Driver(tabular.modality, label, value, reference, effect, tabular.method, sentence))
    phrased = set()
    for text in explanation.texts:
        if not text.phrases:
            continue
        phrased.add(text.modality)
        # a note's strongest finding that raises the risk (never a negated one: "No large pleural effusion" is
        # not a finding) and its phrase that lowers the risk most; the ranking below keeps what matters
        lowering = [p for p in text.phrases if p.attribution.get(task, 0.0) < 0]
        lowest = [min(lowering, key=lambda p: p.attribution[task])] if lowering else []
        for phrase in [*text.risk_raising_findings(task, 1), *lowest]:
            effect = float(phrase.attribution[task])
            words = " ".join(phrase.text.split())  # one line, whatever the note's layout
            label = f"“{words if len(words) <= PHRASE_CHARS else words[: PHRASE_CHARS - 1].rstrip() + '…'}”"
            stated = {"negated": " (stated as absent)", "hedged": " (stated as uncertain)"}.get(phrase.assertion, "")
            sentence = (
                f"In the {modality_name(text.modality).lower()}, {label}{stated} {_direction(effect)} the risk by "
                f"{abs(100 * effect):.1f} points."
            )
            candidates.append(Driver(text.modality, label, None, None, effect, text.method, sentence))
    tabular_modalities = {t.modality for t in explanation.tabular}
    if explanation.what_if is not None:
        for modality, values in explanation.what_if.shapley.items():
            if modality in tabular_modalities or modality in phrased:
                continue
            effect = float(values.get(task, 0.0))
            sentence = (
                f"The {modality_name(modality).lower()} {_direction(effect)} the risk by {abs(100 * effect):.1f} points"
            )
            ordering = explanation.what_if.ordering
            parts = {p.modality: p for p in ordering.parts} if ordering is not None else {}
            if modality in parts:
                split = parts[modality]
                sentence += (
                    f" (that it was obtained: {100 * split.obtained.get(task, 0.0):+.1f}; what it shows: "
                    f"{100 * split.shows.get(task, 0.0):+.1f})"
                )
            sentence += "."
            candidates.append(
                Driver(modality, modality_name(modality), "available", None, effect, "modality Shapley value", sentence)
            )
    candidates.sort(key=lambda d: abs(d.effect), reverse=True)
    return candidates[:k]


UNLIKE_TRAINING = (
    " These figures describe patients like the training ones; this patient is unlike them (see the warning), "
    "so they may not hold here."
)


def _flagged(explanation: Explanation) -> bool:
    report = explanation.prediction.distribution
    return report is not None and report.flagged


def summarize(explanation: Explanation, facts: SummaryFacts) -> list[OutcomeSummary]:
    """One card per outcome of the prediction (drivers only for the outcomes whose attributions were
    computed; the others list the modality Shapley values alone)."""
    cards = []
    prediction = explanation.prediction
    for risk in prediction.risks:
        task_facts = facts.tasks.get(risk.task)
        if task_facts is None:
            continue
        baseline = task_facts.baseline
        ratio = risk.risk / baseline if baseline > 0 else math.inf
        words = band(risk.risk, baseline)
        outcome = task_facts.outcome
        if outcome[1:2].islower():  # "Readmission ..." -> "readmission ...", but "ICU admission ..." stays
            outcome = outcome[:1].lower() + outcome[1:]
        headline = (
            f"Estimated risk of {outcome}: {percent(risk.risk)} (95 % interval {percent(risk.low)} to "
            f"{percent(risk.high)}), {_one_in(risk.risk)}."
        )
        comparison = (
            f"{percent(baseline)} of the {task_facts.n_heldout:,} held-out patients of the training cohort had it: "
            f"this patient is {words} ({ratio:.1f} times that rate)."
        )
        if task_facts.pattern_n and task_facts.pattern_events is not None:
            rate = task_facts.pattern_events / task_facts.pattern_n
            comparison += (
                f" Among the {task_facts.pattern_n:,} held-out patients with the same records available "
                f"({pattern_name(prediction.available)}), {percent(rate)} had it."
            )
        cards.append(
            OutcomeSummary(
                risk.task,
                task_facts.outcome,
                risk.risk,
                risk.low,
                risk.high,
                baseline,
                ratio,
                words,
                headline,
                comparison,
                _reliability(task_facts) + (UNLIKE_TRAINING if _flagged(explanation) else ""),
                task_facts.reliability_scope,
                task_facts.auroc,
                task_facts.calibration_error,
                drivers(explanation, facts, risk.task) if risk.task in explanation.tasks else [],
            )
        )
    return cards
