"""Bundle loading (issue 18, items 4 and 9): a safetensors header is checked (dtypes, shapes, byte spans)
against the config before anything is allocated; symlinks are refused; the bytes hashed are the bytes loaded."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import mmnar_core.bundle as bundle_module
from mmnar_core.bundle import BundleError, _content_hash, load_bundle, save_bundle
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
    )


def rehash(root):
    """bundle.json updated to the files' current bytes (what an attacker without a signing key can do)."""
    index = json.loads((root / "bundle.json").read_text())
    index["files"] = {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in index["files"]}
    index["content_hash"] = _content_hash(index["files"])
    (root / "bundle.json").write_text(json.dumps(index))


def header_only_weights(state_shapes: dict, dtype: str = "F32") -> bytes:
    """A safetensors file whose header declares these shapes but holds no data (every span empty)."""
    header = {
        name: {"dtype": dtype, "shape": list(shape), "data_offsets": [0, 0]} for name, shape in state_shapes.items()
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def test_lying_header_of_a_wider_model_is_refused_before_any_model_is_built(bundle_dir, monkeypatch):
    wide = json.loads((bundle_dir / "config.json").read_text())
    wide["d_model"] = 512  # 32x wider: its weights would take hundreds of MB
    (bundle_dir / "config.json").write_text(json.dumps(wide))
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in MMNARModel(MMNARConfig.from_dict(wide)).state_dict().items()}
    (bundle_dir / "weights.safetensors").write_bytes(header_only_weights(shapes))
    rehash(bundle_dir)
    built_on = []

    class Recording(MMNARModel):
        def __init__(self, config):
            built_on.append(torch.empty(0).device.type)
            super().__init__(config)

    monkeypatch.setattr(bundle_module, "MMNARModel", Recording)
    with pytest.raises(
        BundleError,
        match=r"weights\.safetensors: not a valid safetensors file \(tensor .* declares "
        r"shape .* but data_offsets span 0 bytes",
    ):
        load_bundle(bundle_dir, trusted_keys=())
    assert set(built_on) <= {"meta"}, f"a model was built on {built_on} before the weights were refused"


def test_weights_of_another_dtype_are_refused_not_cast(bundle_dir):
    from safetensors.torch import load_file

    state = {
        k: (v.half() if v.is_floating_point() else v) for k, v in load_file(bundle_dir / "weights.safetensors").items()
    }
    save_file(state, bundle_dir / "weights.safetensors")
    rehash(bundle_dir)
    with pytest.raises(BundleError, match=r"tensor \S+ is F16, not F32"):
        load_bundle(bundle_dir, trusted_keys=())


def test_symlinked_file_in_a_bundle_is_refused(bundle_dir, tmp_path):
    elsewhere = tmp_path / "elsewhere.safetensors"
    shutil.copyfile(bundle_dir / "weights.safetensors", elsewhere)  # the same bytes: every hash still matches
    (bundle_dir / "weights.safetensors").unlink()
    (bundle_dir / "weights.safetensors").symlink_to(elsewhere)
    with pytest.raises(BundleError, match=r"weights\.safetensors: a symbolic link; a bundle holds plain files only"):
        load_bundle(bundle_dir, trusted_keys=())


def test_weights_swapped_after_hashing_are_not_the_weights_loaded(bundle_dir, monkeypatch):
    from safetensors.torch import load_file

    hashed = load_file(bundle_dir / "weights.safetensors")
    swapped = {k: (v + 1 if v.is_floating_point() else v) for k, v in hashed.items()}
    real_load_config = bundle_module._load_config

    def swap_then_load_config(*args, **kwargs):  # runs after the hashes were checked, before the weights load
        save_file(swapped, bundle_dir / "weights.safetensors")
        return real_load_config(*args, **kwargs)

    monkeypatch.setattr(bundle_module, "_load_config", swap_then_load_config)
    loaded = load_bundle(bundle_dir, trusted_keys=())
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, hashed[name]), f"{name} was read again from the swapped file"
    assert loaded.read_bytes("weights.safetensors") != (bundle_dir / "weights.safetensors").read_bytes()


def test_loaded_model_is_materialised_and_predicts_like_the_saved_one(bundle_dir):
    loaded = load_bundle(bundle_dir, trusted_keys=())
    assert not any(t.is_meta for t in loaded.model.state_dict().values())
    with pytest.raises(BundleError, match="not a file of this bundle"):
        loaded.read_bytes("nope.json")
