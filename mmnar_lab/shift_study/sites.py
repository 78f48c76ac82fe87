"""Two hospitals of one population: site A (training, default policy) and site B (deployed under other policies).

Why simulated content embeddings: rendering and embedding thousands of X-rays and notes per site takes
longer than the whole study may (notes embed at ~15/s on this CPU). Each content modality's embedding is
therefore drawn from what that modality would show (the X-ray's visible findings; the report's stated
findings; the summary's mentioned conditions and severity) through a fixed random "encoder" (the same
at both sites) plus noise. The structured data goes through the real tabular encoder fit at site A.
The unrecorded judgement is in no modality. Site B's patients are one simulated population; each policy
decides, for the same patients, which modalities exist, so policies differ only in availability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from mmnar_core.encoders.tabular import TabularEncoder
from mmnar_core.patterns import encode_pattern
from mmnar_core.synth.cohort import FEATURES, OUTCOME_NAMES
from mmnar_core.synth.policy import decide_availability
from mmnar_core.synth.scm import IMAGE_FINDINGS, SCENARIOS, simulate_latent_and_structured
from mmnar_core.training.data import ModelData

MODALITIES = ("structured", "cxr", "radiology_report", "discharge_note")
CONTENT_WIDTH = 32
ENCODER_SEED = 20261204  # the fixed random "encoders" (identical at every site)


@dataclass(frozen=True)
class ContentNoise:
    """How clearly each content modality shows its signal (noise sd per dimension; mention rates)."""

    image_noise: float = 1.0
    report_noise: float = 0.8
    note_noise: float = 1.0
    report_sensitivity: float = 0.9  # a visible finding is stated in the report
    note_mention: float = 0.85  # a condition is mentioned in the discharge summary


def _signals(frame: pd.DataFrame, rng: np.random.Generator, noise: ContentNoise) -> dict[str, np.ndarray]:
    findings = frame[[f"finding_{f}" for f in (*IMAGE_FINDINGS, "hyperinflation")]].to_numpy(dtype=float)
    stated = findings * (rng.random(findings.shape) < noise.report_sensitivity)
    conditions = frame[["pneumonia", "heart_failure", "pleural_effusion", "sepsis", "copd"]].to_numpy(dtype=float)
    mentioned = conditions * (rng.random(conditions.shape) < noise.note_mention)
    severity = frame["severity"].to_numpy()[:, None]
    return {
        "cxr": findings,
        "radiology_report": np.column_stack([stated, 0.4 * severity]),
        "discharge_note": np.column_stack([mentioned, 0.6 * severity]),
    }


def content_embeddings(frame: pd.DataFrame, seed: int, noise: ContentNoise = ContentNoise()) -> dict[str, np.ndarray]:
    """(N, CONTENT_WIDTH) embedding per content modality for every patient (as if every modality existed)."""
    encoder_rng = np.random.default_rng(ENCODER_SEED)
    rng = np.random.default_rng([seed, 401])
    sd = {"cxr": noise.image_noise, "radiology_report": noise.report_noise, "discharge_note": noise.note_noise}
    out = {}
    for modality, signal in _signals(frame, rng, noise).items():
        directions = encoder_rng.normal(0.0, 1.0, (signal.shape[1], CONTENT_WIDTH))
        out[modality] = (signal @ directions + sd[modality] * rng.normal(0.0, 1.0, (len(frame), CONTENT_WIDTH))).astype(
            np.float32
        )
    return out


@dataclass
class Site:
    """One simulated hospital population with every modality's embedding (availability decided later)."""

    frame: pd.DataFrame
    structured: np.ndarray
    content: dict[str, np.ndarray]
    seed: int

    @property
    def true_probs(self) -> np.ndarray:
        return self.frame[[f"true_prob_{o}" for o in OUTCOME_NAMES]].to_numpy(dtype=float)

    @property
    def labels(self) -> np.ndarray:
        return self.frame[[f"label_{o}" for o in OUTCOME_NAMES]].to_numpy(dtype=np.float32)

    def availability(self, policy: str) -> np.ndarray:
        """(N, 4) availability under `policy` (the same patients, the policy's decisions)."""
        bits, _ = decide_availability(self.frame, policy, self.seed)
        return np.column_stack([np.ones(len(self.frame), bool)] + [bits[m].to_numpy(bool) for m in MODALITIES[1:]])


def simulate_site(
    n: int,
    seed: int,
    scenario: str,
    judgement: float,
    tabular: TabularEncoder | None = None,
    noise: ContentNoise = ContentNoise(),
) -> tuple[Site, TabularEncoder]:
    """A site of n patients; the tabular encoder is fit here when none is given (site A) and reused at site B."""
    frame = simulate_latent_and_structured(n, seed, SCENARIOS[scenario][1](), judgement)
    structured_frame = frame[[f.name for f in FEATURES]]
    if tabular is None:
        tabular = TabularEncoder(FEATURES).fit(structured_frame)
    structured = tabular.transform(structured_frame).astype(np.float32)
    return Site(frame, structured, content_embeddings(frame, seed, noise), seed), tabular


def study_data(site_a: Site, site_b: Site, policies: list[str], train_fraction: float = 0.85) -> ModelData:
    """One ModelData: site A (default policy) as train / val, site B under each policy stacked as 'test'
    (rows policy-major: policy k holds rows k*N_B .. (k+1)*N_B - 1). Nothing of site B is used to train."""
    blocks, splits = [], []
    n_a = len(site_a.frame)
    order = np.random.default_rng([site_a.seed, 402]).permutation(n_a)
    split_a = np.empty(n_a, dtype=object)
    split_a[order[: int(round(train_fraction * n_a))]] = "train"
    split_a[order[int(round(train_fraction * n_a)) :]] = "val"
    blocks.append((site_a, site_a.availability("default")))
    splits.append(split_a)
    for policy in policies:
        blocks.append((site_b, site_b.availability(policy)))
        splits.append(np.full(len(site_b.frame), "test", dtype=object))
    inputs = []
    for m, modality in enumerate(MODALITIES):
        parts = [
            (site.structured if m == 0 else site.content[modality]) * avail[:, m : m + 1] for site, avail in blocks
        ]
        inputs.append(torch.from_numpy(np.concatenate(parts).astype(np.float32)))
    availability = np.concatenate([avail for _, avail in blocks])
    labels = np.concatenate([site.labels for site, _ in blocks])
    truth = np.concatenate([site.true_probs for site, _ in blocks])
    ids = np.concatenate(
        [
            np.array([f"{'A' if k == 0 else 'B'}{k}-{i}" for i in range(len(site.frame))])
            for k, (site, _) in enumerate(blocks)
        ]
    )
    return ModelData(
        list(MODALITIES),
        list(OUTCOME_NAMES),
        inputs,
        torch.from_numpy(availability),
        torch.from_numpy(labels),
        encode_pattern(availability),
        np.concatenate(splits).astype(str),
        ids,
        true_probs=truth,
        structured=["structured"],
    )
