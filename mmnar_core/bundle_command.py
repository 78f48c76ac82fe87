"""`bundle-keygen`, `bundle-sign` and `bundle-verify`: Ed25519 signatures of model bundles (docs/model.md,
"Bundle trust"). The heavy imports (torch, via mmnar_core.bundle) happen only when a command runs."""

from __future__ import annotations

import json


def register(subparsers) -> None:
    keygen = subparsers.add_parser(
        "bundle-keygen",
        help="make an Ed25519 key pair for signing bundles",
        description="Write a new Ed25519 private key (PEM, mode 0600) to --out and its "
        "public key to --out.pub. Keep the private key off the machines that "
        "serve the model; give them the .pub file as a trusted key.",
    )
    keygen.add_argument("--out", required=True, help="private key file to create (KEY; the public key goes to KEY.pub)")
    keygen.set_defaults(func=run_keygen)

    sign = subparsers.add_parser(
        "bundle-sign",
        help="sign a model bundle (adds BUNDLE/bundle.sig)",
        description="Verify the bundle, then add the Ed25519 signature of KEY over its "
        "bundle.json (which lists the SHA-256 of every file) to bundle.sig. "
        "An encrypted key reads its passphrase from "
        "MMNAR_SIGNING_KEY_PASSPHRASE.",
    )
    sign.add_argument("bundle", help="bundle directory")
    sign.add_argument("--key", required=True, help="Ed25519 private key (PEM PKCS#8 or OpenSSH)")
    sign.set_defaults(func=run_sign)

    verify = subparsers.add_parser(
        "bundle-verify",
        help="check a bundle (hashes, no pickles, signatures)",
        description="Check every file of the bundle and its signatures. With "
        "--trusted-key (or MMNAR_TRUSTED_KEYS) the bundle must be signed by "
        "one of the trusted keys.",
    )
    verify.add_argument("bundle", help="bundle directory")
    verify.add_argument(
        "--trusted-key",
        action="append",
        default=None,
        metavar="KEY",
        help="trusted Ed25519 public key: a file (PEM, 'ssh-ed25519 ...') or base64 of its 32 "
        "bytes; repeatable; replaces MMNAR_TRUSTED_KEYS",
    )
    verify.set_defaults(func=run_verify)


def run_keygen(args) -> int:
    from mmnar_core.bundle import _raw_public, generate_signing_key, key_id, load_public_key

    private, public = generate_signing_key(args.out)
    print(
        json.dumps(
            {
                "private_key": str(private),
                "public_key": str(public),
                "key_id": key_id(_raw_public(load_public_key(public))),
            },
            indent=2,
        )
    )
    return 0


def run_sign(args) -> int:
    from mmnar_core.bundle import sign_bundle

    print(json.dumps(sign_bundle(args.bundle, args.key), indent=2))
    return 0


def run_verify(args) -> int:
    from mmnar_core.bundle import _trusted_ids, verify_bundle

    index = verify_bundle(args.bundle, args.trusted_key)
    trusted = _trusted_ids(args.trusted_key)
    print(
        json.dumps(
            {
                "bundle": args.bundle,
                "ok": True,
                "model_id": index["model_id"],
                "content_hash": index["content_hash"],
                "signed_by": index["signed_by"],
                "trusted_signer": sorted(set(index["signed_by"]) & set(trusted or {})) or None,
            },
            indent=2,
        )
    )
    return 0
