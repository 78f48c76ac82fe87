"""Does the ordering / content split (mmnar_core.explain.ordering) credit a planted signal to the right part?

Two embedding-level cohorts (no encoders), three modalities of widths 16, 24, 32, one outcome driven by a
latent z ~ N(0, 1) (true risk sigmoid(3 z - 0.5)). Only the planted modality m0 knows anything about z:

- `availability`: m0 is present with probability sigmoid(2 z) (the clinician orders it for the sicker
  patients) and its content is pure noise: the signal is that it exists, not what it shows;
- `content`: m0 is present with probability 0.5 independently of everything (MCAR) and its content is a
  noisy linear view of z (as in `shapley_signal`): the signal is what it shows, not that it exists.

m1 and m2 are noise, present with probability 0.5 (MCAR), so every pattern is common in training. For each
cohort a tiny MMNAR model is trained (train split, early stop on val), calibrated and rectified the
project's way (shapley_signal.in_memory_predictor, so risks come from the served `Predictor.score`).
The reference content of each modality is the medoid of its training-split embeddings (the rule the
product uses for notes; no test patient is used).

Right part, for every test patient who has m0: in the availability cohort |obtained_m0| > |shows_m0|; in
the content cohort |shows_m0| > |obtained_m0| (strict). Issue goal: >= 90 % of those patients in each
cohort. Also printed: the same rate with the parts swapped (what a broken split would score), the
median |parts| of m0 and of the noise modalities, and for patients without m0 the share whose `missing`
effect is negative (absence lowers the risk: the right sign in the availability cohort).

Run: `python -m mmnar_lab.explain.ordering_validation [--n N] [--seed S]` (prints JSON). With `--bundle B
--data D [--cache C] [--max-patients N]` it instead describes the split on a bundle's test patients
(`bundle_parts`: per modality and task the median |parts|, how often |obtained| > |shows|, the median
missing effect, for both references, and the split's time per patient after what-if).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mmnar_core.evaluation.metrics import auroc
from mmnar_core.explain.modality import ReferenceSet, ScoreFn
from mmnar_core.explain.ordering import (
    ReferenceContent,
    ReferenceGame,
    reference_contents,
    reference_sample,
    split_ordering,
)
from mmnar_core.model import MMNARConfig
from mmnar_core.numeric import sigmoid
from mmnar_core.schema import ModalityKind, ModalitySpec
from mmnar_core.training.data import ModelData
from mmnar_core.training.pipeline import fit_calibration
from mmnar_core.training.trainer import train
from mmnar_lab.explain.shapley_signal import TINY, in_memory_predictor
from mmnar_lab.planted import model_data

DIMS = (16, 24, 32)
KINDS = ("availability", "content")
EXPECTED = {"availability": "obtained", "content": "shows"}  # the part that must carry m0's signal
STRENGTH = 3.0  # true logit = STRENGTH * z - 0.5
ORDERING_STRENGTH = 2.0  # availability cohort: P(m0 present) = sigmoid(ORDERING_STRENGTH * z)
CONTENT_NOISE = 0.5  # content cohort: sd of m0's noise before scaling to unit variance
GOAL = 0.9
REFERENCES = ("typical", "sample")  # one typical content per modality; a sample of training contents
SAMPLE_SIZE = 256


def planted_cohort(kind: str, n: int = 16000, seed: int = 0, dims=DIMS) -> ModelData:
    """The `kind` cohort of the module doc; splits 70/15/15 in row order, `true_probs` the true risks."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    z = rng.normal(size=n)
    inputs = [rng.normal(size=(n, dim)) for dim in dims]
    present = rng.random((n, len(dims))) < 0.5
    if kind == "availability":
        present[:, 0] = rng.random(n) < sigmoid(ORDERING_STRENGTH * z)
    else:
        direction = rng.normal(size=dims[0])
        direction /= np.linalg.norm(direction)
        x = z[:, None] * direction[None] * np.sqrt(dims[0]) + CONTENT_NOISE * rng.normal(size=(n, dims[0]))
        inputs[0] = x / x.std(axis=0)
    true_probs = sigmoid(STRENGTH * z - 0.5)[:, None]
    labels = (rng.random(true_probs.shape) < true_probs).astype(np.float32)
    return model_data([f"m{m}" for m in range(len(dims))], ["risk"], inputs, present, labels, true_probs=true_probs)


def training_reference(
    data: ModelData, kind: str = "typical", max_patients: int = 2000, seed: int = 0, k: int = SAMPLE_SIZE
) -> ReferenceContent:
    """Reference content per modality from up to `max_patients` training patients (as a bundle's reference
    set): "typical", the medoid of each modality's embeddings among those who had it; "sample", `k` of them
    drawn at random (`reference_sample`)."""
    rows = data.rows("train")
    if len(rows) > max_patients:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_patients, replace=False))
    index = torch.as_tensor(rows)
    reference = ReferenceSet([x[index] for x in data.inputs], data.availability[index])
    if kind == "sample":
        return reference_sample(data.modalities, data.input_dims, reference, k, seed)
    if kind != "typical":
        raise ValueError("kind must be 'typical' or 'sample'")
    specs = [ModalitySpec(m, ModalityKind.IMAGE) for m in data.modalities]  # no embedder: the medoid rule
    return reference_contents(specs, data.input_dims, reference)


def right_part_rates(
    data: ModelData, score: ScoreFn, reference: ReferenceContent, kind: str, rows: np.ndarray, modality: int = 0
) -> dict:
    """The split of every patient in `rows`; for those with `modality`, how often the expected part has the
    strictly larger |value| (and how often the other part does: a swapped split's rate)."""
    availability = data.availability.numpy()
    names, task = data.modalities, data.tasks[0]
    typical = reference.tensors(names)
    game = ReferenceGame(score, typical)  # v_ref per availability mask, shared by every patient
    expected, other, planted = [], [], names[modality]
    noise_obtained, noise_shows, missing = [], [], []
    for r in rows:
        split = split_ordering(
            score, [x[r] for x in data.inputs], availability[r], typical, names, data.tasks, game=game
        )
        for part in split.parts:
            if part.modality == planted:
                values = {"obtained": abs(part.obtained[task]), "shows": abs(part.shows[task])}
                expected.append(values[EXPECTED[kind]])
                other.append(values["shows" if EXPECTED[kind] == "obtained" else "obtained"])
            else:
                noise_obtained.append(abs(part.obtained[task]))
                noise_shows.append(abs(part.shows[task]))
        missing += [m.effect[task] for m in split.missing if m.modality == planted]
    expected_arr, other_arr = np.array(expected), np.array(other)
    return {
        "n_patients": len(expected_arr),
        "right_part_rate": round(float((expected_arr > other_arr).mean()), 4),
        "swapped_rate": round(float((other_arr > expected_arr).mean()), 4),
        "ties": int((expected_arr == other_arr).sum()),
        "median_abs_expected_part": round(float(np.median(expected_arr)), 4),
        "median_abs_other_part": round(float(np.median(other_arr)), 4),
        "noise_modalities_median_abs": {
            "obtained": round(float(np.median(noise_obtained)), 4),
            "shows": round(float(np.median(noise_shows)), 4),
        },
        "without_planted": {
            "n_patients": len(missing),
            "negative_missing_effect_rate": round(float(np.mean(np.array(missing) < 0)), 4),
            "median_missing_effect": round(float(np.median(missing)), 4),
        },
    }


def validate_cohort(kind: str, n: int = 16000, seed: int = 0, **config_overrides) -> dict:
    """Train, calibrate and rectify a tiny model on the `kind` cohort, then score the split on its test split."""
    device = torch.device("cpu")
    data = planted_cohort(kind, n, seed)
    config = MMNARConfig(**{**TINY, "seed": seed, **config_overrides, **data.config_fields()})
    trained = train(config, data, device, progress=False)
    temperature, rectifiers = fit_calibration(trained.model, data, device)
    predictor = in_memory_predictor(trained.model, temperature, rectifiers)
    test = data.rows("test")
    risks = predictor.score([x[test] for x in data.inputs], data.availability[test])
    labels = data.labels[test].numpy()[:, 0]
    return {
        "cohort": kind,
        "planted_modality": data.modalities[0],
        "expected_part": EXPECTED[kind],
        "references": {
            reference: right_part_rates(data, predictor.score, training_reference(data, reference), kind, test)
            for reference in REFERENCES
        },
        "test_auroc": round(auroc(labels, risks[:, 0]), 3),
        "oracle_test_auroc": round(auroc(labels, data.true_probs[test, 0]), 3),
        "train_seconds": round(trained.seconds, 1),
    }


def ordering_validation(n: int = 16000, seed: int = 0, **config_overrides) -> dict:
    started = time.perf_counter()
    cohorts = [validate_cohort(kind, n, seed, **config_overrides) for kind in KINDS]
    return {
        "n": n,
        "seed": seed,
        "goal": GOAL,
        "min_right_part_rate": {
            reference: min(c["references"][reference]["right_part_rate"] for c in cohorts) for reference in REFERENCES
        },
        "cohorts": cohorts,
        "seconds": round(time.perf_counter() - started, 1),
    }


def bundle_parts(bundle: str, data: str, cache: str | None = None, max_patients: int = 300) -> dict:
    """The split on the first `max_patients` test patients of a dataset a bundle can score (module doc)."""
    from mmnar_core.dataset import load_dataset
    from mmnar_core.encoders.cache import load_embeddings
    from mmnar_core.explain.modality import what_if
    from mmnar_core.predictor import Predictor

    predictor = Predictor.load(bundle)
    names, tasks = list(predictor.config.modalities), list(predictor.config.tasks)
    if predictor.reference is None:
        raise ValueError(f"{bundle} has no reference set: nothing to draw reference contents from")
    dataset = load_dataset(data)
    embeddings = load_embeddings(dataset, cache)
    rows = np.flatnonzero(dataset.patients["split"].to_numpy() == "test")[:max_patients]
    specs = {m.name: m for m in predictor.modalities}
    encoder = predictor.encoder
    references = {
        "typical": reference_contents(
            [specs[n] for n in names],
            predictor.config.input_dims,
            predictor.reference,
            getattr(encoder, "tabular", {}),
            getattr(encoder, "image", None),
            predictor.reference_images,
        ),
        "sample": reference_sample(names, predictor.config.input_dims, predictor.reference),
    }
    report: dict = {"bundle": str(bundle), "data": str(data), "n_patients": len(rows), "references": {}}
    for label, reference in references.items():
        game = ReferenceGame(predictor.score, reference.tensors(names))
        parts: dict[str, list] = {n: [] for n in names}
        missing: dict[str, list] = {n: [] for n in names}
        seconds = []
        for r in rows:
            inputs = [torch.from_numpy(embeddings.vectors[n][r : r + 1]) for n in names]
            availability = np.array([embeddings.present[n][r] for n in names])
            subsets = what_if(predictor.score, inputs, availability)
            started = time.perf_counter()
            split = split_ordering(
                predictor.score, inputs, availability, game.contents, names, tasks, game=game, subsets=subsets
            )
            seconds.append(time.perf_counter() - started)
            for part in split.parts:
                parts[part.modality].append([[part.obtained[t], part.shows[t]] for t in tasks])
            for m in split.missing:
                missing[m.modality].append([m.effect[t] for t in tasks])
        summary: dict = {
            "split_ms_p50": round(1000 * float(np.median(seconds)), 1),
            "split_ms_p95": round(1000 * float(np.percentile(seconds, 95)), 1),
        }
        for n in names:
            values = np.abs(np.array(parts[n])).reshape(-1, len(tasks), 2)
            summary[n] = {
                "n_available": len(parts[n]),
                "median_abs_obtained": {t: round(float(np.median(values[:, i, 0])), 4) for i, t in enumerate(tasks)},
                "median_abs_shows": {t: round(float(np.median(values[:, i, 1])), 4) for i, t in enumerate(tasks)},
                "share_obtained_larger": {
                    t: round(float((values[:, i, 0] > values[:, i, 1]).mean()), 3) for i, t in enumerate(tasks)
                },
                "n_absent": len(missing[n]),
                "median_missing_effect": {
                    t: round(float(np.median(np.array(missing[n])[:, i])), 4) for i, t in enumerate(tasks)
                }
                if missing[n]
                else None,
            }
        report["references"][label] = summary
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmnar_lab.explain.ordering_validation", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=16000, help="patients per cohort (15%% are test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bundle", help="describe the split on this bundle's test patients instead (with --data)")
    parser.add_argument("--data", help="dataset folder the bundle can score (its embeddings cached)")
    parser.add_argument("--cache", help="embedding cache folder")
    parser.add_argument("--max-patients", type=int, default=300)
    args = parser.parse_args(argv)
    if args.bundle:
        if not args.data:
            parser.error("--bundle needs --data")
        print(json.dumps(bundle_parts(args.bundle, args.data, args.cache, args.max_patients), indent=2))
        return 0
    print(json.dumps(ordering_validation(args.n, args.seed), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
