"""The training loop: AdamW, warmup + cosine learning rate stepped per batch over exactly the configured
epochs, plateau steps (after `plateau_patience` epochs without a better validation loss the best weights
come back and the rate drops by `plateau_factor`, so the kept model is one trained at a reduced rate, not
at the peak), gradient clipping, optional stage-1 pretraining on the auxiliary losses, early stopping on
the validation split only, one log line per epoch. Runs in one process or under torchrun (DistributedDataParallel: gloo on CPU,
NCCL on GPU; each rank takes an equal share of every global batch, so the global batch, the schedule
and the number of steps are the same as in one process).
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from mmnar_core.model import MMNARConfig, MMNARModel
from mmnar_core.model.auxiliary import auxiliary_losses, choose_hidden, reconstruction_losses, uniform
from mmnar_core.model.losses import masked_task_loss
from mmnar_core.model.network import WidePath
from mmnar_core.numeric import members_mean_and_spread
from mmnar_core.training.data import ModelData
from mmnar_core.training.wide_init import init_wide_from_logistic


@dataclass
class TrainResult:
    model: MMNARModel
    history: list[dict] = field(default_factory=list)
    best_epoch: int = -1  # -1: no epoch beat the untrained network (the wide path alone) on validation
    seconds: float = 0.0
    initial_val_loss: float | None = None  # validation loss before the first epoch
    wide: list[dict] | None = None  # per task, the wide path's start: C, validation loss, bins, content scale


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """Learning-rate multiplier for optimisation step `step` (0-based): linear warmup, cosine decay to 0."""
    warmup = max(1, int(round(total_steps * warmup_fraction)))

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return multiplier


def aux_weight_at(config: MMNARConfig, epoch: int) -> float:
    """Stage-2 auxiliary weight: aux_weight at the first epoch, decaying linearly to
    aux_weight * aux_final_fraction at the last one."""
    if not (config.use_reconstruction or config.use_contrastive):
        return 0.0
    fraction = epoch / max(1, config.epochs - 1)
    return config.aux_weight * (1.0 - fraction * (1.0 - config.aux_final_fraction))


def _distributed() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _drop_modalities(availability: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Random modality dropout (the missing-at-random baseline); keeps at least one modality per row."""
    if rate <= 0:
        return availability
    keep = torch.rand(availability.shape, generator=generator) >= rate
    dropped = availability & keep
    empty = ~dropped.any(dim=1)
    dropped[empty] = availability[empty]
    return dropped


class TrainingObjective(torch.nn.Module):
    """Task and auxiliary losses in one forward, so DistributedDataParallel sees every parameter used."""

    def __init__(self, model: MMNARModel, pos_weight: torch.Tensor | None):
        super().__init__()
        self.model = model
        self.pos_weight = pos_weight

    def forward(self, inputs, availability, labels, with_task: bool, with_aux: bool, generator, unseen=None):
        config = self.model.config
        zero = inputs[0].new_zeros(())
        task = aux = zero
        if with_task and with_aux and hasattr(self.model, "member_logits_and_without"):
            # stage 2 of the MMNAR model: the task and the re-fused rows in one pass (shared projections)
            rows, hidden = choose_hidden(availability, generator, config.aux_fraction)
            members, standardised, without = self.model.member_logits_and_without(
                inputs, availability, rows, hidden, unseen
            )
            task = self.members_loss(members, labels)
            mse, nce = reconstruction_losses(self.model, standardised, rows, hidden, without)
        else:
            if with_task:
                task = self.task_loss(inputs, availability, labels, unseen)
            if not with_aux:
                return task, aux
            mse, nce = auxiliary_losses(self.model, inputs, availability, generator)
        aux = (mse if config.use_reconstruction else zero) + (
            config.contrastive_weight * nce if config.use_contrastive else zero
        )
        return task, aux

    def task_loss(self, inputs, availability, labels, unseen=None):
        """Masked task loss; with fusion members, the mean of each member's own loss (so members stay
        diverse, as independently trained networks would); `unseen` (B,) marks the rows shown the
        unseen-pattern token."""
        config = self.model.config
        if not hasattr(self.model, "member_logits"):
            return masked_task_loss(
                self.model(inputs, availability), labels, self.pos_weight, config.task_loss, config.focal_gamma
            )
        return self.members_loss(self.model.member_logits(inputs, availability, unseen), labels)

    def members_loss(self, members: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean over members (K, B, T) of each member's masked task loss."""
        config = self.model.config
        losses = [
            masked_task_loss(logits, labels, self.pos_weight, config.task_loss, config.focal_gamma)
            for logits in members
        ]
        return torch.stack(losses).mean()


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module, data: ModelData, rows: np.ndarray, device: torch.device, batch_size: int = 2048
) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(rows), batch_size):
        inputs, availability, _ = data.take(rows[start : start + batch_size])
        out.append(model([x.to(device) for x in inputs], availability.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(data.tasks)))


@torch.no_grad()
def predict_logits_and_spread(
    model: MMNARModel, data: ModelData, rows: np.ndarray, device: torch.device, batch_size: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, tasks) mean logits (what predict_logits returns) and the fusion members' standard deviation."""
    model.eval()
    means, spreads = [], []
    for start in range(0, len(rows), batch_size):
        inputs, availability, _ = data.take(rows[start : start + batch_size])
        members = model.member_logits([x.to(device) for x in inputs], availability.to(device))
        mean, spread = members_mean_and_spread(members.float().cpu().numpy())
        means.append(mean)
        spreads.append(spread)
    empty = np.zeros((0, len(data.tasks)))
    return (np.concatenate(means), np.concatenate(spreads)) if means else (empty, empty)


def validation_score(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over tasks of the validation BCE (lower is better); the early-stopping criterion."""
    losses = []
    for t in range(labels.shape[1]):
        known = ~np.isnan(labels[:, t])
        z, y = logits[known, t], labels[known, t]
        if len(y):
            losses.append(float(np.mean(np.logaddexp(0.0, z) - y * z)))
    return float(np.mean(losses))


def train(
    config: MMNARConfig,
    data: ModelData,
    device: torch.device,
    log_path: Path | None = None,
    progress: bool = True,
    build_model: Callable[[MMNARConfig], torch.nn.Module] = MMNARModel,
) -> TrainResult:
    """Train on the train split, early-stop on val. Returns the best model (by validation loss).

    `build_model(config)` makes the network (default MMNARModel); any module with the same
    forward(inputs, availability) -> logits and a `.config` can be trained (see mmnar_core.baselines)."""
    rank, world = _distributed()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed + 1000 * rank)
    # the same stream on every process: draws made for the whole global batch, each process taking its share,
    # so N processes see exactly the choices one process would
    shared = torch.Generator().manual_seed(config.seed + 7)
    # MMNARModel's training interface (forward, .config, fit_inputs, wide, member_logits; the optional ones are
    # looked up before use); a baseline network stands in for it with the same calls (mmnar_core.baselines)
    model = cast(MMNARModel, build_model(config))
    train_rows, val_rows = data.rows("train"), data.rows("val")
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError("training needs patients in both the train and the val split")
    if hasattr(model, "fit_inputs"):  # standardisation and seen patterns: training split only
        train_inputs, train_availability, _ = data.take(train_rows)
        model.fit_inputs(train_inputs, train_availability)
    wide_chosen = None
    wide: WidePath | None = getattr(model, "wide", None)
    if wide is not None:
        if config.wide_init == "logistic":
            wide_chosen = init_wide_from_logistic(model, data)
        wide.requires_grad_(config.wide_trainable)
    model = model.to(device)
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes {world}")
    pos_weight = None
    if config.class_weighting:
        labels = data.labels[train_rows]
        positives = torch.nansum(labels, dim=0)
        negatives = (~torch.isnan(labels)).sum(dim=0) - positives
        pos_weight = (negatives / positives.clamp(min=1)).to(device)
    objective: torch.nn.Module = TrainingObjective(model, pos_weight)
    if world > 1:
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )

    # fused: one kernel for every parameter's update (the per-parameter loop was 5 % of a CPU training step)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        fused=True,
    )
    steps_per_epoch = math.ceil(len(train_rows) / config.batch_size)
    total_epochs = config.pretrain_epochs + config.epochs
    cosine = warmup_cosine(steps_per_epoch * total_epochs, config.warmup_fraction)
    plateau = {"scale": 1.0}  # multiplied by plateau_factor at each plateau step
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine(step) * plateau["scale"])
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    val_labels = data.labels[val_rows].numpy()

    history: list[dict[str, Any]] = []
    best_state: dict[str, Any] | None = None
    best_score, best_epoch, stale = math.inf, -1, 0
    if config.pretrain_epochs == 0:  # the untrained network (the wide path alone when it is used) is a candidate
        best_score = validation_score(predict_logits(model, data, val_rows, device), val_labels)
        best_state = copy.deepcopy(model.state_dict())
    initial_score = best_score if math.isfinite(best_score) else None
    started = time.perf_counter()
    bar = tqdm(total=total_epochs, desc="training", unit="epoch", disable=not progress or rank != 0)
    for epoch in range(total_epochs):
        stage = 1 if epoch < config.pretrain_epochs else 2
        stage_epoch = epoch - config.pretrain_epochs
        weight = aux_weight_at(config, stage_epoch) if stage == 2 else 1.0
        order = train_rows[np.random.default_rng([config.seed, epoch]).permutation(len(train_rows))]
        model.train()
        totals = {"task": 0.0, "aux": 0.0, "batches": 0}
        for start in range(0, len(order), config.batch_size):
            global_rows = order[start : start + config.batch_size]
            batch_rows = global_rows[rank::world]
            unseen = None
            if config.unseen_pattern_rate > 0:
                unseen = (uniform((len(global_rows),), shared, torch.device("cpu")) < config.unseen_pattern_rate)[
                    rank::world
                ].to(device)
            inputs, availability, labels = data.take(batch_rows)
            inputs = [x.to(device) for x in inputs]
            availability = _drop_modalities(availability, config.modality_dropout, generator).to(device)
            labels = labels.to(device)
            with torch.autocast(device_type=device.type, enabled=use_amp):
                task, aux = objective(inputs, availability, labels, stage == 2, weight > 0, generator, unseen)
                loss = task + weight * aux
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip, foreach=True)
            scaler.step(optimizer)
            scaler.update()
            schedule.step()
            totals["task"] += task.item()
            totals["aux"] += aux.item()
            totals["batches"] += 1
        val_logits = predict_logits(model, data, val_rows, device)
        score = validation_score(val_logits, val_labels)
        entry = {
            "epoch": epoch,
            "stage": stage,
            "train_task_loss": totals["task"] / totals["batches"],
            "train_aux_loss": totals["aux"] / totals["batches"],
            "aux_weight": weight,
            "val_loss": score,
            "lr": schedule.get_last_lr()[0],
            "seconds": round(time.perf_counter() - started, 2),
        }
        history.append(entry)
        if log_path is not None and rank == 0:
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(json.dumps(entry) + "\n")
        bar.update()
        bar.set_postfix(val_loss=f"{score:.4f}")
        if stage == 1:
            continue
        if score < best_score - 1e-5:
            best_score, best_state, best_epoch, stale = score, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
            if stale % config.plateau_patience == 0 and best_state is not None:
                model.load_state_dict(best_state)  # back to the best weights, then on at a lower rate
                plateau["scale"] *= config.plateau_factor
    bar.close()
    if best_state is None:  # only when no epoch had a finite validation loss (with pretraining)
        raise ValueError(
            "no training epoch gave a finite validation loss (are all validation labels missing, or did the "
            "training diverge?): there is no model to keep"
        )
    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch, time.perf_counter() - started, initial_score, wide_chosen)
