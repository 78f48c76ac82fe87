"""Where the app finds its model, data and user, from the environment with embedded defaults: a fresh
clone starts on the demo bundle and a SQLite database in a local data folder."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from mmnar_app.resources import resource_path
from mmnar_core.resources import DEMO_BUNDLE

DEMO_BASELINES = resource_path("model_card", "demo_baselines.json")
DEMO_SHIFT_STUDY = resource_path("model_card", "shift_study.json")


@dataclass(frozen=True)
class AppSettings:
    bundle_dir: Path
    data_dir: Path
    database_url: str | None  # None -> SQLite in data_dir
    user: str
    inference_url: str | None  # a model server (issue 8); None -> the in-process predictor

    @classmethod
    def from_env(cls) -> AppSettings:
        env = os.environ
        data_dir = Path(env.get("MMNAR_DATA_DIR") or Path.home() / ".local" / "share" / "mmnar").expanduser()
        try:
            default_user = getpass.getuser()
        except Exception:  # no passwd entry in some containers
            default_user = "local-user"
        return cls(
            bundle_dir=Path(env.get("MMNAR_BUNDLE") or DEMO_BUNDLE).expanduser(),
            data_dir=data_dir,
            database_url=env.get("MMNAR_DATABASE_URL") or None,
            user=env.get("MMNAR_USER") or default_user,
            inference_url=env.get("MMNAR_INFERENCE_URL") or None,
        )
