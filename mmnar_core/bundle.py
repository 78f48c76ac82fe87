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

  bundle.sig           optional Ed25519 signature(s) of bundle.json (`python -m mmnar_core bundle-sign`)

Writes are atomic (staging folder, then rename); loads verify every file's hash, so a tampered or
half-copied bundle is rejected with the file named. Loads also refuse (naming the file, without ever
unpickling anything) any file not listed in bundle.json, any pickle or pickle-carrying file (.pt, .pth,
.pkl, .bin, ..., torch.save zip archives, or any file starting with pickle opcodes) and any .safetensors
file that is not one. When trusted keys are configured (``trusted_keys=`` or ``MMNAR_TRUSTED_KEYS``), a
bundle must carry a valid signature by one of them. See docs/model.md ("Bundle trust").
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import pickletools
import shutil
import stat
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file

from mmnar_core import __version__
from mmnar_core.atomic_write import write_text_atomic
from mmnar_core.bundle_files import UnsafeFileError, header_bytes, read_plain_file, safetensors_header
from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.calibration.calibrated import CalibratedModel
from mmnar_core.model import MMNARConfig, MMNARModel
from mmnar_core.schema import FeatureSpec, ModalitySpec, OutcomeSpec

BUNDLE_FORMAT = 1
INDEX_FILE = "bundle.json"
REFERENCE_IMAGE_FILE = "explain_reference.safetensors"  # the reference X-ray per image modality (IG baseline)
REFERENCE_SET_FILE = "reference.safetensors"  # training patients' embeddings for "if it were obtained"
SIGNATURE_FILE = "bundle.sig"
SIGNATURE_FORMAT = "mmnar-bundle-signature"
TRUSTED_KEYS_ENV = "MMNAR_TRUSTED_KEYS"
SIGNING_PASSPHRASE_ENV = "MMNAR_SIGNING_KEY_PASSPHRASE"
_SIGNED_PREFIX = b"mmnar-bundle-signature-v1\n"  # domain separation: what is signed is this + bundle.json's bytes
# Formats that are, or may carry, pickles (torch.save, pickle, joblib, dill, NumPy object arrays, ...).
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib", ".dill", ".npy", ".npz", ".mar")
_SNIFF_BYTES = 1 << 20
_EXEC_OPCODES = {
    "GLOBAL",
    "STACK_GLOBAL",
    "REDUCE",
    "INST",
    "OBJ",
    "NEWOBJ",
    "NEWOBJ_EX",
    "BUILD",
    "EXT1",
    "EXT2",
    "EXT4",
}


# files save_bundle writes itself; everything else in a bundle comes in through extra_files
WRITTEN_FILES = frozenset(
    {
        "config.json",
        "weights.safetensors",
        "calibration.json",
        "dataset.json",
        "encoders.json",
        "metrics.json",
        "model_card.md",
        "bundle.json",
    }
)


class BundleError(ValueError):
    """A bundle that is missing, malformed or changed since it was written; names the file."""


class EncoderKind(str, Enum):
    """What produced a modality's embeddings: the bundle's own encoders, or a table of precomputed image
    embeddings (`embed --precomputed-images`)."""

    TABULAR = "tabular"
    IMAGE = "image"
    TEXT = "text"
    PRECOMPUTED = "precomputed"


@dataclass(frozen=True)
class EncoderInfo:
    """One modality's entry of encoders.json: the encoder's id (its folder under encoders/), kind and the
    dimension of its embeddings."""

    encoder_id: str
    kind: EncoderKind
    dim: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"encoder_id": self.encoder_id, "kind": self.kind.value, "dim": self.dim}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EncoderInfo:
        try:
            kind = EncoderKind(data.get("kind"))
        except ValueError:
            accepted = ", ".join(k.value for k in EncoderKind)
            raise ValueError(f"encoder kind {data.get('kind')!r} is not accepted (accepted: {accepted})") from None
        return cls(str(data["encoder_id"]), kind, data.get("dim"))


_DATASET_KEYS = (
    "name",
    "content_hash",
    "provenance",
    "n_patients",
    "split_counts",
    "modalities",
    "features",
    "outcomes",
    "pattern_counts_train",
)


@dataclass
class DatasetInfo:
    """dataset.json: the training dataset's name, content hash, provenance, size and splits, its modalities,
    features and outcomes (the schema's specs) and the training split's availability-pattern counts.
    `extra` keeps any other key, so `from_dict(d).to_dict() == d` for what training writes."""

    name: str = ""
    content_hash: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    n_patients: int | None = None
    split_counts: dict[str, int] = field(default_factory=dict)
    modalities: list[ModalitySpec] = field(default_factory=list)
    features: list[FeatureSpec] = field(default_factory=list)
    outcomes: list[OutcomeSpec] = field(default_factory=list)
    pattern_counts_train: dict[str, int] = field(default_factory=dict)  # pattern id (as text) -> patients
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """Whether the data came from the simulator (its provenance says so)."""
        return "synthetic" in str(self.provenance.get("source", "")).lower()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "content_hash": self.content_hash,
            "provenance": dict(self.provenance),
            "n_patients": self.n_patients,
            "split_counts": dict(self.split_counts),
            "modalities": [m.to_dict() for m in self.modalities],
            "features": [f.to_dict() for f in self.features],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "pattern_counts_train": dict(self.pattern_counts_train),
            **self.extra,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            name=str(data.get("name", "")),
            content_hash=str(data.get("content_hash", "")),
            provenance=dict(data.get("provenance") or {}),
            n_patients=data.get("n_patients"),
            split_counts=dict(data.get("split_counts") or {}),
            modalities=[ModalitySpec.from_dict(m) for m in data.get("modalities", [])],
            features=[FeatureSpec.from_dict(f) for f in data.get("features", [])],
            outcomes=[OutcomeSpec.from_dict(o) for o in data.get("outcomes", [])],
            pattern_counts_train=dict(data.get("pattern_counts_train") or {}),
            extra={k: v for k, v in data.items() if k not in _DATASET_KEYS},
        )


@dataclass
class Bundle:
    root: Path
    model_id: str
    content_hash: str
    config: MMNARConfig
    model: MMNARModel
    temperature: TemperatureScaler
    rectifiers: dict[str, PatternRectifier]
    dataset: dict[str, Any]  # dataset.json as written (re-saved unchanged); typed: `dataset_info`
    encoders: dict[str, Any]  # encoders.json as written (re-saved unchanged); typed: `encoder_info`
    metrics: dict[str, Any]
    model_card: str
    files: list[str]  # every file of the bundle (relative paths), as listed in bundle.json
    signed_by: list[str] = field(default_factory=list)  # key ids of the valid signatures in bundle.sig
    created_by: str = ""  # "mmnar_core <version>" that wrote it
    contents: dict[str, bytes] = field(default_factory=dict, repr=False)  # the verified bytes of every file
    calibrated: CalibratedModel | None = None  # model + temperatures + site correction: logits -> risks
    reference_images: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # image IG baselines
    reference_set: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # on the CPU

    @property
    def dataset_info(self) -> DatasetInfo:
        """dataset.json, typed (the training data's modalities, features and outcomes as the schema's specs)."""
        return DatasetInfo.from_dict(self.dataset)

    @property
    def encoder_info(self) -> dict[str, EncoderInfo]:
        """encoders.json, typed: modality -> the encoder its embeddings came from."""
        return {modality: EncoderInfo.from_dict(info) for modality, info in self.encoders.items()}

    def read_bytes(self, relative: str) -> bytes:
        """A file's bytes as hashed at load (never read again from disk, so never a swapped file)."""
        if relative not in self.contents:
            raise BundleError(f"{self.root / relative}: not a file of this bundle (files: {', '.join(self.files)})")
        return self.contents[relative]


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


def calibration_state(temperature: TemperatureScaler, rectifiers: dict[str, PatternRectifier]) -> dict:
    """calibration.json's content: the temperature per task and the pattern rectifier per task."""
    return {"temperature": temperature.to_dict(), "rectifiers": {t: r.to_dict() for t, r in rectifiers.items()}}


def save_bundle(
    out: str | Path,
    model: MMNARModel,
    temperature: TemperatureScaler,
    rectifiers: dict[str, PatternRectifier],
    dataset: dict,
    encoders: dict,
    metrics: dict,
    model_card: str,
    extra_files: dict[str, bytes] | None = None,
    overwrite: bool = False,
) -> Path:
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
        calibration = calibration_state(temperature, rectifiers)
        for name, content in (
            ("calibration.json", calibration),
            ("dataset.json", dataset),
            ("encoders.json", encoders),
            ("metrics.json", metrics),
        ):
            (staging / name).write_text(json.dumps(content, indent=2, default=float) + "\n", encoding="utf-8")
        (staging / "model_card.md").write_text(model_card, encoding="utf-8")
        for relative, data in (extra_files or {}).items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        files = {p.relative_to(staging).as_posix(): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}
        content_hash = _content_hash(files)
        index = {
            "format_version": BUNDLE_FORMAT,
            "created_by": f"mmnar_core {__version__}",
            "model_id": f"mmnar-{content_hash[:12]}",
            "content_hash": content_hash,
            "files": files,
        }
        (staging / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        load_bundle(staging, trusted_keys=())  # what we wrote must load (it is not signed yet)
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


def kept_files(bundle: Bundle, dropped: Iterable[str] = ()) -> dict[str, bytes]:
    """The bundle's files that save_bundle does not write itself (encoder state, reference sets, fitted
    checks, log), from their verified bytes, less `dropped`: what a re-saved copy carries over."""
    dropped = set(dropped)
    return {name: bundle.read_bytes(name) for name in bundle.files if name not in WRITTEN_FILES | dropped}


def save_copy(bundle: Bundle, out: str | Path, files: dict[str, bytes], overwrite: bool = False) -> Path:
    """A copy of `bundle` at `out` with `files` added (or replacing the bundle's files of the same names);
    model, calibration and every other file unchanged. The copy is a new bundle (new content hash), unsigned."""
    return save_bundle(
        out,
        bundle.model,
        bundle.temperature,
        bundle.rectifiers,
        bundle.dataset,
        bundle.encoders,
        bundle.metrics,
        bundle.model_card,
        extra_files={**kept_files(bundle, files), **files},
        overwrite=overwrite,
    )


# -- what a bundle may contain ---------------------------------------------------------------------------


def _pickle_in(data: bytes, complete: bool) -> str | None:
    """Why `data` (a file's head; `complete` if it is the whole file) is a pickle, or None. Only parses opcodes
    (pickletools.genops): nothing is ever unpickled."""
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return f"it starts with the pickle PROTO opcode (protocol {data[1]})"
    if data.startswith(b"\x93NUMPY"):
        return "it is a NumPy array file, which can hold pickled objects"
    if data.startswith(b"PK\x03\x04"):
        return None  # zip archives are opened and their members checked by the caller
    opcodes, executable = 0, set()
    try:
        for opcode, _arg, pos in pickletools.genops(io.BytesIO(data)):
            opcodes += 1
            if opcode.name in _EXEC_OPCODES:
                executable.add(opcode.name)
            if opcode.name == "STOP":
                whole = pos is not None and pos + 1 == len(data)
                if opcodes >= 2 and (executable or whole):
                    return "it is a pickle stream" + (f" that calls {sorted(executable)}" if executable else "")
                return None
    except ValueError as error:
        if "unknown" in str(error) or complete:
            return None
        if executable:  # cut off by the sniffing window, after a callable was already named
            return f"it starts with a pickle stream that calls {sorted(executable)}"
    return None


def _zip_pickle(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.lower().endswith(PICKLE_SUFFIXES) or info.filename.endswith("data.pkl"):
                    return f"it is a zip archive holding {info.filename} (a torch.save file?)"
                with archive.open(info) as member:
                    head = member.read(_SNIFF_BYTES)
                reason = _pickle_in(head, len(head) == info.file_size)
                if reason:
                    return f"it is a zip archive whose member {info.filename} is a pickle ({reason})"
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        return f"it is a zip archive that cannot be inspected ({error})"
    return None


def _safetensors_problem(path: Path, size: int) -> str | None:
    """Why `path` is not a well-formed safetensors file, or None (reads only its JSON header)."""
    try:
        safetensors_header(*header_bytes(path))
    except ValueError as error:
        return str(error)
    return None


def _refuse_pickles_and_strays(root: Path, listed: dict[str, str]) -> None:
    """Every file under root must be listed in bundle.json (but bundle.json and bundle.sig), a regular
    file, and not a pickle; every .safetensors file must be one."""
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(directory)
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                raise BundleError(f"{base / name}: a symbolic link to a folder; a bundle holds plain files only")
        for name in sorted(filenames):
            path = base / name
            relative = path.relative_to(root).as_posix()
            if relative in (INDEX_FILE, SIGNATURE_FILE):
                continue
            try:
                info = path.lstat()  # a link is refused, never followed
            except OSError as error:
                raise BundleError(f"{path}: cannot be read ({error.strerror or error})") from None
            if stat.S_ISLNK(info.st_mode):
                raise BundleError(f"{path}: a symbolic link; a bundle holds plain files only")
            if not stat.S_ISREG(info.st_mode):
                raise BundleError(f"{path}: not a regular file; a bundle holds plain files only")
            reason = None
            if name.lower().endswith(PICKLE_SUFFIXES):
                reason = f"{Path(name).suffix} files hold executable pickles (torch.save, pickle, joblib, ...)"
            else:
                with open(path, "rb") as handle:
                    head = handle.read(_SNIFF_BYTES)
                reason = _pickle_in(head, len(head) == info.st_size)
                if reason is None and head.startswith(b"PK\x03\x04"):
                    reason = _zip_pickle(path)
            if reason is not None and not (
                name.endswith(".safetensors") and _safetensors_problem(path, info.st_size) is None
            ):
                raise BundleError(
                    f"{path}: refused: {reason}. Bundles never contain pickles (weights are "
                    "safetensors); nothing was unpickled"
                )
            if name.endswith(".safetensors"):
                problem = _safetensors_problem(path, info.st_size)
                if problem:
                    raise BundleError(f"{path}: not a valid safetensors file ({problem})")
            if relative not in listed:
                raise BundleError(
                    f"{path}: not listed in {INDEX_FILE}; a bundle may hold only the files it lists "
                    "(remove the file, or rebuild the bundle)"
                )


# -- signatures (Ed25519) ----------------------------------------------------------------------------------


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError as error:  # pragma: no cover - pinned in requirements.txt
        raise BundleError(
            f"bundle signatures need the `cryptography` package ({error}): pip install cryptography"
        ) from None
    return ed25519, serialization, InvalidSignature


def key_id(public_raw: bytes) -> str:
    """Short, stable name of an Ed25519 public key: the first 16 hex digits of the SHA-256 of its 32 bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _raw_public(public_key) -> bytes:
    _, serialization, _ = _crypto()
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_signing_key(path: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key (PEM PKCS#8, mode 0600) to `path` and its public key to `path`.pub."""
    ed25519, serialization, _ = _crypto()
    path = Path(path)
    public_path = path.with_name(path.name + ".pub")
    for target in (path, public_path):
        if target.exists():
            raise FileExistsError(f"{target} already exists; refusing to overwrite a key")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_pem)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path, public_path


def _load_private_key(path: str | Path):
    ed25519, serialization, _ = _crypto()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BundleError(f"{path}: cannot read the signing key ({error.strerror or error})") from None
    passphrase = os.environ.get(SIGNING_PASSPHRASE_ENV)
    password = passphrase.encode() if passphrase else None
    try:
        if b"OPENSSH PRIVATE KEY" in data:
            key = serialization.load_ssh_private_key(data, password)
        else:
            key = serialization.load_pem_private_key(data, password)
    except TypeError:
        raise BundleError(f"{path}: the key is protected by a passphrase: set {SIGNING_PASSPHRASE_ENV}") from None
    except ValueError as error:
        raise BundleError(f"{path}: not a PEM or OpenSSH private key ({error})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise BundleError(
            f"{path}: a {type(key).__name__} key; bundle signatures use Ed25519 keys "
            "(make one with `python -m mmnar_core bundle-keygen --out KEY`)"
        )
    return key


def load_public_key(spec: str | Path | bytes):
    """An Ed25519 public key from a file (PEM, an `ssh-ed25519 ...` line, or base64 of the 32 raw bytes) or from
    such a value given inline. Returns the cryptography key object."""
    ed25519, serialization, _ = _crypto()
    if isinstance(spec, bytes):
        data, where = spec, "trusted key"
    else:
        text = str(spec).strip()
        path = Path(text).expanduser()
        if text and path.is_file():
            data, where = path.read_bytes(), str(path)
        else:
            data, where = text.encode(), f"trusted key {text!r}"
    stripped = data.strip()
    try:
        if b"PRIVATE KEY" in stripped:
            raise BundleError(f"{where}: a private key; trust the public key instead (the .pub file)")
        if stripped.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(stripped)
        elif stripped.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(stripped)
        else:
            raw = base64.b64decode(stripped, validate=True)
            if len(raw) != 32:
                raise ValueError(f"{len(raw)} bytes, not 32")
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except BundleError:
        raise
    except (ValueError, TypeError) as error:
        raise BundleError(
            f"{where}: not an Ed25519 public key (no such file either; expected a PEM public key, an "
            f"'ssh-ed25519 ...' line or base64 of 32 bytes: {error})"
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise BundleError(f"{where}: a {type(key).__name__}; bundle signatures use Ed25519 keys")
    return key


def trusted_keys_from_env() -> list[str]:
    """The entries of MMNAR_TRUSTED_KEYS (separated by the path separator ':' or newlines)."""
    value = os.environ.get(TRUSTED_KEYS_ENV, "")
    return [item.strip() for line in value.splitlines() for item in line.split(os.pathsep) if item.strip()]


def _trusted_ids(trusted_keys: Iterable | None) -> dict[str, str] | None:
    """key id -> where it came from; None when no key is configured (signatures are then optional)."""
    specs = trusted_keys_from_env() if trusted_keys is None else list(trusted_keys)
    if not specs:
        return None
    out = {}
    for spec in specs:
        key = spec if hasattr(spec, "public_bytes") else load_public_key(spec)
        out[key_id(_raw_public(key))] = str(spec) if not hasattr(spec, "public_bytes") else "key object"
    return out


def _read_signatures(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{path}: not valid JSON ({error})") from None
    if not (
        isinstance(document, dict)
        and document.get("format") == SIGNATURE_FORMAT
        and isinstance(document.get("signatures"), list)
        and all(
            isinstance(s, dict) and all(isinstance(s.get(k), str) for k in ("key_id", "public_key", "signature"))
            for s in document["signatures"]
        )
    ):
        raise BundleError(f"{path}: not a bundle signature file ({SIGNATURE_FORMAT})")
    return document


def _check_signatures(root: Path, index_bytes: bytes, trusted_keys: Iterable | None) -> list[str]:
    """Key ids of the (all valid) signatures; refuses a bad one, and an unsigned or untrusted bundle when
    trusted keys are configured."""
    trusted = _trusted_ids(trusted_keys)
    path = root / SIGNATURE_FILE
    if not path.is_file():
        if trusted is not None:
            raise BundleError(
                f"{path}: missing: the bundle is not signed, and trusted keys are configured "
                f"({TRUSTED_KEYS_ENV} or --trusted-key); sign it with "
                "`python -m mmnar_core bundle-sign BUNDLE --key KEY`"
            )
        return []
    ed25519, _, InvalidSignature = _crypto()
    document = _read_signatures(path)
    if not document["signatures"]:
        raise BundleError(f"{path}: holds no signature")
    message = _SIGNED_PREFIX + index_bytes
    signers = []
    for entry in document["signatures"]:
        try:
            raw = base64.b64decode(entry["public_key"], validate=True)
            signature = base64.b64decode(entry["signature"], validate=True)
            key = ed25519.Ed25519PublicKey.from_public_bytes(raw)
        except ValueError:
            raise BundleError(f"{path}: the signature entry of key {entry['key_id']} is malformed") from None
        if key_id(raw) != entry["key_id"]:
            raise BundleError(f"{path}: key id {entry['key_id']} does not match its public key ({key_id(raw)})")
        try:
            key.verify(signature, message)
        except InvalidSignature:
            raise BundleError(
                f"{path}: the signature by key {entry['key_id']} does not verify: {INDEX_FILE} was "
                "changed after signing, or the signature is not genuine"
            ) from None
        signers.append(entry["key_id"])
    if trusted is not None and not set(signers) & set(trusted):
        raise BundleError(
            f"{path}: signed by key {', '.join(signers)}, which is not trusted here (trusted: "
            f"{', '.join(sorted(trusted))}; from {TRUSTED_KEYS_ENV} or --trusted-key)"
        )
    return signers


def sign_bundle(root: str | Path, key: str | Path) -> dict:
    """Add (or renew) the Ed25519 signature of `key` (a private key file) to ROOT/bundle.sig; the bundle is
    verified first (without requiring trust) and other signers' valid signatures are kept."""
    root = Path(root)
    private = _load_private_key(key)
    index = verify_bundle(root, trusted_keys=(), _signatures=False)
    index_bytes = (root / INDEX_FILE).read_bytes()
    raw = _raw_public(private.public_key())
    kid = key_id(raw)
    entries = []
    path = root / SIGNATURE_FILE
    if path.is_file():
        previous = _read_signatures(path)
        if previous.get("bundle_json_sha256") == hashlib.sha256(index_bytes).hexdigest():
            entries = [e for e in previous["signatures"] if e["key_id"] != kid]
    entries.append(
        {
            "algorithm": "ed25519",
            "key_id": kid,
            "public_key": base64.b64encode(raw).decode(),
            "signature": base64.b64encode(private.sign(_SIGNED_PREFIX + index_bytes)).decode(),
            "signed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )
    document = {
        "format": SIGNATURE_FORMAT,
        "format_version": 1,
        "signed_file": INDEX_FILE,
        "bundle_json_sha256": hashlib.sha256(index_bytes).hexdigest(),
        "model_id": index["model_id"],
        "content_hash": index["content_hash"],
        "signatures": entries,
    }
    write_text_atomic(path, json.dumps(document, indent=2) + "\n")
    _check_signatures(root, index_bytes, ())  # what we wrote verifies
    return {
        "bundle": str(root),
        "model_id": index["model_id"],
        "key_id": kid,
        "signed_by": [e["key_id"] for e in entries],
    }


# -- verification and loading ----------------------------------------------------------------------------


def verify_bundle(root: str | Path, trusted_keys: Iterable | None = None, *, _signatures: bool = True) -> dict:
    """Check the bundle; returns the index (with "signed_by": the key ids of its valid signatures).

    Refused, naming the file: a changed, missing or unlisted file, a pickle anywhere in the folder, a
    malformed safetensors file, an invalid signature and, when trusted keys are configured (`trusted_keys`,
    else the MMNAR_TRUSTED_KEYS environment variable; pass () for none), a bundle without a valid
    signature by one of them.
    """
    return _verified(Path(root), trusted_keys, _signatures)[0]


def _read_once(root: Path, relative: str) -> bytes:
    try:
        return read_plain_file(root, relative)
    except FileNotFoundError:
        raise BundleError(f"{root / relative}: missing") from None
    except UnsafeFileError as error:
        raise BundleError(str(error)) from None


def _verified(root: Path, trusted_keys: Iterable | None, signatures: bool = True) -> tuple[dict, dict[str, bytes]]:
    """verify_bundle's checks; also returns every listed file's bytes, read once: the bytes hashed are the
    bytes loaded."""
    if not root.is_dir():
        raise BundleError(f"{root}: not a directory")
    index_bytes = _read_once(root, INDEX_FILE)
    try:
        index = json.loads(index_bytes.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{root / INDEX_FILE}: not valid JSON ({error})") from None
    if (
        not isinstance(index, dict)
        or index.get("format_version") != BUNDLE_FORMAT
        or not isinstance(index.get("files"), dict)
    ):
        raise BundleError(f"{root / INDEX_FILE}: not a bundle index of format {BUNDLE_FORMAT}")
    files = index["files"]
    if _content_hash(files) != index.get("content_hash"):
        raise BundleError(f"{root / INDEX_FILE}: content_hash does not match the file list; the bundle was changed")
    signed_by = _check_signatures(root, index_bytes, trusted_keys) if signatures else []
    for relative in files:
        parts = Path(relative).parts
        if not isinstance(relative, str) or ".." in parts or Path(relative).is_absolute() or not parts:
            raise BundleError(f"{root / INDEX_FILE}: lists {relative!r}, which is not a path inside the bundle")
    _refuse_pickles_and_strays(root, files)
    contents = {}
    for relative, digest in files.items():
        path = root / relative
        try:
            data = read_plain_file(root, relative)
        except FileNotFoundError:
            raise BundleError(f"{path}: listed in {INDEX_FILE} but missing") from None
        except UnsafeFileError as error:
            raise BundleError(str(error)) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(f"{path}: does not match its hash in {INDEX_FILE}; the bundle was changed")
        contents[relative] = data
    for required in ("config.json", "weights.safetensors", "calibration.json", "dataset.json", "encoders.json"):
        if required not in files:
            raise BundleError(f"{root / required}: missing")
    return {**index, "signed_by": signed_by}, contents


def load_bundle(root: str | Path, device: torch.device | str = "cpu", trusted_keys: Iterable | None = None) -> Bundle:
    """Verify (see `verify_bundle`; `trusted_keys` None -> MMNAR_TRUSTED_KEYS) and load a bundle.

    Past the hash checks every file is still checked before it is used, so a bundle whose files were changed
    and re-hashed (no signature required) is refused with a BundleError naming the file, never another
    exception: config.json must build a model whose tensors are exactly those of weights.safetensors (checked
    on PyTorch's meta device, before any memory is allocated, so a config naming millions of layers cannot
    exhaust the machine), calibration.json must fit the config's tasks and modalities, the other JSON files
    must be objects and model_card.md UTF-8."""
    root = Path(root)
    index, contents = _verified(root, trusted_keys)
    config = _load_config(root, contents)
    model = _load_model(root, config, device, contents["weights.safetensors"])
    temperature, rectifiers = _load_calibration(root, config, contents)
    card_path = root / "model_card.md"
    try:
        card = contents["model_card.md"].decode("utf-8") if "model_card.md" in contents else ""
    except UnicodeDecodeError as error:
        raise BundleError(f"{card_path}: not UTF-8 text (byte {error.start})") from None
    return Bundle(
        root,
        index["model_id"],
        index["content_hash"],
        config,
        model,
        temperature,
        rectifiers,
        _json_object(root, "dataset.json", contents),
        _json_object(root, "encoders.json", contents),
        _json_object(root, "metrics.json", contents) if "metrics.json" in contents else {},
        card,
        sorted(index["files"]),
        index["signed_by"],
        str(index.get("created_by", "")),
        contents,
        calibrated=CalibratedModel.from_parts(model, config.tasks, temperature, rectifiers, len(config.modalities)).to(
            device
        ),
        reference_images={k: v.to(device) for k, v in _tensors(root, REFERENCE_IMAGE_FILE, contents).items()},
        reference_set=_tensors(root, REFERENCE_SET_FILE, contents),
    )


def _tensors(root: Path, name: str, contents: dict[str, bytes]) -> dict[str, torch.Tensor]:
    """The tensors of an optional safetensors file of the bundle, from its verified bytes ({} if absent)."""
    if name not in contents:
        return {}
    try:
        return load_tensors(contents[name])
    except Exception as error:  # noqa: BLE001 - safetensors raises several types on damaged data
        raise BundleError(f"{root / name}: not a valid safetensors file ({_why(error)})") from None


def _json_object(root: Path, name: str, contents: dict[str, bytes]) -> dict:
    try:
        data = json.loads(contents[name].decode("utf-8"))
    except KeyError:
        raise BundleError(f"{root / name}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{root / name}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise BundleError(f"{root / name}: a JSON {type(data).__name__}, not an object")
    return data


def _why(error: Exception) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}" if text else type(error).__name__


def _weight_specs(path: Path, data: bytes) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (safetensors dtype, shape) from the header of the verified bytes."""
    try:
        return safetensors_header(data[: 8 + min(int.from_bytes(data[:8], "little"), len(data))], len(data))
    except ValueError as error:
        raise BundleError(f"{path}: not a valid safetensors file ({error})") from None


_TORCH_DTYPES = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
}


_STRUCTURAL = ("d_model", "n_heads", "n_layers", "ff_mult", "missingness_hidden")


def _load_config(root: Path, contents: dict[str, bytes]) -> MMNARConfig:
    path = root / "config.json"
    data = _json_object(root, "config.json", contents)
    if isinstance(data, dict) and "wide_pairs" not in data:
        data = {**data, "wide_pairs": 0}  # written before the wide path had pair slots: its weights have none
    try:
        return MMNARConfig.from_dict(data)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as error:
        raise BundleError(f"{path}: {_why(error)}") from None


def _load_model(root: Path, config: MMNARConfig, device, data: bytes) -> MMNARModel:
    """The model, checked against the weights' header (dtypes and shapes) on the meta device, then given the
    loaded tensors as its own (assign=True): nothing is allocated before the check, nothing twice after."""
    path, weights = root / "config.json", root / "weights.safetensors"
    specs = _weight_specs(weights, data)
    shapes = {name: shape for name, (_dtype, shape) in specs.items()}
    parameters = sum(int(np.prod(shape, dtype=object)) for shape in shapes.values())
    # a model bigger than the weights cannot fit them: refuse its sizes before building anything
    sizes = [("input_dims", d) for d in (config.input_dims if isinstance(config.input_dims, (list, tuple)) else [])]
    sizes += [(name, getattr(config, name)) for name in _STRUCTURAL]
    for name, value in sizes:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BundleError(f"{path}: {name} is {value!r}, not a positive whole number")
        limit = len(shapes) if name == "n_layers" else parameters
        if value > limit:
            raise BundleError(
                f"{path}: {name} = {value:,} cannot fit {weights.name} ({len(shapes)} tensors, {parameters:,} values)"
            )
    try:
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = MMNARModel(config)
        state = model.state_dict()
        expected = {k: tuple(v.shape) for k, v in state.items()}
    except Exception as error:  # noqa: BLE001 - any config value the model cannot be built from
        raise BundleError(f"{path}: builds no model ({_why(error)})") from None
    if expected != shapes:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        differ = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(extra[:3])}" if extra else "",
                f"{differ[0]} is {list(shapes[differ[0]])}, not {list(expected[differ[0]])}" if differ else "",
            )
            if part
        )
        raise BundleError(f"{weights}: does not fit config.json ({detail})")
    for name, tensor in state.items():
        wanted = _TORCH_DTYPES.get(tensor.dtype, str(tensor.dtype))
        if specs[name][0] != wanted:
            raise BundleError(
                f"{weights}: tensor {name} is {specs[name][0]}, not {wanted} as config.json's model has it"
            )
    try:
        model.load_state_dict(load_tensors(data), assign=True)
    except Exception as error:  # noqa: BLE001 - safetensors and torch raise several types (dtype, data)
        raise BundleError(f"{weights}: does not fit config.json ({_why(error)})") from None
    left = [name for name, tensor in list(model.named_parameters()) + list(model.named_buffers()) if tensor.is_meta]
    if left:  # every tensor of the model is in the state dict; a new unsaved one would be caught here
        raise BundleError(f"{weights}: holds no values for {', '.join(left[:3])} of config.json's model")
    return model.to(device).eval()


def _load_calibration(
    root: Path, config: MMNARConfig, contents: dict[str, bytes]
) -> tuple[TemperatureScaler, dict[str, PatternRectifier]]:
    path = root / "calibration.json"
    calibration = _json_object(root, "calibration.json", contents)
    tasks = list(config.tasks)
    try:
        temperature_state, rectifier_states = calibration["temperature"], calibration["rectifiers"]
        if not isinstance(temperature_state, dict) or not isinstance(rectifier_states, dict):
            raise ValueError('expected {"temperature": {...}, "rectifiers": {task: {...}}}')
        temperature = TemperatureScaler.from_dict(temperature_state)
        values = temperature.temperatures
        if values is None or values.shape != (len(tasks),) or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ValueError(f"expected {len(tasks)} positive temperatures (one per task of config.json)")
        rectifiers = {}
        for task, state in rectifier_states.items():
            if task not in tasks:
                raise ValueError(f"rectifier for {task!r}, which is not a task of config.json ({', '.join(tasks)})")
            if not isinstance(state, dict) or state.get("n_modalities") != config.n_modalities:
                raise ValueError(f"the rectifier of {task} is not for {config.n_modalities} modalities")
            rectifiers[task] = PatternRectifier.from_dict(state)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as error:
        raise BundleError(f"{path}: not a valid calibration ({_why(error)})") from None
    return temperature, rectifiers
