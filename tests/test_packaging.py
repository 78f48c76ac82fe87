"""`pip install .` gives a working copy: a wheel built from the checkout holds the three packages and every
resource file, and once installed on its own (not the editable checkout) it runs from any folder, finding
its demo bundle, image weights, demo patients and model-card tables through importlib.resources."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from support.paths import ROOT

pytestmark = pytest.mark.slow

PACKAGES = ("mmnar_core", "mmnar_app", "mmnar_lab")
RESOURCE_DIRS = ("mmnar_core/resources", "mmnar_app/resources", "mmnar_app/store/migrations")
# named explicitly too, so an empty glob cannot pass the test unnoticed
MUST_SHIP = (
    "mmnar_core/resources/demo_bundle/bundle.json",
    "mmnar_core/resources/demo_bundle/weights.safetensors",
    "mmnar_core/resources/demo_bundle/training_log.jsonl",
    "mmnar_core/resources/demo_bundle/model_card.md",
    "mmnar_core/resources/demo_bundle/encoders/tabular-852849c1cc33e7e4/tabular_state.json",
    "mmnar_core/resources/encoders/cxr_mobilenet_v3_small_synth.safetensors",
    "mmnar_core/resources/encoders/README.md",
    "mmnar_app/resources/demo_patients/patients.json",
    "mmnar_app/resources/demo_patients/demo01/cxr.png",
    "mmnar_app/resources/demo_patients/demo01/discharge_note.txt",
    "mmnar_app/resources/model_card/demo_baselines.json",
    "mmnar_app/resources/model_card/shift_study.json",
    "mmnar_app/store/migrations/script.py.mako",
)

# Run by the installed copy, from a folder outside the checkout; argv[1] is its site-packages.
INSTALLED_CHECK = """
import sys
from importlib.metadata import version
from pathlib import Path

import mmnar_app, mmnar_core, mmnar_lab
from mmnar_app.demo_patients import load_demo_patients
from mmnar_app.resources import resource_path
from mmnar_app.settings import DEMO_BASELINES, DEMO_SHIFT_STUDY, AppSettings
from mmnar_core.bundle import verify_bundle
from mmnar_core.resources import DEMO_BUNDLE, SHIPPED_IMAGE_WEIGHTS

site = Path(sys.argv[1]).resolve()
for module in (mmnar_core, mmnar_app, mmnar_lab):
    assert Path(module.__file__).resolve().is_relative_to(site), module.__file__
files = [DEMO_BUNDLE / "bundle.json", SHIPPED_IMAGE_WEIGHTS, resource_path("demo_patients", "patients.json"),
         DEMO_BASELINES, DEMO_SHIFT_STUDY]
for path in files:
    assert path.is_file() and path.resolve().is_relative_to(site), path
assert AppSettings.from_env().bundle_dir == DEMO_BUNDLE  # the app's embedded default
assert version("mmnar") == mmnar_core.__version__, (version("mmnar"), mmnar_core.__version__)
assert len(load_demo_patients()) == 12
verify_bundle(DEMO_BUNDLE, ())  # every byte of the installed demo bundle matches its hashes
print("installed copy OK:", DEMO_BUNDLE)
"""


def _checkout_files() -> list[str]:
    """The checkout as `pip install .` sees it: tracked and new files, not ignored ones (.venv, outputs)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted({name for name in listed.split("\0") if name and (ROOT / name).is_file()})


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_holds_the_packages_and_their_resources_and_runs_installed_from_anywhere(tmp_path):
    # build from a copy of the checkout, so the build's own files (build/, *.egg-info) stay out of it
    files = _checkout_files()
    source = tmp_path / "source"
    for name in files:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
    dist = tmp_path / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(dist), str(source)])
    (wheel,) = dist.glob("mmnar-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        assert f"{package}/__init__.py" in names
    shipped = [name for name in files if name.startswith(RESOURCE_DIRS) and "__pycache__" not in name]
    assert set(MUST_SHIP) <= set(shipped)
    missing = [name for name in shipped if name not in names]
    assert not missing, (
        f"package data missing from the wheel (pyproject.toml [tool.setuptools.package-data]): {missing}"
    )
    assert not any(name.startswith(("tests/", "app/", "assets/", "benchmarks/")) for name in names)

    # a fresh environment without the editable checkout: the wheel installed alone, the dependencies
    # borrowed from this environment's site-packages through a .pth line (whose own .pth files, the
    # editable finder among them, are not run)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)])
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    borrowed = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "borrowed_dependencies.pth").write_text("".join(f"{path}\n" for path in borrowed))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", MMNAR_BUNDLE="", MMNAR_DATA_DIR=str(tmp_path / "data"))
    out = _run([str(python), "-c", INSTALLED_CHECK, str(site)], cwd=elsewhere, env=env)
    assert "installed copy OK" in out.stdout
    for command in ([str(python), "-m", "mmnar_core", "--help"], [str(env_dir / "bin" / "mmnar"), "--help"]):
        out = _run(command, cwd=elsewhere, env=env)
        for name in ("synth", "serve", "bench", "shift-study"):  # the library's commands and the lab's entry points
            assert name in out.stdout
