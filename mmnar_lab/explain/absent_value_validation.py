"""Does the stated range for "if it were obtained" hold? Hide modalities that test patients HAVE.

For every patient of a split (default: test) who has modality m, mark m absent, ask the library's
`value_of_absent` (draws from m's conditional distribution given the rest, fitted on the bundle's training
reference set) for the 10th-90th percentile range of the risk if m were obtained, and check whether the
patient's actual with-m risk (the model on its real embedding) falls inside. Goal (issue 16 item 6): 80 +/- 5 %
per modality and task. The neighbour method it replaced (the 25 reference patients nearest in the fused
representation lend their embedding) is scored the same way beside it. Nothing is fitted on the split.

Run: `python -m mmnar_lab.explain.absent_value_validation [--bundle DIR] [--data DIR] [--cache DIR]
[--n N] [--json PATH]` (prints a table, then JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmnar_core.bundle import Bundle, load_bundle
from mmnar_core.dataset import load_dataset
from mmnar_core.encoders.cache import load_embeddings
from mmnar_core.explain.modality import AbsentValue, ReferenceSet, value_of_absent
from mmnar_core.predictor import reference_set
from mmnar_core.resources import DEMO_BUNDLE
from mmnar_core.training.data import build_model_data

GOAL, TOLERANCE = 0.80, 0.05
_REPRESENTED: dict = {}  # (bundle, reference, modality, pattern) -> fused representation of the candidates


def neighbour_value(
    bundle: Bundle, inputs: list[torch.Tensor], availability: np.ndarray, reference: ReferenceSet, modality: int, k=25
) -> tuple[np.ndarray, np.ndarray]:
    """The replaced method's (p10, p90): the k reference patients with the modality whose fused representation
    of the patient's observed modalities is nearest lend their embedding of it."""
    observed = torch.from_numpy(availability)
    candidates = torch.nonzero(reference.availability[:, modality]).flatten()
    ref_inputs = [x[candidates] for x in reference.inputs]
    key = (id(bundle), id(reference), modality, tuple(availability.tolist()))
    with torch.no_grad():
        if key not in _REPRESENTED:  # the same for every patient with this pattern, as the library cached it
            _REPRESENTED[key] = bundle.model.represent(ref_inputs, reference.availability[candidates] & observed)
        h_ref = _REPRESENTED[key].numpy()
        h_patient = bundle.model.represent([x.reshape(1, -1) for x in inputs], observed.unsqueeze(0)).numpy()
    nearest = np.argsort(np.linalg.norm(h_ref - h_patient, axis=1), kind="stable")[:k]
    batch = [x.reshape(1, -1).expand(len(nearest), -1).clone() for x in inputs]
    batch[modality] = ref_inputs[modality][torch.from_numpy(nearest)]
    with_modality = observed.clone()
    with_modality[modality] = True
    risks = _scorer(bundle)(batch, with_modality.unsqueeze(0).expand(len(nearest), -1))
    return np.percentile(risks, 10, axis=0), np.percentile(risks, 90, axis=0)


def _scorer(bundle: Bundle):
    calibrated = bundle.calibrated
    assert calibrated is not None

    def score(inputs: list[torch.Tensor], availability: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return calibrated.eval()(inputs, availability).numpy()

    return score


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (round(centre - half, 3), round(centre + half, 3))


def validate(
    bundle_dir: str | Path, data_dir: str | Path, cache: str | Path | None, split: str, n: int | None, seed: int
) -> dict:
    started = time.perf_counter()
    bundle = load_bundle(bundle_dir, torch.device("cpu"))
    dataset = load_dataset(data_dir)
    if bundle.dataset_info.content_hash != dataset.manifest.content_hash:
        raise SystemExit(f"{data_dir} is not the dataset {bundle_dir} was trained on (content hashes differ)")
    data = build_model_data(dataset, load_embeddings(dataset, cache).vectors, list(bundle.config.tasks))
    reference = reference_set(bundle)
    if reference is None:
        raise SystemExit(f"{bundle_dir} has no reference set")
    score = _scorer(bundle)
    rows_all = data.rows(split)
    rng = np.random.default_rng(seed)
    tasks, names = list(bundle.config.tasks), list(bundle.config.modalities)
    modalities: list[dict[str, Any]] = []
    for m, name in enumerate(names):
        rows = rows_all[data.availability[rows_all, m].numpy()]
        if bool(reference.availability[:, m].all()):
            modalities.append({"modality": name, "skipped": "never absent in the training reference set"})
            continue
        if n is not None and len(rows) > n:
            rows = np.sort(rng.choice(rows, n, replace=False))
        new_in, old_in, new_width, old_width, narrow, errors = [], [], [], [], [], []
        given: list[str] = []  # the modalities each estimate conditioned on
        for r in rows:
            inputs = [x[r : r + 1] for x in data.inputs]
            full = data.availability[r].numpy().copy()
            hidden = full.copy()
            hidden[m] = False
            actual = score(inputs, torch.from_numpy(full).unsqueeze(0))[0]
            shown = [x.clone() for x in inputs]
            shown[m] = torch.zeros_like(shown[m])  # what the predictor passes for an absent modality
            value: AbsentValue | None = value_of_absent(score, shown, hidden, reference, m)
            assert value is not None
            new_in.append((value.p10 <= actual) & (actual <= value.p90))
            new_width.append(value.p90 - value.p10)
            narrow.append(["less than" in v for v in value.verdicts])
            given.append("+".join(names[j] for j in value.regressors))
            errors.append(np.abs(value.mean - actual))
            p10, p90 = neighbour_value(bundle, shown, hidden, reference, m)
            old_in.append((p10 <= actual) & (actual <= p90))
            old_width.append(p90 - p10)
        new_hits, old_hits = np.sum(new_in, axis=0), np.sum(old_in, axis=0)
        by_given = {
            g: {"n": int(sum(x == g for x in given))}
            | {
                t: round(float(np.mean([hit[i] for hit, x in zip(new_in, given) if x == g])), 3)
                for i, t in enumerate(tasks)
            }
            for g in sorted(set(given))
        }
        modalities.append(
            {
                "modality": name,
                "n": len(rows),
                "coverage_by_conditioning_set": by_given,
                "tasks": {
                    t: {
                        "coverage": round(float(new_hits[i]) / len(rows), 3),
                        "coverage_95ci": wilson(int(new_hits[i]), len(rows)),
                        "met": abs(float(new_hits[i]) / len(rows) - GOAL) <= TOLERANCE,
                        "mean_width_points": round(100 * float(np.mean(new_width, axis=0)[i]), 2),
                        "median_abs_error_points": round(100 * float(np.median(errors, axis=0)[i]), 2),
                        "narrow_verdicts": round(float(np.mean(narrow, axis=0)[i]), 3),
                        "old_coverage": round(float(old_hits[i]) / len(rows), 3),
                        "old_mean_width_points": round(100 * float(np.mean(old_width, axis=0)[i]), 2),
                    }
                    for i, t in enumerate(tasks)
                },
            }
        )
    return {
        "bundle": str(bundle_dir),
        "data": str(data_dir),
        "dataset": dataset.manifest.name,
        "split": split,
        "goal": f"{GOAL:.2f} +/- {TOLERANCE:.2f}",
        "threads": torch.get_num_threads(),
        "modalities": modalities,
        "seconds": round(time.perf_counter() - started, 1),
    }


def table(result: dict) -> str:
    lines = [
        f"{result['dataset']} ({result['split']} split), bundle {result['bundle']}, goal {result['goal']}",
        "| modality | task | n | coverage (95% CI) | met | mean width (pts) | median |mean-actual| (pts) "
        "| narrow verdicts | old coverage | old width (pts) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in result["modalities"]:
        if "skipped" in entry:
            lines.append(f"| {entry['modality']} | - | - | skipped: {entry['skipped']} | | | | | | |")
            continue
        for task, f in entry["tasks"].items():
            low, high = f["coverage_95ci"]
            lines.append(
                f"| {entry['modality']} | {task} | {entry['n']} | {f['coverage']:.3f} ({low:.3f}-{high:.3f}) "
                f"| {'yes' if f['met'] else 'NO'} | {f['mean_width_points']:.2f} | {f['median_abs_error_points']:.2f} "
                f"| {f['narrow_verdicts']:.2f} | {f['old_coverage']:.3f} | {f['old_mean_width_points']:.2f} |"
            )
    lines.append(f"{result['seconds']} s, {result['threads']} torch thread(s)")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmnar_lab.explain.absent_value_validation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--bundle", default=str(DEMO_BUNDLE), help="bundle directory (default: the demo bundle)")
    parser.add_argument(
        "--data", default="/work/data/v2", help="the dataset the bundle was trained on (same content hash)"
    )
    parser.add_argument("--cache", default="/work/data/cache", help="embedding cache directory")
    parser.add_argument("--split", default="test")
    parser.add_argument("--n", type=int, default=None, help="at most N patients per modality (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample of --n")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = validate(args.bundle, args.data, args.cache, args.split, args.n, args.seed)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
