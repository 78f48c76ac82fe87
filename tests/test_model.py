import math

import numpy as np
import pytest
import torch

from mmnar_core.model import MMNARConfig, MMNARModel, pattern_ids
from mmnar_core.model.auxiliary import auxiliary_losses, choose_hidden
from mmnar_core.model.losses import masked_task_loss, symmetric_info_nce
from mmnar_core.patterns import encode_pattern


def _live(model):
    """Heads' output layers start at zero (the untrained network is its wide path); give them weights so
    tests can see the fused representation move the logits."""
    with torch.no_grad():
        for layer in model.heads.out:
            layer.weight.normal_(0, 0.5)
    return model


def _config(**overrides):
    base = dict(
        modalities=["structured", "cxr", "note"],
        input_dims=[5, 7, 3],
        tasks=["a", "b"],
        d_model=16,
        n_heads=2,
        n_layers=1,
        dropout=0.0,
        missingness_hidden=8,
    )
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
    model = _live(MMNARModel(_config(use_gating=gating, use_pattern_embedding=pattern))).eval()
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
    decoders = [layer.weight.grad for layer in model.decoders.hidden]
    assert any(g is not None and g.abs().sum() > 0 for g in decoders)


def test_one_training_pass_equals_the_task_pass_and_a_separate_refusion():
    """The trainer's one pass (shared projections, the re-fused rows in the same batch) gives exactly the
    task pass's member logits and what `fuse_without` gives the rows with a modality hidden: the hidden
    modality's projection, present in the shared batch, must have no effect. Planted: the hidden
    modality's input is huge, so any leak would move the re-fused representation far off."""
    torch.manual_seed(0)
    model = _live(MMNARModel(_config(n_members=2))).eval()
    inputs = [torch.randn(5, 5), torch.randn(5, 7), torch.randn(5, 3)]
    availability = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 0]], dtype=torch.bool)
    rows, hidden = torch.tensor([0, 1, 3]), torch.tensor([1, 2, 2])
    for r, m in zip(rows.tolist(), hidden.tolist()):
        inputs[m][r] = 1e4
    unseen = torch.tensor([False, True, False, False, False])
    with torch.no_grad():
        logits, standardised, without = model.member_logits_and_without(inputs, availability, rows, hidden, unseen)
        assert torch.allclose(logits, model.member_logits(inputs, availability, unseen), atol=1e-6)
        alone = model.fuse_without([x[rows] for x in standardised], availability[rows], hidden)
    assert without.shape == (2, 3, 16)
    assert torch.allclose(without, alone, atol=1e-6)
    # and the hidden modality would have mattered, had it leaked
    kept = model.fusion([x[rows] for x in standardised], availability[rows])
    assert (kept - alone).abs().max() > 0.1


def test_config_round_trip_and_errors(tmp_path):
    config = _config()
    config.save(tmp_path / "c.json")
    assert MMNARConfig.load(tmp_path / "c.json") == config
    with pytest.raises(ValueError, match="unknown field"):
        MMNARConfig.from_dict({"modalities": [], "input_dims": [], "bogus": 1})
    with pytest.raises(ValueError, match="divisible"):
        _config(d_model=15)


# ------------------------------------------------------------------------------ training-bug regressions


def test_uniform_draws_on_the_generators_device_then_moves(monkeypatch):
    """PyTorch refuses a CPU generator for a CUDA draw. Emulate that check on CPU: a draw whose device
    differs from its generator's fails, so the draw must happen on the generator's device and be moved."""
    from mmnar_core.model import auxiliary

    real_rand = torch.rand

    def strict_rand(*shape, generator=None, device=None, **kwargs):
        if generator is not None and device is not None and torch.device(device) != generator.device:
            raise RuntimeError(
                f"Expected a '{torch.device(device).type}' device type for generator "
                f"but found '{generator.device.type}'"
            )
        return real_rand(*shape, generator=generator, device=device, **kwargs)

    monkeypatch.setattr(auxiliary.torch, "rand", strict_rand)
    generator = torch.Generator().manual_seed(0)
    drawn = auxiliary.uniform((4, 3), generator, torch.device("meta"))  # a device the generator is not on
    assert drawn.device.type == "meta" and tuple(drawn.shape) == (4, 3)
    again = auxiliary.uniform((4, 3), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert torch.equal(again, real_rand((4, 3), generator=torch.Generator().manual_seed(0)))


def test_structured_standardisation_is_per_feature_not_per_patient():
    """A patient's standardised feature must not depend on their other features (LayerNorm over the
    vector did exactly that): change feature 1 and feature 0's standardised value stays the same."""
    model = MMNARModel(_config())
    train = [
        torch.tensor([[0.0, 10, 1, 0, 5], [2.0, 30, 0, 1, 5], [4.0, 20, 1, 1, 5]]),
        torch.randn(3, 7),
        torch.randn(3, 3),
    ]
    model.fit_inputs(train, torch.ones(3, 3, dtype=torch.bool))
    standardizer = model.standardizers[0]
    assert torch.allclose(standardizer.mean_, torch.tensor([2.0, 20, 2 / 3, 2 / 3, 5]))
    assert torch.allclose(standardizer.scale_[:2], torch.tensor([2.0, 10.0]))
    assert standardizer.scale_[4] == 1.0  # a constant feature keeps scale 1
    one = standardizer(torch.tensor([[4.0, 10, 0, 0, 5]]))
    other = standardizer(torch.tensor([[4.0, 1000, 1, 1, 5]]))
    assert one[0, 0] == pytest.approx(1.0) and other[0, 0] == pytest.approx(1.0)


def test_standardisation_uses_only_rows_where_the_modality_is_present():
    model = MMNARModel(_config())
    x = torch.tensor([[1.0] * 5, [3.0] * 5, [1000.0] * 5])
    present = torch.tensor([[1, 1, 1], [1, 1, 1], [0, 1, 1]], dtype=torch.bool)
    model.fit_inputs([x, torch.randn(3, 7), torch.randn(3, 3)], present)
    assert torch.allclose(model.standardizers[0].mean_, torch.full((5,), 2.0))


def test_unseen_pattern_uses_the_learned_unseen_token():
    """A pattern absent from training must not use its own (never trained, random) embedding."""
    torch.manual_seed(0)
    model = _live(MMNARModel(_config(n_members=1, use_wide=False))).eval()
    train_availability = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)  # patterns 7, 1, 3
    model.fit_inputs([torch.randn(3, 5), torch.randn(3, 7), torch.randn(3, 3)], train_availability)
    fusion = model.fusion
    assert fusion.seen_patterns_.nonzero().flatten().tolist() == [1, 3, 7]
    inputs = [torch.randn(2, 5), torch.randn(2, 7), torch.randn(2, 3)]
    availability = torch.tensor([[0, 1, 1], [1, 1, 1]], dtype=torch.bool)  # pattern 6 (unseen), 7 (seen)
    before = model(inputs, availability)
    with torch.no_grad():
        fusion.pattern_embedding[:, 6] += torch.randn(16) * 3  # the unseen pattern's own row: must not matter
    assert torch.equal(model(inputs, availability)[0], before[0])
    with torch.no_grad():
        fusion.pattern_embedding[:, fusion.n_patterns] += torch.randn(16) * 3  # the unseen token: must matter
    after = model(inputs, availability)
    assert not torch.allclose(after[0], before[0]) and torch.equal(after[1], before[1])
    # the training-time switch sends a seen pattern to the unseen token too
    forced = fusion.pattern_index(availability, unseen=torch.tensor([False, True]))
    assert forced.tolist() == [fusion.n_patterns, fusion.n_patterns]  # 6 is unseen, 7 is forced
    assert fusion.pattern_index(availability).tolist() == [fusion.n_patterns, 7]


def test_members_are_averaged_and_wide_path_is_shared():
    torch.manual_seed(0)
    model = _live(MMNARModel(_config(n_members=3))).eval()
    with torch.no_grad():
        model.wide.linear.bias.fill_(0.7)
    inputs = [torch.randn(4, 5), torch.randn(4, 7), torch.randn(4, 3)]
    availability = torch.ones(4, 3, dtype=torch.bool)
    members = model.member_logits(inputs, availability)
    assert members.shape == (3, 4, 2)
    assert torch.allclose(model(inputs, availability), members.mean(dim=0))
    assert not torch.allclose(members[0], members[1])  # independently initialised
    assert model.represent(inputs, availability).shape == (4, 3 * 16)


def test_batched_members_equal_separately_run_members():
    """Member k of a K-member model computes exactly what a 1-member model with member k's weights does:
    the batched layers neither mix members nor differ from running them one by one."""
    torch.manual_seed(0)
    big = _live(MMNARModel(_config(n_members=3, use_wide=False))).eval()
    inputs = [torch.randn(6, 5), torch.randn(6, 7), torch.randn(6, 3)]
    availability = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    together = big.member_logits(inputs, availability)
    for k in range(3):
        small = MMNARModel(_config(n_members=1, use_wide=False)).eval()
        state = {
            name: (
                value[k : k + 1]
                if value.dim() and value.shape[0] == 3 and "standardizers" not in name and "seen_patterns_" not in name
                else value
            )
            for name, value in big.state_dict().items()
        }
        small.load_state_dict(state)
        assert torch.allclose(small.member_logits(inputs, availability)[0], together[k], atol=1e-6)


def test_config_rejects_runs_that_would_crash():
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        _config(epochs=0)
    with pytest.raises(ValueError, match="both are off"):
        _config(pretrain_epochs=2, use_reconstruction=False, use_contrastive=False)
    with pytest.raises(ValueError, match="n_members"):
        _config(n_members=0)
    _config(pretrain_epochs=2, use_reconstruction=False)  # one auxiliary loss is enough


def test_member_dropout_has_inverted_dropout_statistics():
    from mmnar_core.model.member_layers import dropout

    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.25, training=True)
    zeros = float((y == 0).float().mean())
    assert zeros == pytest.approx(0.25, abs=0.005)  # the share dropped is p
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / 0.75)]  # kept values scaled by 1/(1-p)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows through kept units only, with the same scale
    assert dropout(x, 0.25, training=False) is x and dropout(x, 0.0, training=True) is x


def test_member_dropout_reads_every_random_bit_it_claims():
    """Each int32 word gives two elements their draws (its two 15-bit halves): both halves must be uniform.
    Planted fault it catches: reading the low half as a signed 16-bit number (sign bit unmasked) keeps about
    a quarter of those elements at p = 0.5 instead of a half."""
    from mmnar_core.model.member_layers import dropout

    torch.manual_seed(1)
    y = dropout(torch.ones(400_000), 0.5, training=True)
    assert float((y[0::2] > 0).float().mean()) == pytest.approx(0.5, abs=0.005)
    assert float((y[1::2] > 0).float().mean()) == pytest.approx(0.5, abs=0.005)
    odd = dropout(torch.ones(3, 5, 7), 0.1, training=True)  # an odd element count, a 3-d shape
    assert odd.shape == (3, 5, 7)
    assert dropout(torch.ones(10), 1.0, training=True).eq(0).all()


def test_attend_equals_scaled_dot_product_attention_with_the_same_mask():
    """The written-out attention (keys-first scores) gives what PyTorch's masked attention gives; masked keys,
    planted with huge values, have no effect."""
    import torch.nn.functional as F

    from mmnar_core.model.member_layers import attend

    torch.manual_seed(0)
    q, key, value = (torch.randn(3, 4, 2, 5, 8) for _ in range(3))
    keep = torch.rand(4, 5) < 0.6
    keep[:, 0] = True
    value = torch.where(keep.view(1, 4, 1, 5, 1), value, torch.full_like(value, 1e6))
    key = torch.where(keep.view(1, 4, 1, 5, 1), key, torch.full_like(key, 1e3))
    mask = keep.view(1, 4, 1, 1, 5)
    expected = F.scaled_dot_product_attention(q, key, value, attn_mask=mask)
    got = attend(q, key, value, keep.view(1, 4, 1, 5), 0.0, training=False)
    assert torch.allclose(got, expected, atol=1e-5)


def test_packed_fusion_equals_each_patient_fused_from_its_present_tokens_alone():
    """The fusion runs the layers on the present tokens only (packed). Reference, written independently: for
    each patient and member, the pattern token and that patient's present modality tokens alone through a
    textbook pre-norm encoder layer (no mask needed), then their mean and the final norm."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    config = _config(n_members=2, n_heads=2)
    fusion = MMNARModel(config).fusion.eval()
    for parameter in fusion.parameters():  # away from the initial zeros and ones, so every term matters
        parameter.data.add_(torch.randn_like(parameter) * 0.2)
    inputs = [torch.randn(6, 5), torch.randn(6, 7), torch.randn(6, 3)]
    present = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0], [0, 0, 0]], dtype=torch.bool)
    got = fusion(inputs, present)  # (K, B, d)
    projected = fusion.project(inputs, present)
    gates = torch.sigmoid(fusion.gates(F.gelu(fusion.missingness[1](F.gelu(fusion.missingness[0](present.float()))))))
    layer, d, h = fusion.layers[0], config.d_model, config.n_heads

    def norm(x, ln, k):
        return F.layer_norm(x, (d,)) * ln.weight[k] + ln.bias[k]

    def linear(x, lin, k):
        return x @ lin.weight[k] + lin.bias[k, 0]

    for k in range(2):
        for b in range(6):
            index = fusion.pattern_index(present[b : b + 1])[0]
            tokens = [fusion.pattern_embedding[k, index]] + [
                gates[k, b].view(3, d)[m] * projected[k, b, m] + fusion.type_embedding[k, m]
                for m in range(3)
                if present[b, m]
            ]
            x = torch.stack(tokens)  # (n, d)
            q, key, value = linear(norm(x, layer.norm1, k), layer.qkv, k).view(len(x), 3, h, d // h).unbind(1)
            heads = F.scaled_dot_product_attention(q.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1))
            x = x + linear(heads.transpose(0, 1).reshape(len(x), d), layer.out, k)
            x = x + linear(F.gelu(linear(norm(x, layer.norm2, k), layer.ff1, k)), layer.ff2, k)
            expected = norm(x.mean(dim=0), fusion.norm, k)
            assert torch.allclose(got[k, b], expected, atol=1e-5), (k, b)


def test_info_nce_of_several_members_is_the_mean_of_their_losses():
    torch.manual_seed(0)
    reconstructed, original = torch.randn(3, 6, 4), torch.randn(6, 4)
    each = [symmetric_info_nce(r, original, 0.2) for r in reconstructed]
    assert symmetric_info_nce(reconstructed, original, 0.2).item() == pytest.approx(
        float(torch.stack(each).mean()), rel=1e-6
    )


def test_auxiliary_fraction_keeps_that_share_of_the_eligible_rows_only():
    availability = torch.ones(20_000, 3, dtype=torch.bool)
    availability[::4, 1:] = False  # a quarter of the rows have one modality: never eligible
    generator = torch.Generator().manual_seed(0)
    rows, hidden = choose_hidden(availability, generator, fraction=0.3)
    assert len(rows) / 15_000 == pytest.approx(0.3, abs=0.015)
    assert not (rows % 4 == 0).any() and availability[rows, hidden].all()
    everyone, _ = choose_hidden(availability, generator)
    assert len(everyone) == 15_000
    with pytest.raises(ValueError, match="aux_fraction"):
        _config(aux_fraction=0.0)
