"""Training benchmark: time and peak memory to train the MMNAR model (default config) on 20,000 patients
of cached-embedding-sized inputs (tabular 44, image 256, two notes 384), on this machine's CPU or GPU.

Inputs are planted-signal embeddings of the real widths, so the benchmark needs no embedded cohort and
measures the training loop itself (the same one `train` runs).
"""

from __future__ import annotations

import resource
import time

import torch

from mmnar_core.evaluation.metrics import auroc
from mmnar_core.model import MMNARConfig
from mmnar_core.numeric import sigmoid
from mmnar_core.training.trainer import predict_logits, train
from mmnar_lab.planted import planted_data

WIDTHS = ((44, 1.0, "always"), (256, 0.5, "mnar"), (384, 1.5, 0.83), (384, 1.0, "mnar"))


def bench_training(n: int = 20000, threads: int = 1, seed: int = 0, overrides: dict | None = None) -> dict:
    """`overrides`: MMNARConfig fields to change from the default (to time a candidate config)."""
    from mmnar_core.encoders.runtime import pick_device

    torch.set_num_threads(threads)
    device = pick_device()
    data = planted_data(n, seed, WIDTHS)
    config = MMNARConfig(**{**data.config_fields(), "seed": seed, **(overrides or {})})
    started = time.perf_counter()
    result = train(config, data, device, progress=False)
    seconds = time.perf_counter() - started
    rows = data.rows("test")
    logits = predict_logits(result.model, data, rows, device)
    return {
        "patients": n,
        "device": str(device),
        "threads": threads,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "train_s": round(seconds, 1),
        "s_per_epoch": round(seconds / max(1, len(result.history)), 2),
        # training rows seen per second over the whole run (validation passes included), all members counted once
        "train_samples_per_s": round(len(data.rows("train")) * len(result.history) / seconds),
        # the epochs alone (validation passes included), without the one-off start of the wide path (the tuned
        # logistic regression's fit): the training loop's own throughput
        "loop_s": result.history[-1]["seconds"],
        "loop_samples_per_s": round(len(data.rows("train")) * len(result.history) / result.history[-1]["seconds"]),
        "n_members": config.n_members,
        "overrides": dict(overrides or {}),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "planted_test_auroc": round(float(auroc(data.labels[rows, 0].numpy(), sigmoid(logits[:, 0]))), 4),
        "target": "<= 180 s for 20,000 patients on cached embeddings (2-core CPU); >= 5,000 samples/s",
    }
