"""The reference X-ray (image IG baseline): the median of training X-rays in model-input space, saved in
the bundle, used by IG, and added to older bundles by `reference-image`."""

from __future__ import annotations

import io
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from mmnar_core.bundle import REFERENCE_IMAGE_FILE
from mmnar_core.training.reference_image import median_image

CONFIG = {"arch": "mobilenet_v3_small", "input_size": 32, "embed_dim": 8, "mean": 0.5, "std": 0.25}


def _png(value: int, size: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size), value, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def test_median_of_training_images_only_in_model_input_space(tmp_path):
    """Training images of grey levels 64, 191, 255 -> median 191; a test image of 0 and a validation
    image of 0 are ignored (with them the median would be 64 or 127.5)."""
    rows, patients = [], []
    for i, (value, split) in enumerate(((64, "train"), (191, "train"), (255, "train"), (0, "test"), (0, "val"))):
        (tmp_path / f"p{i}.png").write_bytes(_png(value))
        rows.append({"patient_id": f"p{i}", "modality": "cxr", "path": f"p{i}.png"})
        patients.append({"patient_id": f"p{i}", "split": split})
    dataset = SimpleNamespace(root=tmp_path, images=pd.DataFrame(rows), patients=pd.DataFrame(patients))
    median = median_image(dataset, "cxr", CONFIG)
    assert median.shape == (1, 1, 32, 32)
    assert torch.allclose(median, torch.full_like(median, (191 / 255 - 0.5) / 0.25), atol=1e-5)
    assert median_image(dataset, "other_xray", CONFIG) is None
    one = median_image(dataset, "cxr", CONFIG, max_images=1)  # a random one of the three training images
    assert any(torch.allclose(one, torch.full_like(one, (v / 255 - 0.5) / 0.25), atol=1e-5) for v in (64, 191, 255))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from mmnar_core.predictor import Predictor

    from support.bundles import build_synthetic_bundle

    tiny = {"epochs": 2, "d_model": 32, "n_heads": 2, "n_layers": 1, "batch_size": 32, "pretrain_epochs": 1}
    root = build_synthetic_bundle(tmp_path_factory.mktemp("refimg"), n=120, seed=6, config=tiny, resamples=20)
    return root, Predictor.load(root / "bundle", device="cpu")


@pytest.mark.slow
def test_training_saves_the_reference_and_ig_uses_it(built):
    from mmnar_core.dataset import load_dataset
    from mmnar_core.explain.attributions import IMAGE_REFERENCE_BASELINE, AttributionSettings, attribute_record

    root, predictor = built
    assert (root / "bundle" / REFERENCE_IMAGE_FILE).is_file()
    reference = predictor.reference_images["cxr"]
    assert reference.shape == (1, 1, predictor.encoder.image.preprocess.size, predictor.encoder.image.preprocess.size)
    dataset = load_dataset(root / "data")
    pid = next(p for p in dataset.patients["patient_id"] if dataset.image_path(p, "cxr") is not None)
    record = dataset.record(pid)
    task = predictor.config.tasks[1]
    result = attribute_record(
        predictor.attribution_target(predictor.encode(record)),
        record,
        [task],
        AttributionSettings(image_steps=16, image_gradcam=False),
        ["cxr"],
    )
    (image,) = result.images
    case = result.cases["cxr"]
    assert image.baseline == IMAGE_REFERENCE_BASELINE and torch.equal(case.baseline, reference)
    with torch.no_grad():  # the summary's baseline value is the risk with the reference X-ray in place
        assert float(case.forward(reference)[0, predictor.config.tasks.index(task)]) == pytest.approx(
            image.summary.baseline_value[task], abs=1e-6
        )
    gap = image.summary.value[task] - image.summary.baseline_value[task]
    assert float(case.ig.sum()) - gap == pytest.approx(image.summary.delta[task], abs=1e-5)  # completeness


@pytest.mark.slow
def test_reference_image_command_adds_it_and_refuses_another_dataset(built, tmp_path, capsys):
    from mmnar_core.bundle import _content_hash, load_bundle
    from mmnar_core.cli import main

    root, _ = built
    older = tmp_path / "older"  # a bundle as written before reference X-rays existed
    shutil.copytree(root / "bundle", older)
    (older / REFERENCE_IMAGE_FILE).unlink()
    index = json.loads((older / "bundle.json").read_text())
    del index["files"][REFERENCE_IMAGE_FILE]
    index["content_hash"] = _content_hash(index["files"])
    (older / "bundle.json").write_text(json.dumps(index))
    assert load_bundle(older).reference_images == {}

    assert main(["reference-image", str(older), str(root / "data"), "--out", str(tmp_path / "new")]) == 0
    new = load_bundle(tmp_path / "new")
    assert REFERENCE_IMAGE_FILE in new.files
    assert torch.equal(
        load_bundle(tmp_path / "new").reference_images["cxr"], load_bundle(root / "bundle").reference_images["cxr"]
    )
    assert (tmp_path / "new" / "weights.safetensors").read_bytes() == (older / "weights.safetensors").read_bytes()

    other = tmp_path / "other"
    assert main(["synth", "--n", "20", "--seed", "9", "--out", str(other), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["reference-image", str(older), str(other), "--out", str(tmp_path / "refused")]) == 2
    assert "is not the dataset the bundle was trained on" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


@pytest.mark.slow
def test_a_reference_of_the_wrong_size_is_refused_at_load(built, tmp_path):
    from safetensors.torch import save_file

    from mmnar_core.bundle import _content_hash, _sha256
    from mmnar_core.predictor import Predictor, PredictorError

    root, _ = built
    bad = tmp_path / "bad"
    shutil.copytree(root / "bundle", bad)
    save_file({"cxr": torch.zeros(1, 1, 8, 8)}, str(bad / REFERENCE_IMAGE_FILE))
    index = json.loads((bad / "bundle.json").read_text())
    index["files"][REFERENCE_IMAGE_FILE] = _sha256(bad / REFERENCE_IMAGE_FILE)
    index["content_hash"] = _content_hash(index["files"])
    (bad / "bundle.json").write_text(json.dumps(index))
    with pytest.raises(PredictorError, match=r"holds a \(1, 1, 8, 8\) reference for cxr.*rebuild it"):
        Predictor.load(bad, device="cpu")
