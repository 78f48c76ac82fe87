"""A small model bundle built the way a user builds one: synth -> embed -> train through the command line."""

import json
from pathlib import Path

from mmnar_core.cli import main


def build_synthetic_bundle(root: Path, n: int, seed: int, config: dict, resamples: int = 50) -> Path:
    """synth -> embed -> train with the real encoders through the CLI; data/, cache/ and bundle/ under root."""
    (root / "tiny.json").write_text(json.dumps(config))
    assert main(["synth", "--n", str(n), "--seed", str(seed), "--out", str(root / "data"), "--quiet"]) == 0
    assert main(["embed", str(root / "data"), "--cache", str(root / "cache"), "--quiet"]) == 0
    assert (
        main(
            [
                "train",
                str(root / "data"),
                "--out",
                str(root / "bundle"),
                "--cache",
                str(root / "cache"),
                "--config",
                str(root / "tiny.json"),
                "--resamples",
                str(resamples),
                "--quiet",
            ]
        )
        == 0
    )
    return root
