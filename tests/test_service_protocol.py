"""The app's service interface: `mmnar_app.service.ModelService` names what the pages and mmnar_app's modules
use of the model service, and both services provide it, at run time (runtime_checkable) and for mypy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mmnar_app.remote import RemoteService
from mmnar_app.service import CachedExplanations, LocalService, ModelService
from mmnar_core.model_info import ModelInfo
from mmnar_core.resources import DEMO_BUNDLE

from support.paths import ROOT

INFO = json.loads((ROOT / "tests" / "support" / "seams_7c6adf2.json").read_text(encoding="utf-8"))["model_info"]


def _remote() -> RemoteService:
    """A RemoteService whose server answers GET /info with a stored ModelInfo (no server runs)."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/info"
        return httpx.Response(200, json=INFO)

    return RemoteService("http://model.test", transport=httpx.MockTransport(answer))


def test_both_services_provide_the_interface_at_run_time():
    remote = _remote()
    try:
        assert isinstance(remote, ModelService)
        assert isinstance(remote.info, ModelInfo) and remote.info.to_dict() == INFO
    finally:
        remote.close()
    local = LocalService(DEMO_BUNDLE)
    assert isinstance(local, ModelService) and isinstance(local.info, ModelInfo)


def test_the_interface_names_what_the_pages_use():
    members = {"info", "analyse", "complete"}
    assert members <= set(dir(ModelService))
    assert not isinstance(CachedExplanations(), ModelService)  # the shared cache alone is no service


CHECK = """
from mmnar_app.remote import RemoteService
from mmnar_app.service import LocalService, ModelService


def services(local: LocalService, remote: RemoteService) -> list[ModelService]:
    return [local, remote]
"""


@pytest.mark.slow
def test_both_services_provide_the_interface_for_mypy(tmp_path: Path):
    """Structural typing as mypy sees it: a missing or differently typed method or property fails here."""
    check = tmp_path / "service_check.py"
    check.write_text(CHECK, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--follow-imports=silent", str(check)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
