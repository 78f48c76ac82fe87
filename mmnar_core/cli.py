"""`mmnar COMMAND ...` (or `python -m mmnar_core COMMAND ...`): one entry point; each command lives in its own
module, which exposes `register(subparsers)` and sets `func` on its parser.

The library's own commands are listed below. Other installed packages add theirs through the
`mmnar.commands` entry-point group (pyproject.toml): the lab's benchmarks, fuzzing and shift study join this
way, so the library never imports the lab."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from importlib.metadata import entry_points

from mmnar_core import __version__

ENTRY_POINT_GROUP = "mmnar.commands"

# The library's modules that contribute commands, in the order they appear in --help.
COMMAND_MODULES = [
    "mmnar_core.synth.command",
    "mmnar_core.dataset.command",
    "mmnar_core.loaders.command",
    "mmnar_core.encoders.command",
    "mmnar_core.training.command",
    "mmnar_core.ood.command",
    "mmnar_core.baselines.command",
    "mmnar_core.bundle_command",
    "mmnar_core.drift_command",
    "mmnar_core.serving.command",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmnar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mmnar_core {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    for plugin in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda point: point.name):
        plugin.load()(subparsers)
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
