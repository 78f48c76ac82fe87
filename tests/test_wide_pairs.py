"""Pairwise interactions in the wide path (model.interactions, training.wide_pairs): hand-computable
columns, the score test against a plain reference, a planted interaction found and kept, additive risks
left alone by the validation gate, old bundles' configs, config refusals."""

import numpy as np
import pytest
import torch

from mmnar_core.model import MMNARConfig, MMNARModel
from mmnar_core.model.interactions import PairInteractions, coarse_edges
from mmnar_core.training import wide_pairs
from mmnar_core.training.data import ModelData
from mmnar_core.training.wide_init import init_wide_from_logistic

from support.wide_data import planted_structured, wide_model, wide_test_auroc


def test_pair_columns_are_products_of_bin_positions_and_zero_where_absent():
    module = PairInteractions(n_slots=2, n_bins=2)
    module.set_slot(0, (0, 2), (torch.tensor([0.0, 1.0, 3.0]), torch.tensor([0.0, 1.0])))  # 2 bins x 1 bin
    x = torch.tensor([[0.5, 9.0, 1.0], [2.0, 9.0, 0.0], [5.0, 9.0, 1.0]])
    present = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])
    out = module(x, present).view(3, 2, 2, 2)
    # row 0: feature 0 at 0.5 -> bins (0.5, 0); feature 2 at 1 -> (1, unused 0)
    assert out[0, 0].tolist() == [[0.5, 0.0], [0.0, 0.0]]
    # row 1: feature 0 at 2 -> (1, 0.5); feature 2 at 0 -> (0, 0): every product 0
    assert out[1, 0].abs().sum() == 0
    # row 2: feature 2's modality absent: the slot gives 0 whatever the values
    assert out[2, 0].abs().sum() == 0
    assert out[:, 1].abs().sum() == 0  # slot 1 unused
    module.clear_slot(0)
    assert module(x, present).abs().sum() == 0


def test_coarse_edges_are_quantiles_flags_get_one_bin_constants_none():
    assert coarse_edges(torch.arange(9.0), 2).tolist() == [0.0, 4.0, 8.0]
    assert coarse_edges(torch.tensor([0.0, 0.0, 0.0, 1.0]), 4).tolist() == [0.0, 1.0]
    assert coarse_edges(torch.full((5,), 2.0), 4) is None
    assert coarse_edges(torch.zeros(0), 4) is None


def test_score_statistic_matches_a_plain_computation_across_row_blocks(monkeypatch):
    rng = np.random.default_rng(0)
    n, n_features, n_bins = 300, 10, 3
    encoded = torch.as_tensor(rng.random((n_features, n, n_bins)))
    encoded[3, :, 2] = 0.0  # a feature using two bins only
    pairs = np.array([(i, j) for i in range(n_features) for j in range(i + 1, n_features)])
    monkeypatch.setattr(wide_pairs, "ROW_BLOCK", 64)  # the sums cross blocks of rows
    residual, weight = rng.normal(size=n) * 0.3, rng.uniform(0.05, 0.25, size=n)
    got = wide_pairs.score_pairs(encoded, pairs, residual, weight)
    single = wide_pairs.score_pairs(encoded.float(), pairs, residual, weight)  # as training calls it
    checked = [k for k, (i, j) in enumerate(pairs) if 3 in (i, j)][:3] + [0, 5, 20, len(pairs) - 1]
    for k in checked:
        i, j = pairs[k]
        a, b = encoded[i].numpy(), encoded[j].numpy()
        columns = np.stack([a[:, p] * b[:, q] for p in range(n_bins) for q in range(n_bins)], axis=1)
        keep = np.abs(columns).sum(axis=0) > 0
        columns = columns[:, keep]
        g = columns.T @ residual
        info = columns.T @ (columns * weight[:, None])
        want = g @ np.linalg.solve(info, g) - keep.sum()
        assert got[k] == pytest.approx(want, rel=1e-3, abs=1e-3)
        assert single[k] == pytest.approx(want, rel=1e-2, abs=1e-2)
    assert any(3 in pairs[k] for k in checked)  # the two-bin feature is among the checked pairs


def _interaction(n=6000, seed=0, strength=2.0) -> ModelData:
    """Task 'xor' depends on x0 * x1 only (no main effects: a GAM ranks at chance); 'line' on x2."""
    tasks = {"xor": lambda x: strength * x[:, 0] * x[:, 1], "line": lambda x: 1.5 * x[:, 2]}
    return planted_structured(tasks, n, seed, n_structured=6, n_other=3)


def test_a_planted_interaction_is_found_kept_and_ranks_test_patients():
    data = _interaction()
    with_pairs, without = wide_model(data), wide_model(data, wide_pairs=0)
    chosen = init_wide_from_logistic(with_pairs, data)
    init_wide_from_logistic(without, data)
    assert without.wide.pairs is None
    assert chosen[0]["pairs"][0] == ["structured", 0, "structured", 1]  # the planted pair ranks first
    assert chosen[0]["pair_gain_se"] > 3
    assert wide_test_auroc(without, data, 0) < 0.6  # the GAM cannot see a product
    assert wide_test_auroc(with_pairs, data, 0) > wide_test_auroc(without, data, 0) + 0.2
    # the untrained network is its wide path, pairs included
    inputs, availability, _ = data.take(data.rows("test"))
    with torch.no_grad():
        assert torch.allclose(
            with_pairs.eval()(inputs, availability),
            with_pairs.wide(with_pairs.standardise(inputs), availability),
            atol=1e-6,
        )
    # the pairs live in the state dict: a model rebuilt from config and weights gives the same logits
    rebuilt = MMNARModel(with_pairs.config)
    rebuilt.load_state_dict(with_pairs.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(inputs, availability), with_pairs(inputs, availability))


def test_additive_risks_keep_no_pairs_and_a_gate_of_zero_would():
    """Task 'line' is additive: the gate leaves its slots empty (weights 0) unless it is turned off."""
    data = _interaction(strength=0.0)  # no interaction anywhere
    model = wide_model(data)
    chosen = init_wide_from_logistic(model, data)
    assert all(entry["pairs"] == [] for entry in chosen)
    assert not model.wide.pairs.slot_used_.any()
    assert torch.count_nonzero(model.wide.pair_weight) == 0
    # the same data with the gate at 0 keeps any pair that lowers the validation loss at all: the gate is
    # what held them back (some task's pairs beat the GAM on validation by chance)
    loose = wide_model(data, wide_pair_gate_se=0.0)
    loose_chosen = init_wide_from_logistic(loose, data)
    gains = [entry["pair_gain_se"] for entry in loose_chosen]
    assert [bool(e["pairs"]) for e in loose_chosen] == [g is not None and g > 0 for g in gains]
    assert any(e["pairs"] for e in loose_chosen)  # this draw: 'line' gains 0.5 SE, kept only without the gate
    assert all(g is None or g < 1 for g in gains)


@pytest.mark.parametrize(
    "field, bad",
    [("wide_pairs", -1), ("wide_pairs", 1.5), ("wide_pairs", True), ("wide_pair_bins", 0), ("wide_pair_gate_se", -1)],
)
def test_config_refuses_bad_pair_settings(field, bad):
    with pytest.raises(ValueError, match=field):
        MMNARConfig(modalities=["a"], input_dims=[2], tasks=["t"], **{field: bad})


def test_a_bundle_config_written_before_pairs_builds_a_model_without_pair_slots():
    from mmnar_core.bundle import load_bundle
    from mmnar_core.resources import DEMO_BUNDLE

    bundle = load_bundle(DEMO_BUNDLE)
    assert "wide_pairs" not in (DEMO_BUNDLE / "config.json").read_text()
    assert bundle.config.wide_pairs == 0 and bundle.model.wide.pairs is None


def test_kept_pairs_are_named_by_column_in_the_report_and_listed_in_the_model_card():
    import json
    from types import SimpleNamespace

    from mmnar_core.encoders.tabular import TabularEncoder
    from mmnar_core.resources import DEMO_BUNDLE
    from mmnar_core.training.pipeline import model_card, name_wide_pairs

    state = next((DEMO_BUNDLE / "encoders").glob("tabular-*/tabular_state.json"))
    columns = TabularEncoder.load(state).output_names
    embeddings = SimpleNamespace(tabular_state_path=lambda modality: state)
    entries = [{"C": 0.001, "pairs": [["structured", 0, "structured", 2]]}, {"C": 0.01, "pairs": []}]
    named = name_wide_pairs(entries, embeddings)
    assert named[0]["pairs"] == [f"structured:{columns[0]} x structured:{columns[2]}"]
    assert named[1] == entries[1] and entries[0]["pairs"] == [["structured", 0, "structured", 2]]  # input untouched

    report = json.loads((DEMO_BUNDLE / "metrics.json").read_text())
    summary = json.loads((DEMO_BUNDLE / "dataset.json").read_text())
    config = MMNARConfig.load(DEMO_BUNDLE / "config.json")
    tasks = config.tasks
    report["training"]["wide_path_logistic"] = [named[0], *[{"pairs": []}] * (len(tasks) - 1)]
    card = model_card(summary, report, config, synthetic=True)
    assert f"- {tasks[0]}: structured:{columns[0]} x structured:{columns[2]}" in card
    report["training"]["wide_path_logistic"] = [{"pairs": []}] * len(tasks)
    assert "models together" not in model_card(summary, report, config, synthetic=True)


def test_pairs_turned_down_train_exactly_as_a_config_without_pair_slots():
    """The pair slots consume no random draws: when validation keeps no pair, training follows the same
    random stream and ends in the same model as a config with wide_pairs 0 (so earlier figures hold)."""
    from mmnar_core.training.trainer import predict_logits, train

    data = _interaction(n=1200, strength=0.0)
    runs = [
        train(
            MMNARConfig(**{**data.config_fields(), "d_model": 16, "n_heads": 2, "epochs": 2, "wide_pairs": k}),
            data,
            torch.device("cpu"),
            progress=False,
        )
        for k in (16, 0)
    ]
    assert [entry["pairs"] for entry in runs[0].wide] == [[], []]
    rows = data.rows("test")
    with_slots, without = (predict_logits(run.model, data, rows, torch.device("cpu")) for run in runs)
    assert np.array_equal(with_slots, without)
    assert [h["train_task_loss"] for h in runs[0].history] == [h["train_task_loss"] for h in runs[1].history]


def test_a_model_with_kept_pairs_passes_the_bundle_weight_check_and_predicts_the_same(tmp_path):
    """The slots' buffers (int64 features, bool masks) and the pair weight go through the bundle's
    safetensors check on the meta device and load into an identical model."""
    from safetensors.torch import save

    from mmnar_core.bundle import _load_model

    data = _interaction()
    model = wide_model(data)
    init_wide_from_logistic(model, data)
    assert model.wide.pairs.slot_used_.any()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    loaded = _load_model(tmp_path, model.config, "cpu", save(state))
    inputs, availability, _ = data.take(data.rows("test"))
    with torch.no_grad():
        assert torch.equal(loaded(inputs, availability), model.eval()(inputs, availability))
    assert torch.equal(loaded.wide.pairs.features_, model.wide.pairs.features_)
