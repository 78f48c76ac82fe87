"""Baselines and ablations: each baseline learns the planted signal, the zero-fill variant really has no
availability input, the gradient-boosting path uses train labels only, and the mean ± sd table
matches hand-computed numbers."""

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from mmnar_core.baselines import (
    MODELS,
    ConcatMLP,
    baseline_config,
    fit_gbt,
    fit_model,
    format_mean_sd,
    gbt_features,
    markdown_table,
    mean_sd,
    oracle_metrics,
    run_benchmark,
    spec_config,
    summarise,
)
from mmnar_core.cli import build_parser, main
from mmnar_core.model import MMNARConfig
from mmnar_core.training.trainer import train
from mmnar_lab.planted import planted_data

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data():
    return planted_data(n=1500)


def small_config(data, **overrides):
    values = dict(
        modalities=data.modalities,
        input_dims=data.input_dims,
        tasks=data.tasks,
        d_model=32,
        n_heads=2,
        n_layers=1,
        epochs=6,
        batch_size=128,
        patience=3,
    )
    values.update(overrides)
    return MMNARConfig(**values)


def _auroc(data, logits, task=0):
    rows = data.rows("test")
    return roc_auc_score(data.labels[rows, task].numpy(), logits[:, task])


@pytest.mark.parametrize(
    "name", ["concat_zero_fill", "concat_mask", "concat_dropout", "structured_only", "hgb", "logistic", "lightgbm"]
)
def test_each_baseline_learns_the_planted_signal(data, name):
    fitted = fit_model(MODELS[name], data, small_config(data), seed=0, device=CPU, structured=[0])
    assert fitted.test.shape == (len(data.rows("test")), 2) and fitted.val.shape == (len(data.rows("val")), 2)
    assert np.isfinite(fitted.test).all()
    # risk is a logistic function of 5z; every baseline sees z through modality "a" at least
    assert _auroc(data, fitted.test) > 0.85, name
    assert fitted.info["seconds"] >= 0


def _random_inputs(n=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, dim, generator=generator) for dim in (6, 8, 4)]


def test_zero_fill_variant_gets_no_availability_input(data):
    config = baseline_config(small_config(data))
    torch.manual_seed(0)
    zero_fill = ConcatMLP(config, use_availability=False).eval()
    with_mask = ConcatMLP(config, use_availability=True).eval()
    inputs = _random_inputs()
    generator = torch.Generator().manual_seed(1)
    first = torch.rand(64, 3, generator=generator) < 0.6
    second = first.clone()
    second[:, 1] = ~second[:, 1]  # differs only in whether modality 1 counts as present
    both = first & second
    zero_filled = [torch.where(both[:, m : m + 1], x, torch.zeros_like(x)) for m, x in enumerate(inputs)]
    with torch.no_grad():
        assert torch.equal(zero_fill(zero_filled, first), zero_fill(zero_filled, second))
        assert not torch.allclose(with_mask(zero_filled, first), with_mask(zero_filled, second))
        # an absent modality's slot is never read, even when it holds NaN
        poisoned = [torch.where(first[:, m : m + 1], x, torch.full_like(x, float("nan"))) for m, x in enumerate(inputs)]
        clean = [torch.where(first[:, m : m + 1], x, torch.zeros_like(x)) for m, x in enumerate(inputs)]
        assert torch.equal(zero_fill(poisoned, first), zero_fill(clean, first))
        assert torch.equal(with_mask(poisoned, first), with_mask(clean, first))


def test_structured_only_reads_only_its_modalities(data):
    model = ConcatMLP(baseline_config(small_config(data)), use_availability=True, modalities=[0]).eval()
    inputs = _random_inputs()
    availability = torch.ones(64, 3, dtype=torch.bool)
    changed = [inputs[0], torch.randn(64, 8), torch.randn(64, 4)]
    other_availability = availability.clone()
    other_availability[:, 1:] = False
    with torch.no_grad():
        assert torch.equal(model(inputs, availability), model(changed, other_availability))
    assert model.body[0].in_features == 6 + 1  # modality "a" and its availability bit


def test_mlp_refuses_an_auxiliary_objective(data):
    with pytest.raises(ValueError, match="no auxiliary objective"):
        ConcatMLP(small_config(data), use_availability=False)
    with pytest.raises(ValueError, match="distinct and in 0..2"):
        ConcatMLP(baseline_config(small_config(data)), use_availability=False, modalities=[0, 3])


def test_configs_of_ablations_and_baselines(data):
    base = small_config(data, pretrain_epochs=2)
    assert spec_config(MODELS["mmnar_no_gating"], base, seed=4).use_gating is False
    assert spec_config(MODELS["mmnar_no_pattern_embedding"], base, 0).use_pattern_embedding is False
    assert spec_config(MODELS["mmnar_no_reconstruction"], base, 0).use_reconstruction is False
    assert spec_config(MODELS["mmnar_no_contrastive"], base, 0).use_contrastive is False
    full = spec_config(MODELS["mmnar"], base, seed=4)
    assert full.seed == 4 and full.use_gating and full.pretrain_epochs == 2
    dropout = spec_config(MODELS["concat_dropout"], base, 0, modality_dropout=0.25)
    assert dropout.modality_dropout == 0.25 and not dropout.use_reconstruction and not dropout.use_contrastive
    assert dropout.pretrain_epochs == 0
    assert spec_config(MODELS["concat_zero_fill"], base, 0).modality_dropout == 0.0
    assert MODELS["mmnar_no_rectifier"].run_key == "mmnar"
    assert MODELS["mmnar"].probabilities == "rectified" and MODELS["mmnar_no_rectifier"].probabilities == "calibrated"


def test_wide_only_row_is_the_start_the_trainer_scores_before_the_first_epoch(data):
    """`mmnar_wide_only` is the untrained network: its validation loss is the trainer's initial one, and
    it learns the planted signal without any member (the signal is linear in modality "a")."""
    from mmnar_core.training.trainer import validation_score

    config = small_config(data, pretrain_epochs=0, epochs=1)
    fitted = fit_model(MODELS["mmnar_wide_only"], data, config, seed=0, device=CPU)
    result = train(config, data, CPU, progress=False)
    val_labels = data.labels[data.rows("val")].numpy()
    assert validation_score(fitted.val, val_labels) == pytest.approx(result.initial_val_loss, abs=1e-6)
    assert fitted.info["chosen"] == result.wide
    assert _auroc(data, fitted.test) > 0.85
    with pytest.raises(ValueError, match="needs the wide path"):
        fit_model(MODELS["mmnar_wide_only"], data, small_config(data, use_wide=False), seed=0, device=CPU)


def test_trainer_builds_the_given_module(data):
    config = baseline_config(small_config(data, epochs=1))
    result = train(config, data, CPU, progress=False, build_model=lambda c: ConcatMLP(c, use_availability=True))
    assert isinstance(result.model, ConcatMLP) and len(result.history) == 1


# ------------------------------------------------------------------------------------------ gradient boosting


def test_gbt_features_nan_where_absent_plus_mask(data):
    features = gbt_features(data)
    present = data.availability.numpy()
    assert features.shape == (len(data), 6 + 8 + 4 + 3)
    assert np.isnan(features[~present[:, 1], 6:14]).all()
    assert not np.isnan(features[present[:, 1], 6:14]).any()
    assert np.array_equal(features[:, -3:], present.astype(np.float32))


def test_gbt_uses_train_labels_only_and_stops_on_val(data):
    result = fit_gbt(data, seed=0)
    features = gbt_features(data)
    test = data.rows("test")
    assert _auroc(data, result.logits(features[test])) > 0.9
    assert all(1 <= n <= m.n_iter_ for n, m in zip(result.n_trees, result.models))
    # test labels (flipped) change nothing; unlabelled rows (NaN, task 1) are dropped, not an error
    flipped = planted_data(n=1500)
    flipped.labels[test] = 1 - flipped.labels[test]
    again = fit_gbt(flipped, seed=0)
    assert np.array_equal(again.logits(features[test]), result.logits(features[test]))
    # validation labels drive early stopping only
    assert np.isnan(data.labels[:, 1].numpy()).any()


def test_gbt_one_class_task_falls_back_to_the_prior():
    data = planted_data(n=600)
    data.labels[:, 1] = 0.0
    data.labels[data.rows("test"), 1] = 1.0
    result = fit_gbt(data, seed=0)
    assert result.models[1] is None
    assert np.all(result.logits(gbt_features(data)[:5])[:, 1] == result.constant_logits[1])


# ------------------------------------------------------------------------------------------ aggregation


def test_mean_sd_hand_computed():
    stats = mean_sd([0.80, 0.82, 0.84])
    assert stats["mean"] == pytest.approx(0.82) and stats["sd"] == pytest.approx(0.02) and stats["n"] == 3
    assert mean_sd([0.7, None, float("nan")]) == {"mean": 0.7, "sd": None, "n": 1}
    assert mean_sd([None]) == {"mean": None, "sd": None, "n": 0}
    assert format_mean_sd(mean_sd([0.80, 0.82, 0.84])) == "0.820 ± 0.020"
    assert format_mean_sd(mean_sd([0.7])) == "0.700"
    assert format_mean_sd(mean_sd([])) == "n/a"


def _run(model, seed, auroc, ece, pattern, probabilities="calibrated", rectified_auroc=None):
    metrics = {
        "calibrated": {"auroc": auroc, "ece": ece, "pattern_ece": pattern},
        "rectified": {
            "auroc": rectified_auroc if rectified_auroc is not None else auroc,
            "ece": ece / 2,
            "pattern_ece": None if pattern is None else pattern / 2,
        },
    }
    return {
        "model": model,
        "seed": seed,
        "probabilities": probabilities,
        "info": {"seconds": 10.0 + seed},
        "metrics": {"t": metrics},
    }


def test_summary_and_table_hand_computed():
    runs = [
        _run("ours", 0, 0.90, 0.04, 0.06, "rectified", rectified_auroc=0.91),
        _run("base", 0, 0.70, 0.10, 0.20),
        _run("ours", 1, 0.90, 0.08, 0.10, "rectified", rectified_auroc=0.93),
        _run("base", 1, 0.80, 0.20, 0.30),
        _run("ours", 2, 0.90, 0.06, 0.08, "rectified", rectified_auroc=0.95),
        _run("base", 2, 0.90, 0.30, None),
    ]
    rows = summarise(runs, ["t"], ["ours", "base"])
    ours, base = rows
    assert ours["model"] == "ours" and ours["seeds"] == [0, 1, 2]
    # ours is read at its rectified probabilities: AUROC 0.91, 0.93, 0.95; ECE 0.02, 0.04, 0.03
    assert ours["tasks"]["t"]["auroc"]["mean"] == pytest.approx(0.93)
    assert ours["tasks"]["t"]["auroc"]["sd"] == pytest.approx(0.02)
    assert ours["tasks"]["t"]["ece"]["mean"] == pytest.approx(0.03)
    assert ours["tasks"]["t"]["ece"]["sd"] == pytest.approx(0.01)
    assert ours["tasks"]["t"]["pattern_ece"]["mean"] == pytest.approx(0.04)
    # base at calibrated: AUROC 0.7, 0.8, 0.9 -> 0.8 ± 0.1; pattern ECE defined in two seeds only
    assert base["tasks"]["t"]["auroc"]["mean"] == pytest.approx(0.8)
    assert base["tasks"]["t"]["auroc"]["sd"] == pytest.approx(0.1)
    assert base["tasks"]["t"]["pattern_ece"] == pytest.approx({"mean": 0.25, "sd": np.std([0.2, 0.3], ddof=1), "n": 2})
    assert base["seconds"]["mean"] == pytest.approx(11.0)

    results = {
        "tasks": ["t"],
        "seeds": [0, 1, 2],
        "n_test": 500,
        "summary": rows,
        "descriptions": {"ours": "our model", "base": "a baseline"},
        "oracle": {"t": {"auroc": 0.97, "ece": 0.012, "pattern_ece": 0.02}},
    }
    table = markdown_table(results, "Bench")
    lines = table.splitlines()
    assert "| model | probabilities | t AUROC | t ECE | t pattern ECE | train s |" in lines
    assert "| ours | rectified | 0.930 ± 0.020 | 0.030 ± 0.010 | 0.040 ± 0.010 | 11.0 ± 1.0 |" in lines
    assert "| base | calibrated | 0.800 ± 0.100 | 0.200 ± 0.100 | 0.250 ± 0.071 | 11.0 ± 1.0 |" in lines
    assert "| oracle (true risk) | true | 0.970 | 0.012 | 0.020 |  |" in lines
    assert sum(line.startswith("|---") for line in lines) == 1  # one table


def test_oracle_metrics():
    data = planted_data(n=600)
    assert oracle_metrics(data) is None
    labels = np.nan_to_num(data.labels.numpy(), nan=0.0)
    data.true_probs = np.clip(labels * 0.8 + 0.1, 0, 1)
    oracle = oracle_metrics(data)
    assert oracle["risk"]["auroc"] == pytest.approx(1.0)
    assert oracle["risk"]["n_patterns"] >= 1 and oracle["risk"]["pattern_ece"] is not None


@pytest.mark.slow
def test_run_benchmark_small(data):
    config = small_config(data, epochs=2, pretrain_epochs=0)
    seen = []
    results = run_benchmark(
        data,
        ["mmnar", "mmnar_no_rectifier", "concat_mask"],
        [0, 1],
        config,
        CPU,
        n_resamples=5,
        on_run=lambda run, _: seen.append((run["model"], run["seed"])),
    )
    assert seen == [
        ("mmnar", 0),
        ("mmnar_no_rectifier", 0),
        ("concat_mask", 0),
        ("mmnar", 1),
        ("mmnar_no_rectifier", 1),
        ("concat_mask", 1),
    ]
    runs = {(r["model"], r["seed"]): r for r in results["runs"]}
    # the no-rectifier ablation is the same network as mmnar, read before the rectifier
    for seed in (0, 1):
        full, ablated = runs[("mmnar", seed)], runs[("mmnar_no_rectifier", seed)]
        assert ablated["same_run_as"] == "mmnar" and "report" not in ablated and "report" in full
        assert ablated["metrics"] == full["metrics"]
    assert runs[("mmnar", 0)]["metrics"] != runs[("mmnar", 1)]["metrics"]  # the seed matters
    # the validation loss to choose variants on is the trainer's criterion of the same network
    trained = train(small_config(data, epochs=2, pretrain_epochs=0, seed=0), data, CPU, progress=False)
    best = min([trained.initial_val_loss] + [e["val_loss"] for e in trained.history])
    assert runs[("mmnar", 0)]["val_log_loss"] == pytest.approx(best, abs=1e-6)
    assert runs[("mmnar_no_rectifier", 0)]["val_log_loss"] == runs[("mmnar", 0)]["val_log_loss"]
    assert [row["model"] for row in results["summary"]] == ["mmnar", "mmnar_no_rectifier", "concat_mask"]
    row = results["summary"][0]["tasks"]["risk"]["auroc"]
    values = [runs[("mmnar", s)]["metrics"]["risk"]["rectified"]["auroc"] for s in (0, 1)]
    assert row["mean"] == pytest.approx(np.mean(values)) and row["sd"] == pytest.approx(np.std(values, ddof=1))
    probabilities = results.pop("test_probabilities")
    assert len(probabilities["mmnar"]) == 2 and probabilities["mmnar"][0].shape == (len(data.rows("test")), 2)
    json.dumps(results)  # results.json is plain JSON
    table = markdown_table(results)
    assert "| mmnar | rectified |" in table
    # paired: each model against the shipped one on the same rows; the no-rectifier row reads the same network
    paired = results["paired"]["tasks"]["risk"]["auroc"]
    assert set(paired) == {"mmnar_no_rectifier", "concat_mask"}
    assert paired["concat_mask"]["low"] <= paired["concat_mask"]["difference"] <= paired["concat_mask"]["high"]
    assert "## Paired comparison with `mmnar`" in table and "| concat_mask | " in table
    alone = run_benchmark(data, ["mmnar_no_rectifier"], [0], config, CPU, n_resamples=5)
    assert "report" in alone["runs"][0]  # the shared network's report is kept even without the mmnar row
    assert alone["runs"][0]["metrics"] == runs[("mmnar", 0)]["metrics"]  # same seed, same network


def test_command_registered_and_rejects_bad_input(tmp_path, capsys):
    args = build_parser().parse_args(["benchmark-models", str(tmp_path)])
    assert args.seeds == [0, 1, 2] and args.models == list(MODELS) and args.threads == 1
    out = tmp_path / "out"
    assert main(["benchmark-models", str(tmp_path), "--models", "nope", "--out", str(out)]) == 2
    assert "unknown model(s) ['nope']" in capsys.readouterr().err
    assert not out.exists()


def test_paired_comparison_includes_a_published_score_on_the_stays_that_have_it(data):
    """A published score (e.g. APACHE IVa) is compared with the shipped model on exactly the test rows
    where the score exists; here the score is the label itself on half the rows, so it must win there."""
    from mmnar_core.baselines.benchmark import paired_comparisons

    rows = data.rows("test")
    labels = data.labels.numpy()[:, 0]
    score = np.full(len(data), np.nan)
    has = rows[::2]
    score[has] = labels[has] * 0.8 + 0.1
    data.reference_scores = {"apache": ("risk", score)}
    rng = np.random.default_rng(0)
    ours = [np.clip(rng.random((len(rows), 2)), 0.01, 0.99)]
    try:
        paired = paired_comparisons(data, {"mmnar": ours, "logistic": ours}, ["mmnar", "logistic"], 200)
    finally:
        data.reference_scores = None
    result = paired["tasks"]["risk"]["auroc"]["score:apache"]
    known = ~np.isnan(labels[has])
    assert result["n"] == int(known.sum())
    assert result["a"] == pytest.approx(1.0) and result["verdict"] == "better"
    assert result["b"] == pytest.approx(roc_auc_score(labels[has][known], ours[0][::2, 0][known]))
    assert "score:apache" not in paired["tasks"]["b"]["auroc"] if "b" in paired["tasks"] else True


def test_the_command_line_names_are_the_models():
    """`benchmark-models --help` lists MODEL_NAMES without importing the models; they must be MODELS' keys."""
    from mmnar_core.baselines.models import MODELS
    from mmnar_core.baselines.names import MODEL_NAMES

    assert tuple(MODELS) == MODEL_NAMES
