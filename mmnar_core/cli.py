"""`python -m mmnar_core COMMAND ...`: one entry point; each command lives in its own module, which
exposes `register(subparsers)` and sets `func` on its parser."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mmnar_core import __version__

# Modules that contribute commands, in the order they appear in --help.
COMMAND_MODULES = [
    "mmnar_core.synth.command",
    "mmnar_core.dataset.command",
    "mmnar_core.loaders.command",
    "mmnar_core.encoders.command",
    "mmnar_core.training.command",
    "mmnar_core.baselines.command",
    "mmnar_core.shift_study.command",
    "mmnar_core.bench",
    "mmnar_core.bundle_command",
    "mmnar_core.drift_command",
    "mmnar_core.serving.command",
    "mmnar_core.fuzz",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mmnar_core", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mmnar_core {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        # Known input problems: a one-line message, no traceback, nothing changed.
        print(f"error: {error}", file=sys.stderr)
        return 2
