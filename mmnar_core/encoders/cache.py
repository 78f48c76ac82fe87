"""Embedding cache: vectors keyed by (encoder id, content hash), stored in safetensors shards.

Why this shape: the encoder id hashes the exact weights and preprocessing, so a changed encoder never
reuses stale vectors; the content hash makes identical notes or images (in any dataset) share one
vector; shards are flushed atomically every `shard_size` vectors, so an interrupted run keeps its work
and a re-run computes only what is missing. Training reads a per-dataset index (patient -> key).

Layout:
  CACHE/<encoder id>/encoder.json               kind, dim and config of the encoder
  CACHE/<encoder id>/shard-*.safetensors        "vectors" (n, dim) float32; metadata "keys" (JSON list)
  CACHE/<encoder id>/tabular_state.json         fitted tabular state (tabular encoders only)
  CACHE/datasets/<content hash>/index.parquet   patient_id, modality, key
  CACHE/datasets/<content hash>/encoders.json   {modality: {encoder_id, kind, dim}}
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmnar_core.atomic_write import write_text_atomic
from mmnar_core.encoders.errors import EncoderStateError

SHARD_FORMAT = "mmnar-embedding-shard/1"


def default_cache_dir() -> Path:
    """$MMNAR_CACHE_DIR, else ~/.cache/mmnar/embeddings (shared by all datasets: keys are content hashes)."""
    return Path(os.environ.get("MMNAR_CACHE_DIR") or Path.home() / ".cache" / "mmnar" / "embeddings")


def content_key(kind: str, payload: bytes | str) -> str:
    """sha256 of the raw content (image file bytes, note text as UTF-8, canonical tabular JSON)."""
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return hashlib.sha256(kind.encode() + b"\0" + data).hexdigest()


class EmbeddingCache:
    """The vectors of one encoder. `put` buffers; `flush` writes one shard atomically."""

    def __init__(
        self,
        root: str | Path,
        encoder_id: str,
        dim: int,
        info: dict | None = None,
        shard_size: int = 256,
        create: bool = True,
    ):
        self.dir = Path(root) / encoder_id
        self.encoder_id = encoder_id
        self.dim = int(dim)
        self.shard_size = shard_size
        if not create and not self.dir.is_dir():
            raise FileNotFoundError(f"cache folder {self.dir} of encoder {encoder_id} is missing; re-run embed")
        self.dir.mkdir(parents=True, exist_ok=True)
        meta_path = self.dir / "encoder.json"
        if meta_path.exists():
            stored = json.loads(meta_path.read_text(encoding="utf-8"))
            if int(stored.get("dim", -1)) != self.dim:
                raise EncoderStateError(
                    f"{meta_path}: cached dim {stored.get('dim')} differs from the encoder's {self.dim}"
                )
        else:
            write_text_atomic(
                meta_path, json.dumps({"id": encoder_id, "dim": self.dim, **(info or {})}, indent=2, default=str) + "\n"
            )
        self._vectors: dict[str, np.ndarray] = {}
        self._pending: dict[str, np.ndarray] = {}
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            self._read_shard(shard)

    def _read_shard(self, path: Path) -> None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as handle:
                meta = handle.metadata() or {}
                vectors = handle.get_tensor("vectors")
            keys = json.loads(meta["keys"])
        except Exception as error:  # a damaged shard only costs a recomputation
            print(f"warning: ignoring unreadable cache shard {path} ({type(error).__name__}: {error})")
            return
        if meta.get("format") != SHARD_FORMAT or vectors.shape != (len(keys), self.dim):
            print(f"warning: ignoring cache shard {path} with unexpected format or shape {vectors.shape}")
            return
        self._vectors.update(zip(keys, vectors))

    def __contains__(self, key: str) -> bool:
        return key in self._vectors or key in self._pending

    def __len__(self) -> int:
        return len(self._vectors) + len(self._pending)

    def missing(self, keys: Iterable[str]) -> list[str]:
        seen, out = set(), []
        for key in keys:
            if key not in self and key not in seen:
                seen.add(key)
                out.append(key)
        return out

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(keys), self.dim):
            raise ValueError(f"expected vectors of shape ({len(keys)}, {self.dim}), got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError("refusing to cache non-finite embedding values")
        self._pending.update(zip(keys, vectors))
        if len(self._pending) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        from safetensors.numpy import save_file

        keys = list(self._pending)
        vectors = np.stack([self._pending[k] for k in keys]).astype(np.float32)
        target = self.dir / f"shard-{uuid.uuid4().hex}.safetensors"
        partial = target.with_name(target.name + ".partial")
        save_file({"vectors": vectors}, str(partial), metadata={"format": SHARD_FORMAT, "keys": json.dumps(keys)})
        partial.replace(target)
        self._vectors.update(self._pending)
        self._pending = {}

    def get(self, keys: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        for i, key in enumerate(keys):
            vector = self._vectors.get(key)
            if vector is None:
                vector = self._pending.get(key)
            if vector is None:
                raise KeyError(f"no cached vector for key {key[:16]}... under encoder {self.encoder_id}")
            out[i] = vector
        return out


def write_index(root: str | Path, content_hash: str, index: pd.DataFrame, encoders: dict) -> Path:
    """Record which key each (patient, modality) uses and which encoder made it."""
    folder = Path(root) / "datasets" / content_hash
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"index.parquet.partial-{os.getpid()}"
    index.to_parquet(partial, index=False)
    partial.replace(folder / "index.parquet")
    write_text_atomic(folder / "encoders.json", json.dumps(encoders, indent=2, sort_keys=True) + "\n")
    return folder


@dataclass
class EmbeddingSet:
    """What training reads: per modality an (N, dim) array in patient row order (zeros where the
    modality is absent) and the (N,) boolean presence, which equals the dataset's availability."""

    patient_ids: np.ndarray
    vectors: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    encoders: dict[str, dict]
    cache_dir: Path

    def tabular_state_path(self, modality: str) -> Path:
        """The fitted tabular state used for `modality`; a model bundle must ship it for inference."""
        info = self.encoders[modality]
        if info["kind"] != "tabular":
            raise ValueError(f"modality {modality!r} is {info['kind']}, not tabular")
        return self.cache_dir / info["encoder_id"] / "tabular_state.json"


def load_embeddings(dataset, cache_dir: str | Path | None = None) -> EmbeddingSet:
    """Embeddings of a loaded Dataset, from the index written by `python -m mmnar_core embed`."""
    from mmnar_core.dataset import avail_column

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    folder = root / "datasets" / dataset.manifest.content_hash
    if not (folder / "index.parquet").is_file():
        raise FileNotFoundError(
            f"no embeddings for dataset {dataset.manifest.name!r} (content {dataset.manifest.content_hash[:12]}) in "
            f"{root}; run: python -m mmnar_core embed {dataset.root} --cache {root}"
        )
    index = pd.read_parquet(folder / "index.parquet")
    encoders = json.loads((folder / "encoders.json").read_text(encoding="utf-8"))
    ids = dataset.patients["patient_id"].to_numpy()
    row_of = {pid: i for i, pid in enumerate(ids)}
    vectors, present = {}, {}
    for modality, info in encoders.items():
        cache = EmbeddingCache(root, info["encoder_id"], info["dim"], create=False)
        part = index[index["modality"] == modality]
        rows = np.array([row_of[p] for p in part["patient_id"]], dtype=np.int64)
        array = np.zeros((len(ids), cache.dim), dtype=np.float32)
        array[rows] = cache.get(part["key"].tolist())
        mask = np.zeros(len(ids), dtype=bool)
        mask[rows] = True
        expected = dataset.patients[avail_column(modality)].to_numpy(dtype=bool)
        if not np.array_equal(mask, expected):
            raise EncoderStateError(
                f"cached index for {modality!r} does not match the dataset's availability; re-run embed"
            )
        vectors[modality], present[modality] = array, mask
    return EmbeddingSet(ids, vectors, present, encoders, root)
