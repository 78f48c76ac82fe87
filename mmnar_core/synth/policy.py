"""Clinician policies that decide which modalities a synthetic patient has.

MNAR policies look at the latent state (the clinician sees the patient: severity, suspected
conditions, and a suspicion the record does not hold, see scm's `unrecorded_judgement`) as well as at
observed data; `reversed` is a stress test that gives X-rays to the least sick; `mar` looks only at observed data; `mcar` ignores both and
reproduces the default policy's marginal rates on the same cohort. Structured EHR data is always
present. A radiology report usually belongs to the X-ray, but chest imaging whose image is not in the
record (an outside film, a CT) can leave a report without an image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mmnar_core.numeric import sigmoid


@dataclass(frozen=True)
class MNARPolicy:
    """Logit coefficients of ordering a CXR, having its report, and writing a discharge summary."""

    description: str
    cxr_intercept: float
    cxr_severity: float
    cxr_suspected_chest: float  # latent pneumonia / effusion / heart failure that the clinician suspects
    cxr_hypoxia: float  # observed: SpO2 < 92 % or respiratory rate > 24
    report_given_cxr_intercept: float
    report_given_cxr_severity: float
    report_without_cxr_intercept: float
    report_without_cxr_severity: float
    note_intercept: float
    note_log_los: float
    note_transfer: float
    note_severity: float
    cxr_judgement: float = 1.0  # per unit of the cohort's unrecorded judgement (0 when the cohort has none)
    note_judgement: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


POLICIES: dict[str, MNARPolicy] = {
    "default": MNARPolicy(
        description="Teaching hospital: X-ray for the sicker and the chest-suspect; summaries unless short or transferred",
        cxr_intercept=-0.6,
        cxr_severity=0.8,
        cxr_suspected_chest=1.4,
        cxr_hypoxia=0.6,
        report_given_cxr_intercept=2.0,
        report_given_cxr_severity=-0.3,
        report_without_cxr_intercept=-2.6,
        report_without_cxr_severity=0.6,
        note_intercept=0.6,
        note_log_los=0.9,
        note_transfer=-2.0,
        note_severity=-0.5,
    ),
    "high_imaging": MNARPolicy(
        description="Imaging-heavy academic centre: nearly everyone gets an X-ray; summaries almost always written",
        cxr_intercept=1.5,
        cxr_severity=0.4,
        cxr_suspected_chest=0.6,
        cxr_hypoxia=0.3,
        report_given_cxr_intercept=3.0,
        report_given_cxr_severity=0.0,
        report_without_cxr_intercept=-2.0,
        report_without_cxr_severity=0.3,
        note_intercept=2.2,
        note_log_los=0.5,
        note_transfer=-1.5,
        note_severity=-0.2,
        cxr_judgement=0.5,
    ),
    "low_imaging": MNARPolicy(
        description="Community hospital: X-rays mostly for the very sick; summaries often missing for short stays",
        cxr_intercept=-1.9,
        cxr_severity=1.3,
        cxr_suspected_chest=1.6,
        cxr_hypoxia=0.8,
        report_given_cxr_intercept=1.2,
        report_given_cxr_severity=-0.5,
        report_without_cxr_intercept=-3.2,
        report_without_cxr_severity=0.8,
        note_intercept=-0.2,
        note_log_los=1.2,
        note_transfer=-2.5,
        note_severity=-0.8,
        cxr_judgement=1.3,
    ),
    "reversed": MNARPolicy(
        description="Stress test: X-rays for the least sick (screening the well, not imaging the suspect)",
        cxr_intercept=-0.6,
        cxr_severity=-0.8,
        cxr_suspected_chest=-1.4,
        cxr_hypoxia=-0.6,
        report_given_cxr_intercept=2.0,
        report_given_cxr_severity=0.3,
        report_without_cxr_intercept=-2.6,
        report_without_cxr_severity=-0.6,
        note_intercept=0.6,
        note_log_los=0.9,
        note_transfer=-2.0,
        note_severity=-0.5,
        cxr_judgement=-1.0,
    ),
}
COMPARISON_MODES = ("mcar", "mar")
POLICY_NAMES = tuple(POLICIES) + COMPARISON_MODES
DECIDED_MODALITIES = ("cxr", "radiology_report", "discharge_note")


def _hypoxic(cohort: pd.DataFrame) -> np.ndarray:
    return ((cohort["spo2_min"] < 92) | (cohort["resp_rate_max"] > 24)).to_numpy(dtype=float)


def mnar_propensities(cohort: pd.DataFrame, policy: MNARPolicy, cxr: np.ndarray) -> dict[str, np.ndarray]:
    """P(modality present) per patient; the report's propensity depends on whether a CXR was taken."""
    s = cohort["severity"].to_numpy()
    suspected = (cohort["pneumonia"] | cohort["pleural_effusion"] | cohort["heart_failure"]).to_numpy(dtype=float)
    transfer = (cohort["discharge_disposition"] == "transfer").to_numpy(dtype=float)
    log_los = np.log(cohort["length_of_stay"].to_numpy())
    judgement = _judgement(cohort)
    p = policy
    return {
        "cxr": sigmoid(
            p.cxr_intercept
            + p.cxr_severity * s
            + p.cxr_suspected_chest * suspected
            + p.cxr_hypoxia * _hypoxic(cohort)
            + p.cxr_judgement * judgement
        ),
        "radiology_report": np.where(
            cxr,
            sigmoid(p.report_given_cxr_intercept + p.report_given_cxr_severity * s),
            sigmoid(p.report_without_cxr_intercept + p.report_without_cxr_severity * s),
        ),
        "discharge_note": sigmoid(
            p.note_intercept
            + p.note_log_los * log_los
            + p.note_transfer * transfer
            + p.note_severity * s
            + p.note_judgement * judgement
        ),
    }


def _judgement(cohort: pd.DataFrame) -> np.ndarray:
    """The unrecorded suspicion (scaled by the cohort's strength); zeros for cohorts simulated without it."""
    if "unrecorded_judgement" not in cohort:
        return np.zeros(len(cohort))
    return cohort["unrecorded_judgement"].to_numpy(dtype=float)


def mar_propensities(cohort: pd.DataFrame, cxr: np.ndarray) -> dict[str, np.ndarray]:
    """Missing at random: the same kind of decisions, but from observed data only."""
    z_age = ((cohort["age"] - 64.0) / 17.0).to_numpy()
    fever = (cohort["temperature_max"] > 38.0).to_numpy(dtype=float)
    transfer = (cohort["discharge_disposition"] == "transfer").to_numpy(dtype=float)
    log_los = np.log(cohort["length_of_stay"].to_numpy())
    return {
        "cxr": sigmoid(-0.2 + 1.6 * _hypoxic(cohort) + 0.8 * fever + 0.3 * z_age),
        "radiology_report": np.where(cxr, sigmoid(2.0 + 0.0 * z_age), sigmoid(-2.4 + 0.3 * z_age)),
        "discharge_note": sigmoid(0.6 + 0.9 * log_los - 2.0 * transfer),
    }


def decide_availability(cohort: pd.DataFrame, policy_name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Availability bits and the propensities they were drawn from (kept as ground truth)."""
    if policy_name not in POLICY_NAMES:
        raise ValueError(f"unknown policy {policy_name!r} (accepted: {', '.join(POLICY_NAMES)})")
    rng = np.random.default_rng([seed, 23])
    n = len(cohort)
    u = {name: rng.random(n) for name in DECIDED_MODALITIES}
    if policy_name == "mcar":
        reference, _ = decide_availability(cohort, "default", seed)
        rates = reference.mean()
        props = {name: np.full(n, rates[name]) for name in DECIDED_MODALITIES}
        bits = {name: u[name] < props[name] for name in DECIDED_MODALITIES}
    else:
        if policy_name in POLICIES:
            propensities = lambda cxr: mnar_propensities(cohort, POLICIES[policy_name], cxr)  # noqa: E731
        else:
            propensities = lambda cxr: mar_propensities(cohort, cxr)  # noqa: E731
        cxr = u["cxr"] < propensities(np.zeros(n, bool))["cxr"]
        props = propensities(cxr)
        bits = {name: u[name] < props[name] for name in DECIDED_MODALITIES}
    return pd.DataFrame(bits), pd.DataFrame({f"propensity_{k}": v for k, v in props.items()})
