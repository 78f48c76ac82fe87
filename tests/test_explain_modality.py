import itertools

import numpy as np
import pytest
import torch

from mmnar_core.explain.modality import (
    ReferenceSet,
    shapley_values,
    subset_availability,
    value_of_absent,
    what_if,
)
from mmnar_core.model import MMNARConfig, MMNARModel


def test_subsets_hand_case():
    available, masks = subset_availability(np.array([True, False, True]))
    assert available == [0, 2]
    assert masks.tolist() == [[False, False, False], [True, False, False], [False, False, True], [True, False, True]]


def _additive_score(weights):
    """v(S) = sum of weights of present modalities (+ an interaction between 0 and 1)."""

    def score(inputs, availability):
        a = availability.numpy().astype(float)
        value = a @ np.asarray(weights) + 0.5 * a[:, 0] * a[:, 1]
        return np.stack([value, 2 * value], axis=1)

    return score


def test_shapley_exact_on_a_hand_game():
    score = _additive_score([0.1, 0.2, 0.3])
    result = what_if(score, [torch.zeros(1, 2)] * 3, np.array([True, True, True]))
    phi = shapley_values(result)
    # the interaction 0.5 is split equally between modalities 0 and 1
    assert phi[:, 0] == pytest.approx([0.35, 0.45, 0.3])
    assert phi[:, 1] == pytest.approx([0.7, 0.9, 0.6])


def test_shapley_sums_to_full_minus_none_with_the_model():
    torch.manual_seed(0)
    config = MMNARConfig(
        modalities=["a", "b", "c", "d"],
        input_dims=[3, 4, 2, 5],
        tasks=["x", "y"],
        d_model=16,
        n_heads=2,
        n_layers=1,
        dropout=0.0,
    )
    model = MMNARModel(config).eval()

    def score(inputs, availability):
        with torch.no_grad():
            return torch.sigmoid(model(inputs, availability)).numpy()

    inputs = [torch.randn(1, d) for d in config.input_dims]
    for pattern in itertools.product([False, True], repeat=4):
        availability = np.array(pattern)
        result = what_if(score, inputs, availability)
        phi = shapley_values(result)
        assert phi.shape == (availability.sum(), 2)
        full, none = result.risks[-1], result.risks[0]
        assert np.allclose(phi.sum(axis=0), full - none, atol=1e-9)
        # the subset with everything equals scoring the patient directly
        assert np.allclose(full, score(inputs, torch.from_numpy(availability).unsqueeze(0))[0], atol=1e-6)


def test_value_of_absent_uses_reference_patients_who_had_it():
    torch.manual_seed(0)
    config = MMNARConfig(
        modalities=["s", "img"], input_dims=[3, 2], tasks=["x"], d_model=16, n_heads=2, n_layers=1, dropout=0.0
    )
    model = MMNARModel(config).eval()

    def score(inputs, availability):
        with torch.no_grad():
            return torch.sigmoid(model(inputs, availability)).numpy()

    reference = ReferenceSet(
        [torch.randn(50, 3), torch.randn(50, 2)], torch.tensor([[True, i % 2 == 0] for i in range(50)])
    )
    patient = [torch.randn(1, 3), torch.zeros(1, 2)]
    value = value_of_absent(score, patient, np.array([True, False]), reference, modality=1)
    # fitted on the 25 who had it; one draw per leave-one-out residual
    assert value.n_neighbours == 25 and value.n_candidates == 25 and value.n_draws == 25
    assert value.regressors == (0,)
    assert value.p10[0] <= value.mean[0] <= value.p90[0]
    assert len(value.verdicts) == 1 and value.verdicts[0].startswith("obtaining it")
    with pytest.raises(ValueError, match="already available"):
        value_of_absent(score, patient, np.array([True, True]), reference, modality=1)
    nobody = ReferenceSet(reference.inputs, torch.tensor([[True, False]] * 50))
    assert value_of_absent(score, patient, np.array([True, False]), nobody, modality=1) is None

    # the conditional model is fitted once per (modality, regressors), with the same result
    fresh = ReferenceSet(reference.inputs, reference.availability)
    other = [torch.randn(1, 3), torch.zeros(1, 2)]
    first = value_of_absent(score, patient, np.array([True, False]), fresh, modality=1)
    fitted = fresh.conditional(1, (0,))
    again = value_of_absent(score, other, np.array([True, False]), fresh, modality=1)
    assert list(fresh._conditional) == [(1, (0,))] and fresh.conditional(1, (0,)) is fitted
    assert np.array_equal(first.mean, value.mean) and np.array_equal(first.p90, value.p90)
    assert again.n_candidates == 25 and again.n_neighbours == 25
