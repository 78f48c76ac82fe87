"""`python -m mmnar_core bench [NAMES]`: run benchmarks, print a JSON object and a readable table, and
merge the figures into benchmarks/results.json (with the machine they were measured on).

A benchmark is a function returning a flat dict of figures; register it in BENCHMARKS as
"module:function" so importing this module stays cheap.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from mmnar_core.atomic_write import write_text_atomic

BENCHMARKS: dict[str, str] = {
    "simulator": "mmnar_core.synth.bench:bench_simulator",
    "encoders": "mmnar_lab.encoders_bench:bench_encoders",
    "loaders_scaleup": "mmnar_lab.loaders_scaleup:bench_loaders_scaleup",
    "training": "mmnar_lab.training_bench:bench_training",
    "explain": "mmnar_lab.explain.bench:bench_explain",
    "app": "mmnar_app.bench:bench_app",
}

DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results.json"


def machine_description() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


def run_benchmarks(names: list[str], **options) -> dict[str, dict]:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown} (accepted: {', '.join(BENCHMARKS)})")
    results = {}
    for name in names:
        module_name, function_name = BENCHMARKS[name].split(":")
        function = getattr(importlib.import_module(module_name), function_name)
        started = time.perf_counter()
        figures = function(**options.get(name, {}))
        figures["benchmark_wall_s"] = round(time.perf_counter() - started, 2)
        results[name] = figures
    return results


def format_table(results: dict[str, dict]) -> str:
    lines = []
    for name, figures in results.items():
        lines.append(f"== {name}")
        width = max((len(k) for k in figures), default=0)
        lines.extend(f"  {key:<{width}}  {value}" for key, value in figures.items())
    return "\n".join(lines)


def save_results(results: dict[str, dict], path: Path) -> None:
    """Merge into the results file so running one benchmark keeps the others' figures."""
    stored = json.loads(path.read_text()) if path.exists() else {}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = machine_description()
    for name, figures in results.items():
        stored[name] = {"measured_at": stamp, "machine": machine, "figures": figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(stored, indent=2, sort_keys=True) + "\n")


def register(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="run benchmarks and record their figures")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON file the figures are merged into")
    parser.add_argument("--n", type=int, default=None, help="simulator: number of patients (default 20000)")
    parser.set_defaults(func=run)


def run(args) -> int:
    names = args.names or list(BENCHMARKS)
    options = {"simulator": {"n": args.n}} if args.n else {}
    results = run_benchmarks(names, **options)
    print(json.dumps(results, indent=2))
    print(format_table(results), file=sys.stderr)
    save_results(results, args.results)
    return 0
