import math

import numpy as np
import pytest
import torch

from mmnar_core.model import MMNARConfig, MMNARModel, pattern_ids
from mmnar_core.model.auxiliary import auxiliary_losses, choose_hidden
from mmnar_core.model.losses import masked_task_loss, symmetric_info_nce
from mmnar_core.patterns import encode_pattern


def _config(**overrides):
    base = dict(modalities=["structured", "cxr", "note"], input_dims=[5, 7, 3], tasks=["a", "b"], d_model=16,
                n_heads=2, n_layers=1, dropout=0.0, missingness_hidden=8)
    base.update(overrides)
    return MMNARConfig(**base)


def test_info_nce_matches_direct_loop():
    torch.manual_seed(0)
    r, x, tau = torch.randn(5, 4), torch.randn(5, 4), 0.1
    rn, xn = r / r.norm(dim=1, keepdim=True), x / x.norm(dim=1, keepdim=True)
    total = 0.0
    for i in range(5):
        s_row = [float(rn[i] @ xn[k]) / tau for k in range(5)]
        s_col = [float(rn[k] @ xn[i]) / tau for k in range(5)]
        total += -math.log(math.exp(s_row[i]) / sum(math.exp(v) for v in s_row))
        total += -math.log(math.exp(s_col[i]) / sum(math.exp(v) for v in s_col))
    assert symmetric_info_nce(r, x, tau).item() == pytest.approx(total / 10, rel=1e-5)


def test_info_nce_is_low_for_aligned_pairs():
    x = torch.eye(4)
    assert symmetric_info_nce(x, x, 0.1).item() < 1e-3
    assert symmetric_info_nce(x, x.roll(1, 0), 0.1).item() > 5


def test_masked_bce_hand_computed():
    logits = torch.tensor([[0.0, 2.0], [1.0, 0.0], [-1.0, 0.0]])
    labels = torch.tensor([[1.0, float("nan")], [0.0, 1.0], [float("nan"), float("nan")]])
    # task a: rows 0,1 -> (log 2 + log(1+e)) / 2 ; task b: row 1 -> log 2
    task_a = (math.log(2) + math.log(1 + math.e)) / 2
    expected = (task_a + math.log(2)) / 2
    assert masked_task_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    # focal with gamma 0 equals BCE
    assert masked_task_loss(logits, labels, kind="focal", gamma=0.0).item() == pytest.approx(expected, rel=1e-6)
    assert masked_task_loss(logits, torch.full_like(labels, float("nan"))).item() == 0.0


def test_torch_pattern_ids_match_the_one_encoding():
    availability = torch.tensor(np.array(np.meshgrid(*[[0, 1]] * 4)).T.reshape(-1, 4), dtype=torch.bool)
    assert pattern_ids(availability).tolist() == encode_pattern(availability.numpy()).tolist()


@pytest.mark.parametrize("gating,pattern", [(True, True), (False, True), (True, False)])
def test_absent_modality_input_changes_nothing(gating, pattern):
    torch.manual_seed(0)
    model = MMNARModel(_config(use_gating=gating, use_pattern_embedding=pattern)).eval()
    inputs = [torch.randn(6, 5), torch.randn(6, 7), torch.randn(6, 3)]
    availability = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    before = model(inputs, availability)
    changed = [x.clone() for x in inputs]
    for m in range(3):
        absent = ~availability[:, m]
        changed[m][absent] = float("nan")  # even NaN must not leak through the missing path
    after = model(changed, availability)
    assert torch.equal(before, after)
    assert torch.isfinite(after).all()
    # and a present modality does matter
    changed = [x.clone() for x in inputs]
    changed[1][3] = torch.randn(7) * 3
    assert not torch.allclose(model(changed, availability)[3], before[3])


def test_every_subset_and_single_modality_works():
    model = MMNARModel(_config()).eval()
    inputs = [torch.randn(8, 5), torch.randn(8, 7), torch.randn(8, 3)]
    availability = torch.tensor(np.array(np.meshgrid(*[[0, 1]] * 3)).T.reshape(-1, 3), dtype=torch.bool)
    logits = model(inputs, availability)
    assert logits.shape == (8, 2) and torch.isfinite(logits).all()
    one = MMNARModel(_config(modalities=["only"], input_dims=[4])).eval()
    assert one([torch.randn(3, 4)], torch.tensor([[1], [0], [1]], dtype=torch.bool)).shape == (3, 2)


def test_auxiliary_hides_only_observed_modalities_of_rows_with_two():
    availability = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows, hidden = choose_hidden(availability, generator)
        assert rows.tolist() == [1, 2, 3]
        assert availability[rows, hidden].all()
    model = MMNARModel(_config())
    inputs = [torch.randn(4, 5), torch.randn(4, 7), torch.randn(4, 3)]
    mse, nce = auxiliary_losses(model, inputs, availability, generator)
    assert mse.item() > 0 and torch.isfinite(nce)
    mse.backward()
    assert model.decoders[0][0].weight.grad is not None or model.decoders[1][0].weight.grad is not None


def test_config_round_trip_and_errors(tmp_path):
    config = _config()
    config.save(tmp_path / "c.json")
    assert MMNARConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown field"):
        MMNARConfig.from_dict({"modalities": [], "input_dims": [], "bogus": 1})
    with pytest.raises(ValueError, match="divisible"):
        _config(d_model=15)
