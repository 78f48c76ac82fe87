"""Benchmark of the predictor interface: p50 / p95 latency of predict (from raw inputs), what_if (on
top of encoded vectors) and explain (all attributions, for one task and for all tasks, with the per-step
timings of the all-task run) over N patients, plus peak memory. Register as
"mmnar_lab.explain.bench:bench_explain". Issue 16's target: all outcomes, a patient with all four
modalities: `python -m mmnar_lab.explain.bench --bundle mmnar_core/resources/demo_bundle --data DATA
--all-modalities --n 30 --threads 2 --no-one-task --n-first-edition 5`.

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


def _all_modality_records(dataset, n: int):
    """Up to n records with every modality present, test split first."""
    available = dataset.availability().all(axis=1)
    order = np.concatenate([dataset.split_indices(s) for s in ("test", "val", "train")])
    rows = [int(r) for r in order if available[r]][:n]
    return [dataset.record(dataset.patients["patient_id"].iloc[r]) for r in rows]


def _old_settings():
    """The first edition's note and structured methods (word Layer IG once per task, 64-step zero-baseline
    structured IG), for a comparison under the same load; the image path is the new one either way."""
    from mmnar_core.explain.attributions import AttributionSettings

    return AttributionSettings(tabular_steps=64, tabular_baseline="zero", text_phrases=False, text_words=True)


def bench_explain(
    bundle: str | None = None,
    data: str | None = None,
    n: int = 50,
    n_all_tasks: int | None = None,
    threads: int | None = None,
    device: str | None = None,
    all_modalities: bool = False,
    n_old: int = 0,
    one_task: bool = True,
    settings=None,
) -> dict:
    """p50/p95 of predict, what_if, explain(one task) and explain(all tasks) over `n` patients (test split
    first, then the others; with `all_modalities`, only patients with every modality); per-step p50/p95 of the
    all-task run; `n_old` patients also explained the first edition's way (same load, for comparison). The
    structured baselines are the bundle's training reference patients, as the predictor passes them once
    wired (added here when the target lacks them). Without a bundle, a small one is built first."""
    import os
    from dataclasses import replace

    import torch

    from mmnar_core.dataset import load_dataset
    from mmnar_core.explain.attributions import tabular_references_from
    from mmnar_core.predictor import Predictor

    if threads:
        torch.set_num_threads(threads)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mmnar-bench-explain-") as scratch:
        if bundle is None or data is None:
            bundle, data = build_tiny_bundle(Path(scratch))
        predictor = Predictor.load(bundle, device=device)
        if predictor.reference is not None:  # structured expected gradients, as Predictor.explain will do once wired
            references = tabular_references_from(
                predictor.reference.inputs, predictor.reference.availability, predictor.modalities
            )
            original = predictor.attribution_target

            def with_references(vectors):
                target = original(vectors)
                return target if target.tabular_references else replace(target, tabular_references=references)

            predictor.attribution_target = with_references  # type: ignore[method-assign]
        dataset = load_dataset(data)
        if all_modalities:
            records = _all_modality_records(dataset, n)
        else:
            order = np.concatenate([dataset.split_indices(s) for s in ("test", "val", "train")])
            records = [dataset.record(pid) for pid in dataset.patients["patient_id"].to_numpy()[order][:n]]
        first_task = predictor.config.tasks[0]
        predictor.explain(records[0])  # warm-up (lazy imports, allocator)
        names = ("predict", "what_if", "explain_one_task", "explain_all_tasks", "explain_all_tasks_first_edition")
        times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in names}
        per_part: dict[str, list[float]] = {}
        methods: dict[str, str] = {}
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
            if one_task:
                explanation, wall, cpu = _timed(predictor.explain, record, tasks=[first_task], settings=settings)
                times["explain_one_task"][0].append(wall)
                times["explain_one_task"][1].append(cpu)
            if i < n_all:
                explanation, wall, cpu = _timed(predictor.explain, record, settings=settings)
                times["explain_all_tasks"][0].append(wall)
                times["explain_all_tasks"][1].append(cpu)
                for key, value in explanation.timings.items():
                    per_part.setdefault(key, []).append(value)
                for item in explanation.attributions():
                    methods[item.modality] = item.method
            modalities.append(len(explanation.prediction.available))
            if i < n_old:
                _, wall, cpu = _timed(predictor.explain, record, settings=_old_settings())
                times["explain_all_tasks_first_edition"][0].append(wall)
                times["explain_all_tasks_first_edition"][1].append(cpu)
        figures = {
            "n_patients": len(records),
            "n_explain_all_tasks": n_all,
            "n_first_edition": min(n_old, len(records)),
            "tasks": len(predictor.config.tasks),
            "mean_available_modalities": round(float(np.mean(modalities)), 2),
            "torch_threads": torch.get_num_threads(),
            "device": str(predictor.device),
            "note_transformer": "bfloat16" if native_bf16(predictor.device) else "float32",
            "methods": methods,
            "load_average_1min_start_end": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
            "cpu_count": os.cpu_count(),
        }  # text_precision auto
        for name, (walls, cpus) in times.items():
            figures.update(_percentiles(name, walls, cpus))
        for key, values in sorted(per_part.items()):
            figures[f"all_tasks_{key}_p50_ms"] = round(1000 * float(np.percentile(values, 50)), 1)
            figures[f"all_tasks_{key}_p95_ms"] = round(1000 * float(np.percentile(values, 95)), 1)
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
    parser.add_argument("--device", default=None)
    parser.add_argument("--all-modalities", action="store_true", help="only patients with every modality")
    parser.add_argument("--n-first-edition", type=int, default=0, help="also explain N the first edition's way")
    parser.add_argument("--no-one-task", action="store_true", help="skip the one-task explain")
    parser.add_argument("--phrase-scores", default="deletion", help="deletion or integrated_gradients")
    parser.add_argument("--text-steps", type=int, default=16)
    args = parser.parse_args()
    from mmnar_core.explain.attributions import AttributionSettings

    figures = bench_explain(
        args.bundle,
        args.data,
        args.n,
        args.n_all_tasks,
        args.threads,
        args.device,
        args.all_modalities,
        args.n_first_edition,
        not args.no_one_task,
        AttributionSettings(phrase_scores=args.phrase_scores, text_steps=args.text_steps),
    )
    print(json.dumps(figures, indent=2))
