"""Process-group set-up for `torchrun --nproc_per_node N -m mmnar_core train ...`.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; with WORLD_SIZE > 1 we join a process group (NCCL on
GPU, gloo on CPU) and each rank trains on its share of every global batch (see trainer.py). Only rank 0
writes files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(requested_device: str | None = None) -> tuple[int, int, torch.device]:
    """(rank, world size, device). A no-op returning (0, 1, device) outside torchrun."""
    from mmnar_core.encoders.runtime import pick_device

    device = pick_device(requested_device)  # same rules as one process: cuda requested without a GPU is an error
    world = world_size_from_env()
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}")
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), device


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
