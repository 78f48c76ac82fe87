"""The image encoder: a torchvision backbone (head removed) plus a linear projection, its weight files,
and a batch `encode` helper. The nn.Modules here hold no training logic (see image_train.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torchvision
from torch import nn

from mmnar_core.encoders.config import ImageEncoderConfig
from mmnar_core.encoders.errors import EncoderStateError
from mmnar_core.encoders.image_io import load_image
from mmnar_core.encoders.image_preprocess import ImagePreprocess, to_model_input
from mmnar_core.encoders.runtime import fingerprint

WEIGHTS_FORMAT = "mmnar-image-encoder/1"
_HEADS = ("fc.", "classifier.")


def _headless_backbone(arch: str) -> tuple[nn.Module, int]:
    """A torchvision model with random weights (hub downloads are not used) and its head replaced by
    Identity, so its output is the pooled feature vector and its keys stay torchvision's own."""
    model = torchvision.models.get_model(arch, weights=None)
    if arch.startswith("resnet"):
        width = model.fc.in_features
        model.fc = nn.Identity()
    elif arch.startswith("mobilenet"):
        width = model.classifier[0].in_features
        model.classifier = nn.Identity()
    elif arch.startswith("densenet"):
        width = model.classifier.in_features
        model.classifier = nn.Identity()
    else:  # ImageEncoderConfig already rejects other names
        raise EncoderStateError(f"no head rule for arch {arch!r}")
    return model, width


class ImageEncoder(nn.Module):
    """(B, 1, S, S) preprocessed grayscale -> (B, D) embedding.

    Grayscale is repeated to three channels inside the module so that any torchvision-style
    checkpoint (trained on RGB) loads unchanged.
    """

    def __init__(self, config: ImageEncoderConfig = ImageEncoderConfig()):
        super().__init__()
        self.config = config
        self.backbone, self.feature_dim = _headless_backbone(config.arch)
        self.projection = nn.Linear(self.feature_dim, config.embed_dim) if config.embed_dim else nn.Identity()
        self.embed_dim = config.embed_dim or self.feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projection(self.backbone(images.expand(-1, 3, -1, -1)))

    @property
    def gradcam_layer(self) -> nn.Module:
        """The last convolutional block: the layer LayerGradCam should hook."""
        if self.config.arch.startswith("resnet"):
            return cast(nn.Module, self.backbone.layer4)
        if self.config.arch.startswith("mobilenet"):
            return cast(nn.Sequential, self.backbone.features)[-1]
        return cast(nn.Module, self.backbone.features)


class ImagePipeline(nn.Module):
    """Raw pixels (B, 1, H, W) in [0, 1] -> preprocessing -> CNN -> embedding, differentiable end to
    end: the module explanation code hooks for pixel attributions."""

    def __init__(self, encoder: ImageEncoder):
        super().__init__()
        self.preprocess = ImagePreprocess(encoder.config)
        self.encoder = encoder

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.preprocess(pixels))


def save_image_encoder(encoder: ImageEncoder, path: str | Path, info: dict | None = None) -> Path:
    """One self-describing safetensors file: the weights plus the config (and optional training info)
    in its metadata. Written to a temporary name and renamed, so a crash never leaves half a file."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"format": WEIGHTS_FORMAT, "config": json.dumps(encoder.config.to_dict(), sort_keys=True)}
    if info:
        metadata["info"] = json.dumps(info, sort_keys=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    partial.chmod(0o644)  # a shareable model file, not a secret
    partial.replace(path)
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file or a plain torch state dict (loaded with
    weights_only=True: tensors only, never arbitrary pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata() or {})
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise EncoderStateError(
            f"{path}: cannot read weights ({type(error).__name__}: {error}); accepted: a .safetensors file "
            "or a torch state dict (.pt/.pth)"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderStateError(f"{path}: not a state dict of tensors")
    return state, {}


def load_image_encoder(path: str | Path, config: ImageEncoderConfig | None = None) -> ImageEncoder:
    """Weights in order of preference: a project file (config inside), or a user's torchvision-style
    state dict for `config.arch` (its classification head is dropped; the projection stays as built,
    so pass embed_dim=0 to use the backbone features directly)."""
    tensors, metadata = read_weights(path)
    if metadata.get("format") == WEIGHTS_FORMAT:
        stored = ImageEncoderConfig.from_dict(json.loads(metadata["config"]))
        if config is not None and config != stored:
            raise EncoderStateError(f"{path}: was saved with config {stored}, which differs from the one given")
        encoder = ImageEncoder(stored)
        _load_strict(encoder, tensors, path)
        return encoder
    if config is None:
        raise EncoderStateError(f"{path}: a plain state dict needs an image config (which arch it is)")
    encoder = ImageEncoder(config)
    if any(k.startswith("backbone.") for k in tensors):
        _load_strict(encoder, tensors, path)
        return encoder
    backbone = {k.removeprefix("module."): v for k, v in tensors.items()}
    backbone = {k: v for k, v in backbone.items() if not k.startswith(_HEADS)}
    missing, unexpected = encoder.backbone.load_state_dict(backbone, strict=False)
    if missing or unexpected:
        raise EncoderStateError(
            f"{path}: does not match a torchvision {config.arch} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return encoder


def _load_strict(module: nn.Module, tensors: dict, path) -> None:
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as error:
        raise EncoderStateError(f"{path}: weights do not match the encoder ({str(error).splitlines()[0]})") from None


class ImageEmbedder:
    """Inference wrapper: files or bytes -> (N, D) float32 embeddings, in batches, without gradients."""

    def __init__(self, encoder: ImageEncoder, device: torch.device | str = "cpu", batch_size: int = 32):
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.preprocess = ImagePreprocess(encoder.config)
        self.batch_size = batch_size
        self.id = fingerprint("image", encoder.config.to_dict(), encoder)

    @property
    def dim(self) -> int:
        return self.encoder.embed_dim

    def decode(self, source) -> np.ndarray:
        return load_image(source, self.encoder.config.max_bytes, self.encoder.config.max_pixels)

    @torch.inference_mode()
    def embed_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        outputs = []
        for start in range(0, len(arrays), self.batch_size):
            batch = to_model_input(arrays[start : start + self.batch_size], self.preprocess).to(self.device)
            outputs.append(self.encoder(batch).float().cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, self.dim), np.float32)

    def embed(self, sources: Sequence) -> np.ndarray:
        """Files or bytes -> (N, D); decodes one batch at a time so memory stays flat."""
        parts = [
            self.embed_arrays([self.decode(s) for s in sources[start : start + self.batch_size]])
            for start in range(0, len(sources), self.batch_size)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)
