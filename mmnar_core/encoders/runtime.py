"""Device choice and encoder identity, shared by all encoders and the cache."""

from __future__ import annotations

import hashlib
import json

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit request ('cpu', 'cuda', 'cuda:1') wins."""
    if requested:
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} was requested but CUDA is not available (accepted here: 'cpu')")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fingerprint(kind: str, config: dict, module: torch.nn.Module | None = None, extra: str = "") -> str:
    """A short, stable id for (encoder kind, config, exact weights).

    The embedding cache keys vectors by this id, so any change of weights or preprocessing gives a new
    id and never reuses stale vectors. Hashing the tensors (not the file) makes the id independent of
    how the weights were stored.
    """
    digest = hashlib.sha256()
    digest.update(kind.encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(extra.encode())
    if module is not None:
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(str(tensor.dtype).encode())
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return f"{kind}-{digest.hexdigest()[:16]}"
