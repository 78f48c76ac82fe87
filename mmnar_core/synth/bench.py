"""Simulator benchmark: patients per second (with images) and peak memory for one `synth` run.

The run happens in a child process so its memory is measured alone: peak resident memory is the
largest sum of RSS over the process and its workers, sampled every 50 ms.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil


def _tree_rss(process: psutil.Process) -> tuple[int, int]:
    try:
        main = process.memory_info().rss
        children = sum(child.memory_info().rss for child in process.children(recursive=True))
        return main, main + children
    except psutil.Error:
        return 0, 0


def bench_simulator(n: int = 20000, seed: int = 0, policy: str = "default", workers: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="mmnar-bench-") as tmp:
        out = Path(tmp) / "cohort"
        command = [
            sys.executable,
            "-m",
            "mmnar_core",
            "synth",
            "--n",
            str(n),
            "--seed",
            str(seed),
            "--policy",
            policy,
            "--out",
            str(out),
            "--quiet",
        ]
        if workers:
            command += ["--workers", str(workers)]
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watched = psutil.Process(process.pid)
        peak_main = peak_total = 0
        while process.poll() is None:
            main, total = _tree_rss(watched)
            peak_main, peak_total = max(peak_main, main), max(peak_total, total)
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"synth failed during the benchmark: {stderr.strip()[-2000:]}")
        summary = json.loads(stdout)
        n_images = sum(1 for _ in (out / "images" / "cxr").iterdir())
        disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return {
        "patients": n,
        "images": n_images,
        "wall_s": round(elapsed, 1),
        "patients_per_s": round(n / elapsed, 1),
        "images_per_s": round(n_images / elapsed, 1),
        "peak_rss_main_mib": round(peak_main / 2**20, 1),
        "peak_rss_total_mib": round(peak_total / 2**20, 1),
        "dataset_mib": round(disk / 2**20, 1),
        "availability": summary["availability"],
        "target": "20,000 patients with images in <= 120 s and <= 2048 MiB peak on 2 cores",
    }
