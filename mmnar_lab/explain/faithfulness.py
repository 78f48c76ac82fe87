"""Faithfulness of the within-modality attributions on a synthetic cohort's ground truth.

- pointing game (image): for patients with an X-ray and at least one drawn finding, the fraction whose
  attribution peak (smoothed |IG|, and separately the Grad-CAM maximum) falls inside the union of the
  true finding masks (truth/image_findings.parquet). Issue goal >= 0.8.
- signal words (notes): for notes with at least one signal phrase (truth/text_spans.parquet, any
  assertion: affirmed, negated and hedged phrases all carry the concept), the fraction where a word
  overlapping a signal phrase is among the 10 words with the largest |attribution|. Reported with the
  chance rate of 10 words drawn at random. Issue goal >= 0.8.
- outcome-relevant variants of both: per outcome, only the findings / signal phrases whose latent
  condition enters that outcome's structural equation (for words also without the severity sentences:
  "outcome_conditions") (manifest provenance: parameters.scm; e.g. for
  ICU admission an opacity (pneumonia) counts, a cardiomegaly (heart failure) does not). A model that
  ignores an irrelevant finding is right to, so these are the fair reading; both are reported.
- deletion test: remove the top-attributed 10% of structured features (set to the IG baseline) / image
  area (8x8-pixel blocks of the model input set to the IG baseline: the reference X-ray) / words (their tokens set to [PAD]) and the
  same number chosen at random; report the mean |risk change| of both and how often top beats random.

Run: `python -m mmnar_lab.explain.faithfulness BUNDLE DATASET [--split test] [--max-patients N]
[--tasks a,b] [--modalities ...] [--out figures.json]`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmnar_core.explain.attributions import (
    AttributionSettings,
    attribute_record,
    feature_columns,
    pick_references,
    tabular_references_from,
    task_indices,
)
from mmnar_core.synth.scm import outcome_concepts

TOP_WORDS = 10
TOP_PHRASES = 5
TEMPLATE_SHARE = 0.2  # a phrase (digits and ___ normalised) in >= 20% of training notes is template text
DELETE_FRACTION = 0.10
BLOCK = 8  # image deletion unit, in model-input pixels


def _mask(root: Path, paths: Sequence[str], shape: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    union = np.zeros(shape, dtype=bool)
    for path in paths:
        with Image.open(root / path) as image:
            mask = image.convert("L")
            if mask.size != (shape[1], shape[0]):
                mask = mask.resize((shape[1], shape[0]), Image.NEAREST)
            union |= np.asarray(mask) > 127
    return union


def chance_hit_rate(n_words: int, n_signal: int, k: int = TOP_WORDS) -> float:
    """P(at least one of k words drawn without replacement from n_words overlaps a signal phrase)."""
    if n_words <= 0 or n_signal <= 0:
        return 0.0
    k = min(k, n_words)
    if n_words - n_signal < k:
        return 1.0
    return 1.0 - math.comb(n_words - n_signal, k) / math.comb(n_words, k)


WORD_GROUPS = {
    "any": "signal_word_top10",
    "outcome_concepts": "signal_word_top10_outcome_concepts",
    "outcome_conditions": "signal_word_top10_outcome_conditions",
}


def _overlaps(words, spans, concepts: set[str] | None = None) -> np.ndarray:
    """Per word: does it overlap a signal span (of one of `concepts`, or of any concept)?"""
    chosen = [(start, end) for start, end, concept in spans if concepts is None or concept in concepts]
    return np.array([any(w.start < end and start < w.end for start, end in chosen) for w in words], dtype=bool)


def paragraph_spans(note: str, spans) -> list[tuple[int, int, str]]:
    """Each signal span widened to its problem paragraph: the line of the original note that holds it (the
    simulator writes one problem, with its treatment, per line: "# Pneumonia: treated with ...")."""
    out = []
    for start, end, concept in spans:
        a = note.rfind("\n", 0, start) + 1
        b = note.find("\n", end)
        out.append((a, len(note) if b < 0 else b, concept))
    return out


def _phrase_overlaps(phrases, spans, concepts: set[str] | None = None) -> np.ndarray:
    chosen = [(start, end) for start, end, concept in spans if concepts is None or concept in concepts]
    return np.array([any(p.start < end and start < p.end for start, end in chosen) for p in phrases], dtype=bool)


def normalised(text: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", " ", text)).strip().lower()


def template_phrases(dataset, modalities: Sequence[str], max_notes: int = 400) -> dict[str, set[str]]:
    """Per note modality: phrases (normalised) found in >= TEMPLATE_SHARE of up to `max_notes` TRAINING notes."""
    from mmnar_core.encoders.text_clean import clean_note
    from mmnar_core.explain.phrases import split_phrases

    ids = dataset.patients["patient_id"].to_numpy()[dataset.split_indices("train")][:max_notes]
    counts: dict[str, dict[str, int]] = {m: {} for m in modalities}
    seen: dict[str, int] = dict.fromkeys(modalities, 0)
    for pid in ids:
        record = dataset.record(pid)
        for modality in modalities:
            note = record.texts.get(modality)
            if note is None:
                continue
            seen[modality] += 1
            for text in {normalised(p.text) for p in split_phrases(clean_note(note))}:
                counts[modality][text] = counts[modality].get(text, 0) + 1
    return {m: {t for t, c in counts[m].items() if c >= TEMPLATE_SHARE * max(seen[m], 1)} for m in modalities}


def _count(k_fraction: float, n: int) -> int:
    return max(1, int(math.ceil(k_fraction * n))) if n else 0


def _risk(head_or_forward, *args) -> np.ndarray:
    with torch.no_grad():
        return head_or_forward(*args).float().cpu().numpy()


def evaluate_faithfulness(
    predictor,
    dataset,
    split: str = "test",
    tasks: Sequence[str] | None = None,
    max_patients: int | None = None,
    settings: AttributionSettings | None = None,
    modalities: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = False,
    rank_features: Sequence[str] = (),
) -> dict:
    """Faithfulness figures on one split of a synthetic dataset (needs its truth/ tables)."""
    settings = settings or AttributionSettings()
    task_ids, task_names = task_indices(predictor.config.tasks, tasks)
    rng = np.random.default_rng(seed)
    root = Path(dataset.root)
    findings = pd.read_parquet(root / "truth" / "image_findings.parquet")
    spans = pd.read_parquet(root / "truth" / "text_spans.parquet")
    finding_paths = {pid: list(zip(g["finding"], g["mask_path"])) for pid, g in findings.groupby("patient_id")}
    span_groups = {
        key: list(zip(g["start"], g["end"], g["concept"])) for key, g in spans.groupby(["patient_id", "modality"])
    }
    scm = dataset.manifest.provenance.get("parameters", {}).get("scm", {})
    relevant = {task: outcome_concepts(scm[task]) if task in scm else None for task in task_names}
    rows = np.arange(len(dataset)) if split == "all" else dataset.split_indices(split)
    ids = dataset.patients["patient_id"].to_numpy()[rows]
    if max_patients is not None:
        ids = ids[:max_patients]

    pointing = {t: [] for t in task_names}
    pointing_cam = {t: [] for t in task_names}
    pointing_relevant = {t: [] for t in task_names}
    pointing_cam_relevant = {t: [] for t in task_names}
    ranks: dict[str, dict[str, list[int]]] = {}  # structured feature -> task -> its rank (1 = largest |attr|)
    n_features = 0
    cam_zero: dict[str, list[bool]] = {t: [] for t in task_names}
    cam_border: dict[str, list[bool]] = {t: [] for t in task_names}
    # phrase groups: "any" concept (the metric), the outcome's concepts, the outcome's conditions
    # and findings without the severity sentences (a noisy perceived-severity remark is weak evidence)
    words_hit: dict[str, dict[str, dict[str, list]]] = {group: {} for group in WORD_GROUPS}
    words_chance: dict[str, list] = {}
    deletion: dict[str, dict[str, list]] = {}
    # phrases: top-5 by |deletion effect| (the default note attributions), and the same top 5 ranked by the sum
    # of the word IG inside each phrase when words were attributed (the comparison with Layer IG)
    phrase_hit: dict[str, dict[str, dict[str, list]]] = {}
    phrase_chance: dict[str, list] = {}
    template_top: dict[str, dict[str, list]] = {}
    template_effects: dict[str, list] = {}
    signal_effects: dict[str, list] = {}
    note_modalities = [m.name for m in predictor.modalities if m.kind.value == "text"]
    templates = template_phrases(dataset, note_modalities) if settings.text_phrases else {}
    references = (
        tabular_references_from(predictor.reference.inputs, predictor.reference.availability, predictor.modalities)
        if predictor.reference is not None and settings.tabular_baseline == "training"
        else {}
    )

    def hit(group: str, modality: str, task: str, value: bool) -> None:
        phrase_hit.setdefault(group, {}).setdefault(modality, {}).setdefault(task, []).append(value)

    def record_deletion(modality: str, task: str, top: float, random: float) -> None:
        deletion.setdefault(modality, {}).setdefault(task, []).append((top, random))

    started = time.perf_counter()
    for count, pid in enumerate(ids):
        record = dataset.record(pid)
        vectors = predictor.encode(record)
        target = predictor.attribution_target(vectors)
        if references and not target.tabular_references:  # until Predictor.attribution_target passes them
            target = replace(target, tabular_references=references)
        result = attribute_record(target, record, task_names, settings, modalities)
        head = result.cases["_head"]
        base_risk = _risk(head)[0]

        for tab in result.tabular:  # structured deletion: features to the IG baseline(s), risk change averaged
            index = predictor.config.modalities.index(tab.modality)
            groups = feature_columns(predictor.encoder.tabular[tab.modality])
            x = head.inputs[index]
            pool = target.tabular_references.get(tab.modality)
            if pool is not None and tab.method == "ExpectedGradients":
                bases = pick_references(pool.to(x.device, x.dtype), settings.tabular_references)
            else:
                bases = torch.zeros_like(x)
            k = _count(DELETE_FRACTION, len(groups))
            for r, task in zip(task_ids, task_names):
                scores = np.array([abs(f.attribution[task]) for f in tab.features])
                order = [tab.features[i].feature for i in np.argsort(-scores, kind="stable")]
                for name in rank_features:
                    if name in order:
                        ranks.setdefault(name, {}).setdefault(task, []).append(order.index(name) + 1)
                        n_features = len(order)
                chosen = {
                    "top": np.argsort(-scores, kind="stable")[:k],
                    "random": rng.choice(len(groups), k, replace=False),
                }
                change = {}
                for name, features in chosen.items():
                    y = x.expand(len(bases), -1).clone()
                    for g in features:
                        y[:, groups[g][1]] = bases[:, groups[g][1]]
                    change[name] = abs(float(_risk(head, {index: y})[:, r].mean()) - float(base_risk[r]))
                record_deletion(tab.modality, task, change["top"], change["random"])

        for image in result.images:
            case = result.cases[image.modality]
            if settings.image_gradcam:  # issue 16: the Grad-CAM peak sat on the image border for 58 of 60 X-rays
                height, width = image.image_shape
                for task in task_names:
                    peak = image.gradcam_peak.get(task)
                    cam_zero[task].append(peak is None)
                    cam_border[task].append(
                        peak is not None and (peak[0] in (0, height - 1) or peak[1] in (0, width - 1))
                    )
            drawn = finding_paths.get(pid, [])
            if drawn:
                shape = tuple(image.image_shape)
                mask = _mask(root, [path for _, path in drawn], shape)
                for task in task_names:
                    row, col = image.peak[task]
                    peak = image.gradcam_peak.get(task) if image.gradcam_peak else None
                    pointing[task].append(bool(mask[row, col]))
                    if settings.image_gradcam:
                        pointing_cam[task].append(bool(peak is not None and mask[peak[0], peak[1]]))
                    paths = [
                        path for finding, path in drawn if relevant[task] is not None and finding in relevant[task]
                    ]
                    if paths:
                        task_mask = _mask(root, paths, shape)
                        pointing_relevant[task].append(bool(task_mask[row, col]))
                        if settings.image_gradcam:
                            pointing_cam_relevant[task].append(bool(peak is not None and task_mask[peak[0], peak[1]]))
            size = case.model_input.shape[-1]
            blocks = size // BLOCK
            k = _count(DELETE_FRACTION, blocks * blocks)
            for r, (task_id, task) in enumerate(zip(task_ids, task_names)):
                block_scores = (
                    np.abs(case.ig[r][: blocks * BLOCK, : blocks * BLOCK])
                    .reshape(blocks, BLOCK, blocks, BLOCK)
                    .sum(axis=(1, 3))
                    .ravel()
                )
                chosen = {
                    "top": np.argsort(-block_scores, kind="stable")[:k],
                    "random": rng.choice(blocks * blocks, k, replace=False),
                }
                change = {}
                for name, picked in chosen.items():
                    y = case.model_input.clone()
                    for b in picked:
                        i, j = divmod(int(b), blocks)
                        block = (..., slice(i * BLOCK, (i + 1) * BLOCK), slice(j * BLOCK, (j + 1) * BLOCK))
                        y[block] = case.baseline[block]
                    change[name] = abs(float(_risk(case.forward, y)[0, task_id]) - float(base_risk[task_id]))
                record_deletion(image.modality, task, change["top"], change["random"])

        for text in result.texts:
            truth = span_groups.get((pid, text.modality), [])
            if text.phrases and truth:
                note = record.texts[text.modality]
                note = note.decode("utf-8") if isinstance(note, (bytes, bytearray)) else note
                paragraphs = paragraph_spans(note, truth)
                in_paragraph = _phrase_overlaps(text.phrases, paragraphs)
                in_span = _phrase_overlaps(text.phrases, truth)
                is_template = np.array(
                    [normalised(p.text) in templates.get(text.modality, set()) for p in text.phrases]
                )
                phrase_chance.setdefault(text.modality, []).append(
                    chance_hit_rate(len(text.phrases), int(in_paragraph.sum()), TOP_PHRASES)
                )
                ig_scores = None
                if text.words:
                    ig_scores = {
                        task: np.array(
                            [
                                sum(w.attribution[task] for w in text.words if p.start <= w.start and w.end <= p.end)
                                for p in text.phrases
                            ]
                        )
                        for task in task_names
                    }
                for task in task_names:
                    effects = np.array([p.attribution[task] for p in text.phrases])
                    top = np.argsort(-np.abs(effects), kind="stable")[:TOP_PHRASES]
                    concepts = relevant[task] or set()
                    hit("paragraph", text.modality, task, bool(in_paragraph[top].any()))
                    hit("span", text.modality, task, bool(in_span[top].any()))
                    relevant_paragraphs = _phrase_overlaps(text.phrases, paragraphs, concepts - {"severity"})
                    if relevant_paragraphs.any():
                        hit("paragraph_outcome_conditions", text.modality, task, bool(relevant_paragraphs[top].any()))
                    template_top.setdefault(text.modality, {}).setdefault(task, []).append(bool(is_template[top].any()))
                    template_effects.setdefault(text.modality, []).extend(
                        np.abs(effects[top][is_template[top]]).tolist()
                    )
                    signal_effects.setdefault(text.modality, []).extend(
                        np.abs(effects[top][in_paragraph[top]]).tolist()
                    )
                    if ig_scores is not None:
                        top_ig = np.argsort(-np.abs(ig_scores[task]), kind="stable")[:TOP_PHRASES]
                        hit("paragraph_ig_sum", text.modality, task, bool(in_paragraph[top_ig].any()))
            if not text.words:
                continue
            case = result.cases[text.modality]
            overlaps = _overlaps(text.words, truth)
            if overlaps.any():
                words_chance.setdefault(text.modality, []).append(chance_hit_rate(len(text.words), int(overlaps.sum())))
            token_word = np.asarray(case.token_word)
            positions = case.positions
            k = _count(DELETE_FRACTION, len(text.words))
            for task_id, task in zip(task_ids, task_names):
                scores = np.array([abs(w.attribution[task]) for w in text.words])
                order = np.argsort(-scores, kind="stable")
                concepts = relevant[task] or set()
                groups = {
                    "any": overlaps,
                    "outcome_concepts": _overlaps(text.words, truth, concepts),
                    "outcome_conditions": _overlaps(text.words, truth, concepts - {"severity"}),
                }
                for group, inside in groups.items():
                    if inside.any():
                        words_hit[group].setdefault(text.modality, {}).setdefault(task, []).append(
                            bool(inside[order[:TOP_WORDS]].any())
                        )
                chosen = {"top": order[:k], "random": rng.choice(len(text.words), k, replace=False)}
                change = {}
                for name, picked in chosen.items():
                    tokens = torch.from_numpy(np.flatnonzero(np.isin(token_word, picked))).to(positions.device)
                    slots = torch.isin(positions, tokens) & (positions >= 0)
                    deleted = torch.where(slots.unsqueeze(0), torch.full_like(case.ids, case.pad_id), case.ids)
                    change[name] = abs(
                        float(_risk(case.forward, deleted, case.mask, case.weights)[0, task_id])
                        - float(base_risk[task_id])
                    )
                record_deletion(text.modality, task, change["top"], change["random"])
        if progress:
            print(f"[{count + 1}/{len(ids)}] {pid} {time.perf_counter() - started:.0f}s", file=sys.stderr)

    def rate(values):
        return {"rate": float(np.mean(values)) if values else None, "n": len(values)}

    figures = {
        "split": split,
        "n_patients": int(len(ids)),
        "tasks": task_names,
        "output": settings.output,
        "settings": settings.to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
        "pointing_game_ig": {t: rate(v) for t, v in pointing.items()},
        "pointing_game_gradcam": {t: rate(v) for t, v in pointing_cam.items()} if settings.image_gradcam else None,
        "pointing_game_ig_outcome_findings": {t: rate(v) for t, v in pointing_relevant.items()},
        "gradcam_all_zero": {t: rate(v) for t, v in cam_zero.items()} if settings.image_gradcam else None,
        "gradcam_peak_on_border": {t: rate(v) for t, v in cam_border.items()} if settings.image_gradcam else None,
        "pointing_game_gradcam_outcome_findings": {t: rate(v) for t, v in pointing_cam_relevant.items()}
        if settings.image_gradcam
        else None,
        **{
            WORD_GROUPS[group]: {m: {t: rate(v) for t, v in per.items()} for m, per in by_modality.items()}
            for group, by_modality in words_hit.items()
        },
        "signal_word_top10_chance": {m: float(np.mean(v)) for m, v in words_chance.items()},
        # phrases (issue 16): a top-5 phrase (|deletion effect|) overlaps a problem paragraph holding a signal
        # phrase ("paragraph"), the signal phrase itself ("span"), a paragraph of a condition entering the
        # outcome ("paragraph_outcome_conditions"); "paragraph_ig_sum" ranks phrases by summed word IG instead
        "signal_phrase_top5": {
            group: {m: {t: rate(v) for t, v in per.items()} for m, per in by_modality.items()}
            for group, by_modality in phrase_hit.items()
        },
        "signal_phrase_top5_chance": {m: float(np.mean(v)) for m, v in phrase_chance.items()},
        "template_phrase_in_top5": {m: {t: rate(v) for t, v in per.items()} for m, per in template_top.items()},
        "top5_abs_effect_median": {
            m: {
                "template": float(np.median(template_effects[m])) if template_effects.get(m) else None,
                "signal_paragraph": float(np.median(signal_effects[m])) if signal_effects.get(m) else None,
            }
            for m in set(template_effects) | set(signal_effects)
        },
        "deletion": {},
        # issue 16: where a named structured feature ranks; "bottom_half" = rank > n_features / 2
        "structured_feature_rank": {
            name: {
                task: {
                    "median_rank": float(np.median(v)),
                    "top2": float(np.mean(np.asarray(v) <= 2)),
                    "bottom_half": float(np.mean(np.asarray(v) > n_features / 2)),
                    "n": len(v),
                    "n_features": n_features,
                }
                for task, v in per.items()
            }
            for name, per in ranks.items()
        },
    }
    for modality, per in deletion.items():
        figures["deletion"][modality] = {}
        for task, pairs in per.items():
            pairs = np.asarray(pairs)
            figures["deletion"][modality][task] = {
                "mean_abs_change_top": float(pairs[:, 0].mean()),
                "mean_abs_change_random": float(pairs[:, 1].mean()),
                "top_beats_random": float((pairs[:, 0] > pairs[:, 1]).mean()),
                "n": int(len(pairs)),
            }
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmnar_lab.explain.faithfulness", description=__doc__.split("\n")[0]
    )
    parser.add_argument("bundle", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="test", help="train, val, test or all")
    parser.add_argument("--max-patients", type=int, default=None)
    parser.add_argument("--tasks", default=None, help="comma-separated tasks (default: all)")
    parser.add_argument("--modalities", default=None, help="comma-separated modalities (default: all)")
    parser.add_argument("--text-steps", type=int, default=AttributionSettings.text_steps)
    parser.add_argument("--text-words", action="store_true", help="also word-level Layer IG (slow; compared)")
    parser.add_argument("--tabular-baseline", default="training", help="training (expected gradients) or zero")
    parser.add_argument("--no-gradcam", action="store_true")
    parser.add_argument("--gradcam-cells", type=int, default=AttributionSettings.gradcam_cells)
    parser.add_argument("--rank-features", default="", help="comma-separated structured features to rank")
    parser.add_argument("--phrase-scores", default="deletion", help="deletion or integrated_gradients")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from mmnar_core.dataset import load_dataset
    from mmnar_core.predictor import Predictor

    if not (args.dataset / "truth" / "image_findings.parquet").is_file():
        print(f"error: {args.dataset} has no truth/ tables; faithfulness needs a synthetic dataset", file=sys.stderr)
        return 2
    predictor = Predictor.load(args.bundle, device=args.device)
    dataset = load_dataset(args.dataset)
    figures = evaluate_faithfulness(
        predictor,
        dataset,
        args.split,
        args.tasks.split(",") if args.tasks else None,
        args.max_patients,
        AttributionSettings(
            text_steps=args.text_steps,
            text_words=args.text_words,
            tabular_baseline=args.tabular_baseline,
            image_gradcam=not args.no_gradcam,
            gradcam_cells=args.gradcam_cells,
            phrase_scores=args.phrase_scores,
        ),
        args.modalities.split(",") if args.modalities else None,
        progress=not args.quiet,
        rank_features=[f for f in args.rank_features.split(",") if f],
    )
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
