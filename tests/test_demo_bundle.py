"""The demo bundle shipped in mmnar_core/resources/: it loads, says what it is, stays small, and serves raw inputs."""

import json

import pytest

from mmnar_core.resources import DEMO_BUNDLE

DEMO = DEMO_BUNDLE


def test_demo_bundle_is_small_verified_and_labelled_synthetic():
    from mmnar_core.bundle import load_bundle

    size = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file())
    assert size <= 50 * 2**20
    bundle = load_bundle(DEMO)
    assert "Synthetic demo model. Not for clinical use." in bundle.model_card
    assert bundle.dataset["provenance"]["source"] == "mmnar_core synthetic simulator"
    assert bundle.metrics["n"] == bundle.dataset["split_counts"]["test"]
    index = json.loads((DEMO / "bundle.json").read_text())
    assert not [f for f in index["files"] if f.endswith((".pkl", ".pt", ".pth", ".bin"))]


@pytest.mark.slow
def test_demo_bundle_predicts_from_raw_inputs(tmp_path):
    from mmnar_core.cli import main
    from mmnar_core.dataset import load_dataset
    from mmnar_core.predictor import Predictor

    assert main(["synth", "--n", "30", "--seed", "11", "--out", str(tmp_path / "d"), "--quiet", "--workers", "1"]) == 0
    dataset = load_dataset(tmp_path / "d")
    predictor = Predictor.load(DEMO, device="cpu")
    full = dataset.patients[dataset.availability().all(axis=1)]["patient_id"].iloc[0]
    prediction = predictor.predict(dataset.record(full))
    assert prediction.available == ["structured", "cxr", "discharge_note", "radiology_report"]
    for risk in prediction.risks:
        assert 0 < risk.low <= risk.risk <= risk.high < 1


def test_reference_patients_stay_on_the_cpu_whatever_the_model_device():
    """On a GPU the reference set used to follow the model to CUDA while the patient's availability stayed
    on the CPU, and every explanation stopped ('found at least two devices'). It is loaded on the CPU;
    score moves each batch to the model's device."""
    import inspect

    from mmnar_core.bundle import load_bundle
    from mmnar_core.predictor import reference_set

    assert list(inspect.signature(reference_set).parameters) == ["bundle"]  # no device to follow
    reference = reference_set(load_bundle(DEMO))
    assert reference is not None
    assert {x.device.type for x in reference.inputs} | {reference.availability.device.type} == {"cpu"}
