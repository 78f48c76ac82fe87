"""Serving figures of a bundle on the GPU: predict / explain p50 and p95 (mmnar_lab.explain.bench) and
predict throughput (patients/s, encoders included) at batch 1, 8 and 64. Used by benchmarks/gpu_check.sh.

    python benchmarks/gpu_serve.py BUNDLE DATASET [DEVICE]
"""

from __future__ import annotations

import json
import sys
import time
import traceback

import numpy as np
import torch


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def throughput(predictor, records, batch: int, repeats: int = 3) -> float:
    """Patients per second of predict_many (encode + score) over `records` in batches of `batch`."""
    best = 0.0
    for _ in range(repeats):
        _sync()
        started = time.perf_counter()
        for start in range(0, len(records), batch):
            predictor.predict_many(records[start : start + batch])
        _sync()
        best = max(best, len(records) / (time.perf_counter() - started))
    return round(best, 1)


def _guarded(figures: dict, name: str, compute) -> None:
    """One figure; a failure is reported in its place (and makes the script exit 1) so the others still come."""
    try:
        figures[name] = compute()
    except Exception as error:  # noqa: BLE001 - a benchmark reports every failure and goes on
        traceback.print_exc()
        figures[name] = {"error": f"{type(error).__name__}: {error}"}
        figures["failed"] = figures.get("failed", []) + [name]


def main(bundle: str, data: str, device: str = "cuda", n_explain: int = 30, n_records: int = 256) -> dict:
    from mmnar_core.dataset import load_dataset
    from mmnar_core.predictor import Predictor
    from mmnar_lab.explain.bench import bench_explain

    figures: dict = {}
    predictor = Predictor.load(bundle, device=device)
    dataset = load_dataset(data)
    ids = dataset.patients["patient_id"].to_numpy()[dataset.split_indices("test")][:n_records]
    records = [dataset.record(pid) for pid in ids]
    predictor.predict_many(records[:8])  # warm-up
    _guarded(
        figures,
        "predict_many_patients_per_s",
        lambda: {f"batch_{b}": throughput(predictor, records, b) for b in (1, 8, 64)},
    )
    _guarded(
        figures,
        "explain",
        lambda: bench_explain(bundle, data, n=n_explain, n_all_tasks=max(1, n_explain // 3), device=device),
    )
    cuda = torch.device(device).type == "cuda"
    figures["gpu_memory_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None
    figures["device"] = torch.cuda.get_device_name(0) if cuda else "cpu"
    figures["mean_modalities"] = float(np.mean([len(p.available) for p in predictor.predict_many(records[:64])]))
    return figures


if __name__ == "__main__":
    result = main(*sys.argv[1:4], *[int(v) for v in sys.argv[4:6]])
    print(json.dumps(result, indent=2))
    sys.exit(1 if result.get("failed") else 0)
