"""Ground rules of the repository that a change could silently break."""

import re
import subprocess
import sys

from support.paths import ROOT


def _readme_commands():
    blocks = re.findall(r"```\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    return [b for b in blocks if b.startswith("python3 -m venv")]


def test_readme_has_exactly_two_setup_commands():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("streamlit run app/Home.py")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in ci


def test_requirements_are_exact_pins():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.+\-]*", line), line


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "mmnar_core", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0
    for command in ("synth", "validate", "bench"):
        assert command in out.stdout
