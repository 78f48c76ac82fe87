"""Real-format loaders: published source layouts -> the canonical dataset (docs/loaders.md).

Every loader writes only through `mmnar_core.dataset.DatasetWriter`. Sources are imported lazily so
the CLI stays cheap to start.
"""

from __future__ import annotations

import importlib
from pathlib import Path

SOURCES: dict[str, str] = {
    "mimic-iv": "mmnar_core.loaders.mimic_iv.build:build",
    "eicu": "mmnar_core.loaders.eicu:build",
    "uci-diabetes": "mmnar_core.loaders.uci_diabetes:build",
    "covid-cxr": "mmnar_core.loaders.covid_cxr:build",
}


def build_source(source: str, root: str | Path, out: str | Path, **options) -> Path:
    """Build dataset `out` from `root` laid out as `source`; options go to that source's build()."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r} (accepted: {', '.join(SOURCES)})")
    if not Path(root).is_dir():
        raise FileNotFoundError(f"--root {root} is not a directory")
    module_name, function_name = SOURCES[source].split(":")
    return getattr(importlib.import_module(module_name), function_name)(root, out, **options)
