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


def native_bf16(device: torch.device) -> bool:
    """Does `device` compute bfloat16 matmuls natively (fast)? A CUDA GPU that supports it, or a CPU with
    AVX512-BF16 or AMX (read from /proc/cpuinfo; other systems answer False). On a CPU without them
    bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


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
