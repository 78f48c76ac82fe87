"""Trains on planted data in one process or under torchrun and saves rank 0's test logits.

Used by test_distributed.py: `python tests/support/ddp_worker.py OUT [aux]` vs
`torchrun --nproc_per_node 2 tests/support/ddp_worker.py OUT [aux]`.
"""

import sys

import numpy as np
import torch

from mmnar_core.model import MMNARConfig
from mmnar_core.training.distributed import init_distributed, shutdown_distributed
from mmnar_core.training.trainer import predict_logits, train
from mmnar_lab.planted import planted_data


def main(out: str, aux: bool) -> None:
    torch.set_num_threads(1)
    rank, world, device = init_distributed("cpu")
    data = planted_data(n=2000)  # 1400 train rows: 14 full batches of 100, split evenly over 2 ranks
    data.labels[:, 1] = torch.nan_to_num(data.labels[:, 1], nan=0.0)  # every row labelled: equal shares
    config = MMNARConfig(
        modalities=data.modalities,
        input_dims=data.input_dims,
        tasks=data.tasks,
        d_model=32,
        n_heads=2,
        n_layers=1,
        dropout=0.0,
        epochs=4,
        batch_size=100,
        patience=10,
        use_reconstruction=aux,
        use_contrastive=aux,
    )
    result = train(config, data, device, progress=False)
    if rank == 0:
        np.save(out, predict_logits(result.model, data, data.rows("test"), device))
    shutdown_distributed()


if __name__ == "__main__":
    main(sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "aux")
