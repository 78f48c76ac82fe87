"""The wide path as a GAM: piecewise-linear bins of the structured features, chosen on validation."""

import numpy as np
import pytest
import torch

from mmnar_core.model import MMNARConfig, MMNARModel
from mmnar_core.model.piecewise import PiecewiseLinearEncoding
from mmnar_core.numeric import sigmoid
from mmnar_core.patterns import encode_pattern
from mmnar_core.training.data import ModelData
from mmnar_core.training.wide_init import init_wide_from_logistic

from support.wide_data import planted_structured, wide_model, wide_test_auroc


def test_bins_are_train_quantiles_and_positions_are_hand_computable():
    x = torch.tensor([[float(v), v % 2] for v in range(10)])  # feature 0: 0..9; feature 1: a 0/1 flag
    encoding = PiecewiseLinearEncoding(2, 2).fit(x, torch.ones(10, dtype=torch.bool))
    # edges of feature 0 at the 0, 50 and 100 % quantiles: 0, 4.5, 9
    assert encoding.lower_[0].tolist() == pytest.approx([0.0, 4.5])
    assert encoding.width_[0].tolist() == pytest.approx([4.5, 4.5])
    assert encoding.used_.tolist() == [[True, True], [False, False]]  # a flag gets no bins
    out = encoding(torch.tensor([[2.25, 1.0], [6.75, 0.0], [-5.0, 1.0], [20.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[0.5, 0.0, 0, 0], [1.0, 0.5, 0, 0], [0.0, 0.0, 0, 0], [1.0, 1.0, 0, 0]]))


def test_bins_ignore_rows_where_the_modality_is_absent():
    x = torch.tensor([[0.0], [1.0], [2.0], [1000.0]])
    encoding = PiecewiseLinearEncoding(1, 2).fit(x, torch.tensor([True, True, True, False]))
    assert encoding.lower_[0].tolist() == pytest.approx([0.0, 1.0])
    assert encoding.width_[0].tolist() == pytest.approx([1.0, 1.0])


def _u_shaped(n=4000, seed=0) -> ModelData:
    """Task 'u' depends on x0 squared (invisible to a linear model); task 'line' on x1 linearly."""
    tasks = {"u": lambda x: 2.5 * (x[:, 0] ** 2 - 1), "line": lambda x: 1.5 * x[:, 1]}
    return planted_structured(tasks, n, seed, n_structured=3, n_other=4)


def test_logistic_start_fits_a_u_shaped_effect_with_bins_and_keeps_a_linear_one_linear():
    data = _u_shaped()
    gam = wide_model(data)
    chosen = init_wide_from_logistic(gam, data)
    linear = wide_model(data, wide_bins=0)
    init_wide_from_logistic(linear, data)
    assert chosen[0]["bins"] == 16  # validation chose the GAM for the U
    assert wide_test_auroc(gam, data, 0) > 0.75 > wide_test_auroc(linear, data, 0) + 0.15
    # a straight-line effect: whichever validation picks, the GAM start is as good as the linear one
    assert wide_test_auroc(gam, data, 1) == pytest.approx(wide_test_auroc(linear, data, 1), abs=0.01)
    # the untrained network *is* the fitted wide path, bins included
    inputs, availability, _ = data.take(data.rows("test"))
    with torch.no_grad():
        assert torch.allclose(
            gam.eval()(inputs, availability), gam.wide(gam.standardise(inputs), availability), atol=1e-6
        )


def test_only_structured_modalities_are_binned_and_absent_ones_give_zero_bins():
    data = _u_shaped(n=400)
    model = wide_model(data)
    assert model.wide.binned == [0]
    pair_slots = model.config.wide_pairs * len(data.tasks)  # 16 per task, 4 x 4 bins each
    assert model.wide.linear.in_features == 3 + 4 + 2 + 3 * 16
    assert model.wide.pair_weight.shape == (len(data.tasks), pair_slots * 4**2)
    inputs, availability, _ = data.take(np.arange(8))
    absent = availability.clone()
    absent[:, 0] = False
    with torch.no_grad():
        features = model.wide.features(model.standardise(inputs), absent)
    assert torch.count_nonzero(features[:, 3 + 4 + 2 :]) == 0


def test_config_checks_the_binned_modalities_and_old_configs_load_without_bins():
    with pytest.raises(ValueError, match="wide_binned names modality"):
        MMNARConfig(modalities=["a"], input_dims=[2], tasks=["t"], wide_binned=["b"])
    with pytest.raises(ValueError, match="wide_bins must be 0"):
        MMNARConfig(modalities=["a"], input_dims=[2], tasks=["t"], wide_bins=1)
    old = MMNARConfig.from_dict(
        {"modalities": ["a", "b"], "input_dims": [2, 3], "tasks": ["t"], "d_model": 16, "n_heads": 2}
    )  # a first-edition config.json has no wide_* bin fields
    assert MMNARModel(old).wide.linear.in_features == 2 + 3 + 2


def test_c_path_with_warm_starts_and_early_stop_finds_the_full_grid_answer(monkeypatch):
    """Walking C from strong to weak penalty, warm-started, and stopping after two values without a
    better validation loss picks the same C (and the same loss) as fitting the whole grid, in fewer fits."""
    from sklearn.linear_model import LogisticRegression

    from mmnar_core.training import logistic, wide_init

    data = _u_shaped(n=3000)
    model = wide_model(data, wide_bins=0)
    features = wide_init.wide_features(model, data.inputs, data.availability)
    labels = data.labels.numpy().astype(float)
    fits = []
    original = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, *a, **k: fits.append(self.C) or original(self, *a, **k))
    _, _, full = logistic.fit_l2_logistic(features, labels, data.rows("train"), data.rows("val"), patience=99)
    n_full = len(fits)
    fits.clear()
    _, _, path = logistic.fit_l2_logistic(features, labels, data.rows("train"), data.rows("val"))
    assert [c["C"] for c in path] == [c["C"] for c in full]
    assert [c["val_log_loss"] for c in path] == pytest.approx([c["val_log_loss"] for c in full], abs=1e-4)
    assert n_full == 2 * len(logistic.C_GRID) and len(fits) < n_full


def _noise_and_signal(n=3000, seed=1) -> ModelData:
    """Task 'struct' depends on the structured feature only; task 'image' on the image embedding's first
    column only; the other 199 image columns are noise."""
    rng = np.random.default_rng(seed)
    structured = rng.normal(size=(n, 2)).astype(np.float32)
    image = rng.normal(size=(n, 200)).astype(np.float32)
    availability = np.ones((n, 2), dtype=bool)
    struct = rng.random(n) < sigmoid(1.5 * structured[:, 0])
    seen = rng.random(n) < sigmoid(1.5 * image[:, 0])
    splits = np.array(["train"] * (n // 2) + ["val"] * (n // 4) + ["test"] * (n - n // 2 - n // 4))
    return ModelData(
        ["structured", "image"],
        ["struct", "image"],
        [torch.from_numpy(structured), torch.from_numpy(image)],
        torch.from_numpy(availability),
        torch.from_numpy(np.stack([struct, seen], 1).astype(np.float32)),
        encode_pattern(availability),
        splits,
        np.array([f"p{i}" for i in range(n)]),
        structured=["structured"],
    )


def test_choosing_content_drops_the_noise_embeddings_only_where_validation_says_so():
    data = _noise_and_signal()
    model = wide_model(data, wide_choose_content=True, wide_content_scales=[1.0])
    chosen = init_wide_from_logistic(model, data)
    assert [c["content"] for c in chosen] == ["structured", "all"]
    image_columns = slice(2, 202)
    weights = model.wide.linear.weight.detach()
    assert torch.count_nonzero(weights[0, image_columns]) == 0  # the structured-only task ignores the image
    assert abs(float(weights[1, 2])) > 5 * float(weights[1, 3:202].abs().max())  # the other reads column 0
    default = init_wide_from_logistic(wide_model(data, wide_content_scales=[1.0]), data)
    assert [c["content"] for c in default] == ["all", "all"]  # off unless asked for
    # the older switch is scale 0 in the list: the same candidates, the same model
    listed = wide_model(data, wide_content_scales=[1.0, 0.0])
    assert init_wide_from_logistic(listed, data) == chosen
    assert torch.equal(listed.wide.linear.weight, model.wide.linear.weight)
    assert model.config.wide_content_scales == [1.0, 0.0] and not model.config.wide_choose_content


def test_embedding_weights_get_their_own_penalty_where_validation_wants_it_and_fold_back_exactly():
    """Default scales (1, 0.3, 0.1): the task whose 200 image dimensions are noise fits them at a
    stronger penalty (scale < 1) and ranks test patients better than one shared penalty; the task read
    from one image column keeps scale 1. The folded weights give the logits of the fit on s * image."""
    from sklearn.linear_model import LogisticRegression

    data = _noise_and_signal()
    shared = wide_model(data, wide_content_scales=[1.0], wide_bins=0)
    init_wide_from_logistic(shared, data)
    model = wide_model(data, wide_bins=0)
    chosen = init_wide_from_logistic(model, data)
    assert chosen[0]["content_scale"] < 1.0 and chosen[1]["content_scale"] == 1.0
    assert wide_test_auroc(model, data, 0) > wide_test_auroc(shared, data, 0) + 0.02
    assert wide_test_auroc(model, data, 1) == pytest.approx(wide_test_auroc(shared, data, 1), abs=1e-6)

    inputs, availability, labels = data.take(data.rows("train"))
    features = model.wide.features(model.standardise(inputs), availability).numpy().astype(np.float64)
    s = chosen[0]["content_scale"]
    features[:, 2:202] *= s  # columns: structured (2), image (200), flags (2)
    reference = LogisticRegression(C=chosen[0]["C"], max_iter=2000, tol=1e-5).fit(features, labels[:, 0].numpy())
    test_inputs, test_availability, _ = data.take(data.rows("test"))
    test_features = model.wide.features(model.standardise(test_inputs), test_availability).numpy()
    with torch.no_grad():
        ours = model.wide(model.standardise(test_inputs), test_availability)[:, 0].numpy()
    expected = reference.decision_function(
        np.concatenate([test_features[:, :2], s * test_features[:, 2:202], test_features[:, 202:]], axis=1)
    )
    assert np.allclose(ours, expected, atol=2e-3)


def test_a_stronger_embedding_penalty_must_beat_scale_one_by_the_gate_in_paired_standard_errors():
    """`_choose` by hand: the per-row validation log losses of two candidates give a paired t of the
    difference; a gate just below it switches to the penalised candidate, just above it keeps scale 1,
    and a candidate with a higher loss is never taken."""
    from mmnar_core.training.wide_init import _choose

    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 1))
    y = (rng.random(400) < sigmoid(0.8 * x[:, 0])).astype(float)
    val = np.arange(400)

    def candidate(w, scale, b=0.0):
        z = w * x[:, 0] + b
        loss = np.log1p(np.exp(z)) - y * z
        entry = {"C": 1.0, "val_log_loss": float(loss.mean()), "content_scale": scale, "bins": 0}
        return {"weights": np.array([w]), "intercept": b, "entry": entry}, loss

    base, base_loss = candidate(0.3, 1.0)
    better, better_loss = candidate(0.8, 0.3)
    worse, _ = candidate(-0.5, 0.1)
    d = better_loss - base_loss
    t = -d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    assert t > 1.0
    assert _choose([base, better, worse], x, y, val, t - 0.01)["entry"]["content_scale"] == 0.3
    assert _choose([base, better, worse], x, y, val, t - 0.01)["entry"]["gain_se"] == pytest.approx(t, abs=0.01)
    assert _choose([base, better, worse], x, y, val, t + 0.01)["entry"]["content_scale"] == 1.0
    assert _choose([base, worse], x, y, val, 0.0)["entry"]["content_scale"] == 1.0


def test_scale_one_is_always_a_candidate_so_any_scale_list_works_with_or_without_bins():
    data = _noise_and_signal()
    for bins in (0, 16):
        chosen = init_wide_from_logistic(wide_model(data, wide_content_scales=[0.1], wide_bins=bins), data)
        assert chosen[1]["content_scale"] == 1.0  # the task read from one image column keeps it unpenalised


def test_config_refuses_content_scales_outside_zero_one():
    for bad in ([], [-0.1], [1.5], [True], ["0.3"]):
        with pytest.raises(ValueError, match="wide_content_scales"):
            MMNARConfig(modalities=["a"], input_dims=[2], tasks=["t"], wide_content_scales=bad)
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="wide_scale_gate_se"):
            MMNARConfig(modalities=["a"], input_dims=[2], tasks=["t"], wide_scale_gate_se=bad)


def test_take_rows_is_a_view_for_one_run_and_linear_logit_is_the_float64_product():
    from mmnar_core.training.logistic import linear_logit, take_rows

    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    view = take_rows(x, np.arange(3, 7))
    assert np.shares_memory(view, x) and np.array_equal(view, x[3:7])
    scattered = take_rows(x, np.array([1, 3, 4]))
    assert not np.shares_memory(scattered, x) and np.array_equal(scattered, x[[1, 3, 4]])
    assert np.array_equal(take_rows(x, np.array([4, 3])), x[[4, 3]])  # a descending run is not a slice
    rng = np.random.default_rng(0)
    f32, w = rng.normal(size=(1000, 7)).astype(np.float32), rng.normal(size=7)
    blocked = linear_logit(f32, w, 0.5, block=64)
    assert blocked.dtype == np.float64
    assert np.allclose(blocked, f32.astype(np.float64) @ w + 0.5, rtol=0, atol=1e-12)
