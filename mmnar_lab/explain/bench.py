"""Benchmark of the predictor interface: p50 / p95 latency of predict (from raw inputs), what_if (on
top of encoded vectors) and explain (all attributions, for one task and for all tasks) over N patients,
plus peak memory. Register as "mmnar_lab.explain.bench:bench_explain".

Wall seconds depend on what else runs on the machine; CPU seconds (process time) are reported beside
them because on a shared 2-core box they are the better estimate of the idle-machine latency.
"""

from __future__ import annotations

import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from mmnar_core.encoders.runtime import native_bf16

TINY_MODEL = {
    "epochs": 30,
    "d_model": 64,
    "n_heads": 2,
    "n_layers": 1,
    "batch_size": 32,
    "pretrain_epochs": 2,
    "patience": 10,
}


def build_tiny_bundle(root: Path, n: int = 200, seed: int = 2) -> tuple[Path, Path]:
    """synth -> embed -> train a small bundle with the real encoders (about a minute on 2 cores)."""
    from mmnar_core.cli import main

    root.mkdir(parents=True, exist_ok=True)
    (root / "model.json").write_text(json.dumps(TINY_MODEL))
    data, cache, bundle = root / "data", root / "cache", root / "bundle"
    steps = [
        ["synth", "--n", str(n), "--seed", str(seed), "--out", str(data), "--quiet"],
        ["embed", str(data), "--cache", str(cache), "--quiet"],
        [
            "train",
            str(data),
            "--out",
            str(bundle),
            "--cache",
            str(cache),
            "--config",
            str(root / "model.json"),
            "--resamples",
            "20",
            "--quiet",
        ],
    ]
    for step in steps:
        if main(step) != 0:
            raise RuntimeError(f"building the benchmark bundle failed at: {' '.join(step)}")
    return bundle, data


def _timed(function, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _percentiles(name: str, walls: list[float], cpus: list[float]) -> dict:
    if not walls:
        return {}
    return {
        f"{name}_p50_ms": round(1000 * float(np.percentile(walls, 50)), 1),
        f"{name}_p95_ms": round(1000 * float(np.percentile(walls, 95)), 1),
        f"{name}_cpu_p50_ms": round(1000 * float(np.percentile(cpus, 50)), 1),
        f"{name}_cpu_p95_ms": round(1000 * float(np.percentile(cpus, 95)), 1),
    }


def bench_explain(
    bundle: str | None = None,
    data: str | None = None,
    n: int = 50,
    n_all_tasks: int | None = None,
    threads: int | None = None,
    device: str | None = None,
) -> dict:
    """p50/p95 of predict, what_if, explain(one task) and explain(all tasks) over `n` patients (test split
    first, then the others); without a bundle, a small one is built in a temporary folder first."""
    import torch

    from mmnar_core.dataset import load_dataset
    from mmnar_core.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="mmnar-bench-explain-") as scratch:
        if bundle is None or data is None:
            bundle, data = build_tiny_bundle(Path(scratch))
        predictor = Predictor.load(bundle, device=device)
        dataset = load_dataset(data)
        order = np.concatenate([dataset.split_indices(s) for s in ("test", "val", "train")])
        ids = dataset.patients["patient_id"].to_numpy()[order][:n]
        records = [dataset.record(pid) for pid in ids]
        first_task = predictor.config.tasks[0]
        predictor.explain(records[0], tasks=[first_task])  # warm-up (lazy imports, allocator)
        times = {k: ([], []) for k in ("predict", "what_if", "explain_one_task", "explain_all_tasks")}
        per_part: dict[str, list[float]] = {}
        modalities = []
        n_all = len(records) if n_all_tasks is None else min(n_all_tasks, len(records))
        for i, record in enumerate(records):
            _, wall, cpu = _timed(predictor.predict, record)
            times["predict"][0].append(wall)
            times["predict"][1].append(cpu)
            vectors = predictor.encode(record)
            _, wall, cpu = _timed(predictor.what_if, record, vectors)
            times["what_if"][0].append(wall)
            times["what_if"][1].append(cpu)
            explanation, wall, cpu = _timed(predictor.explain, record, tasks=[first_task])
            times["explain_one_task"][0].append(wall)
            times["explain_one_task"][1].append(cpu)
            modalities.append(len(explanation.prediction.available))
            for key, value in explanation.timings.items():
                if key.startswith("attribute_"):
                    per_part.setdefault(key, []).append(value)
            if i < n_all:
                _, wall, cpu = _timed(predictor.explain, record)
                times["explain_all_tasks"][0].append(wall)
                times["explain_all_tasks"][1].append(cpu)
        figures = {
            "n_patients": len(records),
            "n_explain_all_tasks": n_all,
            "tasks": len(predictor.config.tasks),
            "mean_available_modalities": round(float(np.mean(modalities)), 2),
            "torch_threads": torch.get_num_threads(),
            "device": str(predictor.device),
            "note_transformer": "bfloat16" if native_bf16(predictor.device) else "float32",
        }  # text_precision auto
        for name, (walls, cpus) in times.items():
            figures.update(_percentiles(name, walls, cpus))
        for key, values in sorted(per_part.items()):
            figures[f"one_task_{key}_p50_ms"] = round(1000 * float(np.percentile(values, 50)), 1)
        figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return figures


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="explain benchmark")
    parser.add_argument("--bundle")
    parser.add_argument("--data")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--n-all-tasks", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(bench_explain(args.bundle, args.data, args.n, args.n_all_tasks, args.threads), indent=2))
