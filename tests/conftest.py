import os
from pathlib import Path

import pytest
import torch

# Fixtures shared by several test files live in these plugins (tests/support/); helpers are imported from
# tests/support/ by the tests that use them. No test file imports from another test file.
pytest_plugins = [
    "support.postgres_server",  # postgres_server, postgres_url: one PostgreSQL 15 server for the session
    "support.store",  # db_url (SQLite and PostgreSQL), store
    "support.backup",  # archive: a populated SQLite store's backup
    "support.app_auth",  # env: the app in OpenID Connect mode with a fresh data folder
]
# Assertions in helper modules (tests/support/) report their values like those in tests do.
pytest.register_assert_rewrite("support")

# Small models on a shared 2-core machine: one intra-op thread avoids OpenMP oversubscription, which
# made a 2 s training run take 100 s while another process used the other core.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"../shared/data is required beside the clone (looked in {SHARED_DATA})")
    return SHARED_DATA
