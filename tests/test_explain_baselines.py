"""Structured baselines (mmnar_core.explain.attributions, issue 16 item 5a): Integrated Gradients from
training patients (expected gradients) gives a no-effect feature near-zero credit, where the old all-zero
encoded baseline ("no category set", a state no patient has) credits it for every patient.

A planted cohort: six numeric features with effects of decreasing size and `sex`, a categorical with no
effect at all, through the project's TabularEncoder (robust scaling, missing indicators, one-hot) and a
small MLP trained with weight decay (which spreads the intercept over the always-on one-hot columns, as a
real model does)."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from mmnar_core.encoders.tabular import TabularEncoder
from mmnar_core.explain.attributions import (
    AttributionError,
    AttributionSettings,
    feature_columns,
    integrated_gradients_rows,
    pick_references,
)
from mmnar_core.schema import FeatureKind, FeatureSpec

EFFECTS = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    n = 3000
    frame = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(len(EFFECTS))})
    frame.loc[rng.random(n) < 0.1, "f5"] = np.nan  # a missing indicator in the mix
    frame["sex"] = rng.choice(["F", "M"], size=n)
    logit = -2.0 + sum(b * frame[f"f{i}"].fillna(0).to_numpy() for i, b in enumerate(EFFECTS))
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    specs = [FeatureSpec(f"f{i}", FeatureKind.NUMERIC, "structured") for i in range(len(EFFECTS))]
    specs.append(FeatureSpec("sex", FeatureKind.CATEGORICAL, "structured", categories=("F", "M")))
    train, test = slice(0, 2500), slice(2500, n)
    encoder = TabularEncoder(specs).fit(frame.iloc[train])
    x = torch.from_numpy(encoder.transform(frame))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(encoder.dim, 16), nn.Tanh(), nn.Linear(16, 1))
    optimiser = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.05)
    y = torch.from_numpy(label)[:, None]
    for _ in range(300):
        optimiser.zero_grad()
        nn.functional.binary_cross_entropy_with_logits(model(x[train]), y[train]).backward()
        optimiser.step()
    model.eval()
    return encoder, model, x[train], x[test]


def _sex_ranks(encoder, model, references, patients, steps):
    def forward(v):
        return torch.sigmoid(model(v))

    groups = feature_columns(encoder)
    ranks, deltas = [], []
    for row in patients:
        attr, value, base = integrated_gradients_rows(forward, row[None], references, [0], steps)
        scores = np.array([abs(float(attr[0, columns].sum())) for _, columns in groups])
        order = list(np.argsort(-scores, kind="stable"))
        ranks.append(order.index(len(groups) - 1) + 1)  # sex is the last feature
        deltas.append(float(attr.sum()) - float(value[0] - base[0]))
    return np.array(ranks), np.array(deltas)


def test_a_no_effect_feature_ranks_in_the_bottom_half_with_training_baselines(planted):
    encoder, model, train, test = planted
    n_features = len(feature_columns(encoder))
    patients = test[:100]
    eg_ranks, eg_deltas = _sex_ranks(encoder, model, pick_references(train, 32), patients, 16)
    zero_ranks, _ = _sex_ranks(encoder, model, torch.zeros(1, encoder.dim), patients, 32)
    eg_bottom = float(np.mean(eg_ranks > n_features / 2))
    zero_bottom = float(np.mean(zero_ranks > n_features / 2))
    print(f"sex in the bottom half: training baselines {eg_bottom:.2f}, zero baseline {zero_bottom:.2f}")
    assert eg_bottom >= 0.9, (eg_bottom, np.bincount(eg_ranks))
    assert zero_bottom <= 0.5, (zero_bottom, np.bincount(zero_ranks))  # the old baseline fails the same check
    # completeness against the mean risk of the baselines, per patient
    assert np.abs(eg_deltas).max() < 5e-3  # risk units, 16 Gauss-Legendre steps per path


def test_integrated_gradients_rows_is_exact_for_a_linear_model():
    """For f(v) = v @ w the attribution of column j is exactly (x_j - mean baseline_j) * w_j, for each task."""
    w = torch.tensor([[1.0, -2.0], [0.5, 0.0], [-3.0, 1.0]])
    x = torch.tensor([[1.0, 2.0, 3.0]])
    baselines = torch.tensor([[0.0, 0.0, 0.0], [2.0, 2.0, 1.0]])
    attr, value, base = integrated_gradients_rows(lambda v: v @ w, x, baselines, [0, 1], 4)
    expected = (x - baselines.mean(0)) * w.T
    torch.testing.assert_close(attr, expected)
    torch.testing.assert_close(value, (x @ w)[0])
    torch.testing.assert_close(base, (baselines @ w).mean(0))


def test_pick_references_is_deterministic_and_spread():
    pool = torch.arange(100.0)[:, None]
    picked = pick_references(pool, 5)
    assert picked[:, 0].tolist() == [0.0, 25.0, 50.0, 74.0, 99.0]
    assert len(pick_references(pool[:3], 5)) == 3
    with pytest.raises(AttributionError, match="tabular_baseline"):
        AttributionSettings(tabular_baseline="median")


# ----------------------------------------------------------------------------- Grad-CAM (issue 16 item 5c)
def test_gradcam_layer_has_enough_cells_and_peaks_are_off_the_border():
    """On MobileNet at 128 pixels the last block is 4 x 4 cells (12 on the border; its map was all zero for
    half the X-rays): the chosen block has >= 16 cells per side, and a peak is a cell centre on the image,
    never a border pixel, even when the largest cell is a corner cell or lies on the square's padding."""
    from mmnar_core.encoders.config import ImageEncoderConfig
    from mmnar_core.encoders.image_backbone import ImageEncoder
    from mmnar_core.explain.attributions import _cell_peak, _cells_inside_image, gradcam_layer

    encoder = ImageEncoder(ImageEncoderConfig(arch="mobilenet_v3_small", input_size=128)).eval()
    name, layer = gradcam_layer(encoder, 128, 16)
    sides = []
    hook = layer.register_forward_hook(lambda _m, _i, out: sides.append(out.shape[-1]))
    with torch.no_grad():
        encoder(torch.zeros(1, 1, 128, 128))
    hook.remove()
    assert name == "features.3" and sides == [16]
    assert gradcam_layer(encoder, 128, 1)[0] == "features.12"  # the last block, for comparison

    cells = torch.zeros(16, 16)
    cells[0, 0] = 1.0  # a corner cell
    inside = _cells_inside_image(16, 128, 300, 300)
    row, col = _cell_peak(cells, inside, 128, 300, 300)
    assert 0 < row < 299 and 0 < col < 299 and row < 20 and col < 20
    # a wide image: the top rows of the square are padding; a larger value there is ignored
    wide = _cells_inside_image(16, 128, 100, 300)
    assert not wide[0].any() and wide[8].all()
    cells[0, 5] = 5.0
    cells[8, 5] = 2.0
    row, col = _cell_peak(cells, wide, 128, 100, 300)
    assert 0 < row < 99 and abs(col - (5.5 * 300 / 16)) < 3
    assert _cell_peak(torch.zeros(16, 16), inside, 128, 300, 300) is None  # an all-zero map has no peak
