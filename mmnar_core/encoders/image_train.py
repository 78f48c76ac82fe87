"""Train the demo image encoder on a synthetic cohort, and measure it with a linear probe.

Objective: multi-label BCE on the X-ray findings the simulator drew (truth/latent.parquet `finding_*`),
plus optionally a symmetric InfoNCE between the image embedding and the paired radiology report's
text embedding (image-text pretraining). Only the training split is used to fit; the validation split
picks the best epoch; the test split is touched once, by the linear probe.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from mmnar_core.dataset import Dataset, load_dataset
from mmnar_core.encoders.config import ImageEncoderConfig, ImageTrainConfig
from mmnar_core.encoders.image_backbone import ImageEmbedder, ImageEncoder, save_image_encoder
from mmnar_core.encoders.image_io import load_image
from mmnar_core.encoders.image_preprocess import ImagePreprocess

FINDING_PREFIX = "finding_"


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: for each anchor i, -log exp(s_ii/t) / sum_k exp(s_ik/t), both directions."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def finding_labels(dataset: Dataset) -> pd.DataFrame:
    """patient_id + boolean finding_* columns from the simulator's ground truth."""
    path = dataset.root / "truth" / "latent.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: training the demo image encoder needs the simulator's truth")
    latent = pd.read_parquet(path)
    columns = [c for c in latent.columns if c.startswith(FINDING_PREFIX)]
    if not columns:
        raise ValueError(f"{path} has no {FINDING_PREFIX}* columns")
    return latent[["patient_id", *columns]]


def load_split(dataset: Dataset, split: str, modality: str, preprocess: ImagePreprocess, labels: pd.DataFrame):
    """Preprocessed images (N, 1, S, S), finding labels (N, F) and patient ids of one split."""
    ids = set(dataset.patients["patient_id"].iloc[dataset.split_indices(split)])
    rows = dataset.images[(dataset.images["modality"] == modality) & dataset.images["patient_id"].isin(ids)]
    rows = rows.merge(labels, on="patient_id", how="left", validate="one_to_one")
    columns = [c for c in labels.columns if c != "patient_id"]
    with torch.no_grad():
        images = torch.cat(
            [preprocess(torch.from_numpy(load_image(dataset.root / p))[None, None]) for p in rows["path"]]
        )
    targets = torch.tensor(rows[columns].fillna(False).to_numpy(dtype=np.float32))
    return images, targets, rows["patient_id"].tolist(), columns


def _shift(batch: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    if max_shift <= 0:
        return batch
    size = batch.shape[-1]
    padded = F.pad(batch, (max_shift,) * 4, value=float(batch.min()))
    out = torch.empty_like(batch)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(batch), 2), generator=generator)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, :, dy : dy + size, dx : dx + size]
    return out


def _auroc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")


def train_image_encoder(
    dataset_dir,
    out: Path,
    config: ImageEncoderConfig,
    train: ImageTrainConfig,
    modality: str = "cxr",
    report_modality: str = "radiology_report",
    log=print,
    device: str | None = None,
) -> dict:
    from mmnar_core.encoders.runtime import pick_device

    run_device = pick_device(device)
    torch.manual_seed(train.seed)
    generator = torch.Generator().manual_seed(train.seed)
    started = time.perf_counter()
    dataset = load_dataset(dataset_dir)
    labels = finding_labels(dataset)
    preprocess = ImagePreprocess(config)
    x_train, y_train, ids_train, names = load_split(dataset, "train", modality, preprocess, labels)
    x_val, y_val, _, _ = load_split(dataset, "val", modality, preprocess, labels)
    log(
        f"loaded {len(x_train)} train / {len(x_val)} val images in {time.perf_counter() - started:.0f}s; findings {names}"
    )

    encoder = ImageEncoder(config)
    head = nn.Linear(encoder.embed_dim, len(names))
    text_targets: torch.Tensor | None = None
    has_text: torch.Tensor | None = None
    to_text: nn.Linear | None = None
    if train.contrastive_weight > 0 and report_modality in dataset.text.columns:
        from mmnar_core.encoders.text_encoder import TextEmbedder

        reports = dataset.text.set_index("patient_id")[report_modality]
        notes = [reports.get(pid) for pid in ids_train]
        has_text = torch.tensor([isinstance(n, str) for n in notes])
        embedder = TextEmbedder()
        vectors = embedder.embed([n for n in notes if isinstance(n, str)])
        text_targets = torch.zeros((len(notes), vectors.shape[1]))
        text_targets[has_text] = torch.from_numpy(vectors)
        to_text = nn.Linear(encoder.embed_dim, vectors.shape[1])
        log(f"embedded {int(has_text.sum())} paired reports for the contrastive loss")
    encoder, head = encoder.to(run_device), head.to(run_device)
    if to_text is not None:
        assert text_targets is not None, "set with to_text"
        to_text, text_targets = to_text.to(run_device), text_targets.to(run_device)
    parameters = [*encoder.parameters(), *head.parameters(), *(to_text.parameters() if to_text else [])]
    optimizer = torch.optim.AdamW(parameters, lr=train.lr, weight_decay=train.weight_decay)
    steps_per_epoch = (len(x_train) + train.batch_size - 1) // train.batch_size
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=train.lr, total_steps=train.epochs * steps_per_epoch
    )

    best: dict[str, Any] = {"val_mean_auroc": -1.0}
    history = []
    for epoch in range(train.epochs):
        encoder.train(), head.train()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for start in range(0, len(order), train.batch_size):
            index = order[start : start + train.batch_size]
            embedding = encoder(_shift(x_train[index], train.max_shift, generator).to(run_device))
            loss = F.binary_cross_entropy_with_logits(head(embedding), y_train[index].to(run_device))
            if to_text is not None:
                assert has_text is not None and text_targets is not None, "set with to_text"
                paired = has_text[index].to(run_device)
                if int(paired.sum()) >= 2:
                    loss = loss + train.contrastive_weight * info_nce(
                        to_text(embedding[paired]), text_targets[index][paired], train.temperature
                    )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()  # per step: OneCycle is defined over steps
            total += float(loss.detach()) * len(index)
        encoder.eval(), head.eval()
        with torch.no_grad():
            scores = torch.cat(
                [
                    torch.sigmoid(head(encoder(x_val[i : i + 256].to(run_device)))).cpu()
                    for i in range(0, len(x_val), 256)
                ]
            ).numpy()
        aurocs = {n: round(_auroc(y_val[:, j].numpy(), scores[:, j]), 4) for j, n in enumerate(names)}
        mean = float(np.nanmean(list(aurocs.values())))
        history.append({"epoch": epoch + 1, "train_loss": round(total / len(x_train), 4), "val_auroc": aurocs})
        log(
            f"epoch {epoch + 1}: loss {total / len(x_train):.4f} val AUROC {aurocs} ({time.perf_counter() - started:.0f}s)"
        )
        if mean > best["val_mean_auroc"]:
            best = {
                "val_mean_auroc": round(mean, 4),
                "epoch": epoch + 1,
                "state": {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()},
            }
        if (time.perf_counter() - started) / 60 > train.max_minutes:
            log(f"stopping after epoch {epoch + 1}: over the {train.max_minutes} minute budget")
            break
    encoder = encoder.cpu()
    encoder.load_state_dict(best.pop("state"))
    info = {
        "dataset": dataset.manifest.name,
        "content_hash": dataset.manifest.content_hash,
        "objective": "BCE on simulator findings" + (" + image-report InfoNCE" if to_text else ""),
        "findings": names,
        "train_images": len(x_train),
        "best": best,
        "train_config": asdict(train),
        "history": history,
        "minutes": round((time.perf_counter() - started) / 60, 2),
        "note": "trained on synthetic X-rays only; not a clinical model",
    }
    save_image_encoder(encoder, out, info)
    log(f"saved {out} ({Path(out).stat().st_size / 1e6:.2f} MB)")
    return info


def linear_probe(dataset_dir, embedder: ImageEmbedder, modality: str = "cxr") -> dict:
    """Logistic regression on frozen embeddings (fit on train, AUROC on test) per finding."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    dataset = load_dataset(dataset_dir)
    labels = finding_labels(dataset)
    result = {}
    features = {}
    for split in ("train", "test"):
        ids = set(dataset.patients["patient_id"].iloc[dataset.split_indices(split)])
        rows = dataset.images[(dataset.images["modality"] == modality) & dataset.images["patient_id"].isin(ids)]
        rows = rows.merge(labels, on="patient_id", how="left", validate="one_to_one")
        features[split] = (embedder.embed([dataset.root / p for p in rows["path"]]), rows)
    scaler = StandardScaler().fit(features["train"][0])
    x_train, x_test = scaler.transform(features["train"][0]), scaler.transform(features["test"][0])
    for column in [c for c in labels.columns if c != "patient_id"]:
        y_train = features["train"][1][column].fillna(False).to_numpy(dtype=int)
        y_test = features["test"][1][column].fillna(False).to_numpy(dtype=int)
        model = LogisticRegression(max_iter=3000, C=1.0).fit(x_train, y_train)
        result[column.removeprefix(FINDING_PREFIX)] = {
            "auroc": round(_auroc(y_test, model.predict_proba(x_test)[:, 1]), 4),
            "test_positives": int(y_test.sum()),
            "test_n": int(len(y_test)),
        }
    return result


def run_training(args) -> int:
    """Handler of `python -m mmnar_core train-image-encoder` (parser in command.py)."""
    config = ImageEncoderConfig(arch=args.arch, input_size=args.input_size, embed_dim=args.embed_dim)
    train = ImageTrainConfig(
        epochs=args.epochs, contrastive_weight=args.contrastive_weight, max_minutes=args.max_minutes, seed=args.seed
    )
    info = train_image_encoder(args.dataset, Path(args.out), config, train, device=args.device)
    summary = {k: info[k] for k in ("dataset", "objective", "train_images", "best", "minutes")}
    if args.probe:
        from mmnar_core.encoders.image_backbone import load_image_encoder
        from mmnar_core.encoders.runtime import pick_device

        device = pick_device(args.device)
        summary["linear_probe_test"] = linear_probe(args.dataset, ImageEmbedder(load_image_encoder(args.out), device))
        torch.manual_seed(args.seed)
        summary["linear_probe_test_random_init"] = linear_probe(
            args.dataset, ImageEmbedder(ImageEncoder(config), device)
        )
    print(json.dumps(summary, indent=2))
    return 0
