"""The structural causal model of the synthetic cohort (docs/synthetic.md), vectorised over patients.

Order of the structural equations: demographics -> latent severity -> latent conditions -> index-stay
course and observed structured data (with lab-level missingness) -> what a chest X-ray would show ->
outcomes after discharge. Availability of the other modalities is decided by a clinician policy
(policy.py) from the same latent state. Every coefficient lives in SCMParameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mmnar_core.numeric import sigmoid

CONDITIONS = ("pneumonia", "heart_failure", "pleural_effusion", "sepsis", "copd")
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
LOBE_WEIGHTS = (0.15, 0.15, 0.32, 0.13, 0.25)
EFFUSION_SIDES = ("right", "left", "bilateral")
EFFUSION_SIDE_WEIGHTS = (0.45, 0.25, 0.30)
DISPOSITIONS = ("home", "home_with_services", "skilled_nursing", "transfer")
ADMISSION_TYPES = ("emergency", "urgent", "elective")
IMAGE_FINDINGS = ("opacity", "effusion", "cardiomegaly")


@dataclass(frozen=True)
class SCMParameters:
    """Every coefficient of the structural equations, in one place (saved into the manifest)."""

    age_mean: float = 64.0
    age_sd: float = 17.0
    female_rate: float = 0.47
    severity_on_age: float = 0.30
    # condition logits: intercept and coefficients on (z_age, male, severity, parents...)
    copd: dict = field(default_factory=lambda: {"intercept": -2.3, "z_age": 0.6, "male": 0.3, "severity": 0.3})
    heart_failure: dict = field(default_factory=lambda: {"intercept": -2.1, "z_age": 0.9, "severity": 0.5})
    pneumonia: dict = field(default_factory=lambda: {"intercept": -1.7, "severity": 0.7, "copd": 0.6})
    sepsis: dict = field(default_factory=lambda: {"intercept": -3.3, "severity": 1.0, "pneumonia": 1.4})
    pleural_effusion: dict = field(
        default_factory=lambda: {"intercept": -3.2, "severity": 0.4, "heart_failure": 1.7, "pneumonia": 1.0}
    )
    # how strongly the conditions show in the structured data (vitals, labs, lab ordering, stay course):
    # 1.0 = simulator v1; near 0 = the conditions are seen only through the X-ray and the notes
    structured_condition_scale: float = 1.0
    # probability that a condition is visible on a chest X-ray, and false-positive rates
    visible_opacity_given_pneumonia: float = 0.88
    opacity_without_pneumonia: float = 0.03
    visible_effusion_given_effusion: float = 0.90
    effusion_without_effusion: float = 0.01
    visible_cardiomegaly_given_hf: float = 0.78
    cardiomegaly_without_hf: float = 0.05
    hyperinflation_given_copd: float = 0.60
    # clinician judgement the record does not hold (docs/synthetic.md): per unit of the cohort's
    # --unrecorded-judgement strength, how much a latent suspicion J ~ N(0, 1) adds to each outcome's logit
    judgement_on_outcome: dict = field(
        default_factory=lambda: {"readmission_30d": 0.5, "icu_90d": 0.6, "death_180d": 0.6}
    )
    # outcomes after discharge: logit intercepts and coefficients
    readmission_30d: dict = field(
        default_factory=lambda: {
            "intercept": -2.45,
            "severity": 0.55,
            "heart_failure": 0.75,
            "copd": 0.6,
            "log_prior_admissions": 0.35,
            "skilled_nursing": 0.3,
        }
    )
    icu_90d: dict = field(
        default_factory=lambda: {
            "intercept": -2.1,
            "severity": 0.8,
            "sepsis": 1.0,
            "pneumonia": 0.6,
            "pleural_effusion": 0.5,
            "copd": 0.4,
        }
    )
    death_180d: dict = field(
        default_factory=lambda: {
            "intercept": -3.55,
            "severity": 0.9,
            "sepsis": 0.9,
            "heart_failure": 0.6,
            "z_age": 0.6,
            "pleural_effusion": 0.3,
        }
    )

    def to_dict(self) -> dict:
        return asdict(self)


def content_signal_parameters() -> SCMParameters:
    """Scenario `content_signal` (simulator v2): the conditions barely show in the structured data
    (scale 0.15) and weigh more on the outcomes, so the X-ray and the notes carry signal the structured
    data does not. The scenario for judging image and text explanations and for what the method is for."""
    return SCMParameters(
        structured_condition_scale=0.15,
        readmission_30d={
            "intercept": -2.6,
            "severity": 0.45,
            "heart_failure": 1.2,
            "copd": 0.9,
            "log_prior_admissions": 0.35,
            "skilled_nursing": 0.3,
        },
        icu_90d={
            "intercept": -2.5,
            "severity": 0.6,
            "sepsis": 1.0,
            "pneumonia": 1.3,
            "pleural_effusion": 1.1,
            "copd": 0.4,
        },
        death_180d={
            "intercept": -3.7,
            "severity": 0.8,
            "sepsis": 0.9,
            "heart_failure": 1.0,
            "z_age": 0.6,
            "pleural_effusion": 0.7,
        },
    )


def content_only_parameters() -> SCMParameters:
    """Scenario `content_only` (simulator v3): the conditions do not show in the structured data at all
    (scale 0) and drive the outcomes strongly, so whatever a model knows about them beyond severity and
    demographics it must read from the X-ray and the notes, whose ordering still depends on them (MNAR).
    The cohort on which a multimodal model must beat every structured-only reference by a clear margin."""
    return SCMParameters(
        structured_condition_scale=0.0,
        readmission_30d={
            "intercept": -2.8,
            "severity": 0.4,
            "heart_failure": 1.6,
            "copd": 1.2,
            "log_prior_admissions": 0.35,
            "skilled_nursing": 0.3,
        },
        icu_90d={
            "intercept": -2.8,
            "severity": 0.5,
            "sepsis": 1.0,
            "pneumonia": 1.8,
            "pleural_effusion": 1.5,
            "copd": 0.4,
        },
        death_180d={
            "intercept": -4.0,
            "severity": 0.7,
            "sepsis": 0.9,
            "heart_failure": 1.4,
            "z_age": 0.6,
            "pleural_effusion": 1.0,
        },
    )


SCENARIOS = {
    "default": ("simulator v1: the structured data reveals most of the latent state", SCMParameters),
    "content_signal": (
        "simulator v2: conditions seen mainly through the X-ray and the notes",
        content_signal_parameters,
    ),
    "content_only": (
        "simulator v3: conditions seen only through the X-ray and the notes, and weighing more",
        content_only_parameters,
    ),
}
SCENARIO_NAMES = tuple(SCENARIOS)

# the latent condition behind each X-ray finding (mask names and report concepts)
FINDING_CONDITION = {
    "opacity": "pneumonia",
    "effusion": "pleural_effusion",
    "cardiomegaly": "heart_failure",
    "hyperinflation": "copd",
}


def outcome_concepts(outcome_terms: dict) -> set[str]:
    """Ground-truth concepts (X-ray findings, note concepts: conditions and severity) that bear on an
    outcome: those whose latent variable has a non-zero coefficient in the outcome's structural equation.
    `outcome_terms` is one outcome's coefficient dict (e.g. SCMParameters().icu_90d, or the manifest's copy)."""
    latent = {name for name, coef in outcome_terms.items() if name != "intercept" and coef != 0}
    return (latent & {"severity", *CONDITIONS}) | {f for f, c in FINDING_CONDITION.items() if c in latent}


def _linear(terms: dict, values: dict[str, np.ndarray]) -> np.ndarray:
    """intercept + sum coef * value, for a coefficient dict of the parameters."""
    total = np.full(len(next(iter(values.values()))), float(terms["intercept"]))
    for name, coef in terms.items():
        if name != "intercept":
            total = total + coef * values[name]
    return total


def simulate_latent_and_structured(
    n: int, seed: int, params: SCMParameters = SCMParameters(), unrecorded_judgement: float = 0.0
) -> pd.DataFrame:
    """One row per patient: latent state, observed structured data, image findings, outcome probabilities
    and sampled outcomes. Deterministic for (n, seed, params, unrecorded_judgement).

    `unrecorded_judgement` (>= 0) scales a latent clinical suspicion that raises the outcomes' logits and,
    through the policy, the ordering of X-rays and notes, but appears in no recorded modality. It is drawn
    from its own random stream, so at 0 the cohort is identical to one simulated without it."""
    if not np.isfinite(unrecorded_judgement) or unrecorded_judgement < 0:
        raise ValueError(f"unrecorded_judgement must be a finite number >= 0, got {unrecorded_judgement!r}")
    judgement = unrecorded_judgement * np.random.default_rng([seed, 12]).normal(0.0, 1.0, n)
    rng = np.random.default_rng([seed, 11])
    v: dict[str, np.ndarray] = {}

    def normal(size_scale=1.0):
        return rng.normal(0.0, size_scale, n)

    age = np.clip(rng.normal(params.age_mean, params.age_sd, n), 18, 98).round()
    female = rng.random(n) < params.female_rate
    v["z_age"] = (age - params.age_mean) / params.age_sd
    v["male"] = (~female).astype(float)
    rho = params.severity_on_age
    v["severity"] = rho * v["z_age"] + np.sqrt(1 - rho**2) * normal()
    for condition in ("copd", "heart_failure", "pneumonia", "sepsis", "pleural_effusion"):
        v[condition] = (rng.random(n) < sigmoid(_linear(getattr(params, condition), v))).astype(float)

    s = v["severity"]
    # what the structured data sees of each condition (scaled; the outcomes use the conditions themselves)
    k = params.structured_condition_scale
    pneu, hf, eff, sep, copd = (k * v[c] for c in ("pneumonia", "heart_failure", "pleural_effusion", "sepsis", "copd"))

    # index-stay course
    los = np.clip(np.exp(np.log(3.5) + 0.35 * s + 0.3 * pneu + 0.5 * sep + 0.2 * hf + normal(0.5)), 0.3, 60.0)
    elective = rng.random(n) < sigmoid(-1.0 - 1.0 * s - 1.5 * sep)
    urgent = rng.random(n) < 0.15
    admission_type = np.where(elective, "elective", np.where(urgent, "urgent", "emergency"))
    prior = rng.poisson(np.exp(-1.0 + 0.4 * s + 0.6 * hf + 0.5 * copd))
    n_meds = rng.poisson(np.exp(1.8 + 0.15 * v["z_age"] + 0.25 * hf + 0.2 * copd + 0.1 * s))
    disposition_logits = np.stack(
        [np.zeros(n), -1.0 + 0.4 * s + 0.3 * v["z_age"], -1.8 + 0.6 * s + 0.8 * v["z_age"], -2.8 + 0.6 * s], axis=1
    )
    disposition = _categorical(rng, disposition_logits, DISPOSITIONS)

    # vitals: worst values of the stay
    heart_rate = np.clip(85 + 10 * s + 15 * sep + 8 * pneu + normal(10), 35, 200).round()
    resp_rate = np.clip(18 + 2.5 * s + 5 * pneu + 4 * copd + 3 * eff + 3 * sep + normal(3), 8, 50).round()
    spo2 = np.clip(95.5 - 1.5 * s - 4 * pneu - 3 * copd - 2 * eff - 1.5 * hf + normal(2), 60, 100).round()
    temperature = np.clip(37.1 + 0.2 * s + 1.0 * pneu + 1.1 * sep + normal(0.4), 34.0, 42.0).round(1)
    sbp = np.clip(118 - 6 * s - 22 * sep + normal(12), 55, 220).round()
    # labs
    wbc = np.exp(np.log(8.0) + 0.1 * s + 0.35 * pneu + 0.5 * sep + normal(0.25)).round(1)
    hemoglobin = np.clip(13.2 - 0.6 * s - 0.9 * female + normal(1.4), 5.0, 19.0).round(1)
    sodium = np.clip(139 - 1.0 * s - 2.0 * hf + normal(3), 115, 160).round()
    creatinine = np.clip(np.exp(0.25 * v["z_age"] + 0.15 * s + 0.4 * sep + 0.25 * hf + normal(0.3)), 0.3, 12).round(2)
    lactate = np.clip(np.exp(np.log(1.3) + 0.15 * s + 0.7 * sep + normal(0.3)), 0.3, 20).round(1)
    nt_probnp = np.clip(np.exp(np.log(300) + 0.8 * v["z_age"] + 1.6 * hf + 0.3 * s + normal(0.6)), 5, 70000).round()
    albumin = np.clip(3.8 - 0.3 * s - 0.3 * sep + normal(0.4), 1.0, 5.5).round(1)

    # lab-level missingness: ordered when the clinician suspects the condition (MNAR at the lab level)
    suspected_sepsis = (temperature > 38.0) | (heart_rate > 100) | (sbp < 95)
    measured = {
        "lactate": rng.random(n) < sigmoid(-1.6 + 1.4 * suspected_sepsis + 1.2 * sep + 0.3 * s),
        "nt_probnp": rng.random(n) < sigmoid(-1.4 + 2.0 * hf + 0.5 * v["z_age"] + 0.6 * (spo2 < 92)),
        "albumin": rng.random(n) < sigmoid(0.3 + 0.4 * s),
    }
    routine_missing = rng.random((n, 4)) < np.where(los < 1.0, 0.12, 0.02)[:, None]

    # what a chest X-ray would show (drawn for everyone; rendered only when one is ordered)
    opacity = rng.random(n) < np.where(
        v["pneumonia"] > 0, params.visible_opacity_given_pneumonia, params.opacity_without_pneumonia
    )
    effusion_seen = rng.random(n) < np.where(
        v["pleural_effusion"] > 0, params.visible_effusion_given_effusion, params.effusion_without_effusion
    )
    cardiomegaly = rng.random(n) < np.where(
        v["heart_failure"] > 0, params.visible_cardiomegaly_given_hf, params.cardiomegaly_without_hf
    )
    hyperinflation = (v["copd"] > 0) & (rng.random(n) < params.hyperinflation_given_copd)
    lobe = rng.choice(len(LOBES), size=n, p=LOBE_WEIGHTS)
    side = rng.choice(len(EFFUSION_SIDES), size=n, p=EFFUSION_SIDE_WEIGHTS)

    # outcomes after discharge
    v["log_prior_admissions"] = np.log1p(prior)
    v["skilled_nursing"] = (disposition == "skilled_nursing").astype(float)
    outcome_probs = {
        name: sigmoid(_linear(getattr(params, name), v) + params.judgement_on_outcome[name] * judgement)
        for name in ("readmission_30d", "icu_90d", "death_180d")
    }
    outcome_draws = rng.random((n, 3))

    frame = pd.DataFrame(
        {
            "age": age,
            "sex": np.where(female, "female", "male"),
            "severity": s,
            "unrecorded_judgement": judgement,
            **{c: v[c].astype(bool) for c in CONDITIONS},
            "admission_type": admission_type,
            "length_of_stay": los.round(2),
            "prior_admissions_12m": prior.astype(float),
            "n_medications": n_meds.astype(float),
            "discharge_disposition": disposition,
            "heart_rate_max": heart_rate,
            "resp_rate_max": resp_rate,
            "spo2_min": spo2,
            "temperature_max": temperature,
            "sbp_min": sbp,
            "wbc": np.where(routine_missing[:, 0], np.nan, wbc),
            "hemoglobin": np.where(routine_missing[:, 1], np.nan, hemoglobin),
            "sodium": np.where(routine_missing[:, 2], np.nan, sodium),
            "creatinine": np.where(routine_missing[:, 3], np.nan, creatinine),
            "lactate": np.where(measured["lactate"], lactate, np.nan),
            "nt_probnp": np.where(measured["nt_probnp"], nt_probnp, np.nan),
            "albumin": np.where(measured["albumin"], albumin, np.nan),
            "finding_opacity": opacity,
            "finding_effusion": effusion_seen,
            "finding_cardiomegaly": cardiomegaly,
            "finding_hyperinflation": hyperinflation,
            "opacity_lobe": np.array(LOBES)[lobe],
            "effusion_side": np.array(EFFUSION_SIDES)[side],
        }
    )
    for j, (name, prob) in enumerate(outcome_probs.items()):
        frame[f"true_prob_{name}"] = prob
        frame[f"label_{name}"] = (outcome_draws[:, j] < prob).astype("int8")
    return frame


def _categorical(rng: np.random.Generator, logits: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    draws = rng.random(len(logits))[:, None]
    index = (draws > np.cumsum(probs, axis=1)).sum(axis=1)
    return np.array(names)[np.minimum(index, len(names) - 1)]
