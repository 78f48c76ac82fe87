"""The code checks CI runs with the tests: ruff (lint and format), the import-layer contracts
(docs/architecture.md) and mypy on the library. Each runs the pinned tool on the whole checkout and fails
with the tool's own report."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (it is pinned in requirements.txt)")
    return str(path)


def _run(*command: str) -> None:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"


def test_ruff_lint_is_clean():
    _run(_tool("ruff"), "check", ".")


def test_ruff_format_is_clean():
    _run(_tool("ruff"), "format", "--check", ".")


def test_import_layers_hold():
    _run(_tool("lint-imports"))


@pytest.mark.slow
def test_mypy_is_clean_on_the_library():
    _run(_tool("mypy"))
