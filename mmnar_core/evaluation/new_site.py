"""Evaluating a bundle on another site's dataset: its embeddings must come from the bundle's own encoders,
and the report says which categorical values the bundle's encoders had never seen (docs/new_site.md).

A dataset embedded on its own (`embed DATASET`) has tabular encoders fitted on its own train split: its
vectors mean something else to the model, so evaluating on them would be silently wrong. `evaluate` stops
instead and names the one command that re-embeds the dataset with the bundle's encoders.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np

from mmnar_core.dataset import Dataset, avail_column
from mmnar_core.encoders.tabular import TabularEncoder


class EmbeddingMismatchError(ValueError):
    """The cached embeddings of a dataset are not the ones the bundle's encoders make."""


def embed_command(dataset_dir: str | Path, bundle_dir: str | Path, cache_dir: str | Path | None) -> str:
    """The exact command that embeds `dataset_dir` with the bundle's encoders."""
    parts = ["python", "-m", "mmnar_core", "embed", str(dataset_dir), "--from-bundle", str(bundle_dir)]
    if cache_dir:
        parts += ["--cache", str(cache_dir)]
    return " ".join(shlex.quote(p) for p in parts)


def load_bundle_embeddings(bundle, dataset: Dataset, bundle_dir: str | Path, cache_dir: str | Path | None):
    """`load_embeddings`, checked against the bundle's encoder ids; a mismatch or a dataset never embedded
    raises EmbeddingMismatchError naming the command to run."""
    from mmnar_core.encoders.cache import load_embeddings

    command = embed_command(dataset.root, bundle_dir, cache_dir)
    try:
        embeddings = load_embeddings(dataset, cache_dir)
    except FileNotFoundError:
        raise EmbeddingMismatchError(
            f"{dataset.root} has no cached embeddings; embed it with the bundle's encoders first:\n  {command}"
        ) from None
    wrong = []
    for modality, info in bundle.encoders.items():
        cached = embeddings.encoders.get(modality, {}).get("encoder_id")
        if cached != info.get("encoder_id"):
            wrong.append(f"{modality}: cached {cached or 'none'}, bundle {info.get('encoder_id')}")
    if wrong:
        raise EmbeddingMismatchError(
            f"the cached embeddings of {dataset.root} come from other encoders than the bundle's ({'; '.join(wrong)}); "
            f"embed it with the bundle's encoders first:\n  {command}"
        )
    return embeddings


def bundle_tabular_encoders(bundle) -> dict[str, TabularEncoder]:
    """Tabular modality -> the fitted encoder shipped in the bundle."""
    return {
        modality: TabularEncoder.load(Path(bundle.root) / "encoders" / info["encoder_id"] / "tabular_state.json")
        for modality, info in bundle.encoders.items()
        if info.get("kind") == "tabular"
    }


def unknown_category_counts(
    bundle, dataset: Dataset, rows: np.ndarray | None = None
) -> dict[str, dict[str, dict[str, int]]]:
    """{modality: {feature: {value: patients}}} of categorical values the bundle's encoders were not fitted
    with, among `rows` (positions in the dataset; None = all) where the modality is present."""
    chosen = (
        np.ones(len(dataset.patients), dtype=bool) if rows is None else np.isin(np.arange(len(dataset.patients)), rows)
    )
    out = {}
    for modality, encoder in bundle_tabular_encoders(bundle).items():
        present = chosen & dataset.patients[avail_column(modality)].to_numpy(dtype=bool)
        frame = dataset.structured.loc[present, [f.name for f in encoder.features]]
        out[modality] = encoder.unknown_counts(frame)
    return out
