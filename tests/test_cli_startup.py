"""`mmnar --help` builds every command's parser (the library's and the lab's, through entry points) without
importing torch, scipy, scikit-learn, LightGBM, transformers or Captum: they load when a command runs
(numpy and pandas, a few tenths of a second, may load). Checked in a fresh process,
by what is imported, not by time."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from mmnar_core.cli import build_parser
parser = build_parser()
names = set(parser._subparsers._group_actions[0].choices)
assert {"train", "serve", "benchmark-models", "bench", "fuzz", "shift-study"} <= names, names
heavy = sorted(m for m in ("torch", "scipy", "sklearn", "lightgbm", "transformers", "captum") if m in sys.modules)
print(",".join(heavy))
"""


def test_building_the_command_line_imports_no_heavy_library():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"imported while building `mmnar --help`: {done.stdout.strip()}"


def test_the_front_door_is_lazy():
    code = "import sys, mmnar_core; print('torch' in sys.modules); mmnar_core.Predictor; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"]
