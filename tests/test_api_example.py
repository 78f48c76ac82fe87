"""docs/api.md's example runs as written, from a folder outside the checkout (the installed package and its
shipped demo bundle, no sys.path help)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def first_python_block(text: str) -> str:
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "docs/api.md has no python block"
    return match.group(1)


@pytest.mark.slow
def test_the_api_page_example_runs_from_another_folder(tmp_path):
    code = first_python_block(DOC.read_text(encoding="utf-8"))
    assert len([line for line in code.splitlines() if line.strip()]) <= 12  # the page promises a short example
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    risks, cards = lines[:3], lines[3:]
    assert [line.split(":")[0] for line in risks] == ["readmission_30d", "icu_90d", "death_180d"]
    for line in risks:
        assert re.fullmatch(r"\w+: \d+\.\d% \(model uncertainty \d+\.\d% to \d+\.\d%\)", line), line
    # then per outcome the summary card: headline, comparison with the baseline, three drivers
    assert len(cards) == 3 * 5 and [c for c in cards if c.startswith("Estimated risk of")] == cards[::5]
    assert all("held-out patients of the training cohort" in c for c in cards[1::5])
