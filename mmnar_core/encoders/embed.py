"""Compute every embedding of a dataset into the cache (what `python -m mmnar_core embed` runs)."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from mmnar_core.dataset import Dataset, avail_column, load_dataset
from mmnar_core.encoders.cache import EmbeddingCache, content_key, default_cache_dir, write_index
from mmnar_core.encoders.errors import EncoderInputError, EncoderStateError, TabularInputError
from mmnar_core.encoders.image_io import read_image_bytes
from mmnar_core.encoders.runtime import fingerprint
from mmnar_core.encoders.tabular import TabularEncoder
from mmnar_core.schema import ModalityKind

FLUSH_SECONDS = 30.0


@dataclass
class EmbedReport:
    cache_dir: Path
    index_dir: Path | None = None
    computed: dict[str, int] = field(default_factory=dict)
    reused: dict[str, int] = field(default_factory=dict)
    encoders: dict[str, dict] = field(default_factory=dict)
    # tabular modality -> {feature: {value: rows}} of categorical values the encoder does not know
    unknown_categories: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)


def _bar(total: int, label: str, show: bool):
    return tqdm(total=total, desc=label, unit="item", disable=not show, file=sys.stderr, leave=False)


def embed_dataset(
    dataset: Dataset | str | Path,
    cache_dir: str | Path | None = None,
    image_embedder=None,
    text_embedder=None,
    precomputed_images: str | Path | None = None,
    batch_size: int = 32,
    progress: bool = True,
    on_batch: Callable[[str, int], None] | None = None,
    tabular_states: Mapping[str, str | Path] | None = None,
    shard: tuple[int, int] | None = None,
) -> EmbedReport:
    """Embed all modalities of `dataset` that have an encoder; skip what the cache already holds.

    `on_batch(modality, n)` is called after each stored batch (tests use it to simulate interruption).
    `tabular_states` maps a tabular modality to a saved TabularEncoder state to use instead of fitting one
    on this dataset's train split: a new site's data must be scaled exactly as the model's training data was.

    `shard=(i, n)` makes this one of n processes (e.g. one per GPU under torchrun): it embeds only the image
    and text items at positions i, i+n, i+2n, ... of each modality (shard 0 also does the cheap tabular
    modalities whole) into the shared cache, and writes no index. Once all n have finished, one unsharded
    run finds every vector cached, computes nothing and writes the index training reads.
    """
    if shard is not None and not (len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    part_of = slice(None) if shard is None else slice(shard[0], None, shard[1])
    report = EmbedReport(root)
    index_rows: list[pd.DataFrame] = []
    manifest = dataset.manifest
    for modality in manifest.modalities:
        if modality.kind is ModalityKind.TABULAR:
            if shard is not None and shard[0] != 0:
                continue  # shard 0 does it: one writer of the fitted state
            state = (tabular_states or {}).get(modality.name)
            part = _embed_tabular(dataset, modality.name, root, report, state)
        elif modality.kind is ModalityKind.IMAGE:
            if precomputed_images is not None:
                part = _import_precomputed(dataset, modality.name, Path(precomputed_images), root, report, part_of)
            elif image_embedder is None:
                continue
            else:
                part = _embed_images(
                    dataset, modality.name, image_embedder, root, report, batch_size, progress, on_batch, part_of
                )
        else:
            if text_embedder is None:
                continue
            part = _embed_texts(
                dataset, modality.name, text_embedder, root, report, batch_size, progress, on_batch, part_of
            )
        index_rows.append(part)
    if shard is not None:
        return report  # the index is written by the unsharded run after all shards
    index_rows.extend(_carry_over(root, manifest.content_hash, report))
    index = (
        pd.concat(index_rows, ignore_index=True)
        if index_rows
        else pd.DataFrame(columns=["patient_id", "modality", "key"])
    )
    report.index_dir = write_index(root, manifest.content_hash, index, report.encoders)
    return report


def _carry_over(root: Path, content_hash: str, report: EmbedReport) -> list[pd.DataFrame]:
    """Modalities skipped in this run (e.g. --no-text) keep their entries from the previous index."""
    folder = root / "datasets" / content_hash
    if not (folder / "index.parquet").is_file() or not (folder / "encoders.json").is_file():
        return []
    previous = json.loads((folder / "encoders.json").read_text(encoding="utf-8"))
    kept = {m: info for m, info in previous.items() if m not in report.encoders}
    if not kept:
        return []
    report.encoders.update(kept)
    index = pd.read_parquet(folder / "index.parquet")
    return [index[index["modality"].isin(list(kept))]]


def _fill(
    cache: EmbeddingCache,
    keys: list[str],
    load,
    compute,
    modality: str,
    report: EmbedReport,
    batch_size: int,
    progress: bool,
    on_batch,
) -> None:
    """Compute the vectors of keys the cache lacks, batch by batch, storing each batch as it completes.

    `load(i)` gives the payload of item i (only called for missing items); `compute(payloads)` embeds.
    """
    todo = cache.missing(keys)
    first: dict[str, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    report.reused[modality] = len(set(keys)) - len(todo)
    report.computed[modality] = 0
    last_flush = time.monotonic()
    try:
        with _bar(len(todo), modality, progress) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                cache.put(batch, compute([load(first[k]) for k in batch]))
                report.computed[modality] += len(batch)
                bar.update(len(batch))
                if time.monotonic() - last_flush > FLUSH_SECONDS:  # bounds the work a hard kill can lose
                    cache.flush()
                    last_flush = time.monotonic()
                if on_batch is not None:
                    on_batch(modality, len(batch))
    finally:
        cache.flush()  # an error or Ctrl-C keeps every finished batch


def _embed_tabular(
    dataset: Dataset, modality: str, root: Path, report: EmbedReport, state: str | Path | None = None
) -> pd.DataFrame:
    """Fit on the training split only (or load a given state), store the state beside the vectors,
    embed every patient; count the categorical values the encoder does not know (all rows, cached or not)."""
    features = dataset.manifest.features_of(modality)
    if state is not None:
        encoder = TabularEncoder.load(state)
        expected = [f.name for f in encoder.features]
        if expected != [f.name for f in features]:
            raise ValueError(
                f"tabular state {state} is for features {expected}, but modality {modality!r} of this "
                f"dataset has {[f.name for f in features]}"
            )
    else:
        train = dataset.structured.iloc[dataset.split_indices("train")]
        encoder = TabularEncoder(features).fit(
            train, {"dataset": dataset.manifest.name, "split": "train", "content_hash": dataset.manifest.content_hash}
        )
    available = dataset.patients[avail_column(modality)].to_numpy(dtype=bool)
    frame = dataset.structured.loc[available, [f.name for f in features]].reset_index(drop=True)
    unknown = encoder.unknown_counts(frame)
    if unknown and encoder.config.unknown_category == "error":  # checked before anything is written
        raise TabularInputError(
            f"{modality}: this tabular state (unknown_category='error', saved before unseen values had an "
            f"<unknown> level) refuses categories it was not fitted with: {_count_text(unknown)}; a model trained "
            "by this version maps them to <unknown>"
        )
    report.unknown_categories[modality] = unknown
    encoder_id = fingerprint("tabular", encoder.state_dict())
    cache = EmbeddingCache(root, encoder_id, encoder.dim, {"kind": "tabular", "modality": modality})
    if not (cache.dir / "tabular_state.json").exists():
        encoder.save(cache.dir / "tabular_state.json")
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    keys = [content_key("tabular", json.dumps(r, sort_keys=True, default=str)) for r in records]
    # items are row positions: one vectorised transform per batch (per-row frames cost ~1.7 ms each)
    _fill(
        cache, keys, lambda i: i, lambda rows: encoder.transform(frame.iloc[rows]), modality, report, 4096, False, None
    )
    report.encoders[modality] = {"encoder_id": encoder_id, "kind": "tabular", "dim": encoder.dim}
    return pd.DataFrame(
        {"patient_id": dataset.patients["patient_id"].to_numpy()[available], "modality": modality, "key": keys}
    )


def _count_text(counts: dict[str, dict[str, int]], limit: int = 3) -> str:
    """{feature: {value: n}} -> "feature: 'a' x3, 'b' x1; other: ..." (at most `limit` values a feature)."""
    parts = []
    for feature, values in counts.items():
        shown = ", ".join(f"{v!r} x{n}" for v, n in list(values.items())[:limit])
        more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
        parts.append(f"{feature}: {shown}{more}")
    return "; ".join(parts)


def _embed_images(
    dataset, modality, embedder, root, report, batch_size, progress, on_batch, part_of: slice = slice(None)
) -> pd.DataFrame:
    rows = (
        dataset.images[dataset.images["modality"] == modality]
        .reset_index(drop=True)
        .iloc[part_of]
        .reset_index(drop=True)
    )
    paths = [dataset.root / p for p in rows["path"]]
    keys = [content_key("image", read_image_bytes(p, embedder.encoder.config.max_bytes)) for p in paths]
    cache = EmbeddingCache(
        root, embedder.id, embedder.dim, {"kind": "image", "config": embedder.encoder.config.to_dict()}
    )

    def load(i):
        try:
            return embedder.decode(paths[i])
        except EncoderInputError as error:
            raise type(error)(f"patient {rows['patient_id'][i]!r}, {modality}: {error}") from None

    _fill(cache, keys, load, embedder.embed_arrays, modality, report, batch_size, progress, on_batch)
    report.encoders[modality] = {"encoder_id": embedder.id, "kind": "image", "dim": embedder.dim}
    return pd.DataFrame({"patient_id": rows["patient_id"], "modality": modality, "key": keys})


def _embed_texts(
    dataset, modality, embedder, root, report, batch_size, progress, on_batch, part_of: slice = slice(None)
) -> pd.DataFrame:
    column = dataset.text[modality]
    present = column.notna().to_numpy()
    notes = column[present].tolist()[part_of]
    keys = [content_key("text", n) for n in notes]
    ids = dataset.patients["patient_id"].to_numpy()[present][part_of]
    cache = EmbeddingCache(root, embedder.id, embedder.dim, {"kind": "text", "config": embedder.config.to_dict()})

    def load(i):
        return embedder.clean(notes[i], f"patient {ids[i]!r}, {modality}")

    _fill(cache, keys, load, embedder.embed_clean, modality, report, max(1, batch_size // 2), progress, on_batch)
    report.encoders[modality] = {"encoder_id": embedder.id, "kind": "text", "dim": embedder.dim}
    return pd.DataFrame({"patient_id": ids, "modality": modality, "key": keys})


def _import_precomputed(
    dataset, modality, table_path: Path, root, report, part_of: slice = slice(None)
) -> pd.DataFrame:
    """Precomputed image embeddings: a Parquet table keyed by `image_id` (matched to images.parquet's
    `image_id`) or by `path`, with one list column `embedding` of equal-length floats."""
    if not table_path.is_file():
        raise FileNotFoundError(f"precomputed image embeddings {table_path} do not exist")
    table = pd.read_parquet(table_path)
    rows = (
        dataset.images[dataset.images["modality"] == modality]
        .reset_index(drop=True)
        .iloc[part_of]
        .reset_index(drop=True)
    )
    key_column = "image_id" if "image_id" in table.columns and "image_id" in rows.columns else "path"
    if key_column not in table.columns or "embedding" not in table.columns:
        raise EncoderStateError(
            f"{table_path}: needs columns 'embedding' and 'image_id' (matching images.parquet) or 'path'; "
            f"has {list(table.columns)}"
        )
    if table[key_column].duplicated().any():
        raise EncoderStateError(f"{table_path}: {key_column} values are not unique")
    lookup = dict(zip(table[key_column].astype(str), table["embedding"]))
    missing = [str(v) for v in rows[key_column] if str(v) not in lookup]
    if missing:
        raise EncoderStateError(f"{table_path}: no embedding for {key_column} {missing[0]!r} ({len(missing)} missing)")
    vectors = (
        np.stack([np.asarray(lookup[str(v)], dtype=np.float32) for v in rows[key_column]])
        if len(rows)
        else np.zeros((0, 1), np.float32)
    )
    encoder_id = "precomputed-" + hashlib.sha256(table_path.read_bytes()).hexdigest()[:16]
    cache = EmbeddingCache(root, encoder_id, vectors.shape[1], {"kind": "precomputed", "source": str(table_path)})
    keys = [content_key("precomputed", f"{key_column}:{v}") for v in rows[key_column]]
    _fill(cache, keys, lambda i: vectors[i], np.stack, modality, report, 4096, False, None)
    report.encoders[modality] = {"encoder_id": encoder_id, "kind": "precomputed", "dim": int(vectors.shape[1])}
    return pd.DataFrame({"patient_id": rows["patient_id"], "modality": modality, "key": keys})
