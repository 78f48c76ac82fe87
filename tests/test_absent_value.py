"""The value of an absent modality: draws from its conditional distribution given what is known
(mmnar_core.explain.conditional) recover a planted linear-Gaussian truth, their risk range covers the real
with-modality risk at the stated rate, and the verdict line reads right."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from mmnar_core.explain.absent_verdict import verdict
from mmnar_core.explain.conditional import ConditionalModality
from mmnar_core.explain.modality import ReferenceSet, value_of_absent

OBS_DIM, TARGET_DIM, SIGMA, SHIFT = 6, 4, 0.5, 1.5
W_TARGET = np.array([0.8, -0.5, 0.6, 0.3])  # the planted risk model's weights on the target modality
W_OBS = np.linspace(-0.4, 0.4, OBS_DIM)


def planted(n: int, seed: int):
    """Modality 0 (always present), modality 1 (the target: B x + SHIFT * had_2 + N(0, SIGMA^2)) and
    modality 2, whose availability shifts the target's content (an ordering pattern that tells)."""
    rng = np.random.default_rng(seed)
    loadings = np.random.default_rng(99).normal(size=(OBS_DIM, TARGET_DIM)) / np.sqrt(OBS_DIM)
    x = rng.normal(size=(n, OBS_DIM))
    had_2 = rng.random(n) < 0.5
    target = x @ loadings + SHIFT * had_2[:, None] + SIGMA * rng.normal(size=(n, TARGET_DIM))
    third = rng.normal(size=(n, 3))
    availability = np.stack([np.ones(n, bool), rng.random(n) < 0.6, had_2], axis=1)
    return [x, target, third], availability, loadings


def reference_set(n=1500, seed=0):
    inputs, availability, loadings = planted(n, seed)
    tensors = [torch.from_numpy(np.where(availability[:, [m]], v, 0.0)).float() for m, v in enumerate(inputs)]
    return ReferenceSet(tensors, torch.from_numpy(availability)), loadings


def score(inputs, availability):
    """A known risk model: logistic in the observed modality and (when present) the target."""
    obs, target = inputs[0].double().numpy(), inputs[1].double().numpy()
    logit = obs @ W_OBS + availability[:, 1].double().numpy() * (target @ W_TARGET) - 0.5
    return (1 / (1 + np.exp(-logit)))[:, None]


def test_draws_recover_the_planted_mean_and_spread():
    reference, loadings = reference_set()
    model = reference.conditional(1, (0,))
    rng = np.random.default_rng(5)
    for had_2 in (False, True):
        x = rng.normal(size=(1, OBS_DIM))
        draws = model.sample([x, np.zeros((1, TARGET_DIM)), np.zeros((1, 3))], np.array([True, False, had_2]))
        truth = x[0] @ loadings + SHIFT * had_2
        # the mean, shift of the ordering pattern included (a model blind to availability is off by 0.75)
        assert np.abs(draws.mean(axis=0) - truth).max() < 0.15
        # the spread: near-duplicate contents (the neighbour method) would give ~0, not SIGMA
        assert np.all(np.abs(draws.std(axis=0) / SIGMA - 1) < 0.15)
        assert len(draws) == model.max_residuals


def test_the_risk_range_is_the_planted_one_and_covers_80_percent():
    reference, loadings = reference_set()
    test_inputs, test_availability, _ = planted(400, seed=1)
    spread = SIGMA * np.linalg.norm(W_TARGET)  # sd of the target's part of the logit
    inside, ranges_checked = [], 0
    for i in range(len(test_inputs[0])):
        patient = [torch.from_numpy(v[i : i + 1]).float() for v in test_inputs]
        patient[1] = torch.zeros(1, TARGET_DIM)
        hidden = test_availability[i].copy()
        hidden[1] = False
        value = value_of_absent(score, patient, hidden, reference, modality=1)
        assert value is not None and value.n_candidates == int(reference.availability[:, 1].sum())
        actual_inputs = [torch.from_numpy(v[i : i + 1]).float() for v in test_inputs]
        with_1 = hidden.copy()
        with_1[1] = True
        actual = score(actual_inputs, torch.from_numpy(with_1).unsqueeze(0))[0, 0]
        inside.append(value.p10[0] <= actual <= value.p90[0])
        if i < 20:  # the stated range is the true conditional one, on the logit scale
            x = test_inputs[0][i]
            centre = x @ W_OBS + (x @ loadings + SHIFT * hidden[2]) @ W_TARGET - 0.5
            logit = np.log(np.array([value.p10[0], value.p90[0]]) / (1 - np.array([value.p10[0], value.p90[0]])))
            expected = centre + norm.ppf([0.1, 0.9]) * spread
            assert np.abs(logit - expected).max() < 0.25 * spread
            ranges_checked += 1
    assert ranges_checked == 20
    assert abs(np.mean(inside) - 0.8) < 0.06


def test_no_reference_patient_with_the_modality_gives_none():
    reference, _ = reference_set(200)
    nobody = ReferenceSet(reference.inputs, reference.availability.clone())
    nobody.availability[:, 1] = False
    patient = [torch.zeros(1, OBS_DIM), torch.zeros(1, TARGET_DIM), torch.zeros(1, 3)]
    assert value_of_absent(score, patient, np.array([True, False, True]), nobody, modality=1) is None


def test_too_few_reference_patients_with_every_regressor_drop_the_rarest():
    reference, _ = reference_set(300)
    availability = reference.availability.clone()
    availability[:, 2] &= ~availability[:, 1]  # nobody had both 1 and 2
    availability[:3, 2] = True
    availability[:3, 1] = True  # ... but 3
    sparse = ReferenceSet(reference.inputs, availability)
    assert sparse.regressors_for(1, [0, 2]) == (0,)
    assert reference.regressors_for(1, [0, 2]) == (0, 2)


def test_round_trip_keeps_the_draws():
    reference, _ = reference_set(300)
    model = reference.conditional(1, (0,))
    again = ConditionalModality.from_dict(model.to_dict())
    patient = [np.ones((1, OBS_DIM)), np.zeros((1, TARGET_DIM)), np.zeros((1, 3))]
    availability = np.array([True, False, True])
    assert np.allclose(model.sample(patient, availability), again.sample(patient, availability))
    with pytest.raises(RuntimeError, match="not fitted"):
        ConditionalModality(1, (0,)).predict(patient, availability)


@pytest.mark.parametrize(
    ("current", "p10", "p90", "expected"),
    [
        (0.10, 0.095, 0.11, "obtaining it would most likely change the risk by less than 1 point"),
        (0.10, 0.099, 0.1012, "obtaining it would most likely change the risk by less than 0.5 points"),
        (0.30, 0.283, 0.316, "obtaining it would most likely change the risk by less than 2 points"),
        (0.10, 0.09, 0.25, "obtaining it could move the risk by up to 15 points (from 10.0 % to 25.0 %)"),
        (0.40, 0.12, 0.41, "obtaining it could move the risk by up to 28 points (from 40.0 % to 12.0 %)"),
        (
            0.20,
            0.13,
            0.275,
            "obtaining it could move the risk by up to 7.5 points (from 20.0 % to between 13.0 % and 27.5 %)",
        ),
        (0.0004, 0.0001, 0.05, "obtaining it could move the risk by up to 5 points (from < 0.1 % to 5.0 %)"),
    ],
)
def test_verdict_wording(current, p10, p90, expected):
    assert verdict(current, p10, p90) == expected
