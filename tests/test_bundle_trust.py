"""Bundle trust: hashes, no stray files, no pickles (never unpickled), Ed25519 signatures and trusted keys."""

from __future__ import annotations

import base64
import io
import json
import pickle
import re
import shutil

import numpy as np
import pytest
import torch

from mmnar_core.bundle import (
    BundleError,
    _content_hash,
    _sha256,
    generate_signing_key,
    load_bundle,
    save_bundle,
    sign_bundle,
    verify_bundle,
)
from mmnar_core.calibration import PatternRectifier, TemperatureScaler
from mmnar_core.cli import main
from mmnar_core.model import MMNARConfig, MMNARModel
from mmnar_core.resources import DEMO_BUNDLE

DEMO = DEMO_BUNDLE


@pytest.fixture(autouse=True)
def no_trusted_keys_from_the_environment(monkeypatch):
    monkeypatch.delenv("MMNAR_TRUSTED_KEYS", raising=False)


@pytest.fixture
def bundle(tmp_path):
    torch.manual_seed(0)
    config = MMNARConfig(modalities=["s", "i"], input_dims=[4, 3], tasks=["a"], d_model=16, n_heads=2, n_layers=1)
    rng = np.random.default_rng(0)
    rectifier = PatternRectifier(2).fit(
        rng.integers(1, 4, 500), rng.uniform(0.1, 0.5, 500), (rng.random(500) < 0.3).astype(float), "val"
    )
    return save_bundle(
        tmp_path / "b",
        MMNARModel(config).eval(),
        TemperatureScaler([1.3]),
        {"a": rectifier},
        {"name": "d"},
        {"s": {"encoder_id": "tab-1"}},
        {"auroc": 0.7},
        "# card\n",
        extra_files={"encoders/tab-1/encoder.json": b"{}"},
    )


@pytest.fixture
def keys(tmp_path):
    """Two key pairs (private key file, public key file): A, the publisher, and B, someone else."""
    (tmp_path / "keys").mkdir()
    return {name: generate_signing_key(tmp_path / "keys" / name) for name in ("A", "B")}


def reindex(root) -> None:
    """What a careful attacker does after changing files: recompute every hash of bundle.json."""
    index = json.loads((root / "bundle.json").read_text())
    files = {
        p.relative_to(root).as_posix(): _sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in ("bundle.json", "bundle.sig")
    }
    index.update(files=files, content_hash=_content_hash(files))
    (root / "bundle.json").write_text(json.dumps(index, indent=2) + "\n")


def refused(root, match: str, **kw) -> str:
    with pytest.raises(BundleError, match=match) as error:
        load_bundle(root, **kw)
    return str(error.value)


class Boom:
    """Unpickling this creates a marker file: the loader must never do it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- unsigned bundles, hashes and contents -------------------------------------------------------------


def test_a_clean_unsigned_bundle_loads_when_no_key_is_trusted(bundle):
    loaded = load_bundle(bundle)
    assert loaded.signed_by == [] and not (bundle / "bundle.sig").exists()
    assert verify_bundle(DEMO)["signed_by"] == []  # the shipped demo passes every check


def test_tampered_weights_are_refused_naming_the_file(bundle):
    weights = bundle / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    refused(bundle, re.escape(f"{weights}: does not match its hash in bundle.json; the bundle was changed"))


def test_an_unlisted_file_is_refused(bundle):
    (bundle / "encoders" / "tab-1" / "notes.txt").write_text("added later")
    refused(bundle, re.escape(f"{bundle / 'encoders' / 'tab-1' / 'notes.txt'}: not listed in bundle.json"))


@pytest.mark.parametrize("name", ["extra.pt", "model.pth", "state.pkl", "pytorch_model.bin", "encoders/tab-1/x.ckpt"])
def test_an_extra_pickle_file_is_refused_without_unpickling_it(bundle, tmp_path, name):
    marker = tmp_path / "unpickled"
    target = bundle / name
    target.write_bytes(pickle.dumps(Boom(marker)))
    message = refused(bundle, re.escape(str(target)) + r": refused: \.\w+ files hold executable pickles")
    assert "nothing was unpickled" in message and not marker.exists()
    reindex(bundle)  # listed with the right hash makes no difference
    refused(bundle, re.escape(str(target)) + ": refused")
    assert not marker.exists()


def torch_save_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "case",
    [
        "protocol 0 as notes.txt",
        "protocol 4 as calibration_extra.json",
        "torch.save as weights.safetensors",
        "torch.save as encoders/tab-1/state.dat",
        "legacy torch.save as data.json",
    ],
)
def test_a_renamed_pickle_is_refused_even_when_listed_with_its_hash(bundle, tmp_path, case):
    marker = tmp_path / "unpickled"
    name = case.split(" as ")[1]
    if case.startswith("protocol 0"):
        data = pickle.dumps(Boom(marker), protocol=0)
        expected = r"refused: it is a pickle stream that calls \['GLOBAL', 'REDUCE'\]|refused: it is a pickle"
    elif case.startswith("protocol 4"):
        data = pickle.dumps(Boom(marker), protocol=4)
        expected = r"refused: it starts with the pickle PROTO opcode \(protocol 4\)"
    elif case.startswith("legacy"):
        buffer = io.BytesIO()
        torch.save({"w": torch.zeros(2)}, buffer, _use_new_zipfile_serialization=False)
        data = buffer.getvalue()
        expected = r"refused: it starts with the pickle PROTO opcode"
    else:
        data = torch_save_bytes({"w": torch.zeros(3)})
        expected = r"refused: it is a zip archive holding \S*data\.pkl \(a torch\.save file\?\)"
    (bundle / name).parent.mkdir(parents=True, exist_ok=True)
    (bundle / name).write_bytes(data)
    reindex(bundle)
    message = refused(bundle, re.escape(str(bundle / name)) + ": " + expected)
    assert "Bundles never contain pickles" in message and not marker.exists()


def test_a_valid_safetensors_file_that_happens_to_start_like_a_pickle_loads(bundle):
    # header length 0x380 = bytes 80 03 ...: the pickle PROTO opcode for protocol 3, but a well-formed file
    header = {"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    raw = json.dumps(header).encode()
    raw += b" " * (0x380 - len(raw))
    (bundle / "extra.safetensors").write_bytes((0x380).to_bytes(8, "little") + raw + b"\0" * 8)
    assert (bundle / "extra.safetensors").read_bytes()[:2] == b"\x80\x03"
    reindex(bundle)
    load_bundle(bundle)
    (bundle / "broken.safetensors").write_bytes((10).to_bytes(8, "little") + b"{not json}")
    reindex(bundle)
    refused(
        bundle, re.escape(f"{bundle / 'broken.safetensors'}: not a valid safetensors file (its header is not JSON)")
    )


def test_index_paths_outside_the_bundle_are_refused(bundle):
    index = json.loads((bundle / "bundle.json").read_text())
    index["files"]["../outside.json"] = "0" * 64
    index["content_hash"] = _content_hash(index["files"])
    (bundle / "bundle.json").write_text(json.dumps(index))
    refused(bundle, r"lists '\.\./outside\.json', which is not a path inside the bundle")


# -- signatures ----------------------------------------------------------------------------------------


def test_right_signature_from_a_trusted_key_loads(bundle, keys, monkeypatch):
    (a_private, a_public) = keys["A"]
    result = sign_bundle(bundle, a_private)
    assert result["signed_by"] == [result["key_id"]] and len(result["key_id"]) == 16
    signature = json.loads((bundle / "bundle.sig").read_text())
    assert (
        signature["format"] == "mmnar-bundle-signature"
        and signature["content_hash"] == load_bundle(bundle).content_hash
    )
    assert load_bundle(bundle, trusted_keys=[a_public]).signed_by == [result["key_id"]]
    monkeypatch.setenv("MMNAR_TRUSTED_KEYS", f"{keys['B'][1]}:{a_public}")  # any one trusted signer is enough
    assert load_bundle(bundle).signed_by == [result["key_id"]]
    # the key given inline (base64 of the 32 raw bytes) or as an OpenSSH line works the same
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_public_key(a_public.read_bytes())
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ssh = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    for spec in (base64.b64encode(raw).decode(), ssh):
        monkeypatch.setenv("MMNAR_TRUSTED_KEYS", spec)
        assert load_bundle(bundle).signed_by == [result["key_id"]]


def test_unsigned_bundle_is_refused_when_a_key_is_trusted(bundle, keys, monkeypatch):
    monkeypatch.setenv("MMNAR_TRUSTED_KEYS", str(keys["A"][1]))
    refused(
        bundle,
        re.escape(f"{bundle / 'bundle.sig'}: missing: the bundle is not signed, and trusted keys are configured"),
    )
    load_bundle(bundle, trusted_keys=())  # explicitly trusting nothing overrides the environment


def test_a_signature_by_an_untrusted_key_is_refused(bundle, keys):
    b = sign_bundle(bundle, keys["B"][0])["key_id"]
    message = refused(
        bundle,
        re.escape(f"{bundle / 'bundle.sig'}: signed by key {b}, which is not trusted here"),
        trusted_keys=[keys["A"][1]],
    )
    assert "trusted: " in message
    assert load_bundle(bundle).signed_by == [b]  # valid, just not trusted: fine when nothing is trusted
    a = sign_bundle(bundle, keys["A"][0])["key_id"]  # a second signer is added, the first kept
    assert sorted(load_bundle(bundle, trusted_keys=[keys["A"][1]]).signed_by) == sorted([a, b])


@pytest.mark.parametrize(
    "how", ["forged signature bytes", "bundle.json edited after signing", "public key swapped for the trusted one"]
)
def test_a_wrong_signature_is_refused(bundle, keys, how):
    a_private, a_public = keys["A"]
    if how == "public key swapped for the trusted one":
        sign_bundle(bundle, keys["B"][0])  # B signs, then claims to be A
        document = json.loads((bundle / "bundle.sig").read_text())
        sign_bundle(bundle, a_private)
        genuine = json.loads((bundle / "bundle.sig").read_text())["signatures"][-1]
        document["signatures"][0].update(key_id=genuine["key_id"], public_key=genuine["public_key"])
        (bundle / "bundle.sig").write_text(json.dumps(document))
    else:
        sign_bundle(bundle, a_private)
        if how == "forged signature bytes":
            document = json.loads((bundle / "bundle.sig").read_text())
            forged = bytearray(base64.b64decode(document["signatures"][0]["signature"]))
            forged[0] ^= 1
            document["signatures"][0]["signature"] = base64.b64encode(bytes(forged)).decode()
            (bundle / "bundle.sig").write_text(json.dumps(document))
        else:  # content_hash still matches the file list: only the signature notices
            index = json.loads((bundle / "bundle.json").read_text())
            index["created_by"] = "someone else"
            (bundle / "bundle.json").write_text(json.dumps(index, indent=2) + "\n")
    for trusted in ([a_public], ()):  # refused whether or not a key is trusted
        refused(
            bundle,
            re.escape(f"{bundle / 'bundle.sig'}: the signature by key ") + r"\w{16} does not verify",
            trusted_keys=trusted,
        )


def test_bad_key_files_give_clear_errors(bundle, keys, tmp_path):
    with pytest.raises(BundleError, match="a private key; trust the public key instead"):
        load_bundle(bundle, trusted_keys=[keys["A"][0]])
    with pytest.raises(BundleError, match="not an Ed25519 public key"):
        load_bundle(bundle, trusted_keys=["no-such-key.pub"])
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(BundleError, match="RSAPrivateKey key; bundle signatures use Ed25519"):
        sign_bundle(bundle, tmp_path / "rsa.pem")
    with pytest.raises(FileExistsError, match="refusing to overwrite a key"):
        generate_signing_key(keys["A"][0])
    assert oct(keys["A"][0].stat().st_mode & 0o777) == "0o600"


def test_command_line_keygen_sign_verify(bundle, tmp_path, capsys):
    key = tmp_path / "publisher"
    assert main(["bundle-keygen", "--out", str(key)]) == 0
    kid = json.loads(capsys.readouterr().out)["key_id"]
    assert main(["bundle-verify", str(bundle), "--trusted-key", f"{key}.pub"]) == 2
    assert "bundle.sig: missing" in capsys.readouterr().err
    assert main(["bundle-sign", str(bundle), "--key", str(key)]) == 0
    assert json.loads(capsys.readouterr().out)["key_id"] == kid
    assert main(["bundle-verify", str(bundle), "--trusted-key", f"{key}.pub"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["trusted_signer"] == [kid]
    other = tmp_path / "other"
    assert main(["bundle-keygen", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["bundle-verify", str(bundle), "--trusted-key", f"{other}.pub"]) == 2
    assert "which is not trusted here" in capsys.readouterr().err
    shutil.copy(tmp_path / "other", bundle / "stray.key")
    assert main(["bundle-verify", str(bundle)]) == 2
    assert "stray.key: not listed in bundle.json" in capsys.readouterr().err
