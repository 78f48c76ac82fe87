"""The whole command-line path on a tiny synthetic cohort with the real encoders:
synth -> embed -> train -> evaluate -> rectify, plus the guarantees between the steps."""

import json

import pandas as pd
import pytest

from mmnar_core.bundle import load_bundle
from mmnar_core.cli import main

from support.bundles import build_synthetic_bundle

pytestmark = pytest.mark.slow

TINY = {"epochs": 3, "d_model": 32, "n_heads": 2, "n_layers": 1, "batch_size": 32, "pretrain_epochs": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_synthetic_bundle(tmp_path_factory.mktemp("e2e"), n=160, seed=2, config=TINY)


def test_bundle_is_complete_and_honest(run):
    bundle = load_bundle(run / "bundle")
    assert bundle.config.modalities == ["structured", "cxr", "discharge_note", "radiology_report"]
    assert set(bundle.rectifiers) == {"readmission_30d", "icu_90d", "death_180d"}
    assert all(r.source_ == "val" for r in bundle.rectifiers.values())
    assert "Not for clinical use" in bundle.model_card
    files = json.loads((run / "bundle" / "bundle.json").read_text())["files"]
    assert any(name.endswith("tabular_state.json") for name in files)
    assert "training_log.jsonl" in files
    test_n = bundle.dataset["split_counts"]["test"]
    assert bundle.metrics["n"] == test_n  # metrics are on the test split only


def test_evaluate_writes_predictions_and_report(run):
    out = run / "eval"
    assert (
        main(
            [
                "evaluate",
                str(run / "bundle"),
                str(run / "data"),
                "--split",
                "all",
                "--out",
                str(out),
                "--cache",
                str(run / "cache"),
                "--resamples",
                "50",
            ]
        )
        == 0
    )
    frame = pd.read_parquet(out / "predictions.parquet")
    assert len(frame) == 160
    for task in ("readmission_30d", "icu_90d", "death_180d"):
        for suffix in ("_label", "_prob", "_prob_raw"):
            assert f"{task}{suffix}" in frame.columns
        assert frame[f"{task}_prob"].between(0, 1).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert "oracle_auroc" in metrics["tasks"]["icu_90d"]
    assert "## icu_90d" in (out / "report.md").read_text()


def test_rectify_refits_without_touching_the_network(run, capsys):
    out = run / "bundle_site"
    assert (
        main(
            [
                "rectify",
                str(run / "bundle"),
                str(run / "data"),
                "--split",
                "val",
                "--out",
                str(out),
                "--cache",
                str(run / "cache"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| pattern | n | events | own estimate | correction used [95 % CI] | kept |" in printed
    refit = load_bundle(out).metrics["rectifier_refit"]["tasks"]["icu_90d"]
    assert refit["level"] in ("none", "global", "modality", "pattern") and refit["reason"]
    assert sum(row["n"] for row in refit["patterns"]) == refit["n_fit"]
    old, new = load_bundle(run / "bundle"), load_bundle(out)
    assert (run / "bundle" / "weights.safetensors").read_bytes() == (out / "weights.safetensors").read_bytes()
    assert all(r.source_ == "external" for r in new.rectifiers.values())
    assert new.metrics["rectifier_refit"]["from_bundle"] == old.model_id
    assert "reference.safetensors" in new.files
    assert any(name.endswith("tabular_state.json") for name in new.files)  # the refit bundle still serves raw inputs


def test_train_refuses_to_overwrite_and_validates_config(run, capsys):
    assert (
        main(["train", str(run / "data"), "--out", str(run / "bundle"), "--cache", str(run / "cache"), "--quiet"]) == 2
    )
    assert "--overwrite" in capsys.readouterr().err
    (run / "bad.json").write_text('{"epochs": 2, "dropuot": 0.1}')
    assert (
        main(
            [
                "train",
                str(run / "data"),
                "--out",
                str(run / "b2"),
                "--cache",
                str(run / "cache"),
                "--config",
                str(run / "bad.json"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "unknown field(s) ['dropuot']" in capsys.readouterr().err
    assert not (run / "b2").exists()


def test_new_site_is_scaled_with_the_bundles_tabular_state(run, capsys):
    site = run / "site"
    assert main(["synth", "--n", "120", "--seed", "3", "--policy", "low_imaging", "--out", str(site), "--quiet"]) == 0
    assert main(["embed", str(site), "--cache", str(run / "cache_site"), "--quiet", "--no-images", "--no-text"]) == 0
    # refit on the new site: the encoder differs from the bundle's, and evaluation refuses to mix them
    assert (
        main(["evaluate", str(run / "bundle"), str(site), "--out", str(run / "x"), "--cache", str(run / "cache_site")])
        == 2
    )
    err = capsys.readouterr().err
    assert "come from other encoders than the bundle's" in err
    assert f"python -m mmnar_core embed {site} --from-bundle {run / 'bundle'} --cache {run / 'cache_site'}" in err
    assert (
        main(["embed", str(site), "--cache", str(run / "cache"), "--from-bundle", str(run / "bundle"), "--quiet"]) == 0
    )
    assert (
        main(
            [
                "rectify",
                str(run / "bundle"),
                str(site),
                "--split",
                "all",
                "--out",
                str(run / "bundle_low"),
                "--cache",
                str(run / "cache"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                str(run / "bundle_low"),
                str(site),
                "--out",
                str(run / "eval_low"),
                "--cache",
                str(run / "cache"),
                "--resamples",
                "50",
            ]
        )
        == 0
    )


def test_predictor_matches_evaluate_from_raw_inputs(run):
    """The app's path (raw files and text -> encoders -> model) gives the numbers `evaluate` gives from
    the embedding cache, for patients with different patterns."""
    from mmnar_core.dataset import load_dataset
    from mmnar_core.predictor import Predictor

    out = run / "eval_all"
    main(
        [
            "evaluate",
            str(run / "bundle"),
            str(run / "data"),
            "--split",
            "all",
            "--out",
            str(out),
            "--cache",
            str(run / "cache"),
            "--resamples",
            "20",
        ]
    )
    expected = pd.read_parquet(out / "predictions.parquet").set_index("patient_id")
    predictor = Predictor.load(run / "bundle", device="cpu")
    dataset = load_dataset(run / "data")
    chosen = dataset.patients.drop_duplicates("pattern").head(4)["patient_id"]
    for pid in chosen:
        prediction = predictor.predict(dataset.record(pid))
        assert prediction.pattern == expected.at[pid, "pattern"]
        for risk in prediction.risks:
            assert risk.risk == pytest.approx(expected.at[pid, f"{risk.task}_prob"], abs=1e-4)
            assert risk.raw == pytest.approx(expected.at[pid, f"{risk.task}_prob_raw"], abs=1e-4)
            assert risk.low <= risk.risk <= risk.high
        result = predictor.what_if(dataset.record(pid))
        assert len(result.subsets) == 2 ** len(prediction.available)
        full = result.subsets[-1].risks
        none = result.subsets[0].risks
        for task in result.tasks:
            assert full[task] == pytest.approx(next(r.risk for r in prediction.risks if r.task == task), abs=1e-6)
            total = sum(values[task] for values in result.shapley.values())
            assert total == pytest.approx(full[task] - none[task], abs=1e-9)
        assert {a.modality for a in result.absent} == set(prediction.missing)
        for absent in result.absent:
            assert absent.estimate is not None and absent.estimate.n_reference > 0
        json.dumps(result.to_dict())
        json.dumps(prediction.to_dict())
