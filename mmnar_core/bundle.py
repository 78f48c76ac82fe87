"""Model bundles: everything needed to predict, in safe formats, with a content hash checked at load.

Layout of BUNDLE_DIR:
  bundle.json          format version, model id, sha256 of every other file, content hash
  config.json          MMNARConfig
  weights.safetensors  network weights (never a pickle)
  calibration.json     temperature per task and the pattern rectifier per task
  dataset.json         the training dataset's name, content hash, provenance, modalities, features, outcomes
  encoders.json        per modality the encoder id, kind and dimension its embeddings came from
  metrics.json         evaluation on the test split
  model_card.md        intended use, data, labels, per-pattern performance, limitations
  extra files          e.g. training_log.jsonl, encoder state

Writes are atomic (staging folder, then rename); loads verify every file's hash, so a tampered or
half-copied bundle is rejected with the file named.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mmnar_core import __version__
from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.model import MMNARConfig, MMNARModel

BUNDLE_FORMAT = 1
INDEX_FILE = "bundle.json"


class BundleError(ValueError):
    """A bundle that is missing, malformed or changed since it was written; names the file."""


@dataclass
class Bundle:
    root: Path
    model_id: str
    content_hash: str
    config: MMNARConfig
    model: MMNARModel
    temperature: TemperatureScaler
    rectifiers: dict[str, PatternRectifier]
    dataset: dict
    encoders: dict
    metrics: dict
    model_card: str
    files: list[str]  # every file of the bundle (relative paths), as listed in bundle.json


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_hash(files: dict[str, str]) -> str:
    """sha256 of the sorted "<sha256>  <path>" lines: one value for the whole content."""
    listing = "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def save_bundle(out: str | Path, model: MMNARModel, temperature: TemperatureScaler, rectifiers: dict[str, PatternRectifier],
                dataset: dict, encoders: dict, metrics: dict, model_card: str, extra_files: dict[str, bytes] | None = None,
                overwrite: bool = False) -> Path:
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; choose a new --out or pass --overwrite")
    if out.exists() and any(out.iterdir()) and not (out / INDEX_FILE).exists():
        raise FileExistsError(f"{out} is not a model bundle (no {INDEX_FILE}); refusing to overwrite it")
    staging = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.config.save(staging / "config.json")
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, staging / "weights.safetensors")
        calibration = {"temperature": temperature.to_dict(), "rectifiers": {t: r.to_dict() for t, r in rectifiers.items()}}
        for name, content in (("calibration.json", calibration), ("dataset.json", dataset), ("encoders.json", encoders),
                              ("metrics.json", metrics)):
            (staging / name).write_text(json.dumps(content, indent=2, default=float) + "\n", encoding="utf-8")
        (staging / "model_card.md").write_text(model_card, encoding="utf-8")
        for relative, content in (extra_files or {}).items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        files = {p.relative_to(staging).as_posix(): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        content_hash = _content_hash(files)
        index = {"format_version": BUNDLE_FORMAT, "created_by": f"mmnar_core {__version__}",
                 "model_id": f"mmnar-{content_hash[:12]}", "content_hash": content_hash, "files": files}
        (staging / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        load_bundle(staging)  # what we wrote must load
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        backup = out.with_name(f".{out.name}.previous-{os.getpid()}")
        out.rename(backup)
        staging.rename(out)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        staging.rename(out)
    return out


def _read_json(root: Path, name: str):
    try:
        return json.loads((root / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{root / name}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{root / name}: not valid JSON ({error})") from None


def verify_bundle(root: str | Path) -> dict:
    """Check every file against bundle.json; returns the index."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory")
    index = _read_json(root, INDEX_FILE)
    if not isinstance(index, dict) or index.get("format_version") != BUNDLE_FORMAT or not isinstance(index.get("files"), dict):
        raise BundleError(f"{root / INDEX_FILE}: not a bundle index of format {BUNDLE_FORMAT}")
    files = index["files"]
    if _content_hash(files) != index.get("content_hash"):
        raise BundleError(f"{root / INDEX_FILE}: content_hash does not match the file list; the bundle was changed")
    for relative, digest in files.items():
        path = root / relative
        if ".." in Path(relative).parts or not path.is_file():
            raise BundleError(f"{path}: listed in {INDEX_FILE} but missing")
        if _sha256(path) != digest:
            raise BundleError(f"{path}: does not match its hash in {INDEX_FILE}; the bundle was changed")
    for required in ("config.json", "weights.safetensors", "calibration.json", "dataset.json", "encoders.json"):
        if required not in files:
            raise BundleError(f"{root / required}: missing")
    return index


def load_bundle(root: str | Path, device: torch.device | str = "cpu") -> Bundle:
    root = Path(root)
    index = verify_bundle(root)
    try:
        config = MMNARConfig.from_dict(_read_json(root, "config.json"))
    except (TypeError, ValueError) as error:
        raise BundleError(f"{root / 'config.json'}: {error}") from None
    model = MMNARModel(config)
    try:
        model.load_state_dict(load_file(root / "weights.safetensors"))
    except (RuntimeError, OSError) as error:
        raise BundleError(f"{root / 'weights.safetensors'}: does not fit config.json ({error})") from None
    model.to(device).eval()
    calibration = _read_json(root, "calibration.json")
    temperature = TemperatureScaler.from_dict(calibration["temperature"])
    rectifiers = {task: PatternRectifier.from_dict(state) for task, state in calibration["rectifiers"].items()}
    card = (root / "model_card.md").read_text(encoding="utf-8") if (root / "model_card.md").is_file() else ""
    return Bundle(root, index["model_id"], index["content_hash"], config, model, temperature, rectifiers,
                  _read_json(root, "dataset.json"), _read_json(root, "encoders.json"),
                  _read_json(root, "metrics.json") if (root / "metrics.json").is_file() else {}, card, sorted(index["files"]))
