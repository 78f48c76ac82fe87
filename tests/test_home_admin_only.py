"""Home shows the number of saved assessments and the database path only to admins (issue 18, item 12)."""

import pytest

from support.app_auth import page, person


@pytest.mark.parametrize("role", ["clinician", "reviewer", "admin"])
def test_counts_and_paths_only_for_admins(env, role):
    app = page("Home.py", person(f"{role}@example.org", f"mmnar-{role}s"))
    captions = " ".join(c.value for c in app.caption)
    shows = "Saved assessments:" in captions or "sqlite" in captions or "mmnar.sqlite3" in captions
    assert shows == (role == "admin"), captions
