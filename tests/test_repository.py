"""Ground rules of the repository that a change could silently break."""

import re
import subprocess
import sys

import pytest

from support.paths import ROOT


def _readme_commands():
    blocks = re.findall(r"```\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b for b in blocks if b.startswith("python3 -m venv")]


# the lock file, then this checkout as the package `mmnar`, editable, built by the locked setuptools
INSTALL = "pip install -r requirements.txt && pip install --no-deps --no-build-isolation -e ."


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith(f" && {INSTALL} && streamlit run app/Home.py")
    assert commands[1].endswith(f" && {INSTALL} && python -m pytest -q -n 2")


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_requirements_are_exact_pins():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.+\-]*", line), line


@pytest.mark.slow
def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "mmnar_core", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    for command in ("synth", "validate", "bench"):
        assert command in out.stdout


def test_requirements_pin_the_build_backend_and_the_ci_tools():
    pinned = {
        line.split("#")[0].strip().split("==")[0].lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line.split("#")[0]
    }
    assert {"setuptools", "wheel", "ruff", "mypy", "import-linter", "grimp"} <= pinned


def test_nothing_patches_sys_path():
    """The packages are installed (editable in a checkout): imports never depend on sys.path edits, and
    pytest finds tests/support itself (tests/ has a conftest.py and no __init__.py)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py", "*.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    patching = re.compile(r"sys\.path\s*(\.(insert|append|extend)|\[|\+?=)")
    found = [
        f"{name}:{number}"
        for name in listed
        if (ROOT / name).is_file() and name != "tests/test_repository.py"
        for number, line in enumerate((ROOT / name).read_text(encoding="utf-8").splitlines(), 1)
        if patching.search(line)
    ]
    assert not found, found
