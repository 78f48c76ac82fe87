import json

import numpy as np
import pytest
import torch

from mmnar_core.bundle import BundleError, load_bundle, save_bundle
from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.model import MMNARConfig, MMNARModel


@pytest.fixture
def bundle_dir(tmp_path):
    torch.manual_seed(0)
    config = MMNARConfig(modalities=["s", "i"], input_dims=[4, 3], tasks=["a"], d_model=16, n_heads=2, n_layers=1)
    model = MMNARModel(config).eval()
    rng = np.random.default_rng(0)
    rectifier = PatternRectifier(2).fit(
        rng.integers(1, 4, 500), rng.uniform(0.1, 0.5, 500), (rng.random(500) < 0.3).astype(float), "val"
    )
    return save_bundle(
        tmp_path / "b",
        model,
        TemperatureScaler([1.3]),
        {"a": rectifier},
        {"name": "d"},
        {"s": {"encoder_id": "tab-1"}},
        {"auroc": 0.7},
        "# card\n",
        extra_files={"encoders/tab-1/encoder.json": b"{}"},
    ), model


def test_round_trip_gives_identical_predictions(bundle_dir):
    path, model = bundle_dir
    bundle = load_bundle(path)
    inputs = [torch.randn(5, 4), torch.randn(5, 3)]
    availability = torch.tensor([[1, 1], [1, 0], [0, 1], [1, 1], [1, 0]], dtype=torch.bool)
    assert torch.equal(bundle.model(inputs, availability), model(inputs, availability))
    assert bundle.temperature.temperatures.tolist() == [1.3]
    assert bundle.model_id.startswith("mmnar-")
    assert not list(path.rglob("*.pkl")) and not list(path.rglob("*.pt"))


def test_tampered_bundle_rejected(bundle_dir):
    path, _ = bundle_dir
    weights = path / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="weights.safetensors: does not match its hash"):
        load_bundle(path)


def test_edited_index_rejected(bundle_dir):
    path, _ = bundle_dir
    index = json.loads((path / "bundle.json").read_text())
    index["files"]["metrics.json"] = "0" * 64
    (path / "bundle.json").write_text(json.dumps(index))
    with pytest.raises(BundleError, match="content_hash does not match"):
        load_bundle(path)


def test_never_overwrites_without_permission(bundle_dir, tmp_path):
    path, model = bundle_dir
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_bundle(path, model, TemperatureScaler([1.0]), {}, {}, {}, {}, "")
    other = tmp_path / "not_a_bundle"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a model bundle"):
        save_bundle(other, model, TemperatureScaler([1.0]), {}, {}, {}, {}, "", overwrite=True)
    assert (other / "notes.txt").read_text() == "mine"
